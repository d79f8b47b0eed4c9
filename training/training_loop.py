"""The training loop (system.md §1.4): build, resume, then alternate training steps and ticks.

A step runs every due phase (training/phases.py) over this process's micro-batches (the global
batch's order and randomness come from training/data_stream.py), averages gradients over the
processes, scrubs non-finite elements and steps the phase's Adam; then G_ema and D_ema follow
(training/ema.py). A tick (every `tick` kimg) prints the status line and writes stats
(training/reporting.py), image grids (training/snapshots.py), network snapshots, training states
(training/training_state.py) and metrics. Rank 0 writes every file. SIGTERM / SIGINT end the run
after the current step with a training state (training/signals.py).
"""
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List

import torch

from configs.training_options import DerivedOptions, TrainingOptions, derive, with_network_defaults
from portrait_data.portrait import PortraitDataset
from torch_utils import checkpoint, training_stats
from torch_utils.distributed import DistContext, all_reduce_mean_, barrier
from training import data_stream, ema, reporting, signals, snapshots
from training import training_state as states
from training.loss import PortraitLoss
from training.phases import build_phases, scrub_nonfinite_grads_
from training.run_setup import build_dataset, build_networks, compile_networks, resume_run
from training.schedules import schedule_at


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the phase, the statistic and the kimg."""


@dataclass
class Counters:
    """The loop's counters; all of them are saved in training states."""
    cur_nimg: int = 0            # the absolute image counter of every schedule (configs/training_options.py)
    cur_tick: int = 0
    batch_idx: int = 0           # optimiser steps of this and earlier runs: the data stream's step index
    tick_start_nimg: int = 0


@dataclass
class Run:
    """Everything a running training needs, built once by `setup`."""
    opts: TrainingOptions
    derived: DerivedOptions
    ctx: DistContext
    run_dir: str
    dataset: PortraitDataset
    dataset_kwargs: dict
    nets: Dict[str, torch.nn.Module]
    phases: list
    optimizers: Dict[str, torch.optim.Optimizer]
    loss: PortraitLoss
    counters: Counters
    grid: object = None          # snapshots.SnapshotGrid on rank 0


def setup(opts: TrainingOptions, run_dir: str, ctx: DistContext) -> Run:
    """Dataset, networks, phases, loss and counters (fresh or resumed); rank 0 writes options and reals."""
    opts = with_network_defaults(opts)
    derived = derive(opts, ctx.world_size)
    dataset, dataset_kwargs = build_dataset(opts)
    nets, built = build_networks(opts, ctx.device)
    phases = build_phases(nets['G'], nets['D'], opts, derived)
    optimizers = states.distinct_optimizers(phases)
    counters = Counters(**resume_run(opts, nets, optimizers, ctx))
    if opts.compile:
        compile_networks(nets)
    counters.tick_start_nimg = counters.cur_nimg
    run = Run(opts, derived, ctx, run_dir, dataset, dataset_kwargs, nets, phases, optimizers,
              PortraitLoss(nets['G'], nets['D'], opts, derived), counters)
    if ctx.is_main:
        reporting.write_training_options(run_dir, opts, derived, dict(built, training_set_kwargs=dataset_kwargs,
                                                                      dataset=dataset.stats))
        run.grid = snapshots.make_grid(dataset, opts.seed, nets['G'].z_dim)
        snapshots.write_reals(os.path.join(run_dir, 'reals.png'), run.grid)
    return run


def _device_batch(batch, device: torch.device):
    """uint8 image/mask + float labels (CPU) -> image in [-1, 1], mask in [0, 1], camera, pose on device."""
    image, mask, camera, pose = batch
    return (image.to(device, torch.float32) / 127.5 - 1, mask.to(device, torch.float32) / 255,
            camera.to(device), pose.to(device))


def _check_losses(run: Run, watch: training_stats.Collector, phase_name: str) -> None:
    """NonFiniteLossError if a 'Loss/...' statistic of this phase is NaN or infinite (collective)."""
    watch.update()
    bad = [(name, watch.mean(name)) for name in watch.names() if not math.isfinite(watch.mean(name))]
    if bad:
        name, value = bad[0]
        raise NonFiniteLossError(
            f'non-finite loss in phase {phase_name} at kimg {run.counters.cur_nimg / 1e3:.3f} '
            f'(step {run.counters.batch_idx}): {name} = {value}; this phase was not applied and no checkpoint was '
            f'written after the last good one; resume from the newest training state in {run.run_dir} '
            '(e.g. with lower --glr / --dlr)')


