"""Quality metrics of a trained portrait GAN (system.md §9): FID, KID and body-pose accuracy.

    from metrics import metric_main
    result = metric_main.calc_metric('fid50k_full', G=G_ema, D=D_ema, dataset_kwargs=..., ctx=ctx)

metric_main holds the registry; detector.py loads the Inception feature network; fid.py, kid.py and
pose_accuracy.py hold the formulas; generation.py renders the fakes; plots.py draws training curves.
The command-line entry is the top-level calc_metrics.py; docs/metrics.md describes every metric.
"""
