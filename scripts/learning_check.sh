#!/usr/bin/env bash
# The learning check of docs/results.md: train tiny-cpu on the synthetic 360-degree set on the CPU for
# LC_KIMG kimg (default 60), with pose_err_real and a STAND-IN-detector FID at every snapshot, then
# write the curves and multi-view pictures (front, side, back, other side) of the last snapshot.
#
#   bash scripts/learning_check.sh          # LC_KIMG, LC_PROCS (default: CPU count, max 2), LC_NUM_GEN
#
# The FID detector is metrics/standin_detector.py (8x8 pooling + a random projection), NOT Inception:
# its "FID" only compares snapshots of this run with each other. The body model is the procedural
# stand-in for SMPL. Outputs go to $PORTRAIT3D_CACHE_DIR/learning-check (default ~/.cache/portrait3d).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/env.sh"
source "$repo/scripts/tiny_cpu_run.sh"

check="$cache_root/learning-check"
kimg=${LC_KIMG:-60}
num_gen=${LC_NUM_GEN:-1000}
procs=${LC_PROCS:-$(default_procs)}
mkdir -p "$check"
ensure_synthetic_set "$check/data"
detector="$check/standin-detector.pt"
python -m metrics.standin_detector "$detector" >/dev/null

echo "== training tiny-cpu for $kimg kimg ($procs processes); metrics pose_err_real and stand-in fid2k at every snapshot"
PORTRAIT3D_DETECTOR="$detector" python "$repo/train.py" --preset tiny-cpu --data "$check/data/images.zip" \
    --seg-data "$check/data/masks.zip" --outdir "$check/runs" --kimg "$kimg" --snap 4 --image-snap 4 \
    --metrics pose_err_real,fid2k --metrics-num-gen "$num_gen" --gpus "$procs" --device cpu
run=$(newest_run "$check/runs")
snapshot=$(newest_snapshot "$run")

echo "== curves and multi-view pictures of $snapshot"
python -m metrics.plots "$run"
python "$repo/gen_samples.py" --network "$snapshot" --seeds 0-7 --yaws 90,0,-90,180 --canonical \
    --outdir "$run/views-canonical" --device cpu
python "$repo/gen_samples.py" --network "$snapshot" --seeds 0-7 --yaws 90,0,-90,180 --posed --body-pose branch \
    --outdir "$run/views-posed" --device cpu
echo "Learning check finished: $run (metric-*.jsonl, curves-*.png, views-*/)"