def run_phase(run: Run, phase_index: int, phase, reals: List[tuple], watch: training_stats.Collector) -> int:
    """Accumulate phase's gradients over this process's micro-batches, average, scrub, step; returns #scrubbed."""
    opts, derived, ctx, step = run.opts, run.derived, run.ctx, run.counters.batch_idx
    for module in (run.nets['G'], run.nets['D']):
        module.requires_grad_(False)
    for p in phase.params:
        p.requires_grad_(True)
    phase.opt.zero_grad(set_to_none=True)
    z = data_stream.gen_z(opts.seed, step, phase_index, opts.batch, run.nets['G'].z_dim)
    gen_c, gen_pose = data_stream.gen_conditioning(
        run.dataset, data_stream.gen_items(opts.seed, step, phase_index, opts.batch, len(run.dataset)))
    for round_index, real in enumerate(reals):
        micro = data_stream.micro_index(round_index, ctx.rank, ctx.world_size)
        rows = data_stream.micro_batch_slice(micro, derived.batch_gpu)
        with data_stream.micro_batch_rng(opts.seed, step, phase_index, micro, ctx.device):
            run.loss.accumulate_gradients(phase.name, *real, gen_z=z[rows].to(ctx.device),
                                          gen_c=gen_c[rows].to(ctx.device), gen_pose=gen_pose[rows].to(ctx.device),
                                          gain=phase.interval / derived.accumulation, cur_nimg=run.counters.cur_nimg)
    _check_losses(run, watch, phase.name)
    params = [p for p in phase.params if p.grad is not None]
    all_reduce_mean_([p.grad for p in params], ctx)
    scrubbed = scrub_nonfinite_grads_(params)
    phase.opt.step()
    phase.opt.zero_grad(set_to_none=True)
    return scrubbed


def set_nrr(run: Run, nrr: int) -> None:
    """The neural rendering resolution of G and G_ema (their `nrr` buffers, saved with them) from the schedule."""
    for name in ('G', 'G_ema'):
        run.nets[name].neural_rendering_resolution = nrr


def training_step(run: Run, batches, watch: training_stats.Collector) -> int:
    """One optimiser step of every due phase, then the EMAs; returns the number of scrubbed gradient elements."""
    nets, counters, opts = run.nets, run.counters, run.opts
    reals = [_device_batch(next(batches), run.ctx.device) for _ in range(run.derived.accumulation)]
    set_nrr(run, schedule_at(opts, run.derived, counters.cur_nimg).nrr)
    scrubbed = sum(run_phase(run, index, phase, reals, watch) for index, phase in enumerate(run.phases)
                   if counters.batch_idx % phase.interval == 0)
    beta = ema.ema_beta(opts.batch, counters.cur_nimg, run.derived.ema_kimg, opts.ema_rampup)
    ema.update_ema_(nets['G_ema'], nets['G'], beta)
    ema.update_ema_(nets['D_ema'], nets['D'], beta)
    counters.cur_nimg += opts.batch
    counters.batch_idx += 1
    return scrubbed


def save_state(run: Run, next_tick: int) -> None:
    """Rank 0: training-state-{kimg}.pt of the current counters (next tick = next_tick), keep the newest N."""
    if run.ctx.is_main:
        counters = dataclasses.replace(run.counters, cur_tick=next_tick, tick_start_nimg=run.counters.cur_nimg)
        path = os.path.join(run.run_dir, states.state_file_name(run.counters.cur_nimg))
        states.save_training_state(path, run.nets, run.optimizers, dataclasses.asdict(counters), run.opts)
        states.prune_states(run.run_dir, run.opts.keep)


def save_network_snapshot(run: Run, sched) -> str:
    """Rank 0: network-snapshot-{kimg}.pkl (G, D, G_ema, D_ema + extras); returns its path on every rank."""
    path = os.path.join(run.run_dir, f'network-snapshot-{run.counters.cur_nimg // 1000:06d}.pkl')
    if run.ctx.is_main:
        extras = dict(training_set_kwargs=run.dataset_kwargs, cur_nimg=run.counters.cur_nimg,
                      pose_predict_kwargs=dict(blur_sigma=sched.blur_sigma, neural_rendering_resolution=sched.nrr))
        checkpoint.save_network_snapshot(path, run.nets, extras)
    return path


def evaluate_metrics(run: Run, snapshot_pkl: str, sched, sink) -> None:
    """Every opts.metrics at this snapshot (all ranks compute; rank 0 appends metric-*.jsonl)."""
    if not run.opts.metrics:
        return
    from metrics import metric_main
    for metric in run.opts.metrics:
        result = metric_main.calc_metric(
            metric, G=run.nets['G_ema'], D=run.nets['D_ema'], dataset_kwargs=run.dataset_kwargs, ctx=run.ctx,
            pose_sample_mode=run.opts.metric_pose_sample_mode, identical_c_p=True, num_gen=run.opts.metrics_num_gen,
            pose_predict_kwargs=dict(blur_sigma=sched.blur_sigma, neural_rendering_resolution=sched.nrr))
        if run.ctx.is_main:
            metric_main.report_metric(result, run.run_dir, snapshot_pkl)
            for name, value in result['results'].items():
                sink.write_metric(name, value, run.counters.cur_nimg)


