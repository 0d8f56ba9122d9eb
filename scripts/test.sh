#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. Extra arguments go to pytest.
# Tests that need PostgreSQL, Docker or Slurm skip unless scripts/services.sh has started them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# headless Chromium renders `hive report`'s page in its test (the test skips without it); tests only, so
# the main job's setup does not install a browser
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing chromium (the report test's headless browser)"
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "[setup] could not install chromium; the report's browser test will skip"
fi
export LITELLM_LOCAL_MODEL_COST_MAP=True
if [ -x scripts/services.sh ] && [ -z "${HIVE_TEST_PG_URL:-}${DOCKER_HOST:-}${SLURM_CONF:-}" ]; then
  eval "$(bash scripts/services.sh env 2>/dev/null || true)"
fi
set +e
# two workers by default (most tests wait on one-thread subprocesses: git, hive, training);
# HIVE_TEST_WORKERS=0 runs everything in one process, and a -n in the arguments wins
.venv/bin/python -m pytest -ra --durations=15 -n "${HIVE_TEST_WORKERS:-2}" "$@"
code=$?
set -e
# pytest's 5 means "no tests collected": a filter that matched nothing is not a failure
if [ "$code" -eq 5 ]; then exit 0; fi
exit "$code"
