#!/usr/bin/env bash
# The GPU check: on a CUDA machine, in under 5 minutes, one line per check (PASS / FAIL / SKIP
# with the reason); see scripts/gpu_check.py for what each check shows.
#   bash scripts/gpu-check.sh                 # every check on the GPU
#   bash scripts/gpu-check.sh --only p-bits   # some of them
#   bash scripts/gpu-check.sh --device cpu    # the part that needs no CUDA (the tests run it)
# Uses .venv/bin/python when there is one (make setup), else python3 with rait from src/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout "${GPU_CHECK_TIMEOUT:-300}" "$PY" scripts/gpu_check.py "$@"
