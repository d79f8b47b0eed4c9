# Sourced by demo.sh and learning_check.sh (after env.sh): what their tiny-cpu runs on the CPU share.
#   cache_root                      $PORTRAIT3D_CACHE_DIR, default ~/.cache/portrait3d
#   default_procs                   training processes: the CPU count, at most 2
#   ensure_synthetic_set DIR        DIR/images.zip + DIR/masks.zip (1000 synthetic 64x64 portraits, a
#                                   stand-in for 360PHQ made by our own code), written once
#   newest_run OUTDIR               the newest run dir NNNNN-* under OUTDIR
#   newest_snapshot RUN             its newest network-snapshot-*.pkl
cache_root=${PORTRAIT3D_CACHE_DIR:-$HOME/.cache/portrait3d}

default_procs() {
    python -c 'import os; print(min(2, len(os.sched_getaffinity(0))))'
}

ensure_synthetic_set() {
    if [ ! -f "$1/images.zip" ] || [ ! -f "$1/masks.zip" ]; then
        echo "== writing the synthetic 360-degree portrait set (stand-in data) to $1"
        python "$repo/dataset_tool.py" synthetic --outdir "$1" --count 1000 --resolution 64 --force
    fi
}

newest_run() {
    ls -d "$1"/[0-9][0-9][0-9][0-9][0-9]-* | sort | tail -n 1
}

newest_snapshot() {
    ls "$1"/network-snapshot-*.pkl | sort | tail -n 1
}
