"""Entry point: ``python -m services.ingest`` runs one ingest worker."""

from services.common.worker import run_worker
from services.ingest.pii_index import forbid_heavy_imports

if __name__ == "__main__":
    forbid_heavy_imports()  # the PII detector's spaCy pipeline needs neither torch nor transformers
    run_worker("services.ingest.app", "ingest")
