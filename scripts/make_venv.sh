#!/usr/bin/env bash
# The project's virtual environment from requirements.txt (pinned), plus the
# project itself in editable mode (the `transcode-flow` console script).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e . --config-settings editable_mode=compat
touch .venv/.installed
