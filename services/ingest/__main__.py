"""Entry point: ``python -m services.ingest`` runs one ingest worker."""

from services.common.worker import run_worker

if __name__ == "__main__":
    run_worker("services.ingest.app", "ingest")
