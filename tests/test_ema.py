"""training/ema.py: beta from the half-life and ramp-up, and the EMA update of parameters and buffers."""
import numpy as np
import pytest
import torch

from training import ema


def test_beta_follows_the_half_life_and_ramp_up():
    assert ema.ema_beta(32, 10**7, 10.0, 0.05) == pytest.approx(0.5 ** (32 / 10000))
    assert ema.ema_beta(32, 1000, 10.0, 0.05) == pytest.approx(0.5 ** (32 / 50))        # ramp-up: 0.05 * 1000 images
    assert ema.ema_beta(32, 1000, 10.0, None) == pytest.approx(0.5 ** (32 / 10000))
    assert ema.ema_beta(4, 0, 10.0, 0.05) == 0.0                                        # first step: a copy
    steps = 10000 // 32
    assert ema.ema_beta(32, 10**7, 10.0, None) ** steps == pytest.approx(0.5 ** (steps * 32 / 10000))


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer('count', torch.zeros(2))


def test_update_blends_parameters_and_copies_buffers():
    torch.manual_seed(0)
    net, avg = _Net(), _Net()
    net.count.fill_(7)
    old = {k: v.detach().numpy().astype(np.float64).copy() for k, v in avg.named_parameters()}
    ema.update_ema_(avg, net, 0.9)
    for name, p in net.named_parameters():
        expected = 0.9 * old[name] + 0.1 * p.detach().numpy().astype(np.float64)
        np.testing.assert_allclose(dict(avg.named_parameters())[name].detach().numpy(), expected, rtol=1e-6)
    assert torch.equal(avg.count, net.count)
    ema.update_ema_(avg, net, 0.0)
    for a, b in zip(avg.parameters(), net.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match='parameters'):
        ema.update_ema_(torch.nn.Linear(3, 2, bias=False), net, 0.5)


def test_constant_target_is_approached_with_the_half_life():
    net, avg = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
        avg.weight.fill_(0.0)
    beta = ema.ema_beta(10, 10**6, ema_kimg=0.1, ema_rampup=None)     # half-life 100 images = 10 steps
    for _ in range(10):
        ema.update_ema_(avg, net, beta)
    assert float(avg.weight.detach()) == pytest.approx(0.5, rel=1e-5)
