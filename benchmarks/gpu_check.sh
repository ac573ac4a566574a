#!/usr/bin/env bash
# The GPU path in one go (at most 8 minutes on one H200): supernet training with mixed precision at 28 and
# 64 px, then a small zoo, with the library alone (no medmnist, mlflow, dvc or ray needed).
#
#   benchmarks/gpu_check.sh DATA_DIR      # DATA_DIR holds pneumoniamnist.npz (and pneumoniamnist_64.npz if
#                                         # you have it; else the 28 px images are resized to 64)
# Run from a checkout of this repo, with a python that has torch (CUDA), numpy, pandas, pyarrow, scipy,
# scikit-learn and tqdm (PYTHON=... to pick one). Paste the tables it prints, with the date, into the
# README's "GPU path" section.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DATA_DIR [extra options of python -m benchmarks.gpu_check]" >&2
  exit 2
fi
DATA="$(cd "$1" && pwd)"; shift
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "${PYTHON:-python3}" -m benchmarks.gpu_check --data "$DATA" "$@"
