"""torch_utils/launch.py: torchrun / SLURM / --gpus detection, run-dir numbering, and a real 2-process gloo spawn."""
import json
import os
import subprocess
import sys

import pytest
import torch

from configs.training_options import TrainingOptions
from torch_utils import launch
from torch_utils.launch import LaunchSpec, detect_launch, first_host

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
TORCHRUN = dict(RANK='2', WORLD_SIZE='4', LOCAL_RANK='0', MASTER_ADDR='head', MASTER_PORT='29500')
SLURM = dict(SLURM_PROCID='5', SLURM_NTASKS='8', SLURM_LOCALID='1', SLURM_STEP_ID='0', SLURM_JOB_ID='123456',
             SLURM_JOB_NODELIST='gpu[007-008]')


def test_torchrun_variables():
    spec = detect_launch(1, TORCHRUN)
    assert spec == LaunchSpec('torchrun', world_size=4, rank=2, local_rank=0, master_addr='head', master_port=29500)
    assert spec.init_method == 'env://'


@pytest.mark.parametrize('change, culprit', [
    (dict(MASTER_ADDR=None), 'MASTER_ADDR'), (dict(LOCAL_RANK=None), 'LOCAL_RANK'),
    (dict(RANK='4'), 'RANK=4'), (dict(WORLD_SIZE='two'), "WORLD_SIZE='two'"), (dict(MASTER_PORT='0'), 'MASTER_PORT')])
def test_bad_torchrun_variables_name_the_variable(change, culprit):
    environ = {key: value for key, value in {**TORCHRUN, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=culprit) as info:
        detect_launch(1, environ)
    assert '\n' not in str(info.value)


def test_slurm_variables_under_srun():
    spec = detect_launch(1, SLURM)
    port = launch.SLURM_PORT_BASE + 123456 % launch.SLURM_PORT_SPAN
    assert spec == LaunchSpec('slurm', world_size=8, rank=5, local_rank=1, master_addr='gpu007', master_port=port)
    assert spec.init_method == f'tcp://gpu007:{port}'
    explicit = detect_launch(1, dict(SLURM, MASTER_ADDR='10.0.0.1', MASTER_PORT='29400'))
    assert (explicit.master_addr, explicit.master_port) == ('10.0.0.1', 29400)


def test_slurm_batch_script_without_srun_is_a_single_process():
    environ = {key: value for key, value in SLURM.items() if key != 'SLURM_STEP_ID'}
    assert detect_launch(1, environ) == LaunchSpec('single', 1)


def test_torchrun_inside_srun_wins_over_slurm():
    assert detect_launch(1, dict(SLURM, **TORCHRUN)).kind == 'torchrun'


def test_gpus_spawns_locally_but_not_under_a_launcher():
    assert detect_launch(3, {}) == LaunchSpec('spawn', 3, master_addr=launch.LOCALHOST)
    assert detect_launch(1, {}) == LaunchSpec('single', 1)
    for environ in (TORCHRUN, SLURM):
        with pytest.raises(ValueError, match='--gpus=2'):
            detect_launch(2, environ)


@pytest.mark.parametrize('nodelist, host', [
    ('node1', 'node1'), ('gpu[007-009,012],cpu1', 'gpu007'), ('a,b[1-2]', 'a'), ('x[5]', 'x5'),
    ('r[1-2]-n[03-04]', 'r1-n03'), ('gpu[12,3-4]', 'gpu12')])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_process_device_on_the_cpu():
    assert launch.process_device('cpu', LaunchSpec('spawn', 2, 1, 1)) == torch.device('cpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='not available'):
            launch.process_device('cuda', LaunchSpec('spawn', 2, 1, 1))


def test_single_process_context_leaves_tf32_alone_on_the_cpu():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    ctx = launch.init_context(LaunchSpec('single', 1), 'cpu', tf32=not before[0])
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.device) == (0, 1, None, torch.device('cpu'))
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_run_dir_numbering(tmp_path):
    outdir = tmp_path / 'runs'
    assert launch.next_run_id(str(outdir)) == 0                       # not created yet
    first = launch.create_run_dir(str(outdir), 'a')
    assert os.path.basename(first) == '00000-a' and os.path.isdir(first)
    (outdir / '00007-old').mkdir()
    (outdir / '12-file.txt').write_text('')                            # any NNNNN prefix counts, as in EG3D
    (outdir / 'notes').mkdir()
    assert launch.next_run_id(str(outdir)) == 13
    assert os.path.basename(launch.create_run_dir(str(outdir), 'b')) == '00013-b'


def test_run_dir_error_is_one_line(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(launch.RunDirError, match='--outdir') as info:
        launch.share_run_dir(launch.init_context(LaunchSpec('single', 1), 'cpu'), str(blocker), 'x')
    assert '\n' not in str(info.value)


def record_process(opts, run_dir, ctx):
    """Entry of the spawned processes: one all-reduce, then a JSON line per rank in run_dir."""
    value = torch.tensor([float(ctx.rank + 1)])
    torch.distributed.all_reduce(value)
    result = dict(rank=ctx.rank, world_size=ctx.world_size, local_rank=ctx.local_rank, backend=ctx.backend,
                  device=str(ctx.device), run_dir=run_dir, total=value.item(), threads=torch.get_num_threads())
    with open(os.path.join(run_dir, f'rank{ctx.rank}.json'), 'w') as f:
        json.dump(result, f)


def spawn_two(outdir):
    """Run launch.launch for --gpus 2 on the CPU with record_process as the entry (called in a subprocess)."""
    opts = TrainingOptions(outdir=outdir, device='cpu', gpus=2)
    launch.launch(opts, detect_launch(2, {}), 'spawned', entry=record_process)


@pytest.mark.slow
def test_two_gloo_processes_by_spawning(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(('SLURM_', 'RANK', 'WORLD_SIZE'))}
    code = (f'import sys; sys.path[:0] = {[TESTS_DIR, REPO_DIR]!r}; '
            f'import test_launch; test_launch.spawn_two({str(tmp_path)!r})')
    subprocess.run([sys.executable, '-c', code], env=env, check=True, timeout=120)
    assert os.listdir(tmp_path) == ['00000-spawned']                  # rank 0 made the one run dir
    run_dir = tmp_path / '00000-spawned'
    results = [json.loads((run_dir / f'rank{rank}.json').read_text()) for rank in range(2)]
    for rank, result in enumerate(results):
        assert result == dict(rank=rank, world_size=2, local_rank=rank, backend='gloo', device='cpu',
                              run_dir=str(run_dir), total=3.0, threads=max(1, launch.usable_cpus() // 2))
