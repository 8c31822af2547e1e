#!/usr/bin/env bash
# Set up ganforge on a fresh Debian/Ubuntu machine: the default dataset, a virtual environment in .venv
# with PyTorch, and ganforge itself.  Safe to run again: steps that are already done are quick.
#
#   bash scripts/setup.sh          # to train: Fashion-MNIST, .venv, PyTorch, ganforge with its metrics extra
#   bash scripts/setup.sh --test   # to run the tests as well: also Chromium (the report test) and the test extra
#
# Already have PyTorch?  Then `pip install .` (or `pip install ".[metrics]"`) in your own environment is
# all ganforge needs: no root, no system packages (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown option '$arg' (use --test to set up for the tests too)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# 1. System packages: the bundled default dataset (Fashion-MNIST, from Debian's archive); for the tests
#    also a headless Chromium for the report test.  Skipped with a note where apt-get cannot be used.
APT_PACKAGES="dataset-fashion-mnist"
EXTRAS="metrics,projected"
if [ "$TEST" = 1 ]; then
  APT_PACKAGES="$APT_PACKAGES chromium chromium-driver"
  EXTRAS="test,metrics,projected"
fi
if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" != "0" ] && [ -z "$SUDO" ]; then
      echo "setup: cannot install$missing (not root, no sudo): ganforge will download Fashion-MNIST through" \
           "torchvision instead (see the README)" >&2
    else
      $SUDO apt-get update -qq || true
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
  fi
else
  echo "setup: apt-get not found; install Fashion-MNIST yourself (see README) or let torchvision download it" >&2
fi

# 2. Python environment.
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  # PyPI's Linux build of PyTorch brings CUDA's libraries: about 5.5 GB in .venv.  Say so before pip
  # stops half way with "No space left on device".
  free_kb=$(df -Pk .venv | awk 'NR==2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt $((7 * 1024 * 1024)) ]; then
    echo "setup: only $((free_kb / 1024)) MB free for .venv, and PyTorch with its CUDA libraries needs about" \
         "7 GB while installing: free some space (or install PyTorch into an environment of your own, then" \
         "pip install \".[$EXTRAS]\")" >&2
    df -h .venv >&2
    exit 1
  fi
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
if [ "$TEST" = 1 ]; then
  echo "setup: done (.venv ready for training and the tests; run .venv/bin/python -m pytest)"
else
  echo "setup: done (.venv ready; run .venv/bin/ganforge --help; scripts/setup.sh --test adds what the tests need)"
fi
