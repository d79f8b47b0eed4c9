"""A tiny stand-in with PortraitGenerator's inference API, for testing gen_samples and snapshots.

Its canonical density is an analytic sphere, sigma(p) = SIGMA_SCALE (radius - |p|) + SURFACE_LEVEL,
so the iso-surface at SURFACE_LEVEL is exactly the sphere of `radius`. Images depend on every
input (ws, camera, pose, apply_def) so that round trips and wiring can be checked.
"""
import torch
from click.testing import CliRunner

from configs.schema import RenderingConfig
from torch_utils import checkpoint, persistence
from training.networks.rendering_overrides import override_rendering

SIGMA_SCALE = 100.0
SURFACE_LEVEL = 10.0
SMALL_RENDERING = dict(depth_resolution=4, depth_resolution_importance=4)
CALLS = []   # (method, kwargs) of every mapping / synthesis / get_pose_params call, for wiring checks


@persistence.persistent_class
class SphereGenerator(torch.nn.Module):
    """mapping / synthesis / get_pose_params / sample / sample_mixed over a sphere of `radius`."""

    def __init__(self, z_dim=8, w_dim=8, num_ws=3, img_resolution=16, neural_rendering_resolution=8,
                 radius=0.25, rendering_kwargs=None):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.img_resolution = img_resolution
        self.neural_rendering_resolution = neural_rendering_resolution
        self.radius = radius
        self.rendering = RenderingConfig(**{**SMALL_RENDERING, **(rendering_kwargs or {})})
        self.embed = torch.nn.Linear(z_dim + 31, w_dim)
        self.to_rgb = torch.nn.Linear(w_dim + 31, 3)
        self.pose = torch.nn.Linear(z_dim + 25, 6)
        self.register_buffer('w_avg', torch.zeros(w_dim))

    def mapping(self, z, c, pose_params=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z [N, z_dim], c [N, 25], pose [N, 6] or None -> ws [N, num_ws, w_dim]."""
        CALLS.append(('mapping', dict(c=c, pose_params=pose_params, truncation_psi=truncation_psi,
                                      truncation_cutoff=truncation_cutoff)))
        pose_params = torch.zeros(z.shape[0], 6) if pose_params is None else pose_params
        w = self.embed(torch.cat([z, c, pose_params], dim=1))
        ws = w[:, None].repeat(1, self.num_ws, 1)
        cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
        ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def synthesis(self, ws, c, pose_params=None, apply_def=True, neural_rendering_resolution=None,
                  noise_mode='random', **kwargs):
        """ws, c [N, 25] -> dict(image [N,3,R,R], image_raw, image_depth [N,1,r,r], image_mask, image_background)."""
        CALLS.append(('synthesis', dict(c=c, pose_params=pose_params, apply_def=apply_def, noise_mode=noise_mode,
                                        rendering=self.rendering, **kwargs)))
        n, r = ws.shape[0], neural_rendering_resolution or self.neural_rendering_resolution
        pose = torch.zeros(n, 6) if pose_params is None or not apply_def else pose_params
        rgb = torch.tanh(self.to_rgb(torch.cat([ws[:, -1], c, pose], dim=1)))
        ramp = torch.linspace(-1, 1, self.img_resolution)
        image = (rgb[:, :, None, None] + 0.5 * ramp[:, None] * ramp[None, :]).clamp(-1, 1)
        v = torch.linspace(-1, 1, r)
        disc = ((v[:, None] ** 2 + v[None, :] ** 2) < 0.5).float()[None, None].expand(n, 1, r, r)
        depth = c[:, 3:4].abs()[:, :, None, None] + 2.7 - self.radius * disc
        raw = torch.nn.functional.interpolate(image, size=(r, r), mode='area')
        return dict(image=image, image_raw=raw, image_depth=depth, image_mask=disc, image_background=raw * 0)

    def get_pose_params(self, z, c):
        """G's pose branch stand-in: (z, c) -> pose [N, 6]."""
        CALLS.append(('get_pose_params', dict(c=c)))
        return 0.1 * torch.tanh(self.pose(torch.cat([z, c], dim=1)))

    def set_rendering(self, **overrides):
        """Replace fields of self.rendering (validated as PortraitGenerator.set_rendering does)."""
        self.rendering = override_rendering(self.rendering, **overrides)
        return self.rendering

    def planes(self, ws, **kwargs):
        """Stand-in for the tri-grid: [N, 3, 1, 1, 1] (unused by sample_mixed)."""
        CALLS.append(('planes', dict(kwargs)))
        return ws[:, :3, :1, None, None]

    def sample_mixed(self, coordinates, directions, ws, planes=None, **kwargs):
        """Canonical points [N, P, 3] -> dict(sigma [N, P, 1], rgb [N, P, 3]) of the sphere."""
        sigma = SIGMA_SCALE * (self.radius - coordinates.norm(dim=-1, keepdim=True)) + SURFACE_LEVEL
        return dict(sigma=sigma + 0 * ws.sum(), rgb=torch.zeros_like(coordinates))

    def sample(self, coordinates, directions, z, c, truncation_psi=1, truncation_cutoff=None, **kwargs):
        """sample_mixed with ws = mapping(z, c)."""
        return self.sample_mixed(coordinates, directions, self.mapping(z, c, None, truncation_psi, truncation_cutoff))

    def forward(self, z, c, pose_params=None, apply_def=True, truncation_psi=1, truncation_cutoff=None, **kwargs):
        """mapping then synthesis, with the same pose for both."""
        ws = self.mapping(z, c, pose_params, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, c, pose_params=pose_params, apply_def=apply_def, **kwargs)


def save_sphere_snapshot(path) -> str:
    """Write a network snapshot of a seeded SphereGenerator as G and G_ema to `path`; returns the path as str."""
    torch.manual_seed(0)
    G = SphereGenerator()
    checkpoint.save_network_snapshot(path, {'G': G, 'G_ema': G}, {'training_set_kwargs': {}})
    return str(path)


def run_cli(main, *args):
    """Invoke the click command `main` in-process with CALLS cleared first; returns (exit code, output)."""
    CALLS.clear()
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output
