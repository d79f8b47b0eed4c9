"""The 3DPortraitGAN generator (system.md §2): tri-grid StyleGAN2 G with a body-pose warp, background and SR.

Data flow of `synthesis` (§2.1): ws -> StyleGAN2 backbone -> tri-grid planes [N, 3, 32 D, H, W];
camera rays at the neural rendering resolution r; every coarse and fine sample is warped from
posed to canonical space by the body pose (§2.5) before the tri-grid lookup and the decoder;
volume rendering gives features, depth and opacity at r; a 2-D background network fills in behind
the foreground (§2.8); a modulated ToRGB turns the composited features into the raw image (§2.9);
super-resolution produces the final image (§2.10).

Conditioning (§2.2): the mapping sees concat(camera [25], body pose [6]) * c_scale. Rendering always
uses the camera and pose given to `synthesis`; a caller may condition the mapping on others (§4.3).
"""
import dataclasses
from typing import Optional

import torch

from configs.schema import RenderingConfig
from torch_utils import persistence
from training.networks.background import BackgroundNetwork, composite
from training.networks.body_warp import BodyWarp
from training.networks.decoder import TriGridDecoder
from training.networks.layers import check_shape
from training.networks.mapping import MappingNetwork
from training.networks.pose_branch import GPoseBranch
from training.networks.rendering_overrides import override_rendering
from training.networks.superresolution import build_superresolution
from training.networks.symmetry import CAMERA_DIM, POSE_DIM
from training.networks.synthesis import NOISE_MODES, SynthesisNetwork, ToRGBLayer
from training.rendering.ray_sampler import camera_rays
from training.rendering.renderer import VolumeRenderer

N_PLANES = 3
IMG_CHANNELS = 3
FUSED_INFERENCE_ONLY = 'inference_only'


