"""Training states `training-state-{kimg:06d}.pt`: everything an exact resume needs, as plain data.

A state is a torch.save'd dict (loads with torch.load(weights_only=True)):
  'format_version': STATE_VERSION,
  'modules':    {'G', 'D', 'G_ema', 'D_ema': state_dict},
  'optimizers': {phase name: optimizer state_dict} (one entry per distinct optimizer, named after
                the first phase using it),
  'counters':   {'cur_nimg', 'cur_tick', 'batch_idx', ...} (ints),
  'rng':        torch CPU / CUDA, NumPy and Python generator states,
  'options':    dataclasses.asdict(TrainingOptions).
Files are written atomically (torch_utils.checkpoint.atomic_write), so a crash mid-write leaves the
previous state intact. Resuming from a network snapshot (.pkl) instead restores weights only.
"""
import dataclasses
import glob
import os
import pickle
import random
import re
from typing import Dict, Optional

import numpy as np
import torch

from torch_utils import checkpoint

STATE_VERSION = 1
MODULE_NAMES = ('G', 'D', 'G_ema', 'D_ema')
STATE_PATTERN = re.compile(r'training-state-(\d+)\.pt')
RUN_DIR_PATTERN = re.compile(r'(\d+)(-.*)?')
_MAX_LISTED = 4


class TrainingStateError(ValueError):
    """A resume file that cannot be used for this run; the message is one line naming the file."""


def state_file_name(cur_nimg: int) -> str:
    """'training-state-{kimg:06d}.pt' for the image counter cur_nimg."""
    return f'training-state-{cur_nimg // 1000:06d}.pt'


def capture_rng_states() -> dict:
    """States of torch's CPU (and CUDA) generators, NumPy's global generator and Python's `random`."""
    key, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=dict(key=key, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                           has_gauss=int(has_gauss), cached_gaussian=float(cached)),
                python=random.getstate())


