"""Guardrail policies: YAML files listing the checks, their thresholds and actions.

A policy is configuration a compliance officer edits, not code: one file per domain or tenant
(``<name>.yaml`` in the policy folder), validated strictly at load (an unknown key or a threshold
outside [0, 1] is an error, not a silently ignored typo) and reloaded when the file changes,
so tightening a threshold needs no restart. A file that fails validation on reload leaves the
last good version in force and the error is reported, never a half-read policy.

Every decision names ``policy_version`` (name, declared version and a content hash), so an
auditor can tell exactly which rules produced it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from services.common.exceptions import CustomLLMError
from services.common.logs import log

logger = logging.getLogger(__name__)

PACKAGED_POLICIES = Path(__file__).parent / "policies"
POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_POLICY = "default"
RELOAD_CHECK_S = 1.0

Action = Literal["allow", "flag", "redact", "block"]


class PolicyError(CustomLLMError):
    """A policy file is missing or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckPolicy(_Strict):
    """A scored check: triggered when its score reaches ``threshold``; then ``action`` applies."""

    enabled: bool = True
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    action: Action = "block"


class ClassifierPolicy(CheckPolicy):
    """A learned head's check. Without ``threshold`` the head's own calibrated operating point
    applies (chosen on held-out scores when it was trained); a number overrides it."""

    threshold: float | None = Field(default=None, ge=0.0, le=1.0)  # type: ignore[assignment]
    model: str | None = Field(default=None, description="head file (JSON); default: the one "
                              "`customllm guardrails train` wrote under <state>/guardrails/, "
                              "else the one shipped in the package")


class PatternPolicy(_Strict):
    """An organisation's own identifier (employee id, case number...) as a regular expression;
    checked at load so a typo is an error, not a recognizer that silently never matches."""

    pattern: str = Field(min_length=1, max_length=500)
    score: float = Field(default=0.85, ge=0.0, le=1.0)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        if compiled.match(""):
            raise ValueError("the pattern matches the empty string")
        return value


class PiiPolicy(_Strict):
    """Per entity type: redact, block or allow; entities not listed take ``default_action``."""

    enabled: bool = True
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    default_action: Action = "redact"
    entities: dict[str, Action] = Field(default_factory=dict)
    # Extra recognizers by entity type name (e.g. EMPLOYEE_ID: {pattern: "\\bEMP-\\d{6}\\b"}).
    patterns: dict[Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")],
                   PatternPolicy] = Field(default_factory=dict)

    def action_for(self, entity_type: str) -> Action:
        return self.entities.get(entity_type, self.default_action)


class InputPolicy(_Strict):
    max_chars: int = Field(default=4000, gt=0)
    # A question longer than max_chars: refused (block), or cut to max_chars and screened
    # (truncate). Padding a prompt to push an instruction past the checks fails either way.
    over_length: Literal["block", "truncate"] = "block"
    pii: PiiPolicy = PiiPolicy()
    injection_rules: CheckPolicy = CheckPolicy(threshold=0.5)
    injection_similarity: CheckPolicy = CheckPolicy(threshold=0.88)
    injection_classifier: ClassifierPolicy = ClassifierPolicy()
    # Hate (attacks on people for who they are) and toxicity (profanity, insults) are separate
    # checks with separate actions: offensive words are not hate, and hate needs none.
    hate: ClassifierPolicy = ClassifierPolicy()
    toxicity: CheckPolicy = CheckPolicy(threshold=0.8)


class DocumentPolicy(_Strict):
    """Documents are an attack surface: chunks are scanned at ingest and marked."""

    injection_scan: CheckPolicy = CheckPolicy(threshold=0.5, action="flag")
    marked_chunks: Literal["exclude", "fence", "allow"] = "fence"
    # Documents above the principal's clearance: invisible (hide), or usable with the PII that
    # comes from them redacted in the answer (redact_pii: for documents whose *content* may be
    # shared but whose personal data may not).
    above_clearance: Literal["hide", "redact_pii"] = "hide"


class OutputPiiPolicy(PiiPolicy):
    """PII in an answer is redacted when it comes from a document above the principal's
    clearance; entity types in ``always_redact`` are redacted for everyone."""

    always_redact: list[str] = Field(default_factory=list)


