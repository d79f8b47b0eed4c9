"""torch_utils/ops/upfirdn2d.py and upfirdn2d_fast.py: the reference against scipy, every
implementation against the reference, resampling helpers, gradients and argument errors."""
import itertools
import random

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d as U
from torch_utils.ops import upfirdn2d_fast

IMPLS = ['fast'] + (['cuda'] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures('one_thread')


def _pick(full: np.ndarray, axis: int, count: int, down: int, start: int) -> np.ndarray:
    """full[start + o * down] for o < count along `axis`, zero where the index falls outside `full`."""
    idx = start + down * np.arange(count)
    valid = (idx >= 0) & (idx < full.shape[axis])
    picked = np.take(full, np.clip(idx, 0, full.shape[axis] - 1), axis=axis)
    shape = [1, 1]
    shape[axis] = count
    return picked * valid.reshape(shape)


def _scipy_upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    """Independent upfirdn2d: scipy's full convolution of the zero-inserted image, then pad/crop and decimate.

    scipy.signal.upfirdn (1-D filters, rows then columns) or convolve2d (2-D filters) produce the
    full convolution of the zero-inserted input; output o of an axis is its sample
    o * down + (taps - 1) - pad0, which realises the padding and cropping.
    """
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    x, f = x.numpy(), f.numpy()
    h = f if not flip_filter else f[::-1] if f.ndim == 1 else f[::-1, ::-1]
    fh, fw = (len(f), len(f)) if f.ndim == 1 else f.shape
    n, c, height, width = x.shape
    out_h = (height * upy + py0 + py1 - fh) // downy + 1
    out_w = (width * upx + px0 + px1 - fw) // downx + 1
    out = np.zeros([n, c, out_h, out_w])
    for i, j in itertools.product(range(n), range(c)):
        if f.ndim == 1:
            full = scipy.signal.upfirdn(h, x[i, j], up=upx, axis=1)
            full = scipy.signal.upfirdn(h, full, up=upy, axis=0)
        else:
            z = np.zeros([(height - 1) * upy + 1, (width - 1) * upx + 1])
            z[::upy, ::upx] = x[i, j]
            full = scipy.signal.convolve2d(z, h, mode='full')
        full = _pick(full, 0, out_h, downy, fh - 1 - py0)
        out[i, j] = _pick(full, 1, out_w, downx, fw - 1 - px0) * gain
    return torch.from_numpy(out)


def _filter(kind: str, taps: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """'1d': separable taps; '2d': random asymmetric 2-D filter; 'rank1': outer product of two random 1-D filters."""
    if kind == '1d':
        return torch.randn([taps], generator=gen, dtype=dtype)
    if kind == '2d':
        return torch.randn([taps, taps + 1], generator=gen, dtype=dtype)
    u, v = torch.randn([taps], generator=gen, dtype=dtype), torch.randn([taps + 2], generator=gen, dtype=dtype)
    return torch.outer(u, v)


SCALINGS = [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 1), (2, 2)), ((4, 4), (1, 1)), ((1, 1), (4, 4)),
            ((2, 2), (2, 2)), ((2, 1), (1, 2)), ((4, 1), (1, 1)), ((1, 2), (3, 1)), ((2, 4), (4, 2))]
PADDINGS = [(0, 0, 0, 0), (2, 1, 2, 1), (3, 0, -1, 2), (-2, -1, 1, 4)]


def _cases():
    """(up, down, padding, filter kind, taps, flip_filter, gain): every scaling/padding with rotating filters."""
    kinds = itertools.cycle([('1d', 4), ('2d', 3), ('1d', 6), ('2d', 4), ('rank1', 2), ('1d', 1), ('1d', 3)])
    flags = itertools.cycle([(False, 1.0), (True, 2.5), (False, 0.5)])
    for (up, down), padding in itertools.product(SCALINGS, PADDINGS):
        kind, taps = next(kinds)
        flip_filter, gain = next(flags)
        yield up, down, padding, kind, taps, flip_filter, gain


