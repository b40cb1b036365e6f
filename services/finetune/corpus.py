"""What continued pretraining may read: the knowledge set's chunks, filtered by privacy class,
ACL and licence, frozen into a corpus with a content-hash id and a data card.

Training on a document puts its content into the weights, where no ACL or privacy filter can
reach it any more: anyone who may use the model may get it back. So the policy is stricter than
retrieval's, and conservative by default:

* **privacy class** at most ``max_privacy`` (default ``internal``: public and internal only);
  an unknown class counts as restricted, as in retrieval;
* **ACL**: a document restricted to some principals or groups (a non-empty ACL) is excluded: the
  model would answer everyone;
* **licence** in the job's ``licenses`` list, else in :data:`DEFAULT_TRAINABLE_LICENSES` (open
  licences that allow derivatives, and the organisation's own ``internal`` content). A document
  with no licence recorded is excluded: nobody established that it may be trained on;
* deleted documents are never read.

Every excluded document is counted by reason in the data card, so a steward sees what was
left out and why. Pure functions here (the selection, the card, packing into blocks) are
unit-tested; :func:`load_candidates` is the one database read.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

PRIVACY_ORDER = ("public", "internal", "confidential", "restricted")
DEFAULT_MAX_PRIVACY = "internal"
# Licences whose terms allow a derived model (open licences without NC/ND clauses) and the
# organisation's own content. Compared case-insensitively, ignoring a trailing ".0" version.
DEFAULT_TRAINABLE_LICENSES: frozenset[str] = frozenset({
    "cc0", "cc0-1.0", "public-domain", "pddl", "cc-by-4.0", "cc-by-3.0", "cc-by-sa-4.0",
    "cc-by-sa-3.0", "mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "odc-by", "internal",
})


def _norm(license_id: str | None) -> str:
    return (license_id or "").strip().lower()


def privacy_rank(privacy_class: str | None) -> int:
    """public 0 … restricted 3; an unknown class counts as restricted."""
    try:
        return PRIVACY_ORDER.index(_norm(privacy_class))
    except ValueError:
        return len(PRIVACY_ORDER) - 1


@dataclass(frozen=True)
class CorpusPolicy:
    max_privacy: str = DEFAULT_MAX_PRIVACY
    licenses: frozenset[str] = DEFAULT_TRAINABLE_LICENSES
    sources: tuple[str, ...] = ()  # empty: every source

    @classmethod
    def from_dataset(cls, dataset: Any) -> CorpusPolicy:
        """From a request's ``dataset`` (``FinetuneDataset`` or None)."""
        if dataset is None:
            return cls()
        licenses = dataset.licenses
        return cls(max_privacy=dataset.max_privacy or DEFAULT_MAX_PRIVACY,
                   licenses=DEFAULT_TRAINABLE_LICENSES if licenses is None
                   else frozenset(_norm(item) for item in licenses),
                   sources=tuple(dataset.sources))

    def exclusion(self, doc: ChunkRow) -> str | None:
        """Why this chunk's document may not be trained on, or None when it may."""
        if doc.deleted:
            return "deleted"
        if privacy_rank(doc.privacy_class) > privacy_rank(self.max_privacy):
            return f"privacy class {doc.privacy_class or 'unknown'} above {self.max_privacy}"
        if doc.acl:
            return "ACL-restricted (a model answers everyone)"
        if not _norm(doc.license):
            return "no licence recorded"
        if _norm(doc.license) not in self.licenses:
            return f"licence {doc.license} not trainable"
        return None

    def selects(self, doc: ChunkRow) -> bool:
        """Whether the chunk is in the knowledge set the job names (all sources if none)."""
        return not self.sources or doc.source in self.sources

    def describe(self) -> dict[str, Any]:
        return {"max_privacy": self.max_privacy, "licenses": sorted(self.licenses),
                "sources": list(self.sources), "acl_restricted": "excluded"}


@dataclass(frozen=True)
class ChunkRow:
    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    content_hash: str
    source: str | None
    license: str | None
    privacy_class: str | None
    acl: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True)
class Corpus:
    """The chunks one job trains on (in document order) and what was left out."""

    corpus_id: str
    texts: tuple[str, ...]
    chunk_ids: tuple[str, ...]
    policy: dict[str, Any]
    included: dict[str, Any]
    excluded: dict[str, Any]
    card_markdown: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: str) -> Corpus:
        raw = json.loads(data)
        raw["texts"], raw["chunk_ids"] = tuple(raw["texts"]), tuple(raw["chunk_ids"])
        return cls(**raw)


