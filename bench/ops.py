"""Time the custom operators' implementations: upfirdn2d, bias_act and conv2d_resample.

Usage (from the repository root; the allocator setting makes CPU PyTorch about 1.7x faster on
the build VMs, see scripts/env.sh):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/ops.py [--threads 2] [--warmup 3] [--runs 15] [--clock wall|cpu] [--ops upfirdn2d ...]

Prints Markdown tables: the median time in ms of each implementation, forward and forward+backward,
and the speedup over the reference ('ref'; for conv2d_resample the general path). Implementations
run interleaved, so a load spike hits all of them alike. --clock cpu measures the calling
thread's CPU time instead of wall time; it needs --threads 1 and is the steadier figure on a busy
machine. Shapes are StyleGAN2's: batch 4, the [1,3,3,1] filter, 32-512 channels, 16^2-256^2.
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d  # noqa: E402

OPS = ('upfirdn2d', 'bias_act', 'conv2d_resample')
SIZES = [(512, 16), (256, 32), (128, 64), (64, 128), (32, 256)]   # (channels, resolution), batch 4


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=15)
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall')
    parser.add_argument('--ops', nargs='+', choices=OPS, default=list(OPS))
    args = parser.parse_args(argv)
    if args.clock == 'cpu' and args.threads != 1:
        parser.error('--clock cpu needs --threads 1 (it reads the calling thread\'s CPU time)')
    return args


def time_ms(fns: dict, clock, warmup: int, runs: int) -> dict:
    """Median time in ms of each fn() in `fns`, timed round-robin after `warmup` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append((clock() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def forward_backward(fn, *inputs):
    """A callable running fn(*inputs) and backpropagating a fixed random gradient into every input."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    dy = torch.randn_like(fn(*inputs))
    return lambda: torch.autograd.backward(fn(*inputs), dy)


def row(label: str, fns: dict, inputs: list, args, clock) -> str:
    """One table row: forward and forward+backward times of each implementation, speedups vs the first."""
    fwd = time_ms({k: (lambda f=f: f(*inputs)) for k, f in fns.items()}, clock, args.warmup, args.runs)
    fb = time_ms({k: forward_backward(f, *inputs) for k, f in fns.items()}, clock, args.warmup, args.runs)
    ref = next(iter(fns))
    cells = [f'{fwd[k]:.2f}' for k in fns] + [f'**{fwd[ref] / fwd[k]:.2f}×**' for k in list(fns)[1:]]
    cells += [f'{fb[k]:.2f}' for k in fns] + [f'**{fb[ref] / fb[k]:.2f}×**' for k in list(fns)[1:]]
    return f'| {label} | ' + ' | '.join(cells) + ' |'


def header(first: str, impls: list) -> str:
    """Table header for `impls` (the first one is the baseline)."""
    cols = [f'{i} ms' for i in impls] + [f'{i} speedup' for i in impls[1:]]
    cols = [f'fwd {c}' for c in cols] + [f'fwd+bwd {c}' for c in cols]
    return f'| {first} | ' + ' | '.join(cols) + ' |\n|' + '---|' * (len(cols) + 1)


def bench_upfirdn2d(args, clock) -> None:
    """upsample2d / downsample2d / filter2d with setup_filter([1,3,3,1]); 'auto' picks per call."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    print('\n### upfirdn2d (x: [4, C, R, R], f = setup_filter([1,3,3,1]), a 4x4 rank-1 filter)\n')
    print(header('call', ['ref', 'fast']))
    for name in ('upsample2d', 'downsample2d', 'filter2d'):
        op = getattr(upfirdn2d, name)
        for c, r in SIZES:
            x = torch.randn([4, c, r, r])
            fns = {impl: (lambda x, impl=impl: op(x, f, impl=impl)) for impl in ('ref', 'fast')}
            print(row(f'{name} C={c} R={r}', fns, [x], args, clock), flush=True)


def bench_bias_act(args, clock) -> None:
    """lrelu (gain sqrt 2) and relu with and without clamp 256, bias along dim 1."""
    print('\n### bias_act (bias along dim 1; \'auto\' takes fast for relu/lrelu with gain > 0)\n')
    print(header('call', ['ref', 'fast']))
    for shape in ([4, 512, 32, 32], [4, 128, 128, 128]):
        x, b = torch.randn(shape), torch.randn(shape[1])
        for act, clamp in (('lrelu', None), ('lrelu', 256.0), ('relu', None)):
            fns = {impl: (lambda x, b, impl=impl, act=act, clamp=clamp: bias_act.bias_act(
                x, b, act=act, clamp=clamp, impl=impl)) for impl in ('ref', 'fast')}
            label = f'{act}{"" if clamp is None else f" clamp {clamp:g}"} {shape}'
            print(row(label, fns, [x, b], args, clock), flush=True)


def bench_conv2d_resample(args, clock) -> None:
    """StyleGAN2's resampling convolutions: the general path against conv2d_resample's fast paths."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    print('\n### conv2d_resample (batch 4, f = [1,3,3,1]; grad w.r.t. x and w)\n')
    print(header('call', ['general', 'fast']))
    cases = [('3x3 up=2, 128->128, 32²->64²', [4, 128, 32, 32], [128, 128, 3, 3], 2, 1, 1, 1),
             ('3x3 up=2, 256->256, 16²->32²', [4, 256, 16, 16], [256, 256, 3, 3], 2, 1, 1, 1),
             ('3x3 down=2, 128->128, 64²->32²', [4, 128, 64, 64], [128, 128, 3, 3], 1, 2, 1, 1),
             ('1x1 down=2, 128->256, 64²->32²', [4, 128, 64, 64], [256, 128, 1, 1], 1, 2, 0, 1),
             ('3x3 plain, 128->128, 64²', [4, 128, 64, 64], [128, 128, 3, 3], 1, 1, 1, 1),
             ('3x3 up=2 grouped (fused modconv), 4x128, 32²->64²', [1, 512, 32, 32], [512, 128, 3, 3], 2, 1, 1, 4)]
    for label, xs, ws, up, down, padding, groups in cases:
        x, w = torch.randn(xs), torch.randn(ws) / math.sqrt(ws[1] * ws[2] * ws[3])
        kwargs = dict(f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=True, flip_filter=False)
        fns = {'general': lambda x, w: conv2d_resample._conv2d_resample_general(x, w, **kwargs),
               'fast': lambda x, w: conv2d_resample.conv2d_resample(x, w, **kwargs)}
        print(row(label, fns, [x, w], args, clock), flush=True)


def main(argv=None) -> None:
    """Run the selected operator benchmarks and print their tables."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clock = time.perf_counter if args.clock == 'wall' else time.thread_time
    print(f'torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, '
          f'median of {args.runs} runs after {args.warmup} warm-up rounds')
    for op in args.ops:
        globals()[f'bench_{op}'](args, clock)


if __name__ == '__main__':
    main()
