#!/usr/bin/env bash
# Every CUDA path of ganforge in one run on one GPU: the tests marked cuda, the throughput benchmark and a
# 2.5-minute quality run, in one JSON under benchmarks/results/ (see scripts/gpu_check.py and docs/speed.md).
#
#   bash scripts/gpu_check.sh --prepare              # where a registry is reachable: fill .gpu_carry/
#   bash scripts/gpu_check.sh                        # on the GPU machine (no pip needed): at most 9 minutes
#   bash scripts/gpu_check.sh --device cpu --quick   # the same script end to end on a CPU at tiny sizes
#
# Python: $PYTHON, else this checkout's .venv, else python3 on PATH.  ganforge runs from src/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python
  elif command -v python3 >/dev/null; then PYTHON=python3
  else PYTHON=python; fi
fi
export PYTHONPATH="$PWD/src:$PWD/.gpu_carry/site${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py "$@"
