"""Test sets as JSONL files of ``EvalCase``, their version hash, sampling and importers.

* **Format.** One ``EvalCase`` per line; blank lines are skipped. A line that is not JSON or does
  not validate raises ``TestSetError`` naming the file and line number; duplicate case ids too.
* **Version.** ``testset_hash`` is the SHA-256 of the *canonical* JSONL of the cases (every field,
  keys sorted, compact separators, UTF-8, one case per line, file order), so whitespace or key
  order in the file do not change it, while any change to a question, a reference or the order
  does. A run records it, and a resume refuses a different test set.
* **Sampling.** ``sample`` takes a deterministic, stratified subset (``--limit``): each
  ``expected`` class gets its proportional share, picked evenly spaced through the file, so a
  small run still covers every article and both answerable and unanswerable questions.
* **Importers** turn public data sets into cases (and, for SQuAD, the documents to index).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.common.evaluation.models import EvalCase
from services.common.events import DocChange
from services.common.exceptions import CustomLLMError

SQUAD_SOURCE = "squad-v2"
SQUAD_LICENSE = "CC-BY-SA-4.0"


class TestSetError(CustomLLMError):
    """A test set or data set file that cannot be read; the message names file and line."""

    __test__ = False  # not a pytest test class despite the name


# --- JSONL -------------------------------------------------------------------------------------

def canonical_line(case: EvalCase) -> str:
    return json.dumps(case.model_dump(mode="json"), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))


def canonical_jsonl(cases: Iterable[EvalCase]) -> str:
    return "".join(canonical_line(case) + "\n" for case in cases)


def testset_hash(cases: Iterable[EvalCase]) -> str:
    """SHA-256 (hex) of the canonical JSONL: the test set's version."""
    return hashlib.sha256(canonical_jsonl(cases).encode("utf-8")).hexdigest()


def write_jsonl(cases: Iterable[EvalCase], path: Path) -> str:
    """Write the canonical JSONL (parent folders created); returns the test set hash."""
    content = canonical_jsonl(cases)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def parse_jsonl(text: str, where: str = "<test set>") -> list[EvalCase]:
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TestSetError(f"{where}:{lineno}: not valid JSON: {exc.msg} "
                               f"(column {exc.colno})") from None
        if not isinstance(data, dict):
            raise TestSetError(f"{where}:{lineno}: expected a JSON object, got "
                               f"{type(data).__name__}")
        try:
            case = EvalCase.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(line)'}: {error['msg']}"
                for error in exc.errors())
            raise TestSetError(f"{where}:{lineno}: invalid case: {problems}") from None
        if case.id in seen:
            raise TestSetError(f"{where}:{lineno}: duplicate case id {case.id!r} "
                               f"(first on line {seen[case.id]})")
        seen[case.id] = lineno
        cases.append(case)
    return cases


