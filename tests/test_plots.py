"""metrics.plots: the series read from stats.jsonl and metric-*.jsonl, the figures' lines, the PNG files and the CLI."""
import json

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from metrics import plots


def _write_jsonl(path, records, tail=''):
    path.write_text(''.join(json.dumps(r) + '\n' for r in records) + tail)


@pytest.fixture
def run_dir(tmp_path):
    """A run dir with 3 ticks of stats (the last line cut off mid-write) and FID / pose metrics at 2 snapshots."""
    ticks = [dict({'Progress/kimg': dict(num=1, mean=kimg, std=0),
                   'Loss/G/loss': dict(num=4, mean=1.0 + kimg, std=0.1),
                   'Loss/D/loss': dict(num=4, mean=2.0 - kimg, std=0.1),
                   'Loss/pose/real_neck': dict(num=4, mean=30.0 - kimg, std=1.0),
                   'Timing/sec_per_kimg': dict(num=1, mean=5.0, std=0)}, timestamp=100.0 + kimg)
             for kimg in (0.0, 0.5, 1.0)]
    ticks[1]['Loss/D/reg'] = dict(num=1, mean=float('nan'), std=0)
    _write_jsonl(tmp_path / 'stats.jsonl', ticks, tail='{"Progress/kimg": {"mean": 1.')
    _write_jsonl(tmp_path / 'metric-fid2k.jsonl', [
        dict(results=dict(fid2k=80.0), metric='fid2k', snapshot_pkl='network-snapshot-000004.pkl'),
        dict(results=dict(fid2k=120.0), metric='fid2k', snapshot_pkl='network-snapshot-000000.pkl')])
    _write_jsonl(tmp_path / 'metric-pose_err_real.jsonl', [
        dict(results=dict(pose_err_real=20.0, pose_err_real_neck=15.0, pose_err_real_head=25.0),
             metric='pose_err_real', snapshot_pkl='network-snapshot-000000.pkl'),
        dict(results=dict(pose_err_real=5.0, pose_err_real_neck=4.0, pose_err_real_head=6.0),
             metric='pose_err_real', snapshot_pkl='network-snapshot-000004.pkl')])
    return tmp_path


def test_series_are_read_sorted_and_clean(run_dir):
    metrics = plots.metric_series(plots.metric_records(str(run_dir)))
    assert metrics['fid2k'] == {'fid2k': ([0, 4], [120.0, 80.0])}
    assert metrics['pose_err_real']['pose_err_real_head'] == ([0, 4], [25.0, 6.0])
    losses = plots.stats_series(str(run_dir), 'Loss/')
    assert losses['Loss/G/loss'] == ([0.0, 0.5, 1.0], [1.0, 1.5, 2.0])
    assert 'Loss/D/reg' not in losses                                    # NaN means are skipped
    assert 'Timing/sec_per_kimg' not in losses


def _lines(figure):
    """{(panel title, line label): (x, y)} of a figure."""
    return {(axes.get_title(), line.get_label()): (list(line.get_xdata()), list(line.get_ydata()))
            for axes in figure.axes for line in axes.get_lines()}


def test_figures_hold_the_data(run_dir):
    figures = plots.figures(str(run_dir))
    assert set(figures) == {'curves-metrics.png', 'curves-pose.png', 'curves-losses.png'}
    assert _lines(figures['curves-metrics.png']) == {('fid2k', 'fid2k'): ([0, 4], [120.0, 80.0])}
    pose = _lines(figures['curves-pose.png'])
    assert pose[('pose_err_real', 'pose_err_real')] == ([0, 4], [20.0, 5.0])
    assert pose[('Loss/pose (training)', 'Loss/pose/real_neck')] == ([0.0, 0.5, 1.0], [30.0, 29.5, 29.0])
    losses = _lines(figures['curves-losses.png'])
    assert set(losses) == {('Loss/D', 'Loss/D/loss'), ('Loss/G', 'Loss/G/loss')}


def test_png_files_are_written(run_dir):
    paths = plots.plot_training_curves(str(run_dir))
    assert sorted(p.rsplit('/', 1)[1] for p in paths) == ['curves-losses.png', 'curves-metrics.png', 'curves-pose.png']
    width, height = PIL.Image.open(run_dir / 'curves-pose.png').size
    assert (width, height) == (2 * plots.PANEL_SIZE[0] * plots.DPI, plots.PANEL_SIZE[1] * plots.DPI)
    pixels = np.asarray(PIL.Image.open(run_dir / 'curves-metrics.png').convert('L'))
    assert pixels.min() < 100 and pixels.max() == 255                   # something drawn on white


def test_only_stats_gives_only_the_loss_and_pose_figures(tmp_path, run_dir):
    (tmp_path / 'only').mkdir()
    (tmp_path / 'only' / 'stats.jsonl').write_text((run_dir / 'stats.jsonl').read_text())
    assert set(plots.figures(str(tmp_path / 'only'))) == {'curves-pose.png', 'curves-losses.png'}


def test_cli(run_dir, tmp_path):
    result = CliRunner().invoke(plots.main, [str(run_dir)])
    assert result.exit_code == 0 and result.output.count('.png') == 3
    (tmp_path / 'empty').mkdir()
    result = CliRunner().invoke(plots.main, [str(tmp_path / 'empty')])
    assert result.exit_code == 1 and 'no plottable data' in result.output


def test_log_axis_only_for_metrics_spanning_orders_of_magnitude(tmp_path):
    _write_jsonl(tmp_path / 'metric-kid2k.jsonl', [
        dict(results=dict(kid2k=value), snapshot_pkl=f'network-snapshot-{k:06d}.pkl')
        for k, value in enumerate([0.5, 0.05, 0.01])])
    _write_jsonl(tmp_path / 'stats.jsonl', [{'Progress/kimg': dict(mean=k), 'Loss/G/loss': dict(mean=10.0 ** -k)}
                                            for k in range(3)])
    figures = plots.figures(str(tmp_path))
    assert figures['curves-metrics.png'].axes[0].get_yscale() == 'log'
    assert figures['curves-losses.png'].axes[0].get_yscale() == 'linear'


def test_a_stand_in_detector_is_named_in_the_panel_title(run_dir):
    assert ('fid2k', 'fid2k') in _lines(plots.figures(str(run_dir))['curves-metrics.png'])   # no detector recorded
    _write_jsonl(run_dir / 'metric-fid2k.jsonl', [
        dict(results=dict(fid2k=9.0), metric='fid2k', detector='standin-detector',
             snapshot_pkl='network-snapshot-000000.pkl')])
    _write_jsonl(run_dir / 'metric-kid2k.jsonl', [
        dict(results=dict(kid2k=0.1), metric='kid2k', detector='inception-2015-12-05',
             snapshot_pkl='network-snapshot-000000.pkl')])
    titles = {title for title, _ in _lines(plots.figures(str(run_dir))['curves-metrics.png'])}
    assert titles == {'fid2k (detector: standin-detector)', 'kid2k'}
