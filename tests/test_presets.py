"""Network presets (configs/presets.py): plain-data kwargs, and the paper G and D at their published sizes."""
import copy

import pytest
import torch

import dnnlib
from configs.presets import PRESETS, get_preset
from torch_utils import persistence

# Parameter counts by hand (system.md §2.2, §2.4, §4.1, §4.2, §15). An equalized-lr FC layer
# in -> out has in * out weights + out biases.
PAPER_MAPPING = (31 * 512 + 512) + (1024 * 512 + 512) + (512 * 512 + 512)        # embed, fc0, fc1
PAPER_DECODER = (32 * 64 + 64) + (64 * 33 + 33)
PAPER_G_POSE = (537 * 128 + 128) + (128 * 32 + 32) + (32 * 6 + 6)
PAPER_TORGB_RAW = (512 * 32 + 32) + 3 * 32 + 3                                    # affine, 1x1 weight, bias
PAPER_D_POSE = ((8192 + 25) * 2048 + 2048) + (2048 * 512 + 512) + (512 * 128 + 128) + (128 * 32 + 32) + (32 * 6 + 6)
# Whole networks, roughly by hand: backbone about 28.8 M (nine 3x3 convs at 512 channels alone are
# 21.2 M, plus the 128^2 and 256^2 blocks, affines and 288-channel ToRGBs), background about 22.5 M
# (channel base 16384 keeps 512 channels up to 32^2), SR 8XDC about 1.6 M, plus the above (G about
# 53.8 M); D: residual backbone at 512^2 plus mapping about 31 M, plus the 17.9 M pose MLP.
PAPER_G_RANGE = (50e6, 58e6)
PAPER_D_RANGE = (45e6, 53e6)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def _is_plain(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_preset_kwargs_are_plain_data(name):
    preset = get_preset(name)
    for kwargs in (preset.G_kwargs(), preset.D_kwargs()):
        assert _is_plain(kwargs)
        assert kwargs['class_name'].startswith('training.networks.')
    rendering = preset.G_kwargs()['rendering_kwargs']
    assert rendering['depth_resolution'] == preset.depth_resolution
    assert rendering['triplane_depth'] == preset.triplane_depth


def test_unknown_preset_is_a_value_error():
    with pytest.raises(ValueError, match='preset'):
        get_preset('ffhq')


def test_bench_preset_matches_machine_md_anchor():
    bench = get_preset('bench')
    assert (bench.img_resolution, bench.neural_rendering_resolution, bench.batch_size) == (128, 32, 4)
    assert (bench.depth_resolution, bench.depth_resolution_importance) == (24, 24)
    capacity = (bench.channel_base, bench.channel_max, bench.triplane_depth, bench.backbone_resolution)
    assert capacity == (4096, 128, 1, 256)


def test_paper_preset_builds_with_published_sizes(capsys):
    torch.manual_seed(0)
    paper = get_preset('paper')
    G = dnnlib.util.construct_class_by_name(**paper.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**paper.D_kwargs())
    counts = dict(G=_count(G), D=_count(D), mapping=_count(G.mapping), decoder=_count(G.decoder),
                  pose_branch=_count(G.pose_branch), torgb=_count(G.torgb), backbone=_count(G.backbone),
                  background=_count(G.background), superresolution=_count(G.superresolution),
                  D_pose=_count(D.pose_predictor))
    with capsys.disabled():
        print('\npaper preset parameters: ' + ', '.join(f'{k} {v:,}' for k, v in counts.items()))
    assert counts['mapping'] == PAPER_MAPPING
    assert counts['decoder'] == PAPER_DECODER
    assert counts['pose_branch'] == PAPER_G_POSE
    assert counts['torgb'] == PAPER_TORGB_RAW
    assert counts['D_pose'] == PAPER_D_POSE
    assert PAPER_G_RANGE[0] < counts['G'] < PAPER_G_RANGE[1]
    assert PAPER_D_RANGE[0] < counts['D'] < PAPER_D_RANGE[1]
    assert G.num_ws == 14 and G.background.num_ws == 12
    assert G.backbone.img_channels == 3 * 32 * 3 and G.superresolution.input_resolution == 128
    assert G.neural_rendering_resolution == 64 and G.img_resolution == 512


def test_tiny_preset_rebuilds_from_its_checkpoint_dict():
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**get_preset('tiny-cpu').G_kwargs())
    data = persistence.module_to_dict(G)
    G2 = persistence.module_from_dict(copy.deepcopy(data))
    assert G2.init_kwargs == data['init_kwargs']
