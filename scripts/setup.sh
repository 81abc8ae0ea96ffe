#!/usr/bin/env bash
# Create .venv with turborec and its tested dependency versions (constraints.txt).
# Usage: bash scripts/setup.sh [EXTRAS]   (default extras: all)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: pip takes the CPU wheel; an unpinned torch can pull a multi-GB CUDA build
python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e ".[${extras}]"
echo "turborec installed in .venv (extras: ${extras})"