CASES = list(_cases())


def _shape_ok(x_shape, f, up, down, padding) -> bool:
    """Whether the call yields a non-empty output."""
    fw, fh = (f.shape[-1], f.shape[0])
    out_w = (x_shape[3] * up[0] + padding[0] + padding[1] - fw) // down[0] + 1
    out_h = (x_shape[2] * up[1] + padding[2] + padding[3] - fh) // down[1] + 1
    return out_w >= 1 and out_h >= 1


def test_reference_matches_scipy():
    """The reference equals scipy's up/convolve/down for every scaling, padding and filter kind."""
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for up, down, padding, kind, taps, flip_filter, gain in CASES:
        x = torch.randn([2, 2, 7, 9], generator=gen, dtype=torch.float64)
        f = _filter(kind, taps, gen)
        if not _shape_ok(x.shape, f, up, down, padding):
            continue
        actual = U.upfirdn2d(x, f, up=list(up), down=list(down), padding=list(padding), flip_filter=flip_filter,
                             gain=gain, impl='ref')
        expected = _scipy_upfirdn2d(x, f, up, down, padding, flip_filter, gain)
        torch.testing.assert_close(actual, expected, msg=lambda m: f'{up} {down} {padding} {kind}: {m}')
        checked += 1
    assert checked >= len(CASES) - 4


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_implementation_matches_reference(impl, dtype):
    """Every implementation equals the reference on random inputs."""
    device = 'cuda' if impl == 'cuda' else 'cpu'
    gen = torch.Generator().manual_seed(1)
    for up, down, padding, kind, taps, flip_filter, gain in CASES:
        x = torch.randn([2, 3, 8, 11], generator=gen, dtype=dtype).to(device)
        f = _filter(kind, taps, gen, dtype=dtype).to(device)
        if not _shape_ok(x.shape, f, up, down, padding):
            continue
        args = dict(up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
        expected = U.upfirdn2d(x, f, impl='ref', **args)
        actual = U.upfirdn2d(x, f, impl=impl, **args)
        torch.testing.assert_close(actual, expected, atol=1e-5 if dtype == torch.float32 else 1e-10, rtol=1e-5,
                                   msg=lambda m: f'{args} {kind}: {m}')


def _random_case(rng: random.Random):
    """A random small call: sizes 1-6, up/down 1-4 per axis, padding -4..7, 1-D/2-D/rank-1 filters, flips."""
    f_kind = rng.choice(['1d', '2d', 'rank1'])
    taps = rng.randint(1, 6)
    shape_f = {'1d': [taps], '2d': [taps, rng.randint(1, 5)], 'rank1': None}[f_kind]
    if shape_f is None:
        f = torch.outer(torch.randn([taps], dtype=torch.float64), torch.randn([rng.randint(1, 5)], dtype=torch.float64))
    else:
        f = torch.randn(shape_f, dtype=torch.float64)
    args = dict(up=(rng.randint(1, 4), rng.randint(1, 4)), down=(rng.randint(1, 4), rng.randint(1, 4)),
                padding=tuple(rng.randint(-4, 7) for _ in range(4)), flip_filter=rng.random() < 0.5,
                gain=rng.choice([1.0, 0.3, 2.0]))
    return [1, 2, rng.randint(1, 6), rng.randint(1, 6)], f.abs() if rng.random() < 0.3 else f, args


def test_fast_matches_reference_on_random_calls():
    """400 random calls (tiny inputs, heavy padding and cropping, every resampling pair) agree in float64."""
    rng, checked = random.Random(0), 0
    torch.manual_seed(0)
    while checked < 400:
        shape, f, args = _random_case(rng)
        if not _shape_ok(shape, f, args['up'], args['down'], args['padding']):
            continue
        x = torch.randn(shape, dtype=torch.float64)
        torch.testing.assert_close(U.upfirdn2d(x, f, impl='fast', **args), U.upfirdn2d(x, f, impl='ref', **args),
                                   msg=lambda m: f'{shape} {list(f.shape)} {args}: {m}')
        checked += 1


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_fast_low_precision(dtype):
    """The fast path runs in half precision, within half-precision rounding of a float64 reference."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn([2, 4, 16, 16], generator=gen)
    f = U.setup_filter([1, 3, 3, 1])
    for op in (U.upsample2d, U.downsample2d, U.filter2d):
        actual = op(x.to(dtype), f, impl='fast')
        expected = op(x.double(), f.double(), impl='ref')
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.double(), expected, atol=0.05, rtol=0.02)


def test_stylegan_shapes_fast_within_1e5():
    """The benchmarked StyleGAN2 calls agree with the reference within 1e-5 in float32."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([2, 16, 32, 32], generator=gen)
    f = U.setup_filter([1, 3, 3, 1])
    for op in (U.upsample2d, U.downsample2d, U.filter2d):
        torch.testing.assert_close(op(x, f, impl='fast'), op(x, f, impl='ref'), atol=1e-5, rtol=0)


def test_rank1_filters_run_separably():
    """2-D outer-product filters are split into two 1-D passes; general 2-D filters are not."""
    f = U.setup_filter([1, 3, 3, 1])
    spec = upfirdn2d_fast.make_spec(f, torch.float32, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
    assert spec.taps_2d is None and len(spec.taps_x) == 4 and len(spec.taps_y) == 4
    f = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    assert upfirdn2d_fast.make_spec(f, torch.float32, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0).taps_2d is not None


GRAD_CONFIGS = [
    dict(up=2, padding=[2, 1, 2, 1], f=[1.0, 3.0, 3.0, 1.0]),
    dict(down=2, padding=1, f=[1.0, 3.0, 3.0, 1.0]),
    dict(up=(2, 1), down=(1, 2), padding=[1, 0, 2, 1], f='2d'),
    dict(padding=[-1, 2, 1, -2], f='2d', flip_filter=True, gain=1.5),
]


@pytest.mark.parametrize('impl', ['ref', 'fast'])
@pytest.mark.parametrize('config', range(len(GRAD_CONFIGS)))
def test_gradients(impl, config):
    """First and second derivatives w.r.t. x (float64 gradcheck/gradgradcheck)."""
    kwargs = dict(GRAD_CONFIGS[config])
    gen = torch.Generator().manual_seed(4 + config)
    f = kwargs.pop('f')
    f = torch.randn([3, 4], generator=gen, dtype=torch.float64) if f == '2d' else torch.tensor(f, dtype=torch.float64)
    x = torch.randn([1, 1, 5, 6], generator=gen, dtype=torch.float64, requires_grad=True)
    fn = lambda x: U.upfirdn2d(x, f, impl=impl, **kwargs)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_auto_policy():
    """'auto' takes the fast path on the CPU except for tiny upsampling and small plain filtering,
    and the reference when f needs a gradient."""
    x, f = torch.randn([1, 8, 32, 32]), U.setup_filter([1, 3, 3, 1])
    assert U._auto_impl(x, f, (2, 2), (1, 1)) == 'fast'
    assert U._auto_impl(x, f, (1, 1), (2, 2)) == 'fast'
    assert U._auto_impl(x, f, (1, 1), (1, 1)) == 'ref'
    assert U._auto_impl(torch.randn([4, 128, 32, 32]), f, (1, 1), (1, 1)) == 'fast'
    assert U._auto_impl(x[:, :, :8, :8], f, (2, 2), (1, 1)) == 'ref'
    assert U._auto_impl(x, f.clone().requires_grad_(), (2, 2), (1, 1)) == 'ref'
    f = f.clone().requires_grad_()
    U.upsample2d(x, f).sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="^f:"):
        U.upsample2d(x, f, impl='fast')


def test_helper_sizes_and_constant_images():
    """filter2d keeps the size, upsample2d/downsample2d scale it; a normalised filter keeps
    constants in the interior."""
    x = torch.full([1, 2, 12, 16], 3.0, dtype=torch.float64)
    for taps in ([1, 3, 3, 1], [1, 2, 1], [1, 4, 6, 4, 1], [1] * 8):
        f = U.setup_filter(taps).double()
        for impl in ['ref', 'fast']:
            y = U.filter2d(x, f, impl=impl)
            assert y.shape == x.shape
            torch.testing.assert_close(y[:, :, 4:-4, 4:-4], x[:, :, 4:-4, 4:-4])
            y = U.upsample2d(x, f, impl=impl)
            assert y.shape == (1, 2, 24, 32)
            torch.testing.assert_close(y[:, :, 6:-6, 6:-6], torch.full_like(y[:, :, 6:-6, 6:-6], 3.0))
            y = U.upsample2d(x, f, up=(4, 2), impl=impl)
            assert y.shape == (1, 2, 24, 64)
            y = U.downsample2d(x, f, impl=impl)
            assert y.shape == (1, 2, 6, 8)
            torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 3.0))
            assert U.downsample2d(x, f, down=(4, 2), impl=impl).shape == (1, 2, 6, 4)


