"""The embedder's overlap of encoding and writing: which documents of a batch can be written
after each encoded slice (all their chunks have vectors), in order, never one still waiting."""


import pytest

from services.embedder.handlers import plan_embeddings, ready_upto
from tests.support.chunk_work import sha as _sha
from tests.support.chunk_work import work as _work

pytestmark = pytest.mark.unit


def test_documents_become_writable_slice_by_slice_in_order():
    works = [_work("a", ["one", "two"]), _work("b", ["three", "one"]),
             _work("c", ["four", "five", "six"]), _work("d", ["six"])]
    plan = plan_embeddings(works, cached=set())
    have: set[str] = set()
    written, runs = 0, []
    for begin in range(0, len(plan.hashes), 2):  # slices of two chunk texts
        have.update(plan.hashes[begin:begin + 2])
        end = ready_upto(works, written, have)
        runs.append([w.doc_id for w in works[written:end]])
        written = end
    # "b" shares "one" with "a" and needs "three" from the second slice; "d" needs "six",
    # encoded once (for "c") in the last slice.
    assert runs == [["a"], ["b"], ["c", "d"]]
    assert written == len(works)


def test_a_waiting_document_holds_back_the_ones_after_it():
    works = [_work("late", ["x", "y"]), _work("early", ["z"])]
    assert ready_upto(works, 0, {_sha("z"), _sha("x")}) == 0  # "early" waits for "late"
    assert ready_upto(works, 0, {_sha("x"), _sha("y")}) == 1


def test_documents_without_vectors_to_wait_for_are_ready():
    works = [_work("gone", ["old"], op="delete"), _work("cached", ["kept"])]
    assert ready_upto(works, 0, {_sha("kept")}) == 2
    assert ready_upto([], 0, set()) == 0
