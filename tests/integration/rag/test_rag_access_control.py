"""Retrieval never returns a chunk the principal may not see, in any mode, and still returns
something whenever a visible chunk matches: randomized documents, ACLs, principals, questions."""

import random
import uuid

import numpy as np
import pytest

from services.rag.access import PRIVACY_CLASSES, can_see, scope_for
from services.rag.retrieval import MODES, RetrievalFilters, retrieve
from tests.integration.rag.rows import Doc, unit_vectors

pytestmark = pytest.mark.integration

SEED = 20261126
WORDS = ["harbor", "lantern", "copper", "meadow", "glacier", "orchard", "falcon", "quartz",
         "saddle", "timber", "violet", "walrus", "anchor", "basalt", "cobalt", "dune", "ember",
         "fjord", "granite", "heron", "iris", "juniper", "kelp", "lagoon", "maple", "nectar",
         "opal", "pepper", "quill", "raven"]


def _random_corpus(rng: random.Random, prefix: str, groups: list[str],
                   principal_ids: list[str]) -> list[Doc]:
    docs = []
    for i in range(200):
        roll = rng.random()
        if roll < 0.35:
            acl: list[str] = []
        elif roll < 0.9:
            acl = rng.sample(groups, rng.randint(1, 2))
        else:
            acl = [rng.choice(principal_ids)] + rng.sample(groups, rng.randint(0, 1))
        texts = [" ".join(rng.choices(WORDS, k=rng.randint(6, 14)))
                 for _ in range(rng.randint(1, 3))]
        docs.append(Doc(doc_id=f"{prefix}doc-{i}", texts=texts,
                        privacy_class=rng.choice(PRIVACY_CLASSES), acl=acl))
    return docs


def _acl_of(stack, doc_ids: list[str]) -> dict[str, tuple[str, list[str], bool]]:
    rows = stack.query("SELECT doc_id, privacy_class, acl, deleted FROM documents "
                       "WHERE doc_id = ANY(:ids)", ids=doc_ids)
    return {r[0]: (r[1], list(r[2]), r[3]) for r in rows}


def _lexically_matching(stack, prefix: str, question: str) -> set[str]:
    """Oracle without any access filter: chunks sharing a lexeme with the question."""
    rows = stack.query(
        "SELECT chunk_id FROM chunks WHERE doc_id LIKE :p AND tsv @@ CAST(replace("
        "CAST(plainto_tsquery('english', :q) AS text), '&', '|') AS tsquery)",
        p=prefix + "%", q=question)
    return {r[0] for r in rows}


def test_randomized_principals_only_ever_see_what_they_may(stack, insert_documents):
    rng = random.Random(SEED)
    nrng = np.random.default_rng(SEED)
    prefix = f"rag-acl-{uuid.uuid4().hex[:8]}/"
    groups = [f"{prefix}group-{g}" for g in range(5)]
    principal_ids = [f"{prefix}user-{p}" for p in range(100)]
    docs = _random_corpus(rng, prefix, groups, principal_ids)
    insert_documents(docs, nrng)
    by_doc = {d.doc_id: d for d in docs}
    chunk_vectors = {d.chunk_id(i): v for d in docs for i, v in enumerate(d.vectors)}
    only_ours = RetrievalFilters(doc_id_prefix=prefix)
    checked = {mode: 0 for mode in MODES}

    for principal in principal_ids:
        scope = scope_for(principal, rng.sample(groups, rng.randint(0, 2)),
                          rng.choice(PRIVACY_CLASSES))
        question = " ".join(rng.choices(WORDS, k=3)) + " unrelatedword"
        query_vector = unit_vectors(nrng, 1)[0]
        visible = {cid for cid in chunk_vectors
                   if can_see(scope, by_doc[cid.split("#")[0]].privacy_class,
                              by_doc[cid.split("#")[0]].acl)}
        lexical_visible = _lexically_matching(stack, prefix, question) & visible
        for mode in MODES:
            got = retrieve(stack.engine, query_vector, question, scope, top_k=5,
                           filters=only_ours, mode=mode)
            for chunk in got:
                doc = by_doc[chunk.doc_id]
                assert can_see(scope, doc.privacy_class, doc.acl), (mode, principal, chunk)
                assert chunk.privacy_class == doc.privacy_class
            expected_any = bool(lexical_visible if mode == "lexical" else visible)
            assert bool(got) == expected_any, (mode, principal, question)
            if mode == "lexical":
                assert {c.chunk_id for c in got} <= lexical_visible
            if mode == "exact":
                # Brute force in numpy over the visible chunks must agree with the database.
                ranked = sorted(visible, key=lambda cid: -float(chunk_vectors[cid] @ query_vector))
                assert [c.chunk_id for c in got] == ranked[:5]
            checked[mode] += bool(got)
    # The random draw must exercise both outcomes, or the test proves little.
    assert all(count > 20 for count in checked.values()), checked


def test_without_filters_nothing_invisible_leaks_from_the_shared_database(stack,
                                                                          insert_documents):
    rng = random.Random(SEED + 1)
    nrng = np.random.default_rng(SEED + 1)
    prefix = f"rag-acl-open-{uuid.uuid4().hex[:8]}/"
    groups = [f"{prefix}group-{g}" for g in range(3)]
    principal_ids = [f"{prefix}user-{p}" for p in range(20)]
    insert_documents(_random_corpus(rng, prefix, groups, principal_ids), nrng)
    for principal in principal_ids:
        scope = scope_for(principal, rng.sample(groups, rng.randint(0, 2)),
                          rng.choice(PRIVACY_CLASSES))
        question = " ".join(rng.choices(WORDS, k=3))
        query_vector = unit_vectors(nrng, 1)[0]
        for mode in MODES:
            got = retrieve(stack.engine, query_vector, question, scope, top_k=20, mode=mode)
            stored = _acl_of(stack, [c.doc_id for c in got])
            for chunk in got:
                privacy_class, acl, deleted = stored[chunk.doc_id]
                assert not deleted and can_see(scope, privacy_class, acl), (mode, chunk)
