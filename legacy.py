"""`load_network_pkl(f)`: the entry point EG3D users know, for this project's network snapshots.

Snapshots are data (torch_utils/checkpoint.py): reading one never unpickles code, so original
NVIDIA/EG3D/3DPortraitGAN pickles, which embed their source code, are refused with a one-line
message rather than executed. Typical use:

    with dnnlib.util.open_url(network_pkl) as f:
        G = legacy.load_network_pkl(f)['G_ema'].to(device)
"""
import copy

import torch

from torch_utils import checkpoint

FP16_OVERRIDES = {'num_fp16_res': 4, 'conv_clamp': 256}   # EG3D's force_fp16 settings


def _override_keys(value, overrides):
    """Set every key of `overrides` found anywhere in nested dicts/lists `value`; returns the count."""
    count = 0
    if isinstance(value, dict):
        for key in value:
            if key in overrides:
                value[key] = overrides[key]
                count += 1
            else:
                count += _override_keys(value[key], overrides)
    elif isinstance(value, (list, tuple)):
        count += sum(_override_keys(item, overrides) for item in value)
    return count


def _force_fp16(data, name):
    """Switch every network's init kwargs to EG3D's fp16 settings; ValueError if none has them."""
    found = 0
    for key, value in data.items():
        if checkpoint.is_module_entry(value):
            value['init_kwargs'] = copy.deepcopy(value['init_kwargs'])
            found += _override_keys(value['init_kwargs'], FP16_OVERRIDES)
    if not found:
        raise checkpoint.SnapshotFormatError(f'{name}: force_fp16 needs networks with a num_fp16_res or '
                                             'conv_clamp argument; none was found')


def load_network_pkl(f, force_fp16=False, device=None):
    """Load a network snapshot from an open binary file `f` (or a path).

    Returns {'G', 'D', 'G_ema', 'D_ema': modules in eval mode with requires_grad False, plus the
    snapshot's extras such as 'training_set_kwargs' and 'pose_predict_kwargs'}; modules are on
    `device` (default the CPU). `force_fp16` rebuilds the networks with num_fp16_res=4 and
    conv_clamp=256 (EG3D's option). Anything that is not a snapshot of this project raises
    checkpoint.SnapshotFormatError with a one-line message.
    """
    name = checkpoint.file_name(f)
    data = checkpoint.read_snapshot_dict(f)
    if force_fp16:
        _force_fp16(data, name)
    out = checkpoint.build_modules(data, device, name)
    for value in out.values():
        if isinstance(value, torch.nn.Module):
            value.eval().requires_grad_(False)
    return out
