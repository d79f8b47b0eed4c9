"""Time the portrait generator (training/networks/generator.py) at a preset, without and with the body-pose warp.

Usage (from the repository root; the allocator setting matters on the build VMs, see scripts/env.sh):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/generator.py [--preset bench] [--threads 2] [--runs 5] [--warmup 2] [--profile] [--device cpu] \\
            [--omp-wait-policy {passive,active,default}]

The reference point is machine.md §5: EG3D's public code at the same configuration (the `bench`
preset: 128^2 output, neural rendering resolution 32, 24 + 24 samples, channel base 4096 / max
128, tri-plane 256^2, batch 4) takes 0.74 s forward and 2.29 s forward+backward on 2 threads with
the tuned allocator (1.335 / 4.109 s on 1 thread). G runs in training mode (non-fused modulated
convolutions, perturbed samples) as in the training loop.

Cases: 'canonical' renders with apply_def=False; 'warp' renders with the pose predicted by G's
pose branch (non-zero), so forward+backward also reaches the pose branch through the warp.
forward runs under no_grad; forward+backward differentiates image.square().mean() +
image_raw.square().mean() into every parameter. Each run times every case once, cases
interleaved; the medians over --runs runs of the wall time and of the process CPU time (all
threads; less sensitive to other jobs on a shared machine) are printed with GFLOP
(torch.utils.flop_counter.FlopCounterMode: convolutions and matmuls only) and GFLOP/s. The peak
RSS is the process peak after all runs.

An fp32 2048^2 matmul is timed in the same rounds: its GFLOP/s against the figure measured with
the EG3D anchor tells how much slower the (shared) machine is now, and EG3D's times are printed
scaled by that factor. OMP_WAIT_POLICY defaults to PASSIVE (set it, or --omp-wait-policy, to
override): on a shared machine, spinning OpenMP threads otherwise make 2-thread runs several
times slower. On an idle machine OpenMP's own policy (--omp-wait-policy default, as when the EG3D
anchor was timed) is about 10 % faster at 2 threads; docs/performance.md compares both. --profile
adds per-module forward CPU times and the top operators of one forward+backward of each case
(torch.profiler).
"""
import argparse
import math
import os
import statistics
import sys
import time

# OpenMP reads OMP_WAIT_POLICY once, when torch loads it, so --omp-wait-policy is read here, before that.
# 'default' leaves the variable unset (OpenMP's own policy: spin a while, then sleep), as when EG3D was timed.
OMP_POLICIES = {'passive': 'PASSIVE', 'active': 'ACTIVE', 'default': None}


def _add_omp_wait_policy(parser: argparse.ArgumentParser) -> None:
    """The --omp-wait-policy option (None when not given), in the early parser and in parse_args."""
    parser.add_argument('--omp-wait-policy', choices=sorted(OMP_POLICIES),
                        help="OpenMP threads' wait between operators: passive (the default unless OMP_WAIT_POLICY is "
                             "set; safest on a shared machine), active, or default (unset: OpenMP's own, as for the "
                             "EG3D anchor)")


def _omp_wait_policy_option(argv) -> str:
    """The --omp-wait-policy of argv; without one, 'passive' unless OMP_WAIT_POLICY is already set."""
    pre = argparse.ArgumentParser(add_help=False)
    _add_omp_wait_policy(pre)
    return pre.parse_known_args(argv)[0].omp_wait_policy


def _set_omp_wait_policy(option) -> None:
    """Set (or clear, for 'default') OMP_WAIT_POLICY as the option asks; no option: PASSIVE unless set."""
    if option is None:
        os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # see docs/performance.md "Warp"
    elif OMP_POLICIES[option] is None:
        os.environ.pop('OMP_WAIT_POLICY', None)
    else:
        os.environ['OMP_WAIT_POLICY'] = OMP_POLICIES[option]


