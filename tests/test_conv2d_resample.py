"""torch_utils/ops/conv2d_resample.py: the general path against scipy, every fast path against
the general path, gradients, argument errors."""
import itertools

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import conv2d_resample as C
from torch_utils.ops import upfirdn2d as U


pytestmark = pytest.mark.usefixtures('one_thread')


def _pad_crop(z: np.ndarray, px0, px1, py0, py1) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) the last two axes."""
    z = np.pad(z, [(max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    return z[max(-py0, 0):z.shape[0] - max(-py1, 0), max(-px0, 0):z.shape[1] - max(-px1, 0)]


def _scipy_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """Independent computation: explicit zero insertion, scipy convolve2d/correlate2d per channel."""
    x, w, f = x.numpy(), w.numpy(), f.numpy()
    h = f[::-1, ::-1] if flip_filter else f           # upfirdn2d convolves with f, or correlates if flipped
    w = w if flip_weight else w[:, :, ::-1, ::-1]      # F.conv2d correlates
    fh, fw = f.shape
    px0 = px1 = py0 = py1 = padding
    if up > 1:   # centre the filter: StyleGAN2's upsample2d / downsample2d padding
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    n, c, height, width = x.shape
    out_channels, cg = w.shape[:2]
    result = []
    for i in range(n):
        planes = []
        for j in range(c):
            z = np.zeros([height * up, width * up])
            z[::up, ::up] = x[i, j]
            z = _pad_crop(z, px0, px1, py0, py1)
            planes.append(scipy.signal.convolve2d(z, h, mode='valid') * up ** 2 if up > 1 else z)
        outs = []
        for o in range(out_channels):
            g = o // (out_channels // groups)
            y = sum(scipy.signal.correlate2d(planes[g * cg + k], w[o, k], mode='valid') for k in range(cg))
            outs.append(scipy.signal.convolve2d(y, h, mode='valid')[::down, ::down] if down > 1 else y)
        result.append(np.stack(outs))
    return torch.from_numpy(np.stack(result))


@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_general_path_matches_scipy(up, down):
    """The general path equals zero insertion + scipy convolutions, with groups and both flips."""
    gen = torch.Generator().manual_seed(up * 10 + down)
    for groups, flip_weight, flip_filter in [(1, True, False), (2, False, True)]:
        x = torch.randn([2, 4, 7, 6], generator=gen, dtype=torch.float64)
        w = torch.randn([6, 4 // groups, 3, 3], generator=gen, dtype=torch.float64)
        f = torch.randn([4, 3], generator=gen, dtype=torch.float64)
        actual = C._conv2d_resample_general(x, w, f, up, down, 1, groups, flip_weight, flip_filter)
        expected = _scipy_conv2d_resample(x, w, f, up, down, 1, groups, flip_weight, flip_filter)
        torch.testing.assert_close(actual, expected)


def _cases():
    """Every resampling mode x kernel size x padding x groups x flips, with rotating filters."""
    filters = itertools.cycle(['stylegan', 'asym', None])
    for up, down, k, padding, groups, flip_weight, flip_filter in itertools.product(
            [1, 2, 4], [1, 2], [1, 3, 4], [0, 1, [1, 2, 0, 3], [-1, 1]], [1, 2], [True, False], [False, True]):
        yield up, down, k, padding, groups, flip_weight, flip_filter, next(filters)


def test_fast_paths_match_general_path():
    """conv2d_resample (which picks a fast path where one applies) equals the general path."""
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for up, down, k, padding, groups, flip_weight, flip_filter, kind in _cases():
        x = torch.randn([2, 4, 9, 8], generator=gen, dtype=torch.float64)
        w = torch.randn([6, 4 // groups, k, k + (k == 4)], generator=gen, dtype=torch.float64)
        f = {None: None, 'stylegan': U.setup_filter([1, 3, 3, 1]).double(),
             'asym': torch.randn([3, 4], generator=gen, dtype=torch.float64)}[kind]
        args = (x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        try:
            expected = C._conv2d_resample_general(*args)
        except (ValueError, RuntimeError):
            continue  # empty output for this size
        actual = C.conv2d_resample(*args)
        torch.testing.assert_close(actual, expected, msg=lambda m: f'{args[3:]} {kind}: {m}')
        checked += 1
    assert checked > 500


@pytest.mark.parametrize('up,down,k,uses', [(2, 1, 3, 'conv_transpose2d'), (1, 2, 3, 'strided'),
                                            (2, 1, 1, 'pointwise_up'), (1, 2, 1, 'pointwise_down')])
def test_fast_paths_are_taken(monkeypatch, up, down, k, uses):
    """Each resampling mode takes its fast path (spied on through torch.nn.functional) and leaves x alone."""
    calls = []
    for name in ('conv2d', 'conv_transpose2d'):
        original = getattr(C.F, name)
        spy = lambda x, w, *a, _o=original, _n=name, **kw: calls.append((_n, kw)) or _o(x, w, *a, **kw)
        monkeypatch.setattr(C.F, name, spy)
    x, w = torch.randn([1, 4, 8, 8]), torch.randn([4, 4, k, k])
    before = x.clone()
    C.conv2d_resample(x, w, f=U.setup_filter([1, 3, 3, 1]), up=up, down=down, padding=k // 2)
    weight_calls = [(n, kw) for n, kw in calls if kw.get('groups') == 1]   # the depthwise filter convs have groups=4
    expected = {'conv_transpose2d': [('conv_transpose2d', {'stride': 2, 'groups': 1})],
                'strided': [('conv2d', {'stride': 2, 'groups': 1})],
                'pointwise_up': [('conv2d', {'groups': 1})], 'pointwise_down': [('conv2d', {'groups': 1})]}[uses]
    assert weight_calls == expected
    assert torch.equal(x, before)


def test_grouped_modulated_conv_layout():
    """The fused modulated conv layout (batch folded into groups) equals per-sample convs."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn([3, 4, 8, 8], generator=gen, dtype=torch.float64)
    w = torch.randn([3, 5, 4, 3, 3], generator=gen, dtype=torch.float64)
    f = U.setup_filter([1, 3, 3, 1]).double()
    for up, down in [(1, 1), (2, 1), (1, 2)]:
        fused = C.conv2d_resample(x.reshape(1, 12, 8, 8), w.reshape(15, 4, 3, 3), f, up, down, 1, groups=3)
        single = torch.cat([C.conv2d_resample(x[i:i + 1], w[i], f, up, down, 1) for i in range(3)], dim=1)
        torch.testing.assert_close(fused, single)


