#!/usr/bin/env bash
# The test command: installs what is missing, then runs lint and the whole suite. The tests
# start their own Kafka broker and Postgres (on ports 29092/29093/25432) and stop them after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the import contracts in pyproject.toml
.venv/bin/python -m pytest --durations=30 "$@"  # the slowest tests: what keeps the suite short
