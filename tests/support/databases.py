"""A database of a test's own on the stack's Postgres server, for tests whose subject is the
whole index (adoption at migrate, a re-index) and so must not see every other test's chunks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def own_database(server_url: str, prefix: str) -> Iterator[str]:
    """An empty database beside ``server_url``'s (a SQLAlchemy URL), as a SQLAlchemy URL of
    the same server and credentials; dropped after, even with connections still open."""
    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = plain.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
