"""Comparing lists of outputs and gradients, where a gradient may be None (no path to the input)."""
from typing import Optional, Sequence

import torch


def assert_results_close(actual: Sequence[Optional[torch.Tensor]], expected: Sequence[Optional[torch.Tensor]],
                         rtol: float, atol: float) -> None:
    """Each actual[i] is close to expected[i]; where expected[i] is None, actual[i] is None or all zeros."""
    assert len(actual) == len(expected), f'{len(actual)} results against {len(expected)}'
    for index, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None or not a.any(), f'output/grad {index} should be zero'
        else:
            torch.testing.assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m: f'output/grad {index}: {m}')
