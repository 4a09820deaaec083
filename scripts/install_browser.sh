#!/usr/bin/env bash
# Install what the web UI's browser test and screenshot script need (idempotent):
# Debian's chromium (system package) and the playwright Python package (no browser download).
# Usage: bash scripts/install_browser.sh [VENV]   (default VENV: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y -q chromium >/dev/null 2>&1; then
        $SUDO apt-get update -q
        $SUDO apt-get install -y -q chromium
    fi
fi

if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q "playwright>=1.40"
fi
echo "browser: $(command -v chromium || echo /usr/bin/chromium) ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("playwright", m.version("playwright"))'))"
