#!/usr/bin/env bash
# Install fraudlens into a virtualenv: scripts/install.sh [VENV_DIR] [EXTRAS]
# PyTorch is pinned to the CPU build first, so no other requirement can pull a CUDA build.
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-all}"
cd "$(dirname "$0")/.."
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet -c scripts/constraints.txt -e ".[$extras]"
echo "installed fraudlens[$extras] into $venv"
