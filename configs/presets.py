"""Network presets (system.md §1.3, §1.5, §15; machine.md §5): frozen dataclasses -> plain G/D kwargs.

`paper` is the published configuration (README commands of the original, §1.5), `tiny-cpu` a
small one that trains on two CPU cores, and `bench` the fixed configuration of machine.md §5 at
which EG3D's public code was timed on the CPU (bench/generator.py compares against it). Geometric
constants (near/far, box, crop, density bias, ...) are not repeated here: they are the defaults of
configs.schema.RenderingConfig and are written out in full into `rendering_kwargs`, so a saved
generator keeps them even if a default changes later.
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from configs.schema import RenderingConfig

G_CLASS_NAME = 'training.networks.generator.PortraitGenerator'
D_CLASS_NAME = 'training.networks.dual_discriminator.DualDiscriminator'
FP16_CONV_CLAMP = 256.0          # conv clamp of layers that run in float16 on CUDA (§1.1 --*_num_fp16_res)
MAX_MBSTD_GROUP = 4              # --mbstd-group default; never larger than the per-device batch


@dataclass(frozen=True)
class NetworkPreset:
    """Capacities and options of G (generator.PortraitGenerator) and D (dual_discriminator.DualDiscriminator).

    Resolutions in pixels; `backbone_resolution` is the tri-grid's H = W. `sr_channels` None keeps
    the paper's super-resolution layout for `img_resolution` (superresolution.build_superresolution).
    `neural_rendering_resolution_final` is the stage-3 fade target (§1.5, §2.11) for the training
    schedule; G is built with `neural_rendering_resolution`.
    """
    img_resolution: int = 512
    neural_rendering_resolution: int = 64
    neural_rendering_resolution_final: int = 128
    batch_size: int = 4                                 # per device (the paper: 32 over 8 GPUs)
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    backbone_resolution: int = 256
    channel_base: int = 32768
    channel_max: int = 512
    g_num_fp16_res: int = 0
    triplane_depth: int = 3
    depth_resolution: int = 48
    depth_resolution_importance: int = 48
    decoder_activation: str = 'none'
    use_torgb_raw: bool = True
    use_background: bool = True
    sr_channels: Optional[Tuple[int, ...]] = None
    sr_num_fp16_res: int = 4
    sr_noise_mode: str = 'none'
    thickness: float = 0.25
    c_scale: float = 1.0
    pose_hidden_features: Tuple[int, ...] = (128, 32)
    d_channel_base: int = 32768
    d_channel_max: int = 512
    d_num_fp16_res: int = 4
    d_pose_hidden_features: Tuple[int, ...] = (2048, 512, 128, 32)
    disc_c_noise: float = 0.0
    d_fold_logits: bool = False                         # one D backbone pass (dual_discriminator.DualDiscriminator)

    def rendering_kwargs(self) -> dict:
        """All RenderingConfig fields as plain data, with this preset's sampling and decoder choices."""
        cfg = RenderingConfig(depth_resolution=self.depth_resolution,
                              depth_resolution_importance=self.depth_resolution_importance,
                              triplane_depth=self.triplane_depth, decoder_activation=self.decoder_activation)
        return dataclasses.asdict(cfg)

    def G_kwargs(self, smpl_path: Optional[str] = None) -> dict:
        """Constructor kwargs of the generator (plus `class_name`); smpl_path None = the procedural stand-in."""
        sr_kwargs = dict(use_fp16=self.sr_num_fp16_res > 0,
                         conv_clamp=FP16_CONV_CLAMP if self.sr_num_fp16_res > 0 else None)
        if self.sr_channels is not None:
            sr_kwargs['channels'] = list(self.sr_channels)
        return dict(
            class_name=G_CLASS_NAME, z_dim=self.z_dim, w_dim=self.w_dim, img_resolution=self.img_resolution,
            backbone_resolution=self.backbone_resolution,
            neural_rendering_resolution=self.neural_rendering_resolution,
            channel_base=self.channel_base, channel_max=self.channel_max, num_fp16_res=self.g_num_fp16_res,
            conv_clamp=FP16_CONV_CLAMP if self.g_num_fp16_res > 0 else None,
            mapping_kwargs=dict(num_layers=self.mapping_layers), rendering_kwargs=self.rendering_kwargs(),
            sr_kwargs=sr_kwargs, sr_noise_mode=self.sr_noise_mode, use_torgb_raw=self.use_torgb_raw,
            use_background=self.use_background, c_scale=self.c_scale,
            pose_hidden_features=list(self.pose_hidden_features), thickness=self.thickness, smpl_path=smpl_path)

    def D_kwargs(self) -> dict:
        """Constructor kwargs of the dual discriminator (plus `class_name`)."""
        return dict(
            class_name=D_CLASS_NAME, img_resolution=self.img_resolution, channel_base=self.d_channel_base,
            channel_max=self.d_channel_max, num_fp16_res=self.d_num_fp16_res,
            conv_clamp=FP16_CONV_CLAMP if self.d_num_fp16_res > 0 else None, disc_c_noise=self.disc_c_noise,
            pose_hidden_features=list(self.d_pose_hidden_features), fold_logits=self.d_fold_logits,
            epilogue_kwargs=dict(mbstd_group_size=min(MAX_MBSTD_GROUP, self.batch_size)))


PRESETS = {
    'paper': NetworkPreset(),
    'tiny-cpu': NetworkPreset(     # sized for >= 1 kimg/min of training on 2 CPU cores (docs/performance.md)
        img_resolution=64, neural_rendering_resolution=16, neural_rendering_resolution_final=16, batch_size=4,
        z_dim=64, w_dim=64, backbone_resolution=64, channel_base=1024, channel_max=32, triplane_depth=1,
        depth_resolution=8, depth_resolution_importance=8, sr_channels=(32, 16), sr_num_fp16_res=0,
        pose_hidden_features=(64, 32), d_channel_base=1024, d_channel_max=32, d_num_fp16_res=0,
        d_pose_hidden_features=(128, 32), d_fold_logits=True),
    'bench': NetworkPreset(
        img_resolution=128, neural_rendering_resolution=32, neural_rendering_resolution_final=32, batch_size=4,
        channel_base=4096, channel_max=128, triplane_depth=1, depth_resolution=24, depth_resolution_importance=24,
        d_channel_base=4096, d_channel_max=128),
}


def get_preset(name: str) -> NetworkPreset:
    """The preset called `name`; ValueError listing the known names otherwise."""
    if name not in PRESETS:
        raise ValueError(f'preset: expected one of {", ".join(PRESETS)}, got {name!r}')
    return PRESETS[name]
