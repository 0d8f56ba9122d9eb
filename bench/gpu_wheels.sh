#!/usr/bin/env bash
# Make bench/wheels for bench/gpu_check.sh, here, with PyPI reachable: Hive's own wheel and Python 3.12 x86-64 wheels
# of its dependencies (the versions constraints.txt pins), less those a GPU machine's PyTorch image already holds
# (GPU_WHEELS_HAVE, default "numpy scipy": torch is not a dependency of Hive itself). On the GPU machine pip installs
# from them with --no-index and takes only what is missing there. The result is ~100 MB and git-ignored.
#   bash bench/gpu_wheels.sh [--python-version 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=3.12
[ "${1:-}" = "--python-version" ] && PYVER=$2
OUT=bench/wheels
HAVE=${GPU_WHEELS_HAVE:-numpy scipy}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
echo "[gpu_wheels] Hive's wheel"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$OUT" .
grep -v '^torch==' constraints.txt > "$OUT/constraints.txt"  # the GPU machine brings its own CUDA torch
echo "[gpu_wheels] dependencies for Python $PYVER (manylinux x86-64, binary only)"
"$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -c "$OUT/constraints.txt" -d "$OUT" "$(compgen -G "$OUT/hive-*.whl" | head -1)"
for name in $HAVE; do
  rm -f "$OUT/${name}"-[0-9]*.whl
done
echo "[gpu_wheels] $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT (left out: $HAVE)"
