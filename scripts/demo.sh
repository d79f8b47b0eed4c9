#!/usr/bin/env bash
# The README demo: set up, write the synthetic 360-degree portrait set (a stand-in for 360PHQ, made by
# our own code) into the cache, train the tiny-cpu preset on the CPU for a few kimg, then write
# samples, a mesh and training-curve plots, and print where everything is.
#
#   bash scripts/demo.sh            # DEMO_KIMG (default 6) kimg, DEMO_PROCS (default: CPU count, max 2) processes
#
# Outputs go to $PORTRAIT3D_CACHE_DIR/demo (default ~/.cache/portrait3d/demo). The body model is the
# procedural stand-in for SMPL (docs/smpl.md): the demo needs no licensed file.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/env.sh"
source "$repo/scripts/tiny_cpu_run.sh"

demo="$cache_root/demo"
kimg=${DEMO_KIMG:-6}
procs=${DEMO_PROCS:-$(default_procs)}
mkdir -p "$demo"
ensure_synthetic_set "$demo/data"

echo "== training tiny-cpu for $kimg kimg on the CPU ($procs processes)"
python "$repo/train.py" --preset tiny-cpu --data "$demo/data/images.zip" --seg-data "$demo/data/masks.zip" \
    --outdir "$demo/runs" --kimg "$kimg" --snap 2 --gpus "$procs" --device cpu
run=$(newest_run "$demo/runs")
snapshot=$(newest_snapshot "$run")

echo "== samples and a mesh from $snapshot"
python "$repo/gen_samples.py" --network "$snapshot" --seeds 0-3 --outdir "$run/samples" --body-pose branch --device cpu
# A short run may not yet have a surface at the default iso-level: say so and keep the images.
python "$repo/gen_samples.py" --network "$snapshot" --seeds 0 --outdir "$run/samples" --body-pose branch --device cpu \
    --shapes --shape-res 128 --shape-format .ply \
    || echo "No mesh written (see the line above); train longer (DEMO_KIMG) for a surface at that level."
echo "== training curves"
python -m metrics.plots "$run"

echo
echo "Demo finished. Everything is in $run:"
echo "  image grids      $run/fakes*.png (reals.png: the training data)"
echo "  samples, mesh    $run/samples/"
echo "  curves           $run/curves-*.png"
echo "  network          $snapshot"
