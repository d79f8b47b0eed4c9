"""Validated RenderingConfig overrides (training/networks/rendering_overrides.py)."""
import dataclasses

import pytest

from configs.schema import RenderingConfig
from training.networks.rendering_overrides import FIXED_BY_WEIGHTS, RULES, override_rendering

CFG = RenderingConfig()


def test_every_field_is_either_overridable_or_fixed():
    assert set(RULES) | set(FIXED_BY_WEIGHTS) == {f.name for f in dataclasses.fields(RenderingConfig)}
    assert not set(RULES) & set(FIXED_BY_WEIGHTS)


def test_overrides_are_applied_and_converted():
    new = override_rendering(CFG, depth_resolution=96.0, ray_start=2, ray_end=3.5, box_warp=0.8, ray_chunk=4096,
                             sampler_impl='grid_sample', decoder_activation='sigmoid')
    assert new == dataclasses.replace(CFG, depth_resolution=96, ray_start=2.0, ray_end=3.5, box_warp=0.8,
                                      ray_chunk=4096, sampler_impl='grid_sample', decoder_activation='sigmoid')
    assert type(new.depth_resolution) is int and type(new.ray_start) is float
    assert override_rendering(new, ray_chunk=None).ray_chunk is None
    assert CFG == RenderingConfig()                                    # the input is left alone


def test_fixed_fields_may_only_keep_their_value():
    assert override_rendering(CFG, triplane_features=CFG.triplane_features) == CFG
    with pytest.raises(ValueError, match="^triplane_depth: fixed by the generator's weights"):
        override_rendering(CFG, triplane_depth=CFG.triplane_depth + 1)


@pytest.mark.parametrize('overrides,field', [
    (dict(depth_samples=4), 'depth_samples'),
    (dict(depth_resolution=1), 'depth_resolution'),
    (dict(depth_resolution=4.5), 'depth_resolution'),
    (dict(depth_resolution=True), 'depth_resolution'),
    (dict(depth_resolution_importance=-1), 'depth_resolution_importance'),
    (dict(ray_start=float('nan')), 'ray_start'),
    (dict(ray_start=3.4), 'ray_start'),                                 # beyond the default ray_end
    (dict(box_warp=0), 'box_warp'),
    (dict(pdf_floor=0), 'pdf_floor'),
    (dict(ray_chunk=0), 'ray_chunk'),
    (dict(sampler_impl='bogus'), 'sampler_impl'),
    (dict(decoder_activation='tanh'), 'decoder_activation'),
    (dict(empty_density='low'), 'empty_density'),
])
def test_bad_overrides_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f'^{field}:') as info:
        override_rendering(CFG, **overrides)
    assert '\n' not in str(info.value)
