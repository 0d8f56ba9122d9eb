#!/usr/bin/env bash
# Install the agent CLIs the command coder's tests run for real, each in its own venv under .agents/ (never Hive's).
# Usage: bash scripts/agents.sh [NAME...]   (default: mini-swe-agent aider); safe to run again; each install is
# bounded by AGENTS_INSTALL_TIMEOUT seconds (default 900). Measured here: about 3 min each (both at once, load ~5),
# 754 MB (mini-swe-agent 2.4.6) and 687 MB (aider-chat 0.86.2) on disk.
set -uo pipefail
cd "$(dirname "$0")/.."
limit=${AGENTS_INSTALL_TIMEOUT:-900}
declare -A PACKAGE=([mini-swe-agent]="mini-swe-agent==2.4.6" [aider]="aider-chat==0.86.2")
declare -A EXE=([mini-swe-agent]=mini [aider]=aider)
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(mini-swe-agent aider)
status=0
for name in "${names[@]}"; do
  venv=".agents/$name"
  if [ -x "$venv/bin/${EXE[$name]}" ]; then echo "[agents] $name: installed ($venv)"; continue; fi
  echo "[agents] installing $name (${PACKAGE[$name]}) into $venv, at most ${limit}s"
  start=$(date +%s)
  rm -rf "$venv" && python3 -m venv "$venv" \
    && timeout "$limit" "$venv/bin/pip" install -q --disable-pip-version-check "${PACKAGE[$name]}" >"$venv.log" 2>&1
  code=$?
  if [ $code -eq 0 ] && [ -x "$venv/bin/${EXE[$name]}" ]; then
    echo "[agents] $name: installed in $(( $(date +%s) - start ))s"
  else
    echo "[agents] $name: install failed (exit $code, log $venv.log); its tests will skip"; rm -rf "$venv"; status=1
  fi
done
exit $status