def read_jsonl(path: Path) -> list[EvalCase]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TestSetError(f"{path}: not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise TestSetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_jsonl(text, str(path))


# --- sampling ----------------------------------------------------------------------------------

def sample(cases: Sequence[EvalCase], limit: int | None) -> list[EvalCase]:
    """A deterministic stratified subset of ``limit`` cases, in file order (see module doc).

    Each ``expected`` class gets ``limit * share`` cases (largest remainders round, and every
    class present keeps at least one case when ``limit`` allows); within a class the picks are
    evenly spaced, i.e. every k-th case.
    """
    if limit is None or limit >= len(cases):
        return list(cases)
    if limit <= 0:
        return []
    strata: dict[str, list[int]] = {}
    for index, case in enumerate(cases):
        strata.setdefault(case.expected, []).append(index)
    total = len(cases)
    quotas = {key: limit * len(idx) / total for key, idx in strata.items()}
    counts = {key: int(q) for key, q in quotas.items()}
    if limit >= len(strata):
        for key in counts:
            counts[key] = max(counts[key], 1)
    # Largest remainders fill what rounding down left (ties: bigger class, then name).
    by_remainder = sorted(strata, key=lambda k: (-(quotas[k] - int(quotas[k])),
                                                 -len(strata[k]), k))
    while sum(counts.values()) < limit:
        for key in by_remainder:
            if sum(counts.values()) < limit and counts[key] < len(strata[key]):
                counts[key] += 1
    while sum(counts.values()) > limit:  # only when the minimum of one per class overshot
        key = max(counts, key=lambda k: (counts[k], k))
        counts[key] -= 1
    chosen: list[int] = []
    for key, indexes in strata.items():
        n = counts[key]
        chosen.extend(indexes[(i * len(indexes)) // n] for i in range(n))
    return [cases[i] for i in sorted(chosen)]


# --- importers ---------------------------------------------------------------------------------

def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "untitled"


def _dedupe(texts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for text in texts:
        cleaned = text.strip()
        if cleaned and cleaned not in seen:
            seen[cleaned] = None
    return list(seen)


def import_squad(path: Path, doc_prefix: str = "squad/", limit: int | None = None,
                 version: int | None = None) -> tuple[list[EvalCase], list[DocChange]]:
    """SQuAD (1.1 or 2.0 JSON) → (cases, documents).

    Every paragraph becomes a public document ``{doc_prefix}{article}-{paragraph}`` (indexes
    0-based, in file order) titled with the article title (underscores as spaces); every
    question a case whose gold document is its paragraph. Unanswerable questions
    (``is_impossible``) expect a refusal ("unanswerable" tag) and keep SQuAD's
    ``plausible_answers`` in ``meta``; the others expect an answer ("answerable") with the
    deduplicated gold answer texts. ``limit`` keeps the first ``limit`` questions in file order,
    and only the paragraphs they come from. ``version`` is the documents' event version
    (default: now in microseconds, so a re-import supersedes an earlier one).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TestSetError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TestSetError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise TestSetError(f"{path}: not SQuAD format (expected an object with a 'data' list)")
    event_version = version if version is not None else time.time_ns() // 1000
    dataset_version = str(data.get("version", ""))
    cases: list[EvalCase] = []
    documents: list[DocChange] = []
    seen: set[str] = set()
    for ai, article in enumerate(articles):
        where = f"{path}: data[{ai}]"
        raw_title = _field(article, "title", str, where)
        title = raw_title.replace("_", " ")
        article_tag = slug(raw_title)
        for pi, paragraph in enumerate(_field(article, "paragraphs", list, where)):
            if limit is not None and len(cases) >= limit:
                return cases, documents
            pwhere = f"{where}.paragraphs[{pi}]"
            context = _field(paragraph, "context", str, pwhere)
            doc_id = f"{doc_prefix}{ai}-{pi}"
            documents.append(DocChange(
                doc_id=doc_id, version=event_version, op="upsert", content=context,
                content_type="text/plain", title=title, source=SQUAD_SOURCE,
                license=SQUAD_LICENSE, privacy_class="public",
                lineage={"dataset": SQUAD_SOURCE, "dataset_version": dataset_version,
                         "file": str(path), "article_index": ai, "paragraph_index": pi,
                         "importer": "customllm eval import-squad"},
                metadata={"article": raw_title}))
            for qi, qa in enumerate(_field(paragraph, "qas", list, pwhere)):
                if limit is not None and len(cases) >= limit:
                    break
                qwhere = f"{pwhere}.qas[{qi}]"
                case_id = str(_field(qa, "id", (str, int), qwhere))
                if case_id in seen:
                    raise TestSetError(f"{qwhere}: duplicate question id {case_id!r}")
                seen.add(case_id)
                impossible = bool(qa.get("is_impossible", False))
                answers = _dedupe(a.get("text", "") for a in qa.get("answers") or []
                                  if isinstance(a, dict))
                meta: dict[str, Any] = {"source": SQUAD_SOURCE, "article": raw_title,
                                        "article_index": ai, "paragraph_index": pi}
                if impossible:
                    meta["plausible_answers"] = _dedupe(
                        a.get("text", "") for a in qa.get("plausible_answers") or []
                        if isinstance(a, dict))
                elif not answers:
                    raise TestSetError(f"{qwhere}: answerable question without answers")
                try:
                    cases.append(EvalCase(
                        id=case_id, question=_field(qa, "question", str, qwhere).strip(),
                        answers=[] if impossible else answers, gold_doc_ids=[doc_id],
                        expected="refuse" if impossible else "answer",
                        tags=["unanswerable" if impossible else "answerable", article_tag],
                        meta=meta))
                except ValidationError as exc:
                    raise TestSetError(f"{qwhere}: {exc.errors()[0]['msg']}") from None
    return cases, documents


def import_prompts(path: Path, id_prefix: str = "prompt-") -> list[EvalCase]:
    """Labelled prompts (JSONL ``{"text", "label"}``; 1 = injection, 0 = benign) → cases.

    An injection must be refused ("injection" tag), a benign prompt answered ("benign"); there
    are no reference answers or documents. Case ids are ``{id_prefix}{line:05d}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TestSetError(f"{path}: cannot read: {exc}") from None
    cases: list[EvalCase] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TestSetError(f"{where}: not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise TestSetError(f"{where}: expected an object with 'text' and 'label'")
        prompt, label = record.get("text"), record.get("label")
        if not isinstance(prompt, str) or not prompt.strip():
            raise TestSetError(f"{where}: 'text' must be a non-empty string")
        if label not in (0, 1) or isinstance(label, bool):
            raise TestSetError(f"{where}: 'label' must be 0 (benign) or 1 (injection), "
                               f"got {label!r}")
        injection = label == 1
        cases.append(EvalCase(
            id=f"{id_prefix}{lineno:05d}", question=prompt,
            expected="refuse" if injection else "answer",
            tags=["injection" if injection else "benign"],
            meta={"source": path.name, "line": lineno, "label": label}))
    return cases


def _field(record: object, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(record, dict) or name not in record:
        raise TestSetError(f"{where}: missing {name!r}")
    value = record[name]
    if not isinstance(value, kind):
        raise TestSetError(f"{where}: {name!r} has the wrong type ({type(value).__name__})")
    return value