class GroundingPolicy(_Strict):
    enabled: bool = True
    similarity: float = Field(default=0.6, ge=0.0, le=1.0)
    lexical_overlap: float = Field(default=0.5, ge=0.0, le=1.0)
    min_supported: float = Field(default=0.8, ge=0.0, le=1.0,
                                 description="fraction of answer sentences that must be supported")
    judge: bool = False
    action: Literal["allow", "flag", "replace", "block"] = "flag"
    replacement_message: str = Field(
        default="I can't give a reliable answer: the generated answer is not supported by the "
        "retrieved documents.", min_length=1, max_length=1000,
        description="what the reader gets instead of an unsupported answer (action replace)")


class OutputPolicy(_Strict):
    pii: OutputPiiPolicy = OutputPiiPolicy()
    toxicity: CheckPolicy = CheckPolicy(threshold=0.8)
    hate: ClassifierPolicy = ClassifierPolicy()
    canary: CheckPolicy = CheckPolicy(threshold=1.0)
    grounding: GroundingPolicy = GroundingPolicy()
    citations: CheckPolicy = CheckPolicy(threshold=1.0, action="block")


class Policy(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    refusal_message: str = "I can't help with that request."
    input: InputPolicy = InputPolicy()
    documents: DocumentPolicy = DocumentPolicy()
    output: OutputPolicy = OutputPolicy()
    content_hash: str = Field(default="", exclude=True)

    @property
    def policy_version(self) -> str:
        return f"{self.name}@{self.version}#{self.content_hash[:8]}"


def parse_policy(text: str, where: str = "<policy>") -> Policy:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a policy is a mapping of keys, got {type(raw).__name__}")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{where}: {problems}") from exc
    digest = hashlib.sha256(text.encode()).hexdigest()
    return policy.model_copy(update={"content_hash": digest})


def load_policy_file(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    policy = parse_policy(text, str(path))
    if policy.name != path.stem:
        raise PolicyError(f"{path}: name {policy.name!r} must match the file name {path.stem!r}")
    return policy


@dataclass
class _Entry:
    policy: Policy
    mtime_ns: int
    checked_at: float
    error: str | None = None


class PolicyStore:
    """Policies by name from one folder, re-read when a file's mtime changes.

    ``get`` costs a ``stat`` at most once per second per policy, so it can sit on the hot path.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = (folder or PACKAGED_POLICIES).expanduser()
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.yaml"))

    def get(self, name: str | None = None) -> Policy:
        """The named policy (a domain or tenant), or the default one when none has that name.
        Names come from messages, so only a plain name is ever joined into a path."""
        safe = name is not None and POLICY_NAME.fullmatch(name) is not None
        wanted = name if safe and (self.folder / f"{name}.yaml").is_file() else DEFAULT_POLICY
        with self._lock:
            return self._current(wanted)

    def _path(self, name: str) -> Path:
        """A policy folder need not repeat the default policy: without its own
        ``default.yaml`` the packaged one applies to domains that have no file."""
        path = self.folder / f"{name}.yaml"
        if name == DEFAULT_POLICY and not path.is_file():
            return PACKAGED_POLICIES / f"{DEFAULT_POLICY}.yaml"
        return path

    def errors(self) -> dict[str, str]:
        """Reload errors per policy name (the last good version stays in force)."""
        return {n: e.error for n, e in self._entries.items() if e.error}

    def _current(self, name: str) -> Policy:
        path = self._path(name)
        entry = self._entries.get(name)
        now = time.monotonic()
        if entry is not None and now - entry.checked_at < RELOAD_CHECK_S:
            return entry.policy
        try:
            mtime = path.stat().st_mtime_ns
        except OSError as exc:
            if entry is None:
                raise PolicyError(f"policy {name!r} not found in {self.folder}") from exc
            entry.checked_at = now
            return entry.policy
        if entry is not None and entry.mtime_ns == mtime:
            entry.checked_at = now
            return entry.policy
        try:
            policy = load_policy_file(path)
        except PolicyError as exc:
            if entry is None:
                raise
            entry.checked_at, entry.mtime_ns, entry.error = now, mtime, str(exc)
            log(logger, logging.ERROR, "policy reload failed; keeping the last good version",
                policy=name, error=str(exc), in_force=entry.policy.policy_version)
            return entry.policy
        if entry is not None:
            log(logger, logging.INFO, "policy reloaded", policy=name,
                previous=entry.policy.policy_version, current=policy.policy_version)
        self._entries[name] = _Entry(policy, mtime, now)
        return policy
