"""The metric registry: names -> functions, `calc_metric` for the training loop and calc_metrics.py, JSONL reports.

Names follow StyleGAN: `fid50k_full` = FID of 50k generated images against ALL real images,
`fid50k` = against at most 50k real images (a seeded subset). Real images are x-flipped for FID
and not for KID, as in the original (system.md §9). The pose metrics are new (pose_accuracy.py).
docs/metrics.md lists every metric with its sample counts.
"""
import json
import os
import time
from typing import Callable, Dict, List, Optional

from metrics import fid, kid, pose_accuracy
from metrics.image_features import generated_features, real_features
from metrics.options import MetricOptions
from metrics.real_data import MetricInputError

_metrics: Dict[str, Callable[[MetricOptions], dict]] = {}
DETECTOR_METRICS = set()          # names that need the feature detector (filled by register_metric)


def register_metric(fn: Callable[[MetricOptions], dict] = None, *, uses_detector: bool = False):
    """Decorator: add fn(opts) -> {result name: value} to the registry under fn.__name__."""
    def register(func):
        _metrics[func.__name__] = func
        if uses_detector:
            DETECTOR_METRICS.add(func.__name__)
        return func
    return register(fn) if fn is not None else register


def is_valid_metric(metric: str) -> bool:
    """True if `metric` is a registered name."""
    return metric in _metrics


def list_valid_metrics() -> List[str]:
    """Registered metric names, in registration order."""
    return list(_metrics)


def check_metric(metric: str) -> None:
    """MetricInputError (one line, listing the known names) unless `metric` is registered."""
    if not is_valid_metric(metric):
        raise MetricInputError(f'unknown metric {metric!r}; known metrics: {", ".join(list_valid_metrics())}')


def _fid(opts: MetricOptions, num_gen: int, max_real: Optional[int]) -> float:
    """FID of num_gen fakes (or opts.num_gen) against the x-flipped reals (at most max_real); NaN off rank 0."""
    dataset = opts.open_dataset(xflip=True)
    real = real_features(opts, dataset, max_real)
    fake = generated_features(opts, dataset, opts.generated_count(num_gen))
    return fid.fid_from_features(real, fake) if opts.ctx.is_main else float('nan')


def _kid(opts: MetricOptions, num_gen: int, max_real: Optional[int]) -> float:
    """KID of num_gen fakes (or opts.num_gen) against the reals without x-flip (at most max_real); NaN off rank 0."""
    dataset = opts.open_dataset(xflip=False)
    real = real_features(opts, dataset, max_real)
    fake = generated_features(opts, dataset, opts.generated_count(num_gen))
    return kid.kernel_inception_distance(real, fake) if opts.ctx.is_main else float('nan')


@register_metric(uses_detector=True)
def fid50k_full(opts):
    """FID: 50k fakes vs all reals (the paper protocol)."""
    return dict(fid50k_full=_fid(opts, 50000, None))


@register_metric(uses_detector=True)
def kid50k_full(opts):
    """KID: 50k fakes vs all reals (the paper protocol)."""
    return dict(kid50k_full=_kid(opts, 50000, None))


@register_metric(uses_detector=True)
def fid50k(opts):
    """FID: 50k fakes vs at most 50k reals."""
    return dict(fid50k=_fid(opts, 50000, 50000))


@register_metric(uses_detector=True)
def kid50k(opts):
    """KID: 50k fakes vs at most 50k reals."""
    return dict(kid50k=_kid(opts, 50000, 50000))


@register_metric(uses_detector=True)
def fid10k_full(opts):
    """FID: 10k fakes vs all reals (cheaper monitoring)."""
    return dict(fid10k_full=_fid(opts, 10000, None))


@register_metric(uses_detector=True)
def fid2k(opts):
    """FID: 2k fakes vs at most 2k reals (CPU-sized runs; biased upwards, compare only like with like)."""
    return dict(fid2k=_fid(opts, 2000, 2000))


@register_metric(uses_detector=True)
def kid2k(opts):
    """KID: 2k fakes vs at most 2k reals (CPU-sized runs; KID is unbiased, so comparable across sizes)."""
    return dict(kid2k=_kid(opts, 2000, 2000))


@register_metric
def pose_err_real(opts):
    """P_D's mean rotation-angle error (degrees) on real images against the dataset labels."""
    return pose_accuracy.pose_err_real(opts)


@register_metric
def pose_err_fake(opts):
    """P_D's mean rotation-angle error (degrees) on generated images against their rendering poses."""
    return pose_accuracy.pose_err_fake(opts)


def calc_metric(metric: str, *, G, D, dataset_kwargs, ctx, pose_sample_mode: str = 'G_predict',
                identical_c_p: bool = True, detector=None, num_gen: Optional[int] = None,
                pose_predict_kwargs=None, batch_size: int = MetricOptions.batch_size) -> dict:
    """Evaluate `metric` on every process of ctx (all must call it) and return its result dict.

    G: a portrait generator (G_ema), D: the pose-aware discriminator (D_ema; may be None for FID/KID
    in G_predict mode); dataset_kwargs: PortraitDataset arguments (the training set's); detector:
    path/URL of the TorchScript feature detector, a metrics.detector.FeatureDetector, or None
    (detector.py search order); num_gen overrides the number of generated images;
    pose_predict_kwargs: the snapshot's dict(blur_sigma, neural_rendering_resolution) for D's
    input (None: no blur, G's current neural rendering resolution).
    Returns dict(results={name: value}, metric, total_time, total_time_str, num_gpus, and the
    sampling settings). Values are NaN on ranks other than 0 for FID/KID. Raises MetricInputError,
    DetectorError or DatasetError (one-line messages) on bad input.
    """
    check_metric(metric)
    opts = MetricOptions(G=G, D=D, dataset_kwargs=dataset_kwargs, ctx=ctx, pose_sample_mode=pose_sample_mode,
                         identical_c_p=identical_c_p, detector=detector, num_gen=num_gen,
                         pose_predict_kwargs=pose_predict_kwargs, batch_size=batch_size)
    start = time.time()
    results = _metrics[metric](opts)
    total_time = time.time() - start
    return dict(results=results, metric=metric, total_time=total_time, total_time_str=f'{total_time:.1f}s',
                num_gpus=ctx.world_size, pose_sample_mode=pose_sample_mode, identical_c_p=bool(identical_c_p),
                num_gen=num_gen, detector=opts.detector.name if metric in DETECTOR_METRICS else None)


def report_metric(result: dict, run_dir: Optional[str], snapshot_pkl: Optional[str]) -> None:
    """Append `result` plus snapshot_pkl (relative to run_dir) and a timestamp as one JSON line to
    run_dir/metric-<name>.jsonl. Call it on rank 0 only. run_dir None: nothing is written."""
    if run_dir is None:
        return
    snapshot = snapshot_pkl
    if snapshot_pkl is not None and os.path.isabs(snapshot_pkl):
        snapshot = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result, snapshot_pkl=snapshot, timestamp=time.time()))
    with open(os.path.join(run_dir, f'metric-{result["metric"]}.jsonl'), 'a', encoding='utf-8') as f:
        f.write(line + '\n')