def end_tick(run: Run, done: bool, times: reporting.TickTimes, scrubbed: int, collector, sink) -> None:
    """Status line, image grid, snapshot + state + metrics when due, stats.jsonl."""
    opts, counters, ctx = run.opts, run.counters, run.ctx
    sched = schedule_at(opts, run.derived, counters.cur_nimg)
    set_nrr(run, sched.nrr)                 # snapshots describe the next step: G_ema's NRR = pose_predict_kwargs'
    line = reporting.tick_line(counters.cur_tick, counters.cur_nimg, counters.tick_start_nimg, times, sched,
                               scrubbed, ctx.device)
    if ctx.is_main:
        print(line, flush=True)
    if ctx.is_main and (done or counters.cur_tick % opts.image_snap == 0):
        G_ema = run.nets['G_ema']
        snapshots.write_fakes(run.run_dir, counters.cur_nimg // 1000, G_ema, run.nets['D_ema'], G_ema.body_warp.body,
                              run.grid, sched.blur_sigma, run.derived.batch_gpu, ctx.device)
    if done or counters.cur_tick % opts.snap == 0:
        snapshot_pkl = save_network_snapshot(run, sched)
        save_state(run, counters.cur_tick + 1)
        evaluate_metrics(run, snapshot_pkl, sched, sink)
    barrier(ctx)
    collector.update()
    if ctx.is_main:
        sink.write(collector.as_dict(), counters.cur_nimg)


def _stop_requested(stop: signals.StopRequest, ctx: DistContext) -> bool:
    """True on every rank if any rank received a stop signal (one tiny all-reduce per step when distributed)."""
    flag = torch.tensor([float(stop.requested)], device=ctx.device)
    if ctx.world_size > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _tick_due(run: Run, done: bool) -> bool:
    """A tick ends after the first step of a run, every opts.tick kimg after that, and at the end."""
    counters = run.counters
    return done or counters.cur_tick == 0 or counters.cur_nimg >= counters.tick_start_nimg + run.opts.tick * 1000


def train(run: Run) -> None:
    """Steps until cur_nimg reaches opts.kimg (or a stop signal), with a tick every opts.tick kimg."""
    opts, counters, ctx = run.opts, run.counters, run.ctx
    if counters.cur_nimg >= opts.kimg * 1000:
        print(f'Nothing to train: the counter is at kimg {counters.cur_nimg / 1e3:.3f} >= --kimg={opts.kimg:g}')
        return
    sampler = data_stream.MicroBatchSampler(len(run.dataset), opts.seed, opts.batch, run.derived.batch_gpu,
                                            ctx.rank, ctx.world_size, start_step=counters.batch_idx)
    batches = data_stream.real_batches(run.dataset, sampler, opts.workers, pin_memory=ctx.device.type == 'cuda')
    collector, watch = training_stats.Collector('.*'), training_stats.Collector('Loss/.*', keep_previous=False)
    sink = reporting.StatsSink(run.run_dir) if ctx.is_main else None
    start = tick_start = time.time()
    maintenance, scrubbed = 0.0, 0
    try:
        with signals.StopRequest() as stop:
            while True:
                scrubbed += training_step(run, batches, watch)
                done = counters.cur_nimg >= opts.kimg * 1000
                if _stop_requested(stop, ctx) and not done:
                    save_state(run, counters.cur_tick)
                    print(f'Stopped at kimg {counters.cur_nimg / 1e3:.3f}; resume with --resume=auto', flush=True)
                    return
                if not _tick_due(run, done):
                    continue
                tick_end = time.time()
                end_tick(run, done, reporting.TickTimes(start, tick_start, tick_end, maintenance), scrubbed,
                         collector, sink)
                counters.cur_tick, counters.tick_start_nimg, scrubbed = counters.cur_tick + 1, counters.cur_nimg, 0
                tick_start = time.time()
                maintenance = tick_start - tick_end
                if done:
                    return
    finally:
        if sink is not None:
            sink.close()


def training_loop(opts: TrainingOptions, run_dir: str, ctx: DistContext) -> None:
    """Train with `opts` (configs/training_options.py) in run_dir (created by the caller) on this process of ctx."""
    log = reporting.open_log(run_dir) if ctx.is_main else None
    try:
        train(setup(opts, run_dir, ctx))
    except (NonFiniteLossError, states.TrainingStateError) as err:
        print(f'Training stopped: {err}', file=sys.stderr, flush=True)     # into log.txt too
        raise
    finally:
        if log is not None:
            log.close()
