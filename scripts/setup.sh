#!/usr/bin/env bash
# Create .venv with turborec and its tested dependency versions (constraints.txt).
# Usage: bash scripts/setup.sh [--system] [EXTRAS]   (default extras: all,dev = every runtime extra + test and lint tools)
#   --system  also install what the tests use outside Python, on a Debian/Ubuntu machine: redis-server and
#             chromium with apt (as root, or through sudo), and the browser test's npm packages (npm ci in web/).
#             Without it the Redis store tests and the in-browser edge test are skipped (they say why).
set -euo pipefail
cd "$(dirname "$0")/.."
system=0
if [ "${1:-}" = "--system" ]; then
  system=1
  shift
fi
extras="${1:-all,dev}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ "$system" = 1 ]; then
  need=()
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "setup.sh --system: no apt-get here; install ${need[*]} with your package manager" >&2
      exit 2
    fi
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # onnxruntime-web and playwright-core for the browser test (pinned in web/package-lock.json)
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  echo "system packages ready: redis-server, chromium, web/node_modules"
fi

[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: pip takes the CPU wheel; an unpinned torch can pull a multi-GB CUDA build
python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e ".[${extras}]"
echo "turborec installed in .venv (extras: ${extras})"
