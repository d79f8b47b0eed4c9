"""Training curves of a run dir as PNG files: metrics and pose errors over kimg, and the losses of stats.jsonl.

    python -m metrics.plots RUN_DIR        (or metrics.plots.plot_training_curves(run_dir))

Writes into the run dir (each file only when it has data; re-running replaces them atomically):
  curves-metrics.png  every FID/KID-type metric of metric-*.jsonl over the snapshot kimg (log y axis
                      when the values span more than a factor LOG_SCALE_RATIO);
  curves-pose.png     pose_err_real / pose_err_fake (overall, neck, head; rotation-angle error in
                      degrees) and the training statistics Loss/pose/* (mean |axis-angle component|
                      error in degrees, per tick);
  curves-losses.png   the other Loss/* statistics of stats.jsonl, one panel per group (Loss/G, Loss/D, ...).
The kimg of a metric line comes from its snapshot name network-snapshot-<kimg>.pkl; the kimg of a
stats line from its Progress/kimg statistic. Unreadable lines (a run killed mid-write) are skipped.
"""
import glob
import json
import math
import os
import re
from typing import Dict, List, Tuple

import click
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from torch_utils.checkpoint import atomic_write

Series = Tuple[List[float], List[float]]           # (kimg, values), sorted by kimg
SNAPSHOT_KIMG = re.compile(r'network-snapshot-(\d+)\.pkl$')
POSE_METRIC_PREFIX = 'pose_err_'
POSE_STATS_PREFIX = 'Loss/pose/'
LOSS_PREFIX = 'Loss/'
KIMG_STAT = 'Progress/kimg'
PANEL_SIZE = (5.0, 3.5)                            # inches per panel
MAX_COLUMNS = 3
DPI = 100
STANDARD_DETECTOR_PREFIX = 'inception'             # metrics/detector.py's default network (by file name)
LOG_SCALE_RATIO = 20.0                             # log y axis when positive values span more than this factor


def read_jsonl(path: str) -> List[dict]:
    """The JSON objects of a .jsonl file, skipping blank and unreadable lines."""
    records = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _sorted(points: Dict[str, List[Tuple[float, float]]]) -> Dict[str, Series]:
    """{name: [(kimg, value)]} -> {name: (kimg list, value list)} sorted by kimg."""
    out = {}
    for name, pairs in points.items():
        pairs = sorted(pairs)
        out[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def metric_records(run_dir: str) -> Dict[str, List[dict]]:
    """{metric: the records of run_dir/metric-<metric>.jsonl}, read once for the series and the detectors."""
    return {os.path.basename(path)[len('metric-'):-len('.jsonl')]: read_jsonl(path)
            for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), 'metric-*.jsonl')))}


def metric_series(records: Dict[str, List[dict]]) -> Dict[str, Dict[str, Series]]:
    """{metric: {result name: (kimg, values)}} from metric_records(...) (finite numbers only)."""
    series = {}
    for metric, lines in records.items():
        points = {}
        for record in lines:
            match = SNAPSHOT_KIMG.search(str(record.get('snapshot_pkl', '')))
            results = record.get('results')
            if match is None or not isinstance(results, dict):
                continue
            for name, value in results.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    points.setdefault(name, []).append((int(match.group(1)), float(value)))
        if points:
            series[metric] = _sorted(points)
    return series


def metric_detectors(records: Dict[str, List[dict]]) -> Dict[str, List[str]]:
    """{metric: sorted detector names} recorded in metric_records(...) (metrics without one are left out)."""
    names = {}
    for metric, lines in records.items():
        found = {str(record['detector']) for record in lines if record.get('detector')}
        if found:
            names[metric] = sorted(found)
    return names


def _quality_title(metric: str, detectors: List[str]) -> str:
    """The panel title of a FID/KID-type metric: its name, plus the detector unless it is the standard Inception
    (a stand-in detector's numbers are not comparable with published ones and must say so)."""
    others = [name for name in detectors if not name.startswith(STANDARD_DETECTOR_PREFIX)]
    return f'{metric} (detector: {", ".join(others)})' if others else metric


