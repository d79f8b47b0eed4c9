# Sourced by the project's scripts: create/refresh the virtual environment and set the
# process environment that heavy PyTorch work on these machines wants.
repo=${repo:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VENV=${VENV:-$repo/.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# torch first: an unpinned dependency would otherwise pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q "$TORCH_SPEC"
fi
stamp="$VENV/.portrait3d-installed"
if [ ! -f "$stamp" ] || [ "$repo/setup.py" -nt "$stamp" ]; then
    "$VENV/bin/pip" install -q -e "$repo[test]"
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
# Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine spinning
# threads made the test suite several times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# Large allocations stay mapped instead of being returned to the kernel after every op:
# about 1.7x faster PyTorch on these VMs (see docs/performance.md).
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296}
