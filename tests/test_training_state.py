"""training/training_state.py: exact round trips, one-line errors, finding / pruning, crash-safe writes."""
import dataclasses
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from configs.training_options import TrainingOptions
from torch_utils import checkpoint, persistence
from training import training_state as ts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@persistence.persistent_class
class TinyNet(torch.nn.Module):
    """A persistent two-layer net with a buffer."""

    def __init__(self, width=3):
        super().__init__()
        self.a = torch.nn.Linear(2, width)
        self.b = torch.nn.Linear(width, 1)
        self.register_buffer('steps', torch.zeros([]))


def _setup(width=3):
    """(modules, optimizers) after one Adam step, so optimizer states exist."""
    torch.manual_seed(0)
    modules = {name: TinyNet(width) for name in ts.MODULE_NAMES}
    opt = torch.optim.Adam(modules['G'].parameters(), lr=0.01, betas=(0.0, 0.99))
    modules['G'].b(modules['G'].a(torch.randn(4, 2))).sum().backward()
    opt.step()
    return modules, {'Gboth': opt}


def test_round_trip_restores_everything_exactly(tmp_path):
    modules, optimizers = _setup()
    opts = TrainingOptions(network_preset='tiny-cpu', seed=3)
    path = str(tmp_path / ts.state_file_name(12345))
    assert path.endswith('training-state-000012.pt')
    torch.manual_seed(42)
    np.random.seed(7)
    random.seed(9)
    ts.save_training_state(path, modules, optimizers, dict(cur_nimg=12345, cur_tick=3, batch_idx=99), opts)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    raw = torch.load(path, weights_only=True)
    assert raw['options'] == dataclasses.asdict(opts) and raw['counters']['batch_idx'] == 99

    fresh, fresh_opts = _setup()
    with torch.no_grad():
        for module in fresh.values():
            for p in module.parameters():
                p.add_(1.0)
    torch.manual_seed(0)
    counters = ts.restore_training_state(ts.load_training_state(path), path, fresh, fresh_opts, opts)
    assert counters == dict(cur_nimg=12345, cur_tick=3, batch_idx=99)
    for name in ts.MODULE_NAMES:
        for a, b in zip(fresh[name].state_dict().values(), modules[name].state_dict().values()):
            assert torch.equal(a, b)
    a, b = fresh_opts['Gboth'].state_dict()['state'], optimizers['Gboth'].state_dict()['state']
    assert all(torch.equal(a[k]['exp_avg_sq'], b[k]['exp_avg_sq']) for k in b)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_incompatible_states_fail_with_one_line_naming_file_and_mismatch(tmp_path):
    modules, optimizers = _setup(width=3)
    path = str(tmp_path / 'training-state-000000.pt')
    ts.save_training_state(path, modules, optimizers, dict(cur_nimg=0), TrainingOptions(network_preset='paper'))
    state = ts.load_training_state(path)
    other, other_opts = _setup(width=5)
    with pytest.raises(ts.TrainingStateError) as err:
        ts.restore_training_state(state, path, other, other_opts, TrainingOptions(network_preset='tiny-cpu'))
    message = str(err.value)
    assert '\n' not in message and path in message and 'a.weight [3, 2] vs [5, 2]' in message
    assert "'paper'" in message and "'tiny-cpu'" in message
    same, _ = _setup(width=3)
    wrong_opt = {'Dboth': torch.optim.Adam(same['D'].parameters())}
    with pytest.raises(ts.TrainingStateError, match='optimizers'):
        ts.restore_training_state(state, path, same, wrong_opt, TrainingOptions(network_preset='paper'))
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a zip')
    with pytest.raises(ts.TrainingStateError, match=f'{bad}: not a readable training state'):
        ts.load_training_state(str(bad))


def test_network_snapshot_weights_are_loaded_with_ema_fallback(tmp_path):
    modules, _ = _setup()
    path = str(tmp_path / 'network-snapshot-000000.pkl')
    checkpoint.save_network_snapshot(path, {'G': modules['G'], 'D': modules['D']})
    fresh, _ = _setup()
    with torch.no_grad():
        for module in fresh.values():
            module.a.weight.zero_()
    ts.load_network_weights(path, fresh)
    assert torch.equal(fresh['G_ema'].a.weight, modules['G'].a.weight)
    assert torch.equal(fresh['D_ema'].b.bias, modules['D'].b.bias)
    wide, _ = _setup(width=4)
    with pytest.raises(ts.TrainingStateError, match="G does not fit this run's network: shapes"):
        ts.load_network_weights(path, wide)


def test_find_latest_and_prune(tmp_path):
    assert ts.find_latest_state(str(tmp_path)) is None
    for rel in ('00000-a/training-state-000004.pt', '00000-a/training-state-000008.pt',
                '00001-b/training-state-000002.pt', '00001-b/.training-state-000009.pt.x.tmp',
                'notes/training-state-000500.pt', '00002-c/network-snapshot-000010.pkl'):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_bytes(b'x')
    assert ts.find_latest_state(str(tmp_path)) == str(tmp_path / '00001-b/training-state-000002.pt')
    for kimg in (12, 16):
        (tmp_path / f'00000-a/training-state-{kimg:06d}.pt').write_bytes(b'x')
    ts.prune_states(str(tmp_path / '00000-a'), keep=2)
    assert sorted(os.listdir(tmp_path / '00000-a')) == ['training-state-000012.pt', 'training-state-000016.pt']
    with pytest.raises(ValueError, match='keep'):
        ts.prune_states(str(tmp_path), keep=0)


KILL_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import torch
    from configs.training_options import TrainingOptions
    from training import training_state as ts
    net = torch.nn.Linear(2, 2)
    modules = dict(G=net)
    ts.save_training_state({path!r}, modules, {{}}, dict(cur_nimg=1), TrainingOptions())
    real_save = torch.save
    def save_then_die(obj, file):
        file.write(b'PK\\x03\\x04 partial bytes of a newer state')
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = save_then_die
    with torch.no_grad():
        net.weight.add_(1)
    ts.save_training_state({path!r}, modules, {{}}, dict(cur_nimg=2), TrainingOptions())
''')


def test_a_process_killed_mid_write_leaves_the_previous_state_loadable(tmp_path):
    run_dir = tmp_path / '00000-run'
    run_dir.mkdir()
    path = str(run_dir / 'training-state-000000.pt')
    result = subprocess.run([sys.executable, '-c', KILL_SCRIPT.format(repo=REPO, path=path)], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    state = ts.load_training_state(path)
    assert state['counters'] == dict(cur_nimg=1)
    leftovers = [name for name in os.listdir(run_dir) if name != 'training-state-000000.pt']
    assert len(leftovers) == 1 and leftovers[0].startswith('.training-state-000000.pt.')   # the dead temp file
    assert ts.find_latest_state(str(tmp_path)) == path