def restore_rng_states(states: dict) -> None:
    """Inverse of capture_rng_states (CUDA states only where CUDA is available)."""
    torch.set_rng_state(states['torch'])
    if states['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])
    n = states['numpy']
    np.random.set_state((n['key'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))


def distinct_optimizers(phases) -> Dict[str, torch.optim.Optimizer]:
    """{name of the first phase using it: optimizer} over the phases (main and reg phases may share one)."""
    out = {}
    for phase in phases:
        if not any(opt is phase.opt for opt in out.values()):
            out[phase.name] = phase.opt
    return out


def save_training_state(path: str, modules: Dict[str, torch.nn.Module], optimizers: Dict[str, torch.optim.Optimizer],
                        counters: Dict[str, int], opts) -> None:
    """Atomically write the training state (module doc) of modules, optimizers, counters and opts to `path`."""
    data = dict(format_version=STATE_VERSION,
                modules={name: {key: t.detach().to('cpu', copy=True) for key, t in module.state_dict().items()}
                         for name, module in modules.items()},
                optimizers={name: opt.state_dict() for name, opt in optimizers.items()},
                counters={key: int(value) for key, value in counters.items()},
                rng=capture_rng_states(), options=dataclasses.asdict(opts))
    with checkpoint.atomic_write(path) as file:
        torch.save(data, file)


def load_training_state(path: str) -> dict:
    """The state dict in `path` (torch.load(weights_only=True)); TrainingStateError (one line) if unreadable."""
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise TrainingStateError(f'{path}: no such training state') from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        reason = ' '.join(str(err).split('.')[0].split()) or type(err).__name__
        raise TrainingStateError(f'{path}: not a readable training state ({reason})') from None
    if not isinstance(data, dict) or data.get('format_version') != STATE_VERSION:
        version = data.get('format_version') if isinstance(data, dict) else None
        raise TrainingStateError(f'{path}: not a training state of this project (format_version {version!r}; '
                                 f'expected {STATE_VERSION})')
    return data


def _short(items) -> str:
    """At most _MAX_LISTED items, comma-separated, with a (+N more) suffix."""
    items = sorted(items)
    more = f' (+{len(items) - _MAX_LISTED} more)' if len(items) > _MAX_LISTED else ''
    return ', '.join(items[:_MAX_LISTED]) + more


def state_dict_mismatch(module: torch.nn.Module, state_dict: dict) -> str:
    """'' if state_dict fits module exactly, else a short description of the first kind of mismatch."""
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    if missing or unexpected:
        return f'missing [{_short(missing)}], unexpected [{_short(unexpected)}]'
    shapes = [f'{key} {list(state_dict[key].shape)} vs {list(t.shape)}' for key, t in expected.items()
              if tuple(state_dict[key].shape) != tuple(t.shape)]
    return f'shapes (saved vs built) [{_short(shapes)}]' if shapes else ''


def load_module_states_(modules: Dict[str, torch.nn.Module], states: Dict[str, dict], path: str,
                        hint: str = '') -> None:
    """Copy states[name] into modules[name] for every name; TrainingStateError naming file and mismatch."""
    for name, module in modules.items():
        if name not in states:
            raise TrainingStateError(f'{path}: has no {name!r}{hint}')
        mismatch = state_dict_mismatch(module, states[name])
        if mismatch:
            raise TrainingStateError(f'{path}: {name} does not fit this run\'s network: {mismatch}{hint}')
    for name, module in modules.items():
        module.load_state_dict(states[name], strict=True)


def restore_training_state(state: dict, path: str, modules: Dict[str, torch.nn.Module],
                           optimizers: Dict[str, torch.optim.Optimizer], opts) -> Dict[str, int]:
    """Load modules, optimizers and RNG states from a loaded state; returns its counters."""
    saved_preset = state['options'].get('network_preset')
    hint = f' (saved with network_preset {saved_preset!r}, this run uses {opts.network_preset!r})' \
        if saved_preset != opts.network_preset else ''
    load_module_states_(modules, state['modules'], path, hint)
    if set(optimizers) != set(state['optimizers']):
        raise TrainingStateError(f'{path}: optimizers [{_short(state["optimizers"])}] do not match this run\'s '
                                 f'[{_short(optimizers)}]')
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(state['optimizers'][name])
        except (ValueError, KeyError) as err:
            raise TrainingStateError(f'{path}: optimizer {name!r} does not fit this run ({err}); '
                                     'were options such as train_g_pose_branch or freezed changed?') from None
    restore_rng_states(state['rng'])
    return dict(state['counters'])


def load_network_weights(path: str, modules: Dict[str, torch.nn.Module]) -> None:
    """Copy the weights of a network snapshot (.pkl) into modules; a missing G_ema / D_ema comes from G / D."""
    try:
        data = checkpoint.read_snapshot_dict(path)
    except (OSError, checkpoint.SnapshotFormatError) as err:
        raise TrainingStateError(str(err) if isinstance(err, checkpoint.SnapshotFormatError)
                                 else f'{path}: {err.strerror or err}') from None
    states = {name: data[name]['state_dict'] for name in MODULE_NAMES if checkpoint.is_module_entry(data.get(name))}
    for name, fallback in (('G_ema', 'G'), ('D_ema', 'D')):
        if name not in states and fallback in states:
            states[name] = states[fallback]
    load_module_states_(modules, states, path)


def _states_in(run_dir: str) -> Dict[str, int]:
    """{path: kimg} of the training states directly inside run_dir."""
    out = {}
    for path in glob.glob(os.path.join(glob.escape(run_dir), 'training-state-*.pt')):
        match = STATE_PATTERN.fullmatch(os.path.basename(path))
        if match:
            out[path] = int(match.group(1))
    return out


def find_latest_state(outdir: str) -> Optional[str]:
    """The newest training state in the run dirs NNNNN-desc of outdir: highest run number, then highest kimg."""
    best, best_key = None, None
    for entry in os.listdir(outdir) if os.path.isdir(outdir) else []:
        match = RUN_DIR_PATTERN.fullmatch(entry)
        if not match or not os.path.isdir(os.path.join(outdir, entry)):
            continue
        for path, kimg in _states_in(os.path.join(outdir, entry)).items():
            key = (int(match.group(1)), kimg)
            if best_key is None or key > best_key:
                best, best_key = path, key
    return best


def prune_states(run_dir: str, keep: int) -> None:
    """Delete all but the `keep` newest (by kimg) training states of run_dir; keep >= 1."""
    if keep < 1:
        raise ValueError(f'keep: expected >= 1 training states, got {keep}')
    states = sorted(_states_in(run_dir).items(), key=lambda item: item[1])
    for path, _ in states[:-keep]:
        os.remove(path)