def test_upsample_then_downsample_of_a_box_filter_is_identity():
    """With the 2-tap box filter, upsample2d then downsample2d returns the input exactly."""
    x = torch.randn([1, 3, 6, 5], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    f = U.setup_filter([1, 1]).double()
    for impl in ['ref', 'fast']:
        torch.testing.assert_close(U.downsample2d(U.upsample2d(x, f, impl=impl), f, impl=impl), x)


def test_setup_filter():
    """Normalisation, outer product for short filters, separable for long ones, gain and flip."""
    f = U.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    assert U.setup_filter([1] * 8).shape == (8,)
    torch.testing.assert_close(U.setup_filter([1, 2], gain=4).sum(), torch.tensor(4.0))
    flipped = U.setup_filter([1, 2], normalize=False, flip_filter=True, separable=True)
    torch.testing.assert_close(flipped, torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError, match='^separable:'):
        U.setup_filter([[1, 2], [3, 4]], separable=True)


BAD_CALLS = [
    ('x', lambda f: U.upfirdn2d(torch.zeros([2, 3, 4]), f)),
    ('x', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4], dtype=torch.int64), f)),
    ('f', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4]), torch.ones([2, 2, 2]))),
    ('f', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4]), torch.ones([2, 2], dtype=torch.int32))),
    ('up', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4]), f, up=0)),
    ('up', lambda f: U.upsample2d(torch.zeros([1, 1, 4, 4]), f, up=(2, 2, 2))),
    ('down', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4]), f, down=1.5)),
    ('padding', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4]), f, padding=[1, 2, 3])),
    ('padding', lambda f: U.upfirdn2d(torch.zeros([1, 1, 4, 4]), f, padding=-3)),
]


@pytest.mark.parametrize('name,call', BAD_CALLS, ids=[f'{n}-{i}' for i, (n, _) in enumerate(BAD_CALLS)])
def test_bad_arguments_name_the_argument(name, call):
    """Invalid arguments raise ValueError starting with the argument's name."""
    with pytest.raises(ValueError, match=f'^{name}:'):
        call(U.setup_filter([1, 3, 3, 1]))


def test_impl_errors():
    """impl='cuda' on a CPU tensor and unknown impls are one-line ValueErrors."""
    x, f = torch.zeros([1, 1, 4, 4]), U.setup_filter([1, 2, 1])
    with pytest.raises(ValueError, match="impl='cuda' needs a CUDA tensor") as info:
        U.upfirdn2d(x, f, impl='cuda')
    assert '\n' not in str(info.value)
    with pytest.raises(ValueError, match='auto, ref, fast, cuda'):
        U.upfirdn2d(x, f, impl='triton')
