#!/usr/bin/env bash
# Create (or refresh) the course's virtual environment and install llmcourse into it.
#
#   bash scripts/setup.sh [VENV_DIR]        default: .venv
#
# Where pip is configured with a local wheel folder (pip's find-links) that holds a
# CPU build of torch, that wheel is installed first, so the install takes minutes and
# never downloads the multi-GB CUDA packages. Elsewhere pip picks torch as usual
# (a CUDA build on Linux, which is what a GPU machine wants).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-$root/.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

local_torch_wheel() {
  # find-links folders from pip's own configuration and the environment
  local dirs
  dirs=$("${pip[@]}" config list 2>/dev/null | sed -n "s/^.*find-links='\(.*\)'$/\1/p" | tr ' ' '\n')
  dirs+=$'\n'"${PIP_FIND_LINKS:-}"
  local d
  for d in $dirs; do
    d=${d#file://}
    [ -d "$d" ] || continue
    ls "$d"/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1
  done | head -n 1
}

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  wheel=$(local_torch_wheel || true)
  if [ -n "$wheel" ]; then
    echo "[setup] installing the local CPU build of torch: $(basename "$wheel")"
    "${pip[@]}" install -q "$wheel"
  fi
fi

echo "[setup] installing llmcourse and its dependencies"
"${pip[@]}" install -q -e "$root[test]"
"$venv/bin/python" -c "import llmcourse, torch; print('[setup] llmcourse', llmcourse.__version__, '| torch', torch.__version__)"
