"""Publishing to docs.changes as the document's source: each approved source is its own Kafka
identity (``source-<name>``), and the broker accepts docs.changes from those alone."""

from __future__ import annotations

from typing import Any

from services.common import kafka_acl, kafka_auth
from services.common.config import Settings
from services.common.exceptions import CustomLLMError
from services.common.kafka_auth import KafkaCredentials
from services.common.producer import flush, make_producer


class SourceNotApproved(CustomLLMError):
    """No Kafka identity for this document source: a steward has not approved it."""


class SourceProducers:
    """One producer per document source, each authenticated as that source's Kafka identity
    (``source-<name>``): the broker accepts docs.changes only from approved sources. A process
    given an explicit identity (CUSTOMLLM_KAFKA_USERNAME, as a source's own job in production
    would be) publishes everything as that identity."""

    def __init__(self, settings: Settings, bootstrap: str | None = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap or settings.kafka_bootstrap
        self._producers: dict[str | None, Any] = {}

    def for_source(self, source: str | None) -> Any:  # noqa: ANN401 - confluent's Producer
        key = None if self.settings.kafka_username else source
        if key not in self._producers:
            self._producers[key] = make_producer(self.bootstrap,
                                                 "customllm-publish", **self._identity(source))
        return self._producers[key]

    def _identity(self, source: str | None) -> dict[str, Any]:
        if self.settings.kafka_username:
            return {}
        if not source:
            raise SourceNotApproved("no source: pass --source or set `source:` in "
                                    ".customllm.yaml")
        name = kafka_acl.source_identity(source)
        path = kafka_auth.password_file(self.settings.state_path, name)
        if not path.exists():
            raise SourceNotApproved(f"source {source!r} is not approved; a data steward runs "
                                    f"`customllm sources approve {source}`")
        creds = KafkaCredentials(name, path.read_text().strip(), "SCRAM-SHA-512")
        return {k: v for k, v in kafka_auth.client_config(creds=creds).items()
                if k.startswith("sasl.")}

    def flush(self, errors: list[str]) -> None:
        for producer in self._producers.values():
            flush(producer, errors)
