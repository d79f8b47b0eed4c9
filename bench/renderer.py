"""Time the tri-grid samplers and a full volume render, forward and forward+backward.

Usage (from the repository root; the allocator setting matters on the CPU, machine.md §5):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        OMP_WAIT_POLICY=PASSIVE python bench/renderer.py [--configs bench paper] [--depths 1 3] [--batch 4] \\
        [--plane-resolution 256] [--impls grid_sample gather cpp] [--no-render] [--warmup 1] [--runs 3] \\
        [--threads N] [--device cpu]

Configurations (rays = NRR^2 per batch element, coarse + as many importance samples):
  bench  NRR 32, 24+24 samples (the generator benchmark of issue #5, EG3D's 128-pixel setting)
  paper  NRR 64, 48+48 samples (the paper's training render)

Sampler lines: one `TriGridSampler` per render called twice, like the renderer's two passes (on
the coarse points and on as many other points), forward under no_grad and forward+backward with
gradients w.r.t. the planes and the points (the warp makes the points depend on the pose). Render
lines: the whole renderer (both passes, decoder, compositing) on random planes. Every line gives
the median wall time and the median process CPU time (all threads) of --runs timed runs after
--warmup untimed ones; the implementations are timed interleaved, run by run (the VM is noisy).
"""
import argparse
import dataclasses
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import synchronize  # noqa: E402
from configs.schema import RenderingConfig  # noqa: E402
from training.cameras import camera_vector  # noqa: E402
from training.networks.decoder import TriGridDecoder  # noqa: E402
from training.rendering.planes import SAMPLER_IMPLS, TriGridSampler, resolve_sampler  # noqa: E402
from training.rendering.ray_sampler import camera_rays  # noqa: E402
from training.rendering.renderer import VolumeRenderer  # noqa: E402
from training.rendering.samplers import draw_uniform, stratified_depths  # noqa: E402

CFG = RenderingConfig()
CONFIGS = {'bench': (32, 24), 'paper': (64, 48)}   # name -> (NRR, coarse = importance samples)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; defaults are the issue #5 benchmark and the paper configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', choices=sorted(CONFIGS), default=['bench', 'paper'])
    parser.add_argument('--depths', nargs='+', type=int, default=[1, 3], help='tri-grid depths D')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--plane-resolution', type=int, default=256)
    parser.add_argument('--impls', nargs='+', choices=SAMPLER_IMPLS[1:], default=None,
                        help="samplers to time (default: the pure-PyTorch ones and the device's compiled one)")
    parser.add_argument('--no-render', action='store_true', help='time the samplers only')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def preset_rays(batch: int, resolution: int, device: torch.device):
    """Rays [batch, resolution^2, 3] of preset cameras spread in yaw around the head."""
    yaw = math.pi / 2 + torch.linspace(-1.0, 1.0, batch)
    return camera_rays(camera_vector(yaw, math.pi / 2).to(device), resolution)


def ray_points(batch: int, resolution: int, n_samples: int, device: torch.device, seed: int) -> torch.Tensor:
    """World points [batch, resolution^2 * n_samples, 3] at jittered stratified depths along preset rays."""
    origins, directions = preset_rays(batch, resolution, device)
    g = torch.Generator(device=device).manual_seed(seed)
    jitter = draw_uniform((batch, origins.shape[1], n_samples), origins, g)
    depths = stratified_depths(batch, origins.shape[1], CFG.ray_start, CFG.ray_end, n_samples, jitter,
                               origins.dtype, device)
    return (origins[:, :, None] + depths[..., None] * directions[:, :, None]).reshape(batch, -1, 3)


def interleaved_times(fns: dict, device: torch.device, warmup: int, runs: int) -> dict:
    """{name: (median wall s, median process CPU s)} of each fn(), timed in turn run by run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
            for name, v in samples.items()}


def sampler_workload(impl: str, planes: torch.Tensor, passes, depth: int, backward: bool):
    """fn() sampling the point sets `passes` with one TriGridSampler (forward, or forward+backward)."""
    def run():
        with torch.set_grad_enabled(backward):
            leaves = planes.clone().requires_grad_(backward), [p.clone().requires_grad_(backward) for p in passes]
            sampler = TriGridSampler(leaves[0], depth, CFG.box_warp, impl)
            loss = sum(sampler(points).square().mean() for points in leaves[1])
            if backward:
                loss.backward()
    return run


def render_workload(impl: str, planes: torch.Tensor, decoder, cfg: RenderingConfig, rays, backward: bool):
    """fn() rendering `rays` through the whole renderer with sampler `impl` (forward, or forward+backward)."""
    renderer = VolumeRenderer(dataclasses.replace(cfg, sampler_impl=impl))

    def run():
        with torch.set_grad_enabled(backward):
            leaf = planes.clone().requires_grad_(backward)
            out = renderer(leaf, decoder, *rays)
            if backward:
                (out['features'].square().mean() + out['depth'].mean()).backward()
    return run


def report(title: str, impls, workload, args, device: torch.device) -> None:
    """Print forward and forward+backward times of `workload(impl, backward)` for every impl."""
    print(title)
    times = {pass_name: interleaved_times({impl: workload(impl, backward) for impl in impls}, device, args.warmup,
                                          args.runs) for pass_name, backward in (('fwd', False), ('fwd+bwd', True))}
    for impl in impls:
        (fw, fc), (bw, bc) = times['fwd'][impl], times['fwd+bwd'][impl]
        print(f'    {impl:>11}: forward {1e3 * fw:7.1f} ms wall {1e3 * fc:7.1f} ms CPU   '
              f'forward+backward {1e3 * bw:7.1f} ms wall {1e3 * bc:7.1f} ms CPU')


def bench_config(args, name: str, depth: int, impls, device: torch.device) -> None:
    """Sampler and render timings of configuration `name` at tri-grid depth `depth`."""
    resolution, samples = CONFIGS[name]
    cfg = dataclasses.replace(CFG, depth_resolution=samples, depth_resolution_importance=samples,
                              triplane_depth=depth)
    torch.manual_seed(0)
    planes = torch.randn(args.batch, 3, cfg.triplane_features * depth, args.plane_resolution, args.plane_resolution,
                         device=device)
    passes = [ray_points(args.batch, resolution, samples, device, seed) for seed in range(2)]
    auto = resolve_sampler('auto', planes, passes[0].shape[1], depth)
    print(f'{name}: batch {args.batch}, NRR {resolution}, {samples}+{samples} samples, D={depth}, '
          f'{args.plane_resolution}^2 planes x {cfg.triplane_features} features ("auto" takes {auto})')
    report(f'  sampler, 2 calls of {passes[0].shape[1]} points per batch element:', impls,
           lambda impl, backward: sampler_workload(impl, planes, passes, depth, backward), args, device)
    if not args.no_render:
        decoder = TriGridDecoder(cfg).to(device)
        rays = preset_rays(args.batch, resolution, device)
        report('  full render:', impls,
               lambda impl, backward: render_workload(impl, planes, decoder, cfg, rays, backward), args, device)


def main(argv=None) -> None:
    """Run the sampler and render benchmarks of every requested configuration and depth."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    impls = args.impls or ['grid_sample', 'gather', 'cpp' if device.type == 'cpu' else 'cuda']
    print(f'device {device}, threads {torch.get_num_threads()}')
    for name in args.configs:
        for depth in args.depths:
            bench_config(args, name, depth, impls, device)


if __name__ == '__main__':
    main()
