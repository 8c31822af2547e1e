#!/usr/bin/env bash
# Set up ganforge on a fresh machine: system packages (Debian/Ubuntu), a virtual environment in .venv,
# PyTorch, and ganforge itself with its test and offline-metric extras.  Safe to run again: steps that
# are already done are quick.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# 1. System packages: the bundled default dataset (Fashion-MNIST, from Debian's archive) and, for the
#    report test, a headless Chromium.  Skipped with a note where apt-get is not available.
APT_PACKAGES="dataset-fashion-mnist chromium chromium-driver"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
else
  echo "setup: apt-get not found; install Fashion-MNIST yourself (see README) or let torchvision download it" >&2
fi

# 2. Python environment.
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
.venv/bin/python -m pip install -q -e ".[test,effnet,fid]"
echo "setup: done (.venv ready; run .venv/bin/ganforge --help)"