@pytest.mark.parametrize('up,down', [(2, 1), (1, 2)])
def test_second_order_gradients(up, down):
    """gradcheck and gradgradcheck w.r.t. x and w through the up=2 and down=2 fast paths."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn([1, 2, 5, 5], generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn([2, 2, 3, 3], generator=gen, dtype=torch.float64, requires_grad=True)
    f = U.setup_filter([1, 3, 3, 1]).double()
    fn = lambda x, w: C.conv2d_resample(x, w, f, up=up, down=down, padding=1)
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


BAD_CALLS = [
    ('x', lambda: C.conv2d_resample(torch.zeros([4, 8, 8]), torch.zeros([4, 4, 3, 3]))),
    ('w', lambda: C.conv2d_resample(torch.zeros([1, 4, 8, 8]), torch.zeros([4, 4, 3, 3], dtype=torch.float64))),
    ('groups', lambda: C.conv2d_resample(torch.zeros([1, 4, 8, 8]), torch.zeros([4, 4, 3, 3]), groups=2)),
    ('up/down', lambda: C.conv2d_resample(torch.zeros([1, 4, 8, 8]), torch.zeros([4, 4, 3, 3]), up=0)),
]


@pytest.mark.parametrize('name,call', BAD_CALLS, ids=[n for n, _ in BAD_CALLS])
def test_bad_arguments_name_the_argument(name, call):
    """Invalid arguments raise ValueError starting with the argument's name."""
    with pytest.raises(ValueError, match=f'^{name}:'):
        call()


@pytest.mark.parametrize('padding, flip_weight', [(1, True), ([1, 2, 0, 3], False)])
def test_upsampling_without_autograd_runs_channels_last(monkeypatch, padding, flip_weight):
    """float32 on the CPU without autograd: the transposed convolution gets a channels-last input and the result
    (NCHW, contiguous) equals the float64 general path; with autograd the NCHW form runs."""
    if not C.fir_filter_cpu.applies(torch.zeros(1)):
        pytest.skip('fir_filter plugin unavailable')
    gen = torch.Generator().manual_seed(7)
    x, w = torch.randn([2, 16, 9, 11], generator=gen), torch.randn([8, 16, 3, 3], generator=gen)
    f = U.setup_filter([1, 3, 3, 1])
    layouts = []
    transpose = torch.nn.functional.conv_transpose2d
    monkeypatch.setattr(C.F, 'conv_transpose2d', lambda t, *a, **k: layouts.append(
        t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()) or transpose(t, *a, **k))
    with torch.no_grad():
        out = C.conv2d_resample(x, w, f, up=2, padding=padding, flip_weight=flip_weight)
    expected = C._conv2d_resample_general(x.double(), w.double(), f.double(), 2, 1, padding, 1, flip_weight, False)
    assert layouts == [True] and out.is_contiguous()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)
    w.requires_grad_()
    grad_out = C.conv2d_resample(x, w, f, up=2, padding=padding, flip_weight=flip_weight)
    assert layouts == [True, False]
    torch.testing.assert_close(grad_out.detach(), out, rtol=1e-5, atol=1e-5)
    assert not C.upsampling_prefers_channels_last(x.double(), w.double(), 2, 1)   # float32 only
    assert not C.upsampling_prefers_channels_last(x, w.detach()[:, :, :1, :1], 2, 1)   # 1x1: no transposed conv
