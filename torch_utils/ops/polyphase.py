"""Polyphase passes for upfirdn2d_fast: per-axis plans and weighted sums of strided views.

A 1-D upfirdn with up U, down D, left padding p0 and correlation taps g computes

    y[o] = sum_k g[k] * x[(o*D + k - p0) / U]        (terms with a non-integer index vanish).

Outputs o = r + P*q (P = U / gcd(U, D)) form phase r: a correlation of x, input stride
S = D / gcd(U, D), with the taps k for which r*D + k - p0 is divisible by U. Each phase is a weighted
sum of strided views of x written straight into its slots of the output: no inserted zeros, no
discarded samples, and no padded copy (outputs whose taps reach into the padding are summed from
their in-range taps only).
"""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Term = Tuple[float, int]   # (weight, input offset or index)
_FEW = 2                   # interior runs this short are grouped with the edge outputs


class AxisPlan(NamedTuple):
    """Polyphase description of a 1-D upfirdn along one axis (P phases, input stride S)."""
    length_in: int
    length_out: int
    period: int
    stride: int
    phases: Tuple[Tuple[Tuple[int, int], ...], ...]   # per phase: (tap index k, input offset)


def axis_plan(length: int, up: int, down: int, pad0: int, pad1: int, ntaps: int) -> AxisPlan:
    """Which taps and input offsets feed each output phase of a 1-D upfirdn."""
    g = math.gcd(up, down)
    period, stride = up // g, down // g
    length_out = (length * up + pad0 + pad1 - ntaps) // down + 1
    phases = tuple(tuple((k, (r * down + k - pad0) // up) for k in range(ntaps) if (r * down + k - pad0) % up == 0)
                   for r in range(period))
    return AxisPlan(length, length_out, period, stride, phases)


def _along(t: torch.Tensor, dim: int, start: int, count: int, step: int) -> torch.Tensor:
    """View of `count` entries of `t` along `dim` at start, start + step, ... (step >= 0)."""
    size, strides = list(t.shape), list(t.stride())
    size[dim], strides[dim] = count, strides[dim] * step
    return t.as_strided(size, strides, t.storage_offset() + start * t.stride(dim))


def _weight(values: Sequence[float], like: torch.Tensor, ndim_after: int):
    """A float when every phase shares the value, else a tensor [P, 1, ...] broadcasting over the phase dim."""
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape([-1] + [1] * ndim_after)


def _combine(views, weights, out, ndim_after):
    """Pairwise lerp tree: returns (t, s) with s * t = sum(w * v); weights share one sign."""
    if len(views) == 1:
        return views[0], weights[0]
    mid = len(views) // 2
    a, wa = _combine(views[:mid], weights[:mid], None, ndim_after)
    b, wb = _combine(views[mid:], weights[mid:], None, ndim_after)
    total = [p + q for p, q in zip(wa, wb)]
    return torch.lerp(a, b, _weight([q / t for q, t in zip(wb, total)], a, ndim_after), out=out), total


def weighted_sum(views: List[torch.Tensor], weights: List[Sequence[float]], out: torch.Tensor, scale: float,
                 ndim_after: int = 0) -> None:
    """out[...] = sum(w * v) / scale, in as few passes over memory as possible.

    Each weight is a sequence over the phases stacked in `out` (length 1 without a phase dim);
    the phase dim, if any, is followed by `ndim_after` dims. Same-sign weights use a lerp tree
    (n - 1 ops), others a multiply-add chain (n ops).
    """
    if not views:
        out.zero_()
        return
    weights = [[w / scale for w in ws] for ws in weights]
    flat = [w for ws in weights for w in ws]
    if len(views) >= 2 and (all(w > 0 for w in flat) or all(w < 0 for w in flat)):
        _, total = _combine(views, weights, out, ndim_after)
        if any(t != 1 for t in total):
            out.mul_(_weight(total, out, ndim_after))
        return
    torch.mul(views[0], _weight(weights[0], out, ndim_after), out=out)
    for v, ws in zip(views[1:], weights[1:]):
        w = _weight(ws, out, ndim_after)
        if isinstance(w, float):
            out.add_(v, alpha=w)
        else:
            out.addcmul_(v, w)


def _arithmetic_steps(rows: List[List[Term]]) -> Optional[List[int]]:
    """Per slot j, the step s_j >= 0 with rows[r][j] offset = rows[0][j] offset + r * s_j, if any."""
    steps = [rows[1][j][1] - rows[0][j][1] for j in range(len(rows[0]))] if len(rows) > 1 else [0] * len(rows[0])
    if min(steps, default=0) < 0 or any(row[j][1] != rows[0][j][1] + r * steps[j]
                                        for r, row in enumerate(rows) for j in range(len(row))):
        return None
    return steps


def _strided_sum(x, out, dim: int, rows: List[List[Term]], steps: List[int], out_start: int, out_step: int,
                 count: int, stride: int, scale: float) -> None:
    """Fill `len(rows)` evenly spaced groups of `count` outputs along `dim` with one weighted sum.

    Output out_start + r*out_step + q*len(rows)*out_step, for q < count, takes
    sum_j rows[r][j].weight * x[rows[r][j].offset + q*stride]; a phase dim is inserted after `dim`.
    """
    def view(t, start, step_q, step_r):
        """t with `dim` split into (count, len(rows)) steps (step_q, step_r), starting at `start`."""
        size, strides = list(t.shape), list(t.stride())
        size[dim:dim + 1], strides[dim:dim + 1] = [count, len(rows)], [step_q * strides[dim], step_r * strides[dim]]
        return t.as_strided(size, strides, t.storage_offset() + start * t.stride(dim))
    views = [view(x, rows[0][j][1], stride, steps[j]) for j in range(len(steps))]
    weights = [[row[j][0] for row in rows] for j in range(len(steps))]
    target = view(out, out_start, len(rows) * out_step, out_step)
    weighted_sum(views, weights, target, scale, ndim_after=x.ndim - 1 - dim)


def _fuse_phases(phases: List[List[Term]]) -> Optional[Tuple[List[List[Term]], List[int]]]:
    """(taps paired into slots across phases, offset steps) so all phases run as one op, or None.

    Taps are paired by weight first: for symmetric filters each slot then has a single weight.
    """
    if not phases[0] or any(len(p) != len(phases[0]) for p in phases):
        return None
    for candidate in ([sorted(p) for p in phases], phases):
        steps = _arithmetic_steps(candidate)
        if steps is not None:
            return candidate, steps
    return None


def _edges(x, out, dim: int, edges: List[Tuple[int, List[Term]]], scale: float) -> None:
    """Outputs (index, [(weight, input index)]) next to the padding; evenly spaced equal-weight ones share an op."""
    groups: Dict[Tuple[float, ...], List[Tuple[int, List[Term]]]] = {}
    for o, terms in sorted(edges):
        terms = sorted(terms)
        groups.setdefault(tuple(w for w, _ in terms), []).append((o, terms))
    for members in groups.values():
        outs = [o for o, _ in members]
        steps = _arithmetic_steps([terms for _, terms in members])
        out_steps = {b - a for a, b in zip(outs, outs[1:])} or {1}
        if steps is not None and len(out_steps) == 1:
            _strided_sum(x, out, dim, [t for _, t in members], steps, outs[0], out_steps.pop(), 1, 0, scale)
            continue
        for o, terms in members:
            weighted_sum([_along(x, dim, i, 1, 1) for _, i in terms], [[w] for w, _ in terms],
                         _along(out, dim, o, 1, 1), scale)


def _interior(live: List[Term], count: int, length: int, stride: int) -> Tuple[int, int]:
    """[q_lo, q_hi): the outputs of a phase whose taps all fall inside the input (may be empty)."""
    q_lo = min(max([-(off // stride) for _, off in live] + [0]), count)
    q_hi = min([(length - 1 - off) // stride + 1 for _, off in live] + [count])
    return q_lo, max(q_hi, q_lo)


def _rows_continue(x, out, dim: int, count: int, stride: int, period: int) -> bool:
    """Whether, along W, each row of a phase's inputs and outputs continues the previous row's sequence."""
    return dim == 3 and x.stride(2) == count * stride * x.stride(3) and out.stride(2) == count * period * out.stride(3)


def _as_sequence(t: torch.Tensor, start: int, count: int, step: int) -> torch.Tensor:
    """[N, C, count] view reading the rows of each [H, W] plane of t as one sequence: start, start + step, ..."""
    return t.as_strided([t.shape[0], t.shape[1], count], [t.stride(0), t.stride(1), step * t.stride(3)],
                        t.storage_offset() + start * t.stride(3))


def _phase_rest(x, out, dim: int, plan: AxisPlan, r: int, live: List[Term], done: Tuple[int, int],
                scale: float) -> List[Tuple[int, List[Term]]]:
    """Compute phase r's interior outside `done` (the fused range); return its remaining single outputs.

    Those are (output index, [(weight, input index)]) for outputs next to the padding and for
    interior runs of at most _FEW outputs, which _edges groups across phases. Along W, when rows
    continue each other, one op sweeps all rows of a plane: the outputs it gets wrong where a row
    wraps into the next are exactly these single outputs, which _edges then overwrites.
    """
    length, period, stride = plan.length_in, plan.period, plan.stride
    count = len(range(r, plan.length_out, period))
    q_lo, q_hi = _interior(live, count, length, stride)
    rest = [*range(q_lo), *range(q_hi, count)]
    for a, b in ((q_lo, min(q_hi, done[0])), (max(q_lo, done[1]), q_hi)):
        if 0 < b - a <= _FEW:
            rest += range(a, b)
        elif a < b and _rows_continue(x, out, dim, count, stride, period):
            n = (x.shape[2] - 1) * count + b - a
            views = [_as_sequence(x, off + a * stride, n, stride) for _, off in live]
            weighted_sum(views, [[w] for w, _ in live], _as_sequence(out, r + a * period, n, period), scale)
        elif a < b:
            views = [_along(x, dim, off + a * stride, b - a, stride) for _, off in live]
            weighted_sum(views, [[w] for w, _ in live], _along(out, dim, r + a * period, b - a, period), scale)
    return [(r + q * period, [(w, off + q * stride) for w, off in live if 0 <= off + q * stride < length])
            for q in rest]


def pass_1d(x: torch.Tensor, dim: int, taps: Sequence[float], plan: AxisPlan, scale: float,
            margins: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """One separable pass of `plan` along `dim` of x [N, C, H, W]; returns (true result) / scale.

    Rows (dim 2) write the common interior of all phases in one op when their offsets line up;
    along W (dim 3) that would make the innermost loop run over the P phases, so there each phase
    is written on its own. `margins` adds zero rows/columns before/after along the other spatial
    dim, so that a following pass along that dim finds its padding in place.
    """
    other = 5 - dim
    shape = list(x.shape)
    shape[dim], shape[other] = plan.length_out, shape[other] + margins[0] + margins[1]
    buffer = x.new_empty(shape)
    for start, count in ((0, margins[0]), (shape[other] - margins[1], margins[1])):
        buffer.narrow(other, start, count).zero_()
    out = buffer.narrow(other, margins[0], x.shape[other])
    phases = [[(taps[k], off) for k, off in phase if taps[k] != 0] for phase in plan.phases]
    bounds = [_interior(live, len(range(r, plan.length_out, plan.period)), plan.length_in, plan.stride)
              for r, live in enumerate(phases)]
    lo, hi = max(b[0] for b in bounds), min(b[1] for b in bounds)
    fused = _fuse_phases(phases) if dim == 2 and plan.period > 1 and lo < hi else None
    if fused is None:
        lo = hi = 0
    else:
        rows = [[(w, off + lo * plan.stride) for w, off in row] for row in fused[0]]
        _strided_sum(x, out, dim, rows, fused[1], lo * plan.period, 1, hi - lo, plan.stride, scale)
    single = []
    for r, live in enumerate(phases):
        single += _phase_rest(x, out, dim, plan, r, live, (lo, hi), scale)
    _edges(x, out, dim, single, scale)
    return buffer


def common_scale(plan: AxisPlan, taps: Sequence[float]) -> float:
    """A tap sum shared by every non-empty phase (a pass can defer it to the next one), else 1."""
    sums = [sum(taps[k] for k, _ in phase) for phase in plan.phases if phase]
    if sums and sums[0] != 0 and all(abs(s - sums[0]) <= 1e-12 * abs(sums[0]) for s in sums):
        return sums[0]
    return 1.0


def margins(plan: AxisPlan) -> Tuple[int, int]:
    """Zero padding (before, after) that keeps every tap of every phase inside the input."""
    lo, hi = 0, plan.length_in - 1
    for r, phase in enumerate(plan.phases):
        count = len(range(r, plan.length_out, plan.period))
        for _, off in phase if count else ():
            lo, hi = min(lo, off), max(hi, off + (count - 1) * plan.stride)
    return -lo, hi - (plan.length_in - 1)


def pass_2d(x: torch.Tensor, g: Sequence[Sequence[float]], plan_y: AxisPlan, plan_x: AxisPlan) -> torch.Tensor:
    """A full 2-D filter g [fh][fw] on x [N, C, H, W]: pad once, then one weighted sum per (phase_y, phase_x)."""
    (ax0, ax1), (ay0, ay1) = margins(plan_x), margins(plan_y)
    xp = F.pad(x, [ax0, ax1, ay0, ay1])
    out = x.new_empty([x.shape[0], x.shape[1], plan_y.length_out, plan_x.length_out])
    for ry, phase_y in enumerate(plan_y.phases):
        for rx, phase_x in enumerate(plan_x.phases):
            o = out[:, :, ry::plan_y.period, rx::plan_x.period]
            if o.numel() == 0:
                continue
            terms = [(g[ky][kx], oy + ay0, ox + ax0) for ky, oy in phase_y for kx, ox in phase_x if g[ky][kx] != 0]
            views = [_along(_along(xp, 2, oy, o.shape[2], plan_y.stride), 3, ox, o.shape[3], plan_x.stride)
                     for _, oy, ox in terms]
            weighted_sum(views, [[w] for w, _, _ in terms], o, 1.0)
    return out
