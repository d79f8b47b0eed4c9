"""What a training run is built from: the dataset, G / D / G_ema / D_ema from a network preset plus the
options' overrides, and the counters of a fresh or resumed start.

Network kwargs: configs.presets.get_preset(opts.network_preset).G_kwargs() / D_kwargs(), then the
TrainingOptions network fields (None = keep the preset's): cbase / cmax (G and D), map_depth,
mbstd_group, triplane_depth, decoder_activation, use_torgb_raw, use_background, thickness, c_scale,
sr_noise_mode, the three *_num_fp16_res (with their conv clamp), disc_c_noise, and
neural_rendering_resolution_initial. decoder_lr_mul is an optimiser setting (training/phases.py);
freezed is applied by the phases too.

Resume: None starts at cur_nimg 0; a training state (.pt) continues exactly (weights, optimisers,
counters, RNG states); a network snapshot (.pkl) copies weights only and starts the counter at
resume_kimg; 'auto' takes the newest training state in opts.outdir (a fresh start if there is none).
"""
import copy
from typing import Dict, Tuple

import torch

import dnnlib
from configs.presets import FP16_CONV_CLAMP, get_preset
from configs.training_options import with_network_defaults
from torch_utils.distributed import DistContext, broadcast_module_
from training import training_state as states

DATASET_CLASS = 'portrait_data.portrait.PortraitDataset'


def build_dataset(opts):
    """(PortraitDataset of opts, its kwargs as plain data with class_name); ValueError on a resolution mismatch."""
    kwargs = dict(class_name=DATASET_CLASS, path=opts.data, mask_path=opts.seg_data, xflip=opts.mirror,
                  back_share=opts.back_repeat, max_size=opts.max_size, seed=opts.seed)
    dataset = dnnlib.util.construct_class_by_name(**kwargs)
    resolution = get_preset(opts.network_preset).img_resolution
    if dataset.resolution != resolution:
        raise ValueError(f'--data: {opts.data}: images are {dataset.resolution}x{dataset.resolution} but '
                         f'--network-preset={opts.network_preset} trains at {resolution}x{resolution}')
    return dataset, kwargs


def _clamp(num_fp16_res: int):
    """The conv clamp that goes with a number of float16 resolutions (None without any)."""
    return FP16_CONV_CLAMP if num_fp16_res > 0 else None


def network_kwargs(opts) -> Tuple[dict, dict]:
    """(G_kwargs, D_kwargs) with class_name: the network preset with the options' overrides (module doc)."""
    opts = with_network_defaults(opts)
    preset = get_preset(opts.network_preset)
    G_kwargs, D_kwargs = preset.G_kwargs(smpl_path=opts.smpl_path), preset.D_kwargs()
    for kwargs in (G_kwargs, D_kwargs):
        kwargs.update({key: value for key, value in (('channel_base', opts.cbase), ('channel_max', opts.cmax))
                       if value is not None})
    if opts.map_depth is not None:
        G_kwargs['mapping_kwargs']['num_layers'] = opts.map_depth
    for key in ('triplane_depth', 'decoder_activation'):
        if getattr(opts, key) is not None:
            G_kwargs['rendering_kwargs'][key] = getattr(opts, key)
    G_kwargs.update(use_torgb_raw=opts.use_torgb_raw, use_background=opts.use_background, thickness=opts.thickness,
                    c_scale=opts.c_scale, sr_noise_mode=opts.sr_noise_mode, num_fp16_res=opts.g_num_fp16_res,
                    conv_clamp=_clamp(opts.g_num_fp16_res),
                    neural_rendering_resolution=opts.neural_rendering_resolution_initial)
    G_kwargs['sr_kwargs'].update(use_fp16=opts.sr_num_fp16_res > 0, conv_clamp=_clamp(opts.sr_num_fp16_res))
    D_kwargs.update(num_fp16_res=opts.d_num_fp16_res, conv_clamp=_clamp(opts.d_num_fp16_res),
                    disc_c_noise=opts.disc_c_noise)
    D_kwargs['epilogue_kwargs']['mbstd_group_size'] = opts.mbstd_group
    return G_kwargs, D_kwargs


def build_networks(opts, device: torch.device) -> Tuple[Dict[str, torch.nn.Module], dict]:
    """({'G', 'D', 'G_ema', 'D_ema'} on device, {'G_kwargs', 'D_kwargs'}); the same weights on every rank (seeded)."""
    G_kwargs, D_kwargs = network_kwargs(opts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        G = dnnlib.util.construct_class_by_name(**copy.deepcopy(G_kwargs)).train().to(device)
        D = dnnlib.util.construct_class_by_name(**copy.deepcopy(D_kwargs)).train().to(device)
    nets = dict(G=G, D=D, G_ema=copy.deepcopy(G).eval().requires_grad_(False),
                D_ema=copy.deepcopy(D).eval().requires_grad_(False))
    return nets, dict(G_kwargs=G_kwargs, D_kwargs=D_kwargs)


def compile_networks(nets: Dict[str, torch.nn.Module]) -> None:
    """torch.compile (in place, state_dict keys unchanged) the forward of G's direct submodules.

    D stays eager: lazy R1 differentiates its backward (create_graph), which compiled graphs do not
    support. A part that the compiler fails on runs eagerly (dynamo's suppress_errors, with torch's
    warning) instead of stopping the run: PyTorch 2.13's CPU inductor fails on the synthesis backbone.
    """
    import torch._dynamo.config
    torch._dynamo.config.suppress_errors = True
    for module in nets['G'].children():
        module.compile()


def resume_run(opts, nets: Dict[str, torch.nn.Module], optimizers: Dict[str, torch.optim.Optimizer],
               ctx: DistContext) -> dict:
    """Load what opts.resume names into nets / optimizers (module doc); returns the counters to start from."""
    path, say = opts.resume, (print if ctx.is_main else (lambda *args: None))
    if path == 'auto':
        path = states.find_latest_state(opts.outdir)
        if path is None:
            say(f'--resume=auto: no training state under {opts.outdir}; starting from scratch')
    if path is None:
        counters = dict(cur_nimg=0)
    elif path.endswith('.pkl'):
        states.load_network_weights(path, nets)
        counters = dict(cur_nimg=int(opts.resume_kimg * 1000))
        say(f'Resumed the weights of {path}; counter at kimg {opts.resume_kimg:g}')
    else:
        counters = states.restore_training_state(states.load_training_state(path), path, nets, optimizers, opts)
        say(f'Resumed the training state {path} at kimg {counters["cur_nimg"] / 1e3:.3f}')
    for module in nets.values():
        broadcast_module_(module, ctx)
    return counters
