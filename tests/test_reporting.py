"""training/reporting.py: training_options.json, the tick line and stats.jsonl."""
import dataclasses
import json

from configs.training_options import TrainingOptions, derive
from torch_utils import training_stats
from training import reporting
from training.schedules import ScheduleValues


def test_training_options_json_holds_the_options_and_derived_values(tmp_path):
    opts = TrainingOptions(batch=8, metrics=('fid50k_full',))
    derived = derive(opts, world_size=2)
    reporting.write_training_options(str(tmp_path), opts, derived, dict(G_kwargs=dict(z_dim=64)))
    data = json.loads((tmp_path / 'training_options.json').read_text())
    assert data['derived'] == dataclasses.asdict(derived) and data['G_kwargs'] == {'z_dim': 64}
    fields = {f.name for f in dataclasses.fields(TrainingOptions)}
    assert TrainingOptions(**{**{k: data[k] for k in fields}, 'metrics': tuple(data['metrics'])}) == opts


def test_tick_line_reports_every_figure_and_stats_jsonl_gets_one_line_per_tick(tmp_path, capsys):
    collector = training_stats.Collector('(Progress|Timing|Schedule)/.*')
    sched = ScheduleValues(blur_sigma=2.5, swap_prob=0.85, density_noise=0.125, nrr=32, pose_reg_weight=0.5)
    times = reporting.TickTimes(start=100.0, tick_start=160.0, tick_end=190.0, maintenance=4.0)
    line = reporting.tick_line(3, 2500, 2000, times, sched, 7, 'cpu')
    for text in ('tick 3 ', 'kimg 2.500', 'time 1m 30s', 'sec/tick 30.0', 'sec/kimg 60.0', 'maintenance 4.0',
                 'cpumem ', 'blur 2.50', 'swap 0.850', 'nrr 32', 'dnoise 0.125', 'lpreg 0.500', 'nonfinite 7'):
        assert text in line, text
    collector.update()
    assert collector['Timing/sec_per_kimg'] == 60.0 and collector['Schedule/nrr'] == 32
    sink = reporting.StatsSink(str(tmp_path))
    sink.write(collector.as_dict(), 2500, timestamp=12.5)
    sink.write({}, 3000, timestamp=13.0)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / 'stats.jsonl').read_text().splitlines()]
    assert lines[0]['Progress/kimg'] == dict(num=1, mean=2.5, std=0.0) and lines[0]['timestamp'] == 12.5
    assert lines[1] == dict(timestamp=13.0)
