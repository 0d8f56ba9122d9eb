#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. Extra arguments go to pytest.
# Tests that need PostgreSQL, Docker or Slurm skip unless scripts/services.sh has started them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
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
