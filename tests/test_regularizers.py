"""Regularisers and pose measures of the loss (training/regularizers.py, system.md §4, §5) on analytic cases."""
import math

import pytest
import torch

from training.regularizers import (MONOTONIC_POINTS, MONOTONIC_STEP, MONOTONIC_WEIGHT, check_reg_type,
                                   density_regularizer, pose_error_deg, pose_loss)


def test_pose_loss_and_pose_error_on_known_tensors():
    pose = torch.tensor([[0.1, -0.2, 0.3, 0.0, 0.5, -0.5], [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 1.0, -1.0, -1.0, 0.0]])
    torch.testing.assert_close(pose_loss(pose, target, 0.5), torch.tensor([0.5 * (0.01 + 0.04 + 0.09 + 0.5),
                                                                           0.5 * (0.25 + 1.0)]))
    err = pose_error_deg(pose, target)
    torch.testing.assert_close(err['neck'], torch.tensor([0.2, 0.5 / 3]) * (180 / math.pi))
    torch.testing.assert_close(err['head'], torch.tensor([1.0 / 3, 1.0 / 3]) * (180 / math.pi))


def test_l1_density_regulariser_on_a_linear_field():
    # sigma = k x: |sigma(x) - sigma(x + e)| = k |e_x|, e ~ N(0, s^2) -> mean k s sqrt(2 / pi).
    torch.manual_seed(0)
    k, s = 3.0, 0.01
    terms = density_regularizer(lambda x: k * x[..., :1], 8, 'l1', 0.25, s, 1.0, torch.device('cpu'))
    assert set(terms) == {'tv'}
    assert float(terms['tv']) == pytest.approx(0.25 * k * s * math.sqrt(2 / math.pi), rel=0.05)


@pytest.mark.parametrize('reg_type', ['monotonic-fixed', 'monotonic-detach'])
def test_monotonic_density_regulariser_on_a_linear_field(reg_type):
    # sigma = k z: sigma(front) - sigma(behind) = k * step exactly, so the term is WEIGHT * k * step.
    k, box = torch.tensor(2.0, requires_grad=True), 1.0
    seen = []

    def sigma_fn(x):
        seen.append(x)
        return k * x[..., 2:3]
    terms = density_regularizer(sigma_fn, 2, reg_type, 0.25, 0.004, box, torch.device('cpu'))
    assert float(terms['monotonic'].detach()) == pytest.approx(MONOTONIC_WEIGHT * 2.0 * MONOTONIC_STEP * box, rel=1e-4)
    (grad,) = torch.autograd.grad(terms['monotonic'], k)
    behind_z = seen[0][:, -MONOTONIC_POINTS:, 2]
    expected = MONOTONIC_WEIGHT * (MONOTONIC_STEP * box if reg_type == 'monotonic-fixed' else -behind_z.mean())
    assert float(grad) == pytest.approx(float(expected), rel=1e-4)
    k_neg = -1.0    # density decreasing towards -z: no monotonic penalty
    zero = density_regularizer(lambda x: k_neg * x[..., 2:3], 2, reg_type, 0.25, 0.004, box, torch.device('cpu'))
    assert float(zero['monotonic']) == 0.0


@pytest.mark.parametrize('reg_type', ['l1-alt', 'total-variation', 'TV'])
def test_unimplemented_reg_types_are_rejected(reg_type):
    with pytest.raises(ValueError, match=f'--reg-type={reg_type}'):
        check_reg_type(reg_type)
