"""The document catalog: governance labels, versions and ingestion status, searchable.

Readers see the documents they could be answered from (the retrieval rule: privacy class at
or below their clearance, and an ACL that is empty or names them or a group of theirs);
stewards see every document, since labelling them is their job.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import text

from services.common.identity import CLEARANCES
from services.console.deps import StateDep, ViewerDep, render
from services.console.session import User

router = APIRouter()
PRIVACY = list(CLEARANCES)
STATES = ("indexed", "pending", "failed", "deleted")


def _visibility(user: User) -> tuple[str, dict[str, Any]]:
    if user.can("steward"):
        return "TRUE", {}
    return ("(array_position(CAST(:classes AS text[]), coalesce(d.privacy_class, 'restricted'))"
            " <= :rank AND (cardinality(coalesce(d.acl, '{}')) = 0 OR d.acl && "
            "CAST(:names AS text[])))", {
                "classes": PRIVACY, "rank": PRIVACY.index(user.principal.clearance) + 1,
                "names": [user.id, *user.principal.groups]})


@router.get("/catalog")
def catalog(request: Request, state: StateDep, user: ViewerDep, q: str = "",
            privacy: str = "", status: str = "", page: int = Query(1, ge=1)) -> Response:
    visible, params = _visibility(user)
    where = [visible]
    if q.strip():
        where.append("(doc_id ILIKE :q OR d.title ILIKE :q OR d.uri ILIKE :q "
                     "OR d.source ILIKE :q OR d.license ILIKE :q)")
        params["q"] = f"%{q.strip()}%"
    if privacy in PRIVACY:
        where.append("d.privacy_class = :privacy")
        params["privacy"] = privacy
    if status in STATES:
        where.append("s.state = :state")
        params["state"] = status
    size = state.console.page_size
    params.update(limit=size + 1, offset=(page - 1) * size)
    sql = f"""
        SELECT doc_id, d.title, d.source, d.uri, d.license, d.privacy_class, d.acl, d.version,
               d.chunk_count, d.deleted, d.updated_at, s.state, s.last_version, s.error,
               s.indexed_at
        FROM documents d FULL OUTER JOIN ingestion_status s USING (doc_id)
        WHERE {' AND '.join(where)}
        ORDER BY coalesce(d.updated_at, s.updated_at) DESC, doc_id LIMIT :limit OFFSET :offset"""
    with state.engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    return render(request, "catalog.html", rows=rows[:size], more=len(rows) > size, page=page,
                  q=q, privacy=privacy, status=status, privacy_classes=PRIVACY, states=STATES)


@router.get("/catalog/{doc_id:path}")
def document(request: Request, state: StateDep, user: ViewerDep, doc_id: str) -> Response:
    visible, params = _visibility(user)
    params["doc_id"] = doc_id
    with state.engine.connect() as conn:
        row = conn.execute(text(f"""
            SELECT doc_id, d.title, d.source, d.uri, d.license, d.privacy_class, d.acl,
                   d.version, d.lineage, d.metadata, d.chunk_count, d.deleted, d.created_at,
                   d.updated_at, s.state, s.last_version, s.error, s.chunks_total,
                   s.chunks_embedded, s.chunks_reused, s.chunks_removed, s.stale_events,
                   s.indexed_at, s.lag_ms
            FROM documents d FULL OUTER JOIN ingestion_status s USING (doc_id)
            WHERE doc_id = :doc_id AND {visible}"""), params).first()
        if row is None:
            raise HTTPException(404, f"no document {doc_id!r} you may see")
        chunks = conn.execute(text(
            "SELECT ordinal, chunk_id, word_count, heading_path, injection_score "
            "FROM chunks WHERE doc_id = :d ORDER BY ordinal LIMIT 500"), {"d": doc_id}).all()
    return render(request, "document.html", doc=row, chunks=chunks)
