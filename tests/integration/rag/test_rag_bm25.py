"""BM25 statistics of the lexical SQL against the formula worked out by hand, and the
document-frequency cap: a common term keeps a common term's idf when counting stops at the cap.

The words are made up (``qwxv`` ...) so that no other test's documents contain them: document
frequencies and the matched rows are then exactly the ones written here, whatever else the
shared database holds."""

import math
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest
from sqlalchemy import text

from services.rag import retrieval
from services.rag.access import scope_for
from services.rag.fusion import FusionWeights
from services.rag.retrieval import RetrievalFilters, retrieve
from tests.integration.rag.rows import Doc, unit_vectors, write_documents

pytestmark = pytest.mark.integration

READER = scope_for("reader", [], "public")
T = TypeVar("T")
WEIGHTS = FusionWeights()


N_SQL = text("SELECT greatest(c.reltuples, coalesce(t.n_live_tup, 0), 1) FROM pg_class c "
             "LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid "
             "WHERE c.oid = 'chunks'::regclass")


def _corpus_size(engine) -> float:
    with engine.begin() as conn:
        conn.execute(text("ANALYZE chunks"))
        return float(conn.execute(N_SQL).scalar())


def _steady(engine, run: Callable[[], T]) -> tuple[float, T]:
    """(the corpus size the SQL saw, what ``run`` returned). Other tests' workers may still be
    indexing into the shared table, and Postgres's statistics catch up on their own, so the
    size is read again after ``run`` and the measure repeated until it held still."""
    for _ in range(20):
        n = _corpus_size(engine)
        result = run()
        with engine.connect() as conn:
            if float(conn.execute(N_SQL).scalar()) == n:
                return n, result
        time.sleep(0.5)
    raise AssertionError("the chunk count never held still across a query")


def _idf(n: float, df: float) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _term(tf: int, words: int, mean_words: float) -> float:
    k1, b = WEIGHTS.k1, WEIGHTS.b
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * words / mean_words))


def _lexical(engine, prefix: str, question: str, top: int = 10) -> dict[str, float]:
    got = retrieve(engine, unit_vectors(np.random.default_rng(0), 1)[0], question, READER, top,
                   filters=RetrievalFilters(doc_id_prefix=prefix), mode="lexical")
    return {c.doc_id.removeprefix(prefix): c.score for c in got}


def test_lexical_scores_are_bm25_with_scope_statistics(stack):
    prefix = f"bm25-{uuid.uuid4().hex[:8]}/"
    write_documents(stack.engine, [
        Doc(prefix + "one", ["qwxv qwxv qwxb"]),            # 3 words: tf(v) = 2, tf(b) = 1
        Doc(prefix + "two", ["qwxv plmk plmk plmk plmk"]),  # 5 words: tf(v) = 1
        Doc(prefix + "three", ["plmk plmk"]),               # no question term
    ])
    n, scores = _steady(stack.engine, lambda: _lexical(stack.engine, prefix, "qwxv qwxb"))
    # df(v) = 2, df(b) = 1; the matched rows are "one" and "two": mean length (3 + 5) / 2 = 4
    one = _idf(n, 2) * _term(2, 3, 4.0) + _idf(n, 1) * _term(1, 3, 4.0)
    two = _idf(n, 2) * _term(1, 5, 4.0)
    assert set(scores) == {"one", "two"}
    assert scores["one"] == pytest.approx(one, rel=1e-6)
    assert scores["two"] == pytest.approx(two, rel=1e-6)


def test_hidden_chunks_do_not_count_in_document_frequency(stack):
    prefix = f"bm25-{uuid.uuid4().hex[:8]}/"
    write_documents(stack.engine, [
        Doc(prefix + "seen", ["qwxh plmk plmk"]),
        *(Doc(prefix + f"hidden{i}", ["qwxh"], acl=("bm25-other-team",)) for i in range(5)),
    ])
    n, scores = _steady(stack.engine, lambda: _lexical(stack.engine, prefix, "qwxh"))
    assert set(scores) == {"seen"}
    assert scores["seen"] == pytest.approx(_idf(n, 1) * _term(1, 3, 3.0), rel=1e-6)


def test_a_term_past_the_cap_keeps_a_common_terms_idf(stack, monkeypatch):
    prefix = f"bm25-{uuid.uuid4().hex[:8]}/"
    common = [Doc(prefix + f"c{i:02d}", [f"qwxc filler{i}"]) for i in range(40)]
    write_documents(stack.engine, [Doc(prefix + "target", ["qwxc qwxr"]), *common])
    n, exact = _steady(stack.engine,
                       lambda: _lexical(stack.engine, prefix, "qwxc", top=50)["target"])
    assert exact == pytest.approx(_idf(n, 41) * _term(1, 2, 2.0), rel=1e-6)
    monkeypatch.setattr(retrieval, "DF_CAP", 5)
    n, capped = _steady(stack.engine,
                        lambda: _lexical(stack.engine, prefix, "qwxc", top=50)["target"])
    # ANALYZE's estimate of df (41 rows) stands in once counting stops at 5: close to the exact
    # idf, far below the idf a df of 5 would give
    assert capped == pytest.approx(exact, rel=0.15)
    assert capped < 0.8 * _idf(n, 5) * _term(1, 2, 2.0)
