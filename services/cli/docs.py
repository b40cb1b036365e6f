"""`customllm docs`: what is indexed, at which version, with how many chunks."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import text

from services.cli.console import console
from services.common.config import get_settings
from services.common.db import make_engine

QUERY = """
    SELECT d.doc_id, d.version, d.chunk_count, d.privacy_class, d.deleted,
           s.state, s.chunks_embedded, s.chunks_reused, s.stale_events, s.lag_ms, d.updated_at
    FROM documents d LEFT JOIN ingestion_status s USING (doc_id)
    WHERE (:include_deleted OR NOT d.deleted) AND d.doc_id LIKE :pattern
    ORDER BY d.updated_at DESC
    LIMIT :limit
"""


def docs(
    prefix: str = typer.Option("", help="Only doc ids starting with this."),
    limit: int = typer.Option(50, help="At most this many rows."),
    include_deleted: bool = typer.Option(False, help="Show deleted documents too."),
) -> None:
    """Indexed documents with version, chunk count and ingestion status."""
    engine = make_engine(get_settings().sqlalchemy_url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(text(QUERY), {"include_deleted": include_deleted,
                                          "pattern": prefix.replace("%", r"\%") + "%",
                                          "limit": limit}).all()
        totals = conn.execute(text(
            "SELECT count(*) FILTER (WHERE NOT deleted), coalesce(sum(chunk_count), 0) "
            "FROM documents")).one()
    table = Table("doc id", "version", "chunks", "privacy", "state", "embedded", "reused",
                  "stale", "lag ms")
    for row in rows:
        state = "deleted" if row.deleted else (row.state or "-")
        table.add_row(row.doc_id, str(row.version), str(row.chunk_count), row.privacy_class,
                      state, str(row.chunks_embedded or 0), str(row.chunks_reused or 0),
                      str(row.stale_events or 0),
                      f"{row.lag_ms:.0f}" if row.lag_ms is not None else "-")
    console.print(table)
    console.print(f"{totals[0]} document(s), {totals[1]} chunk(s) indexed")
    engine.dispose()