_set_omp_wait_policy(_omp_wait_policy_option(sys.argv[1:]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dnnlib  # noqa: E402
from configs.presets import get_preset  # noqa: E402
from torch_utils.device import device_memory_stats  # noqa: E402
from training import cameras  # noqa: E402

# machine.md §5, EG3D at the bench configuration with the tuned allocator: threads -> (forward, fwd+bwd) seconds,
# and the fp32 2048^2 matmul median (GFLOP/s) measured alongside it.
EG3D_SECONDS = {1: (1.335, 4.109), 2: (0.740, 2.286)}
ANCHOR_MATMUL_GFLOPS = {1: 76.7, 2: 137.3}
MATMUL_SIZE = 2048
PROFILED_MODULES = ('mapping', 'pose_branch', 'backbone', 'renderer', 'decoder', 'body_warp/warp',
                    'background', 'superresolution')
TOP_OPERATORS = 15


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; defaults are the fixed `bench` configuration on 2 CPU threads."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', default='bench')
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first')
    parser.add_argument('--cases', nargs='+', default=['canonical', 'warp'], choices=['canonical', 'warp'])
    parser.add_argument('--profile', action='store_true', help='per-module times and top operators')
    parser.add_argument('--device', default='cpu')
    _add_omp_wait_policy(parser)
    return parser.parse_args(argv)


def build(preset_name: str, device: torch.device):
    """G in training mode and the bench inputs: z [B, z_dim], frontal cameras c [B, 25]."""
    preset = get_preset(preset_name)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**preset.G_kwargs()).to(device).train().requires_grad_(True)
    z = torch.randn(preset.batch_size, G.z_dim, device=device)
    c = cameras.average_camera().repeat(preset.batch_size, 1).to(device)
    return preset, G, z, c


def make_case(G, z, c, case: str):
    """(forward, forward_backward) closures of one case."""
    def render():
        """G's outputs for this case (pose from the pose branch when warping)."""
        pose = G.get_pose_params(z, c) if case == 'warp' else None
        return G(z, c, pose_params=pose, apply_def=(case == 'warp'))

    def forward():
        """One forward without autograd."""
        with torch.no_grad():
            render()

    def forward_backward():
        """One forward and the backward of the anchor's loss into every parameter."""
        G.zero_grad(set_to_none=True)
        out = render()
        (out['image'].square().mean() + out['image_raw'].square().mean()).backward()
    return forward, forward_backward


def matmul_anchor():
    """One fp32 MATMUL_SIZE^2 matmul, timed with the cases to tell how fast the machine is right now."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    return lambda: a @ b


def count_gflop(fn) -> float:
    """GFLOP of one fn() call as counted by FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def time_interleaved(fns: dict, warmup: int, runs: int) -> dict:
    """Median (wall, process CPU) seconds of each fn, timing all fns once per run in turn after `warmup` rounds."""
    times = {name: [] for name in fns}
    for idx in range(warmup + runs):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            if idx >= warmup:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: tuple(statistics.median(t[k] for t in values) for k in range(2)) for name, values in times.items()}


def module_times(G, fn) -> dict:
    """Inclusive forward CPU seconds (all threads) per module in PROFILED_MODULES over one fn() call (hooks)."""
    totals, starts, handles = {}, {}, []
    for name in PROFILED_MODULES:
        module = G.get_submodule(name.replace('/', '.'))
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: starts.__setitem__(n, time.process_time())))
        handles.append(module.register_forward_hook(
            lambda *_, n=name: totals.__setitem__(n, totals.get(n, 0) + time.process_time() - starts[n])))
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return totals


def profile(G, cases: dict) -> None:
    """Print per-module forward times and the top operators (self CPU time) of forward+backward."""
    for case, (forward, forward_backward) in cases.items():
        parts = module_times(G, forward)
        print(f'  {case} forward CPU time by module: ' + ', '.join(f'{k} {v:.3f} s' for k, v in parts.items()))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            forward_backward()
        table = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=TOP_OPERATORS)
        print(f'  {case} forward+backward, top operators by self CPU time:\n{table}')


def report_anchor(seconds: dict, threads: int) -> None:
    """Print the matmul speed now vs when EG3D was timed, and EG3D's times scaled to the machine's current speed."""
    if threads not in EG3D_SECONDS:
        return
    gflops = 2 * MATMUL_SIZE ** 3 / 1e9 / seconds['matmul'][0]
    slowdown = ANCHOR_MATMUL_GFLOPS[threads] / gflops
    forward, forward_backward = (t * slowdown for t in EG3D_SECONDS[threads])
    print(f'matmul {MATMUL_SIZE}^2: {gflops:.1f} GFLOP/s now vs {ANCHOR_MATMUL_GFLOPS[threads]} when EG3D was timed '
          f'(x{slowdown:.2f}); EG3D scaled to now: forward {forward:.3f} s, fwd+bwd {forward_backward:.3f} s')


def main(argv=None) -> None:
    """Build G at the preset, then count, time and optionally profile each case."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset, G, z, c = build(args.preset, device)
    cases = {case: make_case(G, z, c, case) for case in args.cases}
    with torch.no_grad():
        pose = G.get_pose_params(z, c)
    params = sum(p.numel() for p in G.parameters())
    print(f'PortraitGenerator preset {args.preset!r}: {preset.img_resolution}^2, '
          f'NRR {preset.neural_rendering_resolution}, '
          f'{preset.depth_resolution}+{preset.depth_resolution_importance} samples, batch {preset.batch_size}, '
          f'{params / 1e6:.2f} M params, threads {torch.get_num_threads()} '
          f'(OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "unset")}), device {device}; '
          f'warp pose |p| max {pose.abs().max():.3f} rad ({math.degrees(pose.abs().max()):.1f} deg)')
    fns = {f'{case} {kind}': fn for case, pair in cases.items() for kind, fn in zip(('forward', 'fwd+bwd'), pair)}
    gflop = {name: count_gflop(fn) for name, fn in fns.items()}
    seconds = time_interleaved({**fns, 'matmul': matmul_anchor()}, args.warmup, args.runs)
    for name in fns:
        wall, cpu = seconds[name]
        print(f'{name:>20}: {wall:7.3f} s wall, {cpu:7.3f} s CPU (medians of {args.runs})  {gflop[name]:7.2f} GFLOP  '
              f'{gflop[name] / wall:6.1f} GFLOP/s')
    report_anchor(seconds, args.threads)
    print(f'peak RSS: {device_memory_stats(device)["peak_rss_mb"]:.0f} MiB')
    if args.profile:
        profile(G, cases)


if __name__ == '__main__':
    main()
