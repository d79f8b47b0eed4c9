"""What a run tells its user: training_options.json, the tick line, stats.jsonl, log.txt, tensorboard.

* training_options.json (start): dataclasses.asdict(TrainingOptions), the derived values under
  'derived', and what the loop built from them (network kwargs, dataset kwargs and statistics).
* log.txt: everything printed to stdout/stderr, teed by dnnlib.util.Logger (appended).
* The tick line (one per tick, rank 0): tick, kimg, time, sec/tick, sec/kimg, maintenance (time
  outside training steps), memory, the schedule values and the count of non-finite gradient
  elements scrubbed during the tick. Each figure is also reported as a training statistic.
* stats.jsonl: one JSON object per tick, {name: {num, mean, std}} of every training statistic of
  the tick plus 'timestamp' (EG3D layout); mirrored to tensorboard when it is installed.
"""
import dataclasses
import json
import os
import time
from dataclasses import dataclass

import dnnlib
from torch_utils import training_stats
from torch_utils.checkpoint import atomic_write
from torch_utils.device import device_memory_stats

TENSORBOARD_HINT = 'tensorboard is not installed: no tensorboard logs (pip install tensorboard)'
MB_PER_GB = 1024


def write_training_options(run_dir: str, opts, derived, built: dict) -> None:
    """Atomically write run_dir/training_options.json: asdict(opts), 'derived', and `built` (plain data)."""
    data = dict(dataclasses.asdict(opts), derived=dataclasses.asdict(derived), **built)
    with atomic_write(os.path.join(run_dir, 'training_options.json'), 'w') as file:
        json.dump(data, file, indent=2, sort_keys=True)


def open_log(run_dir: str) -> dnnlib.util.Logger:
    """Tee stdout and stderr into run_dir/log.txt (appended) until .close()."""
    return dnnlib.util.Logger(file_name=os.path.join(run_dir, 'log.txt'), file_mode='a', should_flush=True)


def current_rss_gb() -> float:
    """Resident memory of this process in GiB (Linux /proc; NaN elsewhere)."""
    try:
        with open('/proc/self/statm') as file:
            pages = int(file.read().split()[1])
    except (OSError, ValueError, IndexError):
        return float('nan')
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**30


@dataclass
class TickTimes:
    """Wall-clock marks of a tick (time.time() seconds) and the time spent outside training steps."""
    start: float            # start of training
    tick_start: float
    tick_end: float
    maintenance: float      # seconds of the previous tick's snapshots, checkpoints and metrics


def tick_line(cur_tick: int, cur_nimg: int, tick_start_nimg: int, times: TickTimes, schedule, nonfinite: int,
              device) -> str:
    """The status line of a tick; every figure is also reported (report0) as a training statistic."""
    memory = device_memory_stats(device)
    tick_sec = times.tick_end - times.tick_start
    tick_kimg = max(cur_nimg - tick_start_nimg, 1) / 1e3
    figures = [
        ('tick', 'Progress/tick', cur_tick, '{:<5d}'),
        ('kimg', 'Progress/kimg', cur_nimg / 1e3, '{:<8.3f}'),
        ('time', 'Timing/total_sec', times.tick_end - times.start, None),
        ('sec/tick', 'Timing/sec_per_tick', tick_sec, '{:<7.1f}'),
        ('sec/kimg', 'Timing/sec_per_kimg', tick_sec / tick_kimg, '{:<7.1f}'),
        ('maintenance', 'Timing/maintenance_sec', times.maintenance, '{:<6.1f}'),
        ('cpumem', 'Resources/cpu_mem_gb', current_rss_gb(), '{:<6.2f}'),
        ('peak_rss', 'Resources/peak_rss_gb', memory.get('peak_rss_mb', float('nan')) / MB_PER_GB, '{:<6.2f}'),
    ]
    if 'peak_allocated_mb' in memory:
        figures.append(('devmem', 'Resources/peak_device_mem_gb', memory['peak_allocated_mb'] / MB_PER_GB, '{:<6.2f}'))
    figures += [
        ('blur', 'Schedule/blur_sigma', schedule.blur_sigma, '{:<5.2f}'),
        ('swap', 'Schedule/swap_prob', schedule.swap_prob, '{:<5.3f}'),
        ('nrr', 'Schedule/nrr', schedule.nrr, '{:<4d}'),
        ('dnoise', 'Schedule/density_noise', schedule.density_noise, '{:<5.3f}'),
        ('lpreg', 'Schedule/pose_reg_weight', schedule.pose_reg_weight, '{:<5.3f}'),
        ('nonfinite', 'Progress/nonfinite_grads', nonfinite, '{:d}'),
    ]
    fields = []
    for label, stat, value, fmt in figures:
        training_stats.report0(stat, value)
        text = f'{dnnlib.util.format_time(value):<12s}' if fmt is None else fmt.format(value)
        fields.append(f'{label} {text}')
    return ' '.join(fields)


class StatsSink:
    """Appends one JSON line per tick to run_dir/stats.jsonl and mirrors the means to tensorboard."""

    def __init__(self, run_dir: str):
        self._jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'at', encoding='utf-8')
        self._tensorboard = None
        try:
            import torch.utils.tensorboard as tensorboard
            self._tensorboard = tensorboard.SummaryWriter(run_dir)
        except ImportError:
            print(TENSORBOARD_HINT)

    def write(self, stats: dict, cur_nimg: int, timestamp: float = None) -> None:
        """Log stats {name: {num, mean, std}} of a tick (and optional extra scalars {name: value})."""
        timestamp = time.time() if timestamp is None else timestamp
        self._jsonl.write(json.dumps(dict(stats, timestamp=timestamp)) + '\n')
        self._jsonl.flush()
        if self._tensorboard is not None:
            for name, value in stats.items():
                self._tensorboard.add_scalar(name, value['mean'], global_step=int(cur_nimg / 1e3), walltime=timestamp)
            self._tensorboard.flush()

    def write_metric(self, name: str, value: float, cur_nimg: int) -> None:
        """Mirror a metric result to tensorboard (metrics write their own metric-*.jsonl)."""
        if self._tensorboard is not None:
            self._tensorboard.add_scalar(f'Metrics/{name}', value, global_step=int(cur_nimg / 1e3))

    def close(self) -> None:
        """Close the files."""
        self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
