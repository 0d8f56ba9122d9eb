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
.venv/bin/python -m pytest -ra "$@"
code=$?
set -e
# pytest's 5 means "no tests collected": a filter that matched nothing is not a failure
if [ "$code" -eq 5 ]; then exit 0; fi
exit "$code"
