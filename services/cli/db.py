"""The database for one CLI command: its errors become one clear line and an exit code.

Shared by the command groups so "the tables are missing, run `customllm migrate`" and "is the
stack up?" read the same everywhere, instead of a driver traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from services.cli.console import console
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.exceptions import CustomLLMError


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def database(tables: tuple[str, ...], what: str, error_code: int = 1) -> Iterator[Engine]:
    """``tables``: name fragments of the group's tables; a query failing on one of them means
    the migrations have not run. ``what`` names those tables in the message."""
    engine = make_engine(get_settings().sqlalchemy_url, pool_size=2)
    try:
        yield engine
    except ProgrammingError as exc:
        if any(table in str(exc) for table in tables):
            raise fail(f"the {what} tables are missing; run `customllm migrate`") from exc
        raise fail(f"database: {str(exc).splitlines()[0]}") from exc
    except OperationalError as exc:
        raise fail(f"database: {str(exc).splitlines()[0]} (is the stack up? "
                   "`customllm up`)") from exc
    except CustomLLMError as exc:
        raise fail(str(exc), error_code) from exc
    finally:
        engine.dispose()
