"""Regularisers and pose measures of the training loss (system.md §4.1, §4.2, §5).

R1 on D's three real inputs, the density regularisers on G's canonical field, the pose-parameter
regulariser Lpreg (and D's pose loss), and pose errors in degrees for logging. Each is a small function of tensors so
it can be checked against an analytic case.
"""
import math
from typing import Callable, Dict, Sequence

import torch

from configs.training_options import check_reg_type
from training.networks.symmetry import POSE_DIM

DENSITY_REG_POINTS = 1000         # uniform points in [-1, 1]^3 (twice the tri-grid box, as the original)
MONOTONIC_POINTS = 2000           # front points of the monotonic term (EG3D)
MONOTONIC_WEIGHT = 10.0           # weight of the monotonic term (EG3D; not scaled by density_reg)
MONOTONIC_STEP = 1.0 / 256        # "behind" offset along -z and the TV perturbation std, x box_warp (EG3D)
JOINTS = ('neck', 'head')         # the two axis-angles of a pose [N, 6] (§2.2)


def r1_penalty(logits: torch.Tensor, inputs: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): sum_k (weights[k] / 2) * |d sum(logits) / d inputs[k]|^2 per sample -> [N].

    inputs: the real tensors D saw (requires_grad), each [N, ...]. create_graph=True so that the
    penalty's gradient reaches D's parameters; only_inputs so nothing else accumulates.
    """
    grads = torch.autograd.grad(outputs=[logits.float().sum()], inputs=list(inputs), create_graph=True,
                                only_inputs=True)
    return sum((w / 2) * g.float().square().flatten(1).sum(1) for w, g in zip(weights, grads))


def pose_loss(pose: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * |pose - target|^2 summed over the 6 pose numbers -> [N]: Lpreg (§4.1) and D's pose loss (§4.2)."""
    return weight * (pose.float() - target.float()).square().sum(1)


def pose_error_deg(pose: torch.Tensor, target: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per joint (neck, head): mean |pose - target| over its 3 axis-angle numbers, in degrees -> {joint: [N]}."""
    err = (pose.detach().float() - target.detach().float()).abs().reshape(-1, len(JOINTS), POSE_DIM // len(JOINTS))
    return {joint: err[:, j].mean(1) * (180.0 / math.pi) for j, joint in enumerate(JOINTS)}


def density_regularizer(sigma_fn: Callable[[torch.Tensor], torch.Tensor], batch: int, reg_type: str,
                        density_reg: float, p_dist: float, box_warp: float,
                        device: torch.device) -> Dict[str, torch.Tensor]:
    """Density regularisers on the canonical field (§5 "Density regularisation"); returns {term: scalar}.

    sigma_fn: canonical points [N, P, 3] -> raw density [N, P, 1] (no warp). All terms use one call.
    'tv': density_reg * mean |sigma(x) - sigma(x + e)|, x uniform in [-1, 1]^3 (DENSITY_REG_POINTS per
    sample), e ~ N(0, p_dist^2) for 'l1', N(0, (box_warp / 256)^2) for the monotonic variants (EG3D).
    'monotonic' (monotonic-*): MONOTONIC_WEIGHT * mean relu(sigma(x) - sigma(x - (0, 0, box_warp / 256)))
    over MONOTONIC_POINTS front points x; '-detach' stops the gradient through sigma(x).
    """
    check_reg_type(reg_type)
    monotonic = reg_type != 'l1'
    x = torch.rand(batch, DENSITY_REG_POINTS, 3, device=device) * 2 - 1
    std = MONOTONIC_STEP * box_warp if monotonic else p_dist
    coords = [x, x + torch.randn_like(x) * std]
    if monotonic:
        front = torch.rand(batch, MONOTONIC_POINTS, 3, device=device) * 2 - 1
        behind = front - torch.tensor([0.0, 0.0, MONOTONIC_STEP * box_warp], device=device)
        coords += [front, behind]
    sigma = sigma_fn(torch.cat(coords, dim=1)).float()
    parts = torch.split(sigma, [c.shape[1] for c in coords], dim=1)
    terms = dict(tv=(parts[0] - parts[1]).abs().mean() * density_reg)
    if monotonic:
        front_sigma = parts[2].detach() if reg_type == 'monotonic-detach' else parts[2]
        terms['monotonic'] = torch.relu(front_sigma - parts[3]).mean() * MONOTONIC_WEIGHT
    return terms