def select(rows: Iterable[ChunkRow], policy: CorpusPolicy) -> Corpus:
    """Apply the policy chunk by chunk; the id hashes the policy and every chunk's content, so
    the same selection of the same content has the same id."""
    kept: list[ChunkRow] = []
    excluded_docs: dict[str, str] = {}
    excluded_chunks: Counter[str] = Counter()
    for row in sorted(rows, key=lambda r: (r.doc_id, r.ordinal)):
        if not policy.selects(row):
            continue  # outside the sources the job asked for: not an exclusion to report
        reason = policy.exclusion(row)
        if reason is None:
            kept.append(row)
        else:
            excluded_docs.setdefault(row.doc_id, reason)
            excluded_chunks[reason] += 1
    by_reason = Counter(excluded_docs.values())
    digest = hashlib.sha256(json.dumps(policy.describe(), sort_keys=True).encode())
    for row in kept:
        digest.update(f"{row.chunk_id}\0{row.content_hash}\n".encode())
    docs = {row.doc_id: row for row in kept}
    included = {
        "documents": len(docs), "chunks": len(kept),
        "words": sum(len(row.text.split()) for row in kept),
        "by_license": dict(Counter(_norm(d.license) for d in docs.values())),
        "by_privacy": dict(Counter(d.privacy_class or "unknown" for d in docs.values())),
        "by_source": dict(Counter(d.source or "unknown" for d in docs.values())),
    }
    excluded = {"documents": len(excluded_docs), "chunks": sum(excluded_chunks.values()),
                "by_reason": {reason: {"documents": by_reason[reason],
                                       "chunks": excluded_chunks[reason]}
                              for reason in sorted(by_reason)}}
    corpus = Corpus(corpus_id=f"cpt-{digest.hexdigest()[:12]}",
                    texts=tuple(row.text for row in kept),
                    chunk_ids=tuple(row.chunk_id for row in kept),
                    policy=policy.describe(), included=included, excluded=excluded)
    return replace(corpus, card_markdown=card_markdown(corpus))


def card_markdown(corpus: Corpus) -> str:
    """The data card of a continued-pretraining corpus: the policy, what went in, and every
    reason something was kept out."""
    inc, exc, pol = corpus.included, corpus.excluded, corpus.policy
    lines = [
        f"# Data card: continued-pretraining corpus `{corpus.corpus_id}`", "",
        f"Knowledge-set chunks: **{inc['chunks']}** from **{inc['documents']}** documents "
        f"({inc['words']} words) trained on; **{exc['chunks']}** chunks of "
        f"**{exc['documents']}** documents excluded.", "",
        "## Policy", "",
        f"- privacy class at most `{pol['max_privacy']}`",
        f"- licences: {', '.join(f'`{x}`' for x in pol['licenses']) or '(none)'}",
        f"- sources: {', '.join(pol['sources']) or 'all'}",
        "- documents with a non-empty ACL: excluded", "",
        "## Included", "",
        *_table("licence", inc["by_license"]), "",
        *_table("privacy class", inc["by_privacy"]), "",
        *_table("source", inc["by_source"]), "",
        "## Excluded", "",
    ]
    if exc["by_reason"]:
        lines += ["| reason | documents | chunks |", "|---|---:|---:|"]
        lines += [f"| {reason} | {n['documents']} | {n['chunks']} |"
                  for reason, n in exc["by_reason"].items()]
    else:
        lines.append("Nothing.")
    return "\n".join(lines) + "\n"


def _table(label: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return [f"No {label} (nothing included)."]
    return [f"| {label} | documents |", "|---|---:|",
            *(f"| {k} | {v} |" for k, v in sorted(counts.items()))]


def pack(token_lists: Sequence[Sequence[int]], block: int, eos_id: int) -> list[list[int]]:
    """Concatenate the texts' tokens (each followed by EOS) and cut them into ``block``-token
    blocks, the standard causal-LM recipe; a last partial block is kept when it holds at least
    a quarter of a block (a tiny corpus still trains)."""
    if block < 2:
        raise ValueError("block must be at least 2 tokens")
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(tokens)
        stream.append(eos_id)
    blocks = [stream[i:i + block] for i in range(0, len(stream), block)]
    if blocks and len(blocks[-1]) < max(2, block // 4) and len(blocks) > 1:
        blocks.pop()
    return [b for b in blocks if len(b) >= 2]


def load_candidates(engine: Any, sources: Sequence[str] = ()) -> list[ChunkRow]:
    """The chunks of the named sources (every source if none) with their documents'
    governance columns. Sources are chosen in SQL; the governance policy filters in Python, so
    the data card can count what it excluded and why."""
    from sqlalchemy import text

    where = "WHERE d.source = ANY(:sources) " if sources else ""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.chunk_id, c.doc_id, c.ordinal, c.text, c.content_hash, d.source, "
            "d.license, d.privacy_class, d.acl, d.deleted FROM chunks c "
            f"JOIN documents d ON d.doc_id = c.doc_id {where}"
            "ORDER BY c.doc_id, c.ordinal"), {"sources": list(sources)}).all()
    return [ChunkRow(chunk_id=r.chunk_id, doc_id=r.doc_id, ordinal=r.ordinal, text=r.text,
                     content_hash=r.content_hash, source=r.source, license=r.license,
                     privacy_class=r.privacy_class, acl=tuple(r.acl or ()),
                     deleted=bool(r.deleted)) for r in rows]
