"""Validated run-time overrides of a generator's RenderingConfig (G.set_rendering).

Sampling, bounds, chunking and sampler choice may change after construction (more samples per
ray for a final render, other near/far bounds, ...). Fields that fix the shapes or the
equalized-lr gains of G's weights may not: changing them would need another network.
"""
import dataclasses
import math
from typing import Callable, NamedTuple, Optional, Sequence

from configs.schema import RenderingConfig
from training.networks.decoder import FEATURE_ACTIVATIONS
from training.rendering.planes import SAMPLER_IMPLS

FIXED_BY_WEIGHTS = ('triplane_depth', 'triplane_features', 'decoder_hidden', 'decoder_output', 'decoder_lr_mul')


class Rule(NamedTuple):
    """What one overridable field accepts: a number kind ('int' / 'float') with a bound, or a list of choices."""
    kind: str                                   # 'int', 'float' or 'choice'
    ok: Callable = lambda value: True           # bound on the converted number
    expected: str = 'a finite number'
    choices: Sequence[str] = ()
    optional: bool = False                      # None is allowed too


RULES = {
    'depth_resolution': Rule('int', lambda n: n >= 2, 'an integer >= 2'),
    'depth_resolution_importance': Rule('int', lambda n: n >= 0, 'an integer >= 0'),
    'ray_start': Rule('float', lambda n: n >= 0, 'a finite number >= 0'),
    'ray_end': Rule('float', lambda n: n > 0, 'a finite number > 0'),
    'box_warp': Rule('float', lambda n: n > 0, 'a finite number > 0'),
    'crop': Rule('float', lambda n: n > 0, 'a finite number > 0'),
    'empty_density': Rule('float'),
    'density_bias': Rule('float'),
    'transmittance_eps': Rule('float', lambda n: n >= 0, 'a finite number >= 0'),
    'pdf_floor': Rule('float', lambda n: n > 0, 'a finite number > 0'),
    'sigmoid_margin': Rule('float', lambda n: n >= 0, 'a finite number >= 0'),
    'ray_chunk': Rule('int', lambda n: n >= 1, 'None or an integer >= 1', optional=True),
    'decoder_activation': Rule('choice', expected=f'one of {", ".join(FEATURE_ACTIVATIONS)}',
                               choices=FEATURE_ACTIVATIONS),
    'sampler_impl': Rule('choice', expected=f'one of {", ".join(SAMPLER_IMPLS)}', choices=SAMPLER_IMPLS),
}


def _convert(value, rule: Rule) -> Optional[object]:
    """value converted as `rule` asks (int, float or a choice), or None if it does not qualify."""
    if rule.kind == 'choice':
        return value if isinstance(value, str) and value in rule.choices else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if rule.kind == 'int' and not float(value).is_integer():
        return None
    number = int(value) if rule.kind == 'int' else float(value)
    return number if rule.ok(number) else None


def override_rendering(cfg: RenderingConfig, **overrides) -> RenderingConfig:
    """A copy of cfg with `overrides` applied; ValueError naming the first unknown, fixed or invalid field.

    An override of a weight-fixing field (FIXED_BY_WEIGHTS) is accepted only if it keeps the value.
    """
    fields = {f.name for f in dataclasses.fields(RenderingConfig)}
    clean = {}
    for name, value in overrides.items():
        if name not in fields:
            raise ValueError(f'{name}: not a rendering setting; known: {", ".join(sorted(fields))}')
        if name in FIXED_BY_WEIGHTS:
            if value != getattr(cfg, name):
                raise ValueError(f"{name}: fixed by the generator's weights ({getattr(cfg, name)!r}); "
                                 f'cannot be set to {value!r}')
            continue
        rule = RULES[name]
        converted = None if value is None else _convert(value, rule)
        if converted is None and not (value is None and rule.optional):
            raise ValueError(f'{name}: expected {rule.expected}, got {value!r}')
        clean[name] = converted
    new = dataclasses.replace(cfg, **clean)
    if not new.ray_start < new.ray_end:
        raise ValueError(f'ray_start: expected ray_start < ray_end, got {new.ray_start} and {new.ray_end}')
    return new
