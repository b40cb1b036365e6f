"""PII findings of a document's chunks, analysed once at ingest and stored by content hash.

The output stage redacts personal data of cited chunks by the reader's clearance; running
Presidio over every cited chunk of every answer cost ~70 ms a chunk. The detector's output on
a text depends only on the text and the detector, so it is computed here, once per new chunk
text and detector version (``services.common.pii_findings``), and the output stage looks it up.

The detector is the one the output stage calls (``services.common.pii.find_pii``), with the same
minimum score by default (the packaged policy's ``output.pii.min_score``). Presidio imports
torch and transformers only to probe for a GPU and for optional transformer NER, neither of
which the spaCy pipeline used here needs: the worker process forbids both imports
(``forbid_heavy_imports``) so ingest stays a lean process.

Storing is best effort: a database that cannot be reached is logged and the document goes on to
the embedder unchanged; the output stage then analyses (and stores) those chunks itself.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from collections.abc import Sequence
from functools import cache

from sqlalchemy.engine import Engine

from services.common import pii_findings
from services.common.logs import log

logger = logging.getLogger(__name__)
HEAVY = ("torch", "transformers")
_LOCK = threading.Lock()


class _Forbidden(importlib.abc.MetaPathFinder):
    """Makes ``import torch`` (and transformers) fail as if not installed; libraries that
    treat them as optional (Presidio, thinc) fall back to their CPU, spaCy-only paths."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"{fullname} is not loaded in the ingest worker",
                                      name=fullname)


def forbid_heavy_imports() -> None:
    """For the worker process only (its entry point calls it): never in a process that may
    need torch later, such as a test run."""
    if not any(isinstance(finder, _Forbidden) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Forbidden())


@cache
def _detector() -> pii_findings.Detect:
    from services.common.pii import find_pii

    find_pii("warm up")  # the spaCy model loads now, not inside the first document
    return find_pii


def detector() -> pii_findings.Detect:
    with _LOCK:
        return _detector()


def index_chunks(engine: Engine, texts: Sequence[str], min_score: float) -> dict[str, int]:
    """Analyse and store the chunk texts not stored yet under the current detector version.
    Counts (texts, analysed, stored); ``{"error": 1}`` when the store could not be used."""
    try:
        return pii_findings.analyse_missing(engine, texts, detector(), min_score)
    except Exception as exc:  # noqa: BLE001 - best effort: the output stage analyses misses
        log(logger, logging.WARNING, "PII findings not stored at ingest; the output stage "
            "will analyse these chunks", error=repr(exc)[:300], chunks=len(texts))
        return {"texts": len(texts), "analysed": 0, "stored": 0, "error": 1}
