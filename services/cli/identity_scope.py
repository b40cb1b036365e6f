"""Which Kafka identity an operator command acts as."""

from __future__ import annotations

import os

from services.common.config import get_settings
from services.stack import local_secrets


def as_local_admin() -> None:
    """Tools that read every topic (doctor) or re-drive dead letters into the pipeline
    (replay) act as the local stack's admin when this machine holds its credential. An
    explicit CUSTOMLLM_KAFKA_USERNAME always wins (production runs them with its own)."""
    settings = get_settings()
    if settings.kafka_username:
        return
    if local_secrets.password_path(settings.state_path, local_secrets.ADMIN).exists():
        os.environ.update({"CUSTOMLLM_KAFKA_USERNAME": local_secrets.ADMIN,
                           "CUSTOMLLM_KAFKA_SASL_MECHANISM": local_secrets.ADMIN_MECHANISM})
        get_settings.cache_clear()
