"""What the guardrails service takes from the shared settings."""

SERVICE_NAME = "guardrails"
APP_ID = "customllm-guardrails"
MAX_REQUEST_BYTES = 1_000_000
MAX_DRAFT_BYTES = 16_000_000
