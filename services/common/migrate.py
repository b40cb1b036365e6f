"""Run Alembic migrations as their own step (never inside a service's startup)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from services.common.config import REPO_ROOT


def alembic_config(url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head", embedding_model_id: str | None = None) -> None:
    """Migrate to ``revision``; with ``embedding_model_id`` (the configured encoder), an index
    that holds no chunk yet then serves that encoder (``index_registry.adopt_when_empty``):
    the registry's first model was seeded by migration 0010 from the configuration of its
    day, which a fresh install must not inherit."""
    command.upgrade(alembic_config(url), revision)
    if embedding_model_id:
        from sqlalchemy import create_engine

        from services.common.embeddings import canonical_model_id
        from services.common.index_registry import adopt_when_empty

        engine = create_engine(url)
        try:
            adopt_when_empty(engine, canonical_model_id(embedding_model_id))
        finally:
            engine.dispose()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
