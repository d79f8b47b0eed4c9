"""What one metric evaluation works on: the networks, the data, the process group and the sampling choices."""
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch

from metrics.detector import FeatureDetector, load_detector
from metrics.generation import GenerationOptions
from metrics.real_data import MetricInputError, open_dataset
from torch_utils.distributed import DistContext

GENERATOR_API = ('z_dim', 'img_resolution', 'neural_rendering_resolution', 'mapping', 'synthesis', 'get_pose_params')
DISCRIMINATOR_API = ('img_resolution', 'predict_pose')
DEFAULT_BATCH_SIZE = 8
SEED = 0


def check_network(module, api, role: str) -> None:
    """MetricInputError naming `role` unless `module` has every attribute of `api`."""
    missing = [name for name in api if not hasattr(module, name)]
    if module is None or missing:
        what = 'missing' if module is None else f'a {type(module).__name__} without {", ".join(missing)}'
        raise MetricInputError(f'{role}: expected a portrait {"generator" if role == "G" else "discriminator"}, '
                               f'got {what}')


@dataclass
class MetricOptions:
    """Inputs of a metric (see metric_main.calc_metric); `detector` is a path/URL, a FeatureDetector or None."""
    G: torch.nn.Module
    D: Optional[torch.nn.Module]
    dataset_kwargs: Mapping[str, Any]
    ctx: DistContext
    pose_sample_mode: str = 'G_predict'
    identical_c_p: bool = True
    detector: Union[None, str, FeatureDetector] = None
    num_gen: Optional[int] = None
    pose_predict_kwargs: Optional[Mapping[str, Any]] = None
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self):
        check_network(self.G, GENERATOR_API, 'G')
        if self.num_gen is not None and self.num_gen < 2:
            raise MetricInputError(f'num_gen: expected at least 2 generated images, got {self.num_gen}')
        if self.batch_size < 1:
            raise MetricInputError(f'batch_size: expected >= 1, got {self.batch_size}')
        self.generation = GenerationOptions(
            pose_sample_mode=self.pose_sample_mode, identical_c_p=bool(self.identical_c_p),
            blur_sigma=float(self.pose_predict_kwargs_value('blur_sigma', 0.0)),
            neural_rendering_resolution=int(self.pose_predict_kwargs_value(
                'neural_rendering_resolution', self.G.neural_rendering_resolution)),
            batch_size=self.batch_size, seed=SEED)

    def pose_predict_kwargs_value(self, key: str, default):
        """pose_predict_kwargs[key] (the snapshot's D input preparation), else `default`."""
        value = (self.pose_predict_kwargs or {}).get(key)
        return default if value is None else value

    @property
    def device(self) -> torch.device:
        """Where G and D run (ctx.device)."""
        return self.ctx.device

    def require_D(self, why: str) -> torch.nn.Module:
        """D, checked to be a pose-predicting discriminator; MetricInputError saying `why` it is needed."""
        check_network(self.D, DISCRIMINATOR_API, f'D (needed by {why})')
        return self.D

    def generation_D(self) -> Optional[torch.nn.Module]:
        """D if fakes need it (pose_sample_mode 'D_predict'), else None."""
        return self.require_D("pose_sample_mode 'D_predict'") if self.pose_sample_mode == 'D_predict' else None

    def feature_detector(self) -> FeatureDetector:
        """The FID/KID detector on this device (loaded once)."""
        if not isinstance(self.detector, FeatureDetector):
            self.detector = load_detector(self.detector, self.device)
        return self.detector

    def open_dataset(self, xflip: bool):
        """The real set at G's resolution with x-flip `xflip` (real_data.open_dataset)."""
        return open_dataset(self.dataset_kwargs, self.G.img_resolution, xflip)

    def generated_count(self, default: int) -> int:
        """num_gen if given, else the metric's `default`."""
        return self.num_gen if self.num_gen is not None else default
