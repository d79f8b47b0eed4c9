"""Time the tiny-cpu training (training/training_loop.py steps) on the CPU: sec/kimg, phases, peak RSS.

Usage (from the repository root; the allocator setting matters on the build VMs, see scripts/env.sh):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/training.py [--preset tiny-cpu] [--threads 2] [--steps 24] [--warmup 3] [--profile]

The run is the training preset (configs/training_presets.py) on a synthetic set written once into
a temporary folder (dataset_tool.py synthetic, 64 images at the network preset's resolution);
the loop's own setup (dataset, networks, phases, loss) and its `training_step` are used, so a
step is exactly a training step: every due phase (G main, D main, and D's lazy R1 every
d_reg_interval steps) over the global batch, the gradient scrub, the Adam steps and the EMAs.
Ticks, snapshots and checkpoints are not timed. After --warmup steps, --steps steps are timed one
by one (wall time and process CPU time, all threads); printed are the medians per step, the mean
over the steps (lazy R1 included), the implied sec/kimg and kimg/min, the mean wall seconds per
phase, and the process peak RSS. --profile adds the top operators of 4 steps (torch.profiler).
"""
import argparse
import collections
import dataclasses
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # before torch loads OpenMP (docs/performance.md)

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.presets import get_preset  # noqa: E402
from configs.training_presets import get_training_preset  # noqa: E402
from portrait_data import sample_writer  # noqa: E402
from torch_utils import training_stats  # noqa: E402
from torch_utils.device import device_memory_stats  # noqa: E402
from torch_utils.distributed import DistContext  # noqa: E402
from training import data_stream  # noqa: E402
from training import training_loop as loop  # noqa: E402

DATASET_IMAGES = 64


def make_run(preset: str, workdir: str) -> loop.Run:
    """The loop's Run for the training preset on a fresh synthetic set in workdir (no image snapshots)."""
    opts = get_training_preset(preset)
    resolution = get_preset(opts.network_preset).img_resolution
    images, masks = (os.path.join(workdir, name) for name in ('images.zip', 'masks.zip'))
    sample_writer.write_synthetic(DATASET_IMAGES, resolution, 0, 'uniform', images, masks, progress=False)
    opts = dataclasses.replace(opts, outdir=workdir, data=images, seg_data=masks, metrics=())
    run_dir = os.path.join(workdir, '00000-bench')
    os.makedirs(run_dir)
    return loop.setup(opts, run_dir, DistContext.single('cpu'))


def time_phases(run: loop.Run) -> dict:
    """Wrap the loss so that every accumulate_gradients call adds its wall seconds to {phase: [seconds]}."""
    spent = collections.defaultdict(list)
    accumulate = run.loss.accumulate_gradients

    def timed(phase, *args, **kwargs):
        start = time.perf_counter()
        accumulate(phase, *args, **kwargs)
        spent[phase].append(time.perf_counter() - start)

    run.loss.accumulate_gradients = timed
    return spent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', default='tiny-cpu', help='training preset (configs/training_presets.py)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--steps', type=int, default=24, help='timed steps')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps first (plugin builds, allocator)')
    parser.add_argument('--profile', action='store_true', help='top operators of 4 steps (torch.profiler)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        run = make_run(args.preset, workdir)
        sampler = data_stream.MicroBatchSampler(len(run.dataset), run.opts.seed, run.opts.batch, run.derived.batch_gpu,
                                                0, 1)
        batches = data_stream.real_batches(run.dataset, sampler, run.opts.workers)
        watch = training_stats.Collector('Loss/.*', keep_previous=False)
        for _ in range(args.warmup):
            loop.training_step(run, batches, watch)
        spent = time_phases(run)
        walls, cpus = [], []
        for _ in range(args.steps):
            wall, cpu = time.perf_counter(), time.process_time()
            loop.training_step(run, batches, watch)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        report(args, run, walls, cpus, spent)
        if args.profile:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(4):
                    loop.training_step(run, batches, watch)
            print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))


def report(args, run: loop.Run, walls, cpus, spent) -> None:
    """Print the figures (module doc)."""
    batch = run.opts.batch
    mean_wall = sum(walls) / len(walls)
    print(f'preset {args.preset} (network {run.opts.network_preset}), batch {batch}, {args.threads} threads, '
          f'{args.steps} steps after {args.warmup} warm-up, torch {torch.__version__}')
    print(f'step wall: median {statistics.median(walls):.3f} s, mean {mean_wall:.3f} s '
          f'(min {min(walls):.3f}, max {max(walls):.3f}); step CPU: median {statistics.median(cpus):.3f} s')
    print(f'sec/kimg (mean wall): {mean_wall / batch * 1000:.1f}; kimg/min: {60 / (mean_wall / batch * 1000):.3f}; '
          f'sec/kimg from CPU time / {args.threads} threads: {sum(cpus) / len(cpus) / batch * 1000 / args.threads:.1f}')
    for phase, seconds in spent.items():
        print(f'  phase {phase:6s}: {len(seconds):3d} calls, mean {sum(seconds) / len(seconds):.3f} s wall')
    print(f'peak RSS: {device_memory_stats("cpu").get("peak_rss_mb", float("nan")):.0f} MiB')


if __name__ == '__main__':
    main()
