#!/usr/bin/env bash
# The demo on the embedded default stack: starts Kafka, Postgres and the workers, publishes the
# example documents, shows incremental re-indexing after an edit, then a delete.
# Stop everything afterwards with: .venv/bin/customllm down
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
CLI=.venv/bin/customllm
step() { printf '\n\033[1;34m### %s\033[0m\n' "$*"; }

step "Start the local stack (Kafka KRaft + Postgres/pgvector + ingest + embedder workers)"
$CLI up
$CLI status

wait_indexed() {  # wait until `customllm docs` shows no pending document
  for _ in $(seq 1 120); do
    if .venv/bin/python - "$@" <<'PY'
import sys
from sqlalchemy import text
from services.common.config import get_settings
from services.common.db import make_engine
want = {a.split("=")[0]: int(a.split("=")[1]) for a in sys.argv[1:]}
with make_engine(get_settings().sqlalchemy_url, pool_size=1).connect() as conn:
    rows = dict(conn.execute(text("SELECT doc_id, last_version FROM ingestion_status "
                                  "WHERE state IN ('indexed','deleted')")).all())
sys.exit(0 if all(rows.get(k, -1) >= v for k, v in want.items()) else 1)
PY
    then return 0; fi
    sleep 1
  done
  echo "documents were not indexed in time; see .customllm/logs/" >&2; exit 1
}

step "Publish examples/docs (governance from .customllm.yaml files and sidecars)"
$CLI publish examples/docs --version 1
wait_indexed handbook/onboarding.md=1 handbook/expenses.html=1 policies/incident-response.txt=1
$CLI docs

step "Edit one paragraph and republish: only the changed chunk is embedded again"
work=$(mktemp -d); cp -r examples/docs/. "$work/"
sed -i 's/ninety days/sixty days/' "$work/handbook/onboarding.md"
$CLI publish "$work" --version 2
wait_indexed handbook/onboarding.md=2 handbook/expenses.html=2
$CLI docs

step "Delete a document"
$CLI publish --delete handbook/expenses.html --version 3
wait_indexed handbook/expenses.html=3
$CLI docs --include-deleted
rm -rf "$work"

step "Done. The stack keeps running: '$CLI status' shows it, '$CLI down' stops it."
