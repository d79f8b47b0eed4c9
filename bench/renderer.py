"""Time the tri-grid samplers and a full volume render, forward and forward+backward.

Usage (from the repository root; the allocator setting matters on the CPU, machine.md §5):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/renderer.py [--batch 4] [--plane-resolution 256] [--rays 4096] [--samples 96] \\
        [--render-resolution 32] [--render-samples 24] [--warmup 1] [--runs 3] [--threads N] [--device cpu]

Sampler lines: points/s of each implementation ('grid_sample', 'gather') at tri-plane depth D = 1
and D = 3 for `--rays` camera rays x `--samples` depths per batch element (the points of a
training render at NRR 64), forward under no_grad and forward+backward with gradients w.r.t. the
planes and the points (the warp makes the points depend on the pose). Render lines: the whole
renderer (coarse + importance pass, decoder, compositing) on random D = 3 planes at
`--render-resolution` with `--render-samples` coarse + as many fine samples, with each sampler. Times are medians of
--runs timed runs after --warmup untimed ones; compare runs interleaved, the VM is noisy.
"""
import argparse
import dataclasses
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import median_seconds  # noqa: E402
from configs.schema import RenderingConfig  # noqa: E402
from training.cameras import camera_vector  # noqa: E402
from training.networks.decoder import TriGridDecoder  # noqa: E402
from training.rendering.planes import SAMPLER_IMPLS, resolve_sampler, sample_trigrid  # noqa: E402
from training.rendering.ray_sampler import camera_rays  # noqa: E402
from training.rendering.renderer import VolumeRenderer  # noqa: E402
from training.rendering.samplers import draw_uniform, stratified_depths  # noqa: E402

CFG = RenderingConfig()


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; defaults are the benchmark configuration of the renderer brief."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--plane-resolution', type=int, default=256)
    parser.add_argument('--rays', type=int, default=4096, help='rays per batch element (a square number)')
    parser.add_argument('--samples', type=int, default=96, help='depths per ray for the sampler timing')
    parser.add_argument('--render-resolution', type=int, default=32, help='NRR of the full render')
    parser.add_argument('--render-samples', type=int, default=24, help='coarse (= fine) samples of the full render')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def preset_rays(batch: int, resolution: int, device: torch.device):
    """Rays [batch, resolution^2, 3] of preset cameras spread in yaw around the head."""
    yaw = math.pi / 2 + torch.linspace(-1.0, 1.0, batch)
    return camera_rays(camera_vector(yaw, math.pi / 2).to(device), resolution)


def ray_points(batch: int, n_rays: int, n_samples: int, device: torch.device) -> torch.Tensor:
    """World points [batch, n_rays * n_samples, 3] at jittered stratified depths along preset rays."""
    origins, directions = preset_rays(batch, math.isqrt(n_rays), device)
    g = torch.Generator(device=device).manual_seed(0)
    jitter = draw_uniform((batch, origins.shape[1], n_samples), origins, g)
    depths = stratified_depths(batch, origins.shape[1], CFG.ray_start, CFG.ray_end, n_samples, jitter,
                               origins.dtype, device)
    return (origins[:, :, None] + depths[..., None] * directions[:, :, None]).reshape(batch, -1, 3)


def bench_samplers(args, device: torch.device) -> None:
    """Points/s of every sampler implementation at D = 1 and D = 3."""
    points = ray_points(args.batch, args.rays, args.samples, device)
    n_points = points.shape[0] * points.shape[1]
    print(f'tri-grid samplers: batch {args.batch}, {args.plane_resolution}^2 planes, {CFG.triplane_features} '
          f'features, {args.rays} rays x {args.samples} samples = {n_points / 1e6:.2f} M points')
    for depth in (1, 3):
        planes = torch.randn(args.batch, 3, CFG.triplane_features * depth, args.plane_resolution,
                             args.plane_resolution, device=device)
        print(f"  D={depth}: 'auto' takes {resolve_sampler('auto', planes, points.shape[1], depth)}")
        for impl in SAMPLER_IMPLS[1:]:
            def forward():
                with torch.no_grad():
                    sample_trigrid(planes, points, depth, CFG.box_warp, impl)

            def forward_backward():
                leaves = planes.clone().requires_grad_(), points.clone().requires_grad_()
                sample_trigrid(*leaves, depth, CFG.box_warp, impl).square().mean().backward()

            fwd = median_seconds(forward, device, args.warmup, args.runs)
            both = median_seconds(forward_backward, device, args.warmup, args.runs)
            print(f'  D={depth} {impl:>11}: forward {fwd:6.3f} s ({n_points / fwd / 1e6:5.2f} M points/s)   '
                  f'forward+backward {both:6.3f} s ({n_points / both / 1e6:5.2f} M points/s)')


def bench_render(args, device: torch.device) -> None:
    """A full render (D = 3 tri-grid, decoder, both passes, compositing) forward and forward+backward per sampler."""
    cfg = dataclasses.replace(CFG, depth_resolution=args.render_samples,
                              depth_resolution_importance=args.render_samples)
    torch.manual_seed(0)
    decoder = TriGridDecoder(cfg).to(device)
    planes = torch.randn(args.batch, 3, cfg.triplane_features * cfg.triplane_depth, args.plane_resolution,
                         args.plane_resolution, device=device)
    origins, directions = preset_rays(args.batch, args.render_resolution, device)
    auto = resolve_sampler('auto', planes, origins.shape[1] * args.render_samples, cfg.triplane_depth)
    print(f'full render: batch {args.batch}, NRR {args.render_resolution}, {args.render_samples}+'
          f'{args.render_samples} samples, D={cfg.triplane_depth} {args.plane_resolution}^2 planes '
          f"('auto' takes {auto})")
    for impl in SAMPLER_IMPLS[1:]:
        renderer = VolumeRenderer(dataclasses.replace(cfg, sampler_impl=impl))

        def forward():
            with torch.no_grad():
                renderer(planes, decoder, origins, directions)

        def forward_backward():
            leaf = planes.clone().requires_grad_()
            out = renderer(leaf, decoder, origins, directions)
            (out['features'].square().mean() + out['depth'].mean()).backward()

        fwd = median_seconds(forward, device, args.warmup, args.runs)
        both = median_seconds(forward_backward, device, args.warmup, args.runs)
        print(f'  {impl:>11}: forward {fwd:6.3f} s   forward+backward {both:6.3f} s')


def main(argv=None) -> None:
    """Run the sampler and the render benchmarks."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f'device {device}, threads {torch.get_num_threads()}')
    bench_samplers(args, device)
    bench_render(args, device)


if __name__ == '__main__':
    main()
