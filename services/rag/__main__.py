"""Entry point: ``python -m services.rag`` runs one rag worker."""

from services.common.worker import run_worker

if __name__ == "__main__":
    run_worker("services.rag.app", "rag")