def split_conditioning(c: torch.Tensor, pose_params: Optional[torch.Tensor]):
    """c [N, 25] or [N, 31] (pose appended), pose_params [N, 6] or None -> (camera [N, 25], pose [N, 6] or None)."""
    if not isinstance(c, torch.Tensor) or c.ndim != 2 or c.shape[1] not in (CAMERA_DIM, CAMERA_DIM + POSE_DIM):
        shape = list(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        raise ValueError(f'c: expected shape [N, {CAMERA_DIM}] or [N, {CAMERA_DIM + POSE_DIM}], got {shape}')
    if c.shape[1] > CAMERA_DIM:
        if pose_params is not None:
            raise ValueError(f'pose_params: c already holds a pose ([N, {CAMERA_DIM + POSE_DIM}]); '
                             'pass one or the other')
        return c[:, :CAMERA_DIM], c[:, CAMERA_DIM:]
    if pose_params is not None:
        check_shape('pose_params', pose_params, [c.shape[0], POSE_DIM])
    return c, pose_params


def _image(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Per-ray values [N, r*r, C] (raster order) -> image [N, C, r, r]."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], resolution, resolution)


class PoseConditionedMapping(MappingNetwork):
    """G.mapping(z, c, pose_params=None, ...) -> ws [N, num_ws, w_dim] (§2.2).

    A StyleGAN2 mapping network whose conditioning input is concat(camera [25], pose [6]) * c_scale.
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, c_scale: float = 1.0, **mapping_kwargs):
        """mapping_kwargs: MappingNetwork options (num_layers, lr_multiplier, w_avg_beta, ...)."""
        super().__init__(z_dim=z_dim, c_dim=CAMERA_DIM + POSE_DIM, w_dim=w_dim, num_ws=num_ws, **mapping_kwargs)
        self.c_scale = float(c_scale)

    def forward(self, z: torch.Tensor, c: torch.Tensor, pose_params: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                update_emas: bool = False) -> torch.Tensor:
        """z [N, z_dim], c [N, 25] with pose_params [N, 6] (None = zeros), or c [N, 31] -> ws [N, num_ws, w_dim]."""
        camera, pose = split_conditioning(c, pose_params)
        if pose is None:
            pose = torch.zeros(camera.shape[0], POSE_DIM, dtype=camera.dtype, device=camera.device)
        c_cond = torch.cat([camera, pose.to(camera.dtype)], dim=1) * self.c_scale
        return super().forward(z, c_cond, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                               update_emas=update_emas)

    def extra_repr(self) -> str:
        """Sizes and c_scale for print(module)."""
        return f'{super().extra_repr()}, c_scale={self.c_scale}'


@persistence.persistent_class
class PortraitGenerator(torch.nn.Module):
    """G(z, c, pose_params) -> dict(image, image_raw, image_depth, image_mask, image_background) (§2.1).

    z [N, z_dim]; c [N, 25] camera (cam2world + normalised intrinsics, OpenCV axes) or [N, 31] with
    the pose appended; pose_params [N, 6] neck and head axis-angle (None = zero pose). Outputs:
    image [N, 3, R, R], image_raw [N, 3, r, r], image_depth [N, 1, r, r] (distance along the ray),
    image_mask [N, 1, r, r] (accumulated opacity), image_background [N, 3, r, r] (raw RGB of the
    background alone); R = img_resolution, r = the neural rendering resolution (`nrr` buffer,
    settable per call). No batch size is stored anywhere.

    Body model and checkpoints: `smpl_path` (None = the procedural stand-in) seeds the body buffers
    (body_warp.py). `init_kwargs` (what torch_utils.persistence saves) adds `body_sizes`, the
    sizes of those buffers; a G built with `body_sizes` allocates zero buffers of these sizes and
    reads no body file, and the state_dict then restores the body. So a checkpoint rebuilds with
    module_from_dict on a machine without the SMPL file.
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, img_resolution: int = 512, backbone_resolution: int = 256,
                 neural_rendering_resolution: int = 64, channel_base: int = 32768, channel_max: int = 512,
                 num_fp16_res: int = 0, conv_clamp: Optional[float] = None, mapping_kwargs: Optional[dict] = None,
                 rendering_kwargs: Optional[dict] = None, sr_kwargs: Optional[dict] = None,
                 sr_noise_mode: str = 'none', use_torgb_raw: bool = True, use_background: bool = True,
                 c_scale: float = 1.0, pose_hidden_features=(128, 32), thickness: float = 0.25,
                 smpl_path: Optional[str] = None, body_sizes: Optional[dict] = None, warp_chunk: Optional[int] = None,
                 fused_modconv_default=FUSED_INFERENCE_ONLY):
        """Capacities as in StyleGAN2/EG3D (channel_base, channel_max, num_fp16_res, conv_clamp, mapping_kwargs);
        backbone_resolution: tri-grid H = W; rendering_kwargs: RenderingConfig fields; sr_kwargs: go to
        build_superresolution (channels, use_fp16, conv_clamp); use_torgb_raw: raw RGB by a modulated ToRGB
        (else the first 3 feature channels); use_background: the 2-D background network (else a zero
        background); c_scale: multiplier of the mapping's conditioning; thickness: warp cut-off (metres);
        smpl_path / body_sizes: the body (class docstring); warp_chunk: points per nearest-face search block."""
        super().__init__()
        if sr_noise_mode not in NOISE_MODES:
            raise ValueError(f'sr_noise_mode: expected one of {NOISE_MODES}, got {sr_noise_mode!r}')
        self.z_dim, self.w_dim, self.c_dim = z_dim, w_dim, CAMERA_DIM
        self.img_resolution, self.img_channels = img_resolution, IMG_CHANNELS
        self.sr_noise_mode = sr_noise_mode
        self.use_torgb_raw, self.use_background = use_torgb_raw, use_background
        self.fused_modconv_default = fused_modconv_default
        self.rendering = RenderingConfig(**(rendering_kwargs or {}))
        cfg = self.rendering
        common = dict(num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, fused_modconv_default=fused_modconv_default)
        self.backbone = SynthesisNetwork(w_dim=w_dim, img_resolution=backbone_resolution,
                                         img_channels=N_PLANES * cfg.triplane_features * cfg.triplane_depth,
                                         channel_base=channel_base, channel_max=channel_max, **common)
        self.num_ws = self.backbone.num_ws
        self.mapping = PoseConditionedMapping(z_dim=z_dim, w_dim=w_dim, num_ws=self.num_ws, c_scale=c_scale,
                                              **(mapping_kwargs or {}))
        self.decoder = TriGridDecoder(cfg)
        self.renderer = VolumeRenderer(cfg)
        self.superresolution = build_superresolution(img_resolution, w_dim=w_dim, feature_channels=cfg.decoder_output,
                                                     fused_modconv_default=fused_modconv_default, **(sr_kwargs or {}))
        if use_background:
            self.background = BackgroundNetwork(w_dim, self.superresolution.input_resolution, cfg.decoder_output,
                                                channel_base=channel_base // 2, channel_max=channel_max, **common)
        if use_torgb_raw:
            self.torgb = ToRGBLayer(cfg.decoder_output, IMG_CHANNELS, w_dim=w_dim)
        self.pose_branch = GPoseBranch(z_dim, hidden_features=tuple(pose_hidden_features))
        self.body_warp = BodyWarp(cfg.box_warp, thickness, smpl_path=smpl_path, sizes=body_sizes, chunk=warp_chunk)
        self.register_buffer('nrr', torch.tensor(self._check_nrr(neural_rendering_resolution)))

    @property
    def init_kwargs(self) -> dict:
        """Constructor kwargs that rebuild this G: the given ones plus `body_sizes` (class docstring)."""
        return {**self._given_init_kwargs, 'body_sizes': self.body_warp.sizes()}

    @init_kwargs.setter
    def init_kwargs(self, value: dict) -> None:
        """Set by @persistent_class to the constructor kwargs as given."""
        self._given_init_kwargs = value

    @property
    def neural_rendering_resolution(self) -> int:
        """Default neural rendering resolution r (§2.11); stored in the state_dict as `nrr`."""
        return int(self.nrr)

    @neural_rendering_resolution.setter
    def neural_rendering_resolution(self, value: int) -> None:
        """Set the default r (e.g. the training loop's NRR fade, §2.11)."""
        self.nrr.fill_(self._check_nrr(value))

    @staticmethod
    def _check_nrr(value) -> int:
        """value as a positive int; ValueError naming neural_rendering_resolution otherwise."""
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f'neural_rendering_resolution: expected a positive integer, got {value!r}')
        return int(value)

    def _fused(self, fused_modconv) -> bool:
        """Resolve a fused_modconv argument (None -> the default; 'inference_only' -> not training)."""
        fused = self.fused_modconv_default if fused_modconv is None else fused_modconv
        return (not self.training) if fused == FUSED_INFERENCE_ONLY else bool(fused)

    def set_rendering(self, **overrides) -> RenderingConfig:
        """Validate and apply RenderingConfig overrides; returns the new config (G.rendering).

        E.g. G.set_rendering(depth_resolution=96, depth_resolution_importance=96, ray_chunk=4096).
        Unknown fields, invalid values and changes of weight-fixing fields raise ValueError naming
        the field (rendering_overrides.py). The config object is replaced in G and in every
        submodule holding it (renderer, decoder), and in the constructor kwargs, so a snapshot
        saved afterwards records it. The warp keeps the body faces of the box it was built with.
        """
        old = self.rendering
        new = override_rendering(old, **overrides)
        for module in self.modules():
            for name, value in list(vars(module).items()):
                if value is old:
                    setattr(module, name, new)
        self._given_init_kwargs = {**self._given_init_kwargs, 'rendering_kwargs': dataclasses.asdict(new)}
        return new

    def get_pose_params(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """P_G(z, c) (§4.1, explicit symmetry §2.6): z [N, z_dim], c [N, 25] or [N, 31] -> pose [N, 6]."""
        camera, _ = split_conditioning(c, None)
        return self.pose_branch(z, camera)

    def planes(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> tri-grid planes [N, 3, 32 D, H, W] (§2.1 steps 3-4)."""
        check_shape('ws', ws, [None, self.num_ws, self.w_dim])
        x = self.backbone(ws, **block_kwargs)
        return x.view(x.shape[0], N_PLANES, -1, x.shape[-2], x.shape[-1])

    def raw_rgb(self, features: torch.Tensor, ws: torch.Tensor, fused_modconv=None) -> torch.Tensor:
        """Feature image [N, C, r, r] -> RGB [N, 3, r, r]: modulated ToRGB with style ws[:, -1] (§2.9)."""
        if self.use_torgb_raw:
            return self.torgb(features, ws[:, -1], fused_modconv=self._fused(fused_modconv))
        return features[:, :IMG_CHANNELS]

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor, pose_params: Optional[torch.Tensor] = None,
                  apply_def: bool = True, neural_rendering_resolution: Optional[int] = None,
                  ws_bcg: Optional[torch.Tensor] = None, noise_mode: str = 'const', density_noise: float = 0.0,
                  perturb: Optional[bool] = None, update_emas: bool = False, fused_modconv=None) -> dict:
        """Render ws [N, num_ws, w_dim] from cameras c [N, 25] with bodies posed by pose_params [N, 6] (§2.1).

        c may be [N, 31] with the pose appended instead. pose None = zero pose. apply_def: warp the
        samples by the pose (False renders the canonical body). ws_bcg: ws of the background (None:
        ws). density_noise: std of Gaussian noise on raw density (training). perturb: random sample
        depths (None: in training mode only). Returns the output dict of the class docstring.
        """
        check_shape('ws', ws, [None, self.num_ws, self.w_dim])
        camera, pose = split_conditioning(c, pose_params)
        check_shape('c', camera, [ws.shape[0], CAMERA_DIM])
        r = self.neural_rendering_resolution if neural_rendering_resolution is None \
            else self._check_nrr(neural_rendering_resolution)
        block_kwargs = dict(noise_mode=noise_mode, fused_modconv=fused_modconv, update_emas=update_emas)
        warp = self.body_warp.warp_fn(pose) if (apply_def and pose is not None) else None
        origins, directions = camera_rays(camera.to(torch.float32), r)
        rendered = self.renderer(self.planes(ws, **block_kwargs), self.decoder, origins, directions, warp=warp,
                                 density_noise=density_noise, perturb=self.training if perturb is None else perturb)
        features = _image(rendered['features'], r)
        opacity = _image(rendered['opacity'], r)
        background = torch.zeros_like(features)
        if self.use_background:
            background = self.background(ws if ws_bcg is None else ws_bcg, r, **block_kwargs)
        features = composite(features, opacity, background)
        image_raw = self.raw_rgb(features, ws, fused_modconv)
        image = self.superresolution(image_raw, features, ws, noise_mode=self.sr_noise_mode,
                                     fused_modconv=fused_modconv, update_emas=update_emas)
        return dict(image=image, image_raw=image_raw, image_depth=_image(rendered['depth'], r), image_mask=opacity,
                    image_background=self.raw_rgb(background, ws, fused_modconv))

    def sample_mixed(self, coords: torch.Tensor, directions: Optional[torch.Tensor], ws: torch.Tensor,
                     planes: Optional[torch.Tensor] = None, **block_kwargs) -> dict:
        """Decoder outputs at CANONICAL points coords [N, P, 3] (no warp, crop applied):
        dict(sigma [N, P, 1] raw density, features [N, P, C], rgb = features, EG3D's key).

        directions are accepted for the EG3D API and unused (the decoder ignores view direction, §2.4).
        planes: G.planes(ws) computed once by the caller (e.g. for many chunks of points), else the
        backbone runs here. block_kwargs (backbone only): noise_mode, fused_modconv, update_emas.
        """
        check_shape('coords', coords, [ws.shape[0], None, 3])
        if planes is None:
            planes = self.planes(ws, **block_kwargs)
        cfg = self.rendering
        check_shape('planes', planes, [ws.shape[0], N_PLANES, cfg.triplane_features * cfg.triplane_depth,
                                       self.backbone.img_resolution, self.backbone.img_resolution])
        out = self.renderer.sample_canonical(planes, self.decoder, coords)
        return dict(sigma=out['sigma'], features=out['features'], rgb=out['features'])

    def sample(self, coords: torch.Tensor, directions: Optional[torch.Tensor], z: torch.Tensor, c: torch.Tensor,
               pose_params: Optional[torch.Tensor] = None, truncation_psi: float = 1,
               truncation_cutoff: Optional[int] = None, update_emas: bool = False, **block_kwargs) -> dict:
        """Map (z, c, pose) then `sample_mixed` at canonical coords [N, P, 3] (density queries, mesh export)."""
        ws = self.mapping(z, c, pose_params, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.sample_mixed(coords, directions, ws, update_emas=update_emas, **block_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor, pose_params: Optional[torch.Tensor] = None,
                apply_def: bool = True, neural_rendering_resolution: Optional[int] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs) -> dict:
        """mapping(z, c, pose_params) then synthesis(ws, c, pose_params, ...): the mapping sees the rendering pose."""
        ws = self.mapping(z, c, pose_params, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, c, pose_params, apply_def=apply_def,
                              neural_rendering_resolution=neural_rendering_resolution, update_emas=update_emas,
                              **synthesis_kwargs)

    def extra_repr(self) -> str:
        """Sizes for print(module)."""
        return (f'z_dim={self.z_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'neural_rendering_resolution={self.neural_rendering_resolution}')
