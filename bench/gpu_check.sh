#!/usr/bin/env bash
# The GPU check (issue 16): on a machine with an NVIDIA GPU and no network, install Hive from the wheels beside this
# script (bench/gpu_wheels.sh makes them), then run bench/gpu_check.py: `hive gpus --json`, a short Parameter Golf
# campaign packing runs on the one GPU, the same one-at-a-time, one JSON. Without a GPU: one line saying so, exit 0.
#   bash bench/gpu_check.sh [gpu_check.py's options, e.g. --out bench/results/gpu_check.json --experiments 6]
# GPU_CHECK_PYTHON picks the Python (else .venv's if it has Hive, else one the wheels are installed into).
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
WHEELS=${GPU_CHECK_WHEELS:-bench/wheels}
has_hive() { "$1" -c 'import hive.cli, hive.driver' >/dev/null 2>&1; }

if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
  PY=$GPU_CHECK_PYTHON
elif [ -x .venv/bin/python ] && has_hive .venv/bin/python; then
  PY=.venv/bin/python
elif compgen -G "$WHEELS/hive-*.whl" >/dev/null; then
  if python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    # python3 is a virtual environment already (the GPU image's holds its CUDA torch): a venv made from it would not
    # see those packages, so Hive goes into it; pip takes from the wheels only what it lacks
    PY=python3
  else
    python3 -m venv --system-site-packages .venv-gpu-check  # sees the machine's own torch
    PY=.venv-gpu-check/bin/python
  fi
  echo "[gpu_check] installing Hive from $WHEELS into $("$PY" -c 'import sys; print(sys.prefix)') (no network)"
  "$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" "$(compgen -G "$WHEELS/hive-*.whl" | head -1)"
elif has_hive python3; then
  PY=python3
else
  echo "gpu_check: Hive is not installed here and $WHEELS holds no hive wheel (make them with bench/gpu_wheels.sh)" >&2
  exit 2
fi
exec "$PY" bench/gpu_check.py "$@"
