"""The models the embedder writes: the index's active model first, then any model a shadow
re-index is building (``index_models``), re-read for every batch so ``customllm index reindex``
and ``switch`` take effect without a restart. Encoders load on first use from their wheels."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from services.common.embeddings import Embedder, canonical_model_id, embedder_for
from services.common.index_registry import written_model_paths

logger = logging.getLogger(__name__)


class WrittenModels:
    def __init__(self, engine: Engine, configured: Embedder) -> None:
        self._engine = engine
        self.configured = configured
        self._models: dict[str, Embedder] = {canonical_model_id(configured.model_id): configured}
        self._lock = threading.Lock()

    def current(self) -> list[str]:
        """Active model first; the configured model when the registry is empty. A shadow model
        whose encoder cannot be loaded here is left out (logged): the re-index fills its gaps,
        and ingestion for the active model never stops for it."""
        with self._engine.connect() as conn:
            found = written_model_paths(conn)
        if not found:
            return [self.configured.model_id]
        usable = []
        for position, (model_id, path) in enumerate(found.items()):
            try:
                self.encoder(model_id, path).warm_up()
                usable.append(model_id)
            except Exception as exc:  # noqa: BLE001 - a shadow model must not stop ingestion
                if position == 0:
                    raise
                logger.warning("shadow model %s not loadable here, skipped: %s", model_id, exc)
        return usable

    def encoder(self, model_id: str, path: str | None = None) -> Embedder:
        model_id = canonical_model_id(model_id)
        with self._lock:
            found = self._models.get(model_id)
            if found is None:
                found = self._models[model_id] = embedder_for(model_id, path,
                                                              dim=self.configured.dim)
        return found
