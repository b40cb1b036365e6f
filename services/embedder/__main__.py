"""Entry point: ``python -m services.embedder`` runs one embedder worker."""

from services.common.worker import run_worker

if __name__ == "__main__":
    run_worker("services.embedder.app", "embedder")
