"""The embedded Postgres authenticates with SCRAM and a generated password."""

import psycopg
import pytest

from services.stack import postgres

pytestmark = pytest.mark.integration


def test_only_the_generated_password_gets_in(stack):
    port = stack.settings.postgres_port
    path = postgres.password_path(stack.state)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    password = path.read_text().strip()
    assert len(password) >= 32
    for dsn in (f"postgresql://postgres@127.0.0.1:{port}/customllm",
                f"postgresql://postgres:wrong@127.0.0.1:{port}/customllm"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn, connect_timeout=5)
    with psycopg.connect(f"postgresql://postgres:{password}@127.0.0.1:{port}/customllm") as conn:
        method = conn.execute("SHOW password_encryption").fetchone()[0]
    assert method == "scram-sha-256"
