"""Database engine shared by the services: SQLAlchemy 2 over psycopg 3, pgvector types."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine whose connections understand ``vector`` values (numpy arrays in and out)."""
    engine = create_engine(url, pool_size=pool_size, max_overflow=5, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _register_vector(dbapi_connection: Any, _record: Any) -> None:
        from pgvector.psycopg import register_vector

        try:
            register_vector(dbapi_connection)
        except Exception:  # noqa: BLE001 - before migrations the type does not exist yet
            dbapi_connection.rollback()

    return engine


def vector_array(value: object) -> np.ndarray:
    """A ``vector`` value as float32: pgvector gives ``Vector`` objects (or numpy arrays,
    depending on its version)."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)
