"""Entry point: ``python -m services.finetune`` runs one finetune worker."""

from services.common.worker import run_worker

if __name__ == "__main__":
    run_worker("services.finetune.app", "finetune")
