#!/usr/bin/env bash
# Create .venv and install Hive, the playbooks' torch (the CPU wheel) and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
# bubblewrap sandboxes every run (executor.sandbox: auto); without it Hive still works, unsandboxed, and says so
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing bubblewrap (the run sandbox)"
  apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
    || echo "[setup] could not install bubblewrap; runs will not be sandboxed (executor.sandbox: auto falls back to none)"
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
echo "[setup] installing hive with extras torch,test (pinned by constraints.txt)"
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[torch,test]'
echo "[setup] ready: $(.venv/bin/hive --version 2>/dev/null || echo hive) in .venv"
