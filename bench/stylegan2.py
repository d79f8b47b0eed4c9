"""Time the StyleGAN2 synthesis network: forward and forward+backward, with FLOP counts.

Usage (from the repository root; the allocator setting makes CPU PyTorch about 1.7x faster on
the build VMs, see scripts/env.sh):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/stylegan2.py [--batch 4] [--resolution 64] [--channels 96] [--channel-base 4096] \\
        [--channel-max 128] [--w-dim 512] [--warmup 3] [--runs 10] [--threads N] [--fused] [--device cpu]

Prints the median wall time in ms over --runs timed runs after --warmup untimed ones, the GFLOP
count from torch.utils.flop_counter.FlopCounterMode (convolutions and matmuls only; elementwise
ops are not counted) and the achieved GFLOP/s. The network is in training mode, so modulated
convolutions take the non-fused path as in training unless --fused is given. With --fused the
forward+backward GFLOP is overstated: FlopCounterMode counts the backward of a grouped convolution
(one group per sample) as if it were ungrouped.
"""
import argparse
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import median_seconds  # noqa: E402
from training.networks.synthesis import SynthesisNetwork  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; defaults are the fixed small benchmark configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--resolution', type=int, default=64, help='img_resolution')
    parser.add_argument('--channels', type=int, default=96, help='img_channels')
    parser.add_argument('--channel-base', type=int, default=4096)
    parser.add_argument('--channel-max', type=int, default=128)
    parser.add_argument('--w-dim', type=int, default=512)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    parser.add_argument('--fused', action='store_true', help='use fused modulated convolutions')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def count_gflop(fn) -> float:
    """GFLOP of one fn() call as counted by FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def main(argv=None) -> None:
    """Build the network, then time and count forward and forward+backward."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = SynthesisNetwork(w_dim=args.w_dim, img_resolution=args.resolution, img_channels=args.channels,
                           channel_base=args.channel_base, channel_max=args.channel_max,
                           fused_modconv_default=args.fused).to(device).train()
    ws = torch.randn(args.batch, net.num_ws, args.w_dim, device=device)
    params = sum(p.numel() for p in net.parameters())

    def forward():
        with torch.no_grad():
            net(ws, noise_mode='random')

    def forward_backward():
        net.zero_grad(set_to_none=True)
        net(ws, noise_mode='random').square().mean().backward()

    print(f'StyleGAN2 synthesis: w_dim {args.w_dim}, {args.resolution}^2 x {args.channels} ch, '
          f'channel_base {args.channel_base}, channel_max {args.channel_max}, batch {args.batch}, '
          f'num_ws {net.num_ws}, {params / 1e6:.2f} M params, fused={args.fused}, device {device}, '
          f'threads {torch.get_num_threads()}')
    for name, fn in (('forward', forward), ('forward+backward', forward_backward)):
        gflop = count_gflop(fn)
        ms = median_seconds(fn, device, args.warmup, args.runs) * 1e3
        print(f'{name:>17}: {ms:9.2f} ms (median of {args.runs})  {gflop:7.3f} GFLOP  '
              f'{gflop / (ms / 1e3):7.1f} GFLOP/s')


if __name__ == '__main__':
    main()
