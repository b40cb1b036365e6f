"""What the guardrails service takes from the shared settings."""

from __future__ import annotations

from services.common.config import Settings
from services.guardrails.policy import PolicyStore

SERVICE_NAME = "guardrails"
APP_ID = "customllm-guardrails"
MAX_REQUEST_BYTES = 1_000_000
MAX_DRAFT_BYTES = 16_000_000
JUDGE_MAX_TOKENS = 256
JUDGE_TIMEOUT_S = 60.0


def policy_store(settings: Settings) -> PolicyStore:
    """Policies from ``CUSTOMLLM_GUARDRAILS_POLICY_DIR`` (default: the packaged ones), reloaded
    when a file changes."""
    return PolicyStore(settings.guardrails_policy_dir)
