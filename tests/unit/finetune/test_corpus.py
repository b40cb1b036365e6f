"""Continued pretraining's corpus: which chunks may be trained on (privacy class, ACL, licence,
source, deletion), the reasons recorded for the rest, the content-hash id and packing."""

from __future__ import annotations

import pytest

from services.common.events import FinetuneDataset
from services.finetune.corpus import (
    DEFAULT_TRAINABLE_LICENSES,
    ChunkRow,
    Corpus,
    CorpusPolicy,
    pack,
    select,
)

pytestmark = pytest.mark.unit


def _row(doc: str, n: int = 0, *, privacy: str = "public", license: str | None = "CC-BY-4.0",  # noqa: A002
         acl: tuple[str, ...] = (), source: str = "wiki", deleted: bool = False,
         text: str | None = None) -> ChunkRow:
    return ChunkRow(chunk_id=f"{doc}-{n}", doc_id=doc, ordinal=n,
                    text=text or f"text of {doc} chunk {n}", content_hash=f"h-{doc}-{n}",
                    source=source, license=license, privacy_class=privacy, acl=acl,
                    deleted=deleted)


ROWS = [
    _row("a", 0), _row("a", 1),
    _row("b", privacy="internal", license="internal"),
    _row("c", privacy="confidential"),
    _row("d", privacy="restricted"),
    _row("e", privacy="mystery"),
    _row("f", acl=("group:hr",)),
    _row("g", license=None),
    _row("h", license="CC-BY-NC-4.0"),
    _row("i", license="proprietary"),
    _row("j", deleted=True),
    _row("k", license="cc0"),
]


def test_the_default_policy_trains_on_public_and_internal_with_trainable_licences_only():
    corpus = select(ROWS, CorpusPolicy())
    assert corpus.chunk_ids == ("a-0", "a-1", "b-0", "k-0")
    assert corpus.included["documents"] == 3 and corpus.included["chunks"] == 4
    reasons = corpus.excluded["by_reason"]
    assert reasons["privacy class confidential above internal"] == {"documents": 1, "chunks": 1}
    assert reasons["privacy class restricted above internal"]["documents"] == 1
    assert reasons["privacy class mystery above internal"]["documents"] == 1  # unknown: strictest
    assert "ACL-restricted (a model answers everyone)" in reasons
    assert "no licence recorded" in reasons
    assert "licence CC-BY-NC-4.0 not trainable" in reasons
    assert "licence proprietary not trainable" in reasons
    assert "deleted" in reasons
    assert corpus.excluded["documents"] == 8


def test_the_data_card_states_the_policy_and_every_exclusion():
    card = select(ROWS, CorpusPolicy()).card_markdown
    assert "privacy class at most `internal`" in card
    assert "`cc-by-4.0`" in card and "non-empty ACL: excluded" in card
    assert "| licence CC-BY-NC-4.0 not trainable | 1 | 1 |" in card
    assert "| no licence recorded | 1 | 1 |" in card
    assert "4** from **3** documents" in card


def test_a_job_may_narrow_or_widen_the_policy_explicitly():
    strict = CorpusPolicy.from_dataset(FinetuneDataset(max_privacy="public", licenses=["CC0"],
                                                       sources=["wiki"]))
    assert select(ROWS, strict).chunk_ids == ("k-0",)
    wide = CorpusPolicy.from_dataset(FinetuneDataset(max_privacy="confidential",
                                                     licenses=["cc-by-4.0", "proprietary"]))
    chosen = select(ROWS, wide).chunk_ids
    assert "c-0" in chosen and "i-0" in chosen
    assert "d-0" not in chosen and "f-0" not in chosen and "g-0" not in chosen  # still out
    other_source = [_row("z", source="tickets")]
    outside = select(other_source, strict)  # not asked for: neither trained on nor "excluded"
    assert outside.chunk_ids == () and outside.excluded["documents"] == 0


def test_defaults_without_a_dataset_filter():
    policy = CorpusPolicy.from_dataset(FinetuneDataset())
    assert policy.max_privacy == "internal" and policy.licenses == DEFAULT_TRAINABLE_LICENSES
    assert CorpusPolicy.from_dataset(None) == policy
    assert {"cc-by-nc-4.0", "cc-by-nd-4.0", "proprietary"}.isdisjoint(DEFAULT_TRAINABLE_LICENSES)


def test_the_corpus_id_follows_content_and_policy_not_order():
    first = select(ROWS, CorpusPolicy())
    assert select(list(reversed(ROWS)), CorpusPolicy()).corpus_id == first.corpus_id
    changed = [*ROWS[:1], ChunkRow(**{**ROWS[1].__dict__, "content_hash": "new"}), *ROWS[2:]]
    assert select(changed, CorpusPolicy()).corpus_id != first.corpus_id
    assert select(ROWS, CorpusPolicy(max_privacy="public")).corpus_id != first.corpus_id
    assert first.corpus_id.startswith("cpt-")
    assert Corpus.from_json(first.to_json()) == first


def test_packing_joins_texts_with_eos_and_cuts_blocks():
    blocks = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block=4, eos_id=0)
    assert blocks == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    # a tail under a quarter of a block is dropped, unless it is all there is
    assert pack([list(range(1, 14))], block=12, eos_id=0) == [list(range(1, 13))]
    assert pack([[1]], block=8, eos_id=0) == [[1, 0]]  # a tiny corpus still trains
    assert pack([], block=8, eos_id=0) == []
    with pytest.raises(ValueError):
        pack([[1]], block=1, eos_id=0)
