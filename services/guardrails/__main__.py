"""Entry point: ``python -m services.guardrails`` runs one guardrails worker."""

from services.common.worker import run_worker

if __name__ == "__main__":
    run_worker("services.guardrails.app", "guardrails")
