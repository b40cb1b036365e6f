import pytest

from services.common.events import Citation, RetrievedChunk
from services.guardrails.checks.citations import check_citations, cited_markers
from services.guardrails.policy import CheckPolicy

pytestmark = pytest.mark.unit

POLICY = CheckPolicy(threshold=1.0, action="block")
RETRIEVED = [RetrievedChunk(chunk_id=f"c{i}", doc_id=f"d{i}", text=f"text {i}")
             for i in (1, 2, 3)]


def _cite(n: int, chunk_id: str, *more: str) -> Citation:
    return Citation(n=n, chunk_id=chunk_id, chunk_ids=[chunk_id, *more], doc_id="d")


def test_markers_in_first_seen_order():
    assert cited_markers("a [2] b [1][2] c [10]") == [2, 1, 10]


def test_valid_citations_pass():
    result = check_citations("Helium [1], pumps [2].", [_cite(1, "c1"), _cite(2, "c2", "c3")],
                             RETRIEVED, POLICY)
    assert (result.triggered, result.action, result.score) == (False, "allow", 1.0)


def test_a_marker_with_no_source_blocks():
    result = check_citations("Helium [1], and [7] says more.", [_cite(1, "c1")], RETRIEVED,
                             POLICY)
    assert result.triggered and result.action == "block"
    assert result.details["dangling_markers"] == [7]
    assert "[7]" in result.reason
    assert result.score == pytest.approx(1 - 1 / 3)  # 2 markers + 1 citation, 1 invalid


def test_a_citation_of_a_chunk_that_was_not_retrieved_blocks():
    result = check_citations("Helium [1].", [_cite(1, "c1", "forged")], RETRIEVED, POLICY)
    assert result.triggered and result.details["unretrieved_chunks"] == ["forged"]


def test_no_references_at_all_is_fine():
    result = check_citations("I don't know based on the provided documents.", [], RETRIEVED,
                             POLICY)
    assert not result.triggered and result.score == 1.0


def test_a_lower_threshold_tolerates_some_invalid_references():
    lenient = CheckPolicy(threshold=0.5, action="flag")
    result = check_citations("A [1] B [2] C [9]", [_cite(1, "c1"), _cite(2, "c2")], RETRIEVED,
                             lenient)
    assert not result.triggered  # 4 of 5 references valid
    assert check_citations("A [1]", [_cite(1, "c1")], RETRIEVED,
                           CheckPolicy(enabled=False)).action == "skip"
