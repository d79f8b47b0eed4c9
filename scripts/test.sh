#!/usr/bin/env bash
# Set up a virtual environment from nothing (idempotent) and run the whole test suite.
#   TORCH_SPEC  pip requirement for torch (default: the CPU build torch==2.13.0; CUDA users
#               set e.g. TORCH_SPEC='torch' with their own index URL in PIP_INDEX_URL)
#   VENV        where the environment lives (default: <repo>/.venv)
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k upfirdn2d`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/env.sh"
cd "$repo"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests" >&2
fi
exit "$status"
