#!/usr/bin/env bash
# Create .venv and install Hive, the playbooks' torch (the CPU wheel) and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
echo "[setup] installing hive with extras torch,test (pinned by constraints.txt)"
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[torch,test]'
echo "[setup] ready: $(.venv/bin/hive --version 2>/dev/null || echo hive) in .venv"