def stats_series(run_dir: str, prefix: str) -> Dict[str, Series]:
    """{statistic: (kimg, means)} of the stats.jsonl statistics whose names start with `prefix`."""
    path = os.path.join(run_dir, 'stats.jsonl')
    points = {}
    for record in read_jsonl(path) if os.path.isfile(path) else []:
        kimg = record.get(KIMG_STAT, {})
        kimg = kimg.get('mean') if isinstance(kimg, dict) else None
        if not isinstance(kimg, (int, float)):
            continue
        for name, value in record.items():
            mean = value.get('mean') if isinstance(value, dict) else None
            if name.startswith(prefix) and isinstance(mean, (int, float)) and math.isfinite(mean):
                points.setdefault(name, []).append((float(kimg), float(mean)))
    return _sorted(points)


def _figure(panels: List[Tuple[str, str, Dict[str, Series]]], auto_log: bool = False) -> Figure:
    """One figure with a panel per (title, y label, {line label: series}); auto_log: log y axes for positive
    values spanning more than LOG_SCALE_RATIO (FID/KID fall by orders of magnitude)."""
    columns = min(MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), dpi=DPI, layout='constrained')
    for k, (title, ylabel, lines) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, k + 1)
        for label, (kimg, values) in lines.items():
            axes.plot(kimg, values, marker='o' if len(kimg) < 30 else None, markersize=3, label=label)
        values = [v for _, vs in lines.values() for v in vs]
        if auto_log and values and min(values) > 0 and max(values) / min(values) > LOG_SCALE_RATIO:
            axes.set_yscale('log')
        axes.set_title(title)
        axes.set_xlabel('kimg')
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        if len(lines) > 1:
            axes.legend(fontsize='small')
    return figure


def figures(run_dir: str) -> Dict[str, Figure]:
    """{file name: Figure} of the curves that have data (see the module docstring)."""
    records = metric_records(run_dir)
    metrics, detectors = metric_series(records), metric_detectors(records)
    quality = [(_quality_title(name, detectors.get(name, [])), name, lines) for name, lines in metrics.items()
               if not name.startswith(POSE_METRIC_PREFIX)]
    pose = [(name, 'rotation-angle error (deg)', lines) for name, lines in metrics.items()
            if name.startswith(POSE_METRIC_PREFIX)]
    pose_stats = stats_series(run_dir, POSE_STATS_PREFIX)
    if pose_stats:
        pose.append(('Loss/pose (training)', 'mean |component| error (deg)', pose_stats))
    groups = {}
    for name, series in stats_series(run_dir, LOSS_PREFIX).items():
        if not name.startswith(POSE_STATS_PREFIX):
            groups.setdefault('/'.join(name.split('/')[:2]), {})[name] = series
    losses = [(group, 'mean per tick', lines) for group, lines in sorted(groups.items())]
    named = {'curves-metrics.png': quality, 'curves-pose.png': pose, 'curves-losses.png': losses}
    return {file_name: _figure(panels, auto_log=file_name == 'curves-metrics.png')
            for file_name, panels in named.items() if panels}


def plot_training_curves(run_dir: str) -> List[str]:
    """Render the curves of `run_dir` to PNG files in it (atomic writes); returns the paths written."""
    paths = []
    for file_name, figure in figures(run_dir).items():
        path = os.path.join(run_dir, file_name)
        FigureCanvasAgg(figure)
        with atomic_write(path) as f:
            figure.savefig(f, format='png')
        paths.append(path)
    return paths


@click.command()
@click.argument('run_dir', type=click.Path(exists=True, file_okay=False))
def main(run_dir):
    """Plot the training curves of RUN_DIR (stats.jsonl, metric-*.jsonl) to curves-*.png in it."""
    paths = plot_training_curves(run_dir)
    if not paths:
        raise click.ClickException(f'{run_dir}: no plottable data in stats.jsonl or metric-*.jsonl')
    for path in paths:
        click.echo(path)


if __name__ == '__main__':
    main()
