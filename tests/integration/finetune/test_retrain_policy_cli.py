"""``customllm finetune policy`` on the real Postgres: it says what the worker's next check
would decide, from the same settings and the same counts, as the examples get approved."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.finetune import supervision
from services.finetune.config import finetune_settings
from services.finetune.examples import ChatExample

pytestmark = pytest.mark.integration


@pytest.fixture
def policy_env(monkeypatch):
    source, adapter = f"tests-policy-{uuid.uuid4().hex[:8]}", f"pol{uuid.uuid4().hex[:6]}"
    for name, value in {"ENABLED": "1", "ADAPTER": adapter, "MIN_NEW_EXAMPLES": "2",
                        "SOURCES": json.dumps([source])}.items():
        monkeypatch.setenv(f"CUSTOMLLM_FINETUNE_AUTO_{name}", value)
    finetune_settings.cache_clear()
    yield source, adapter
    finetune_settings.cache_clear()


def _approve(stack, source: str, i: int) -> None:
    supervision.add_example(stack.engine, ChatExample(messages=[
        {"role": "user", "content": f"Which room is the {source} meeting {i} in?"},
        {"role": "assistant", "content": f"Room {i} [1]."}]),
        source=source, approved_by="sita-sme", privacy_class="internal")


def _policy(*args: str) -> str:
    result = CliRunner().invoke(app, ["finetune", "policy", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_the_command_says_why_the_next_check_waits_or_queues(stack, policy_env):
    source, adapter = policy_env
    shown = _policy()
    assert f"lora on '{adapter}' when 2 new approved example(s)" in shown
    assert "would wait (nothing_new): no approved example yet" in shown

    _approve(stack, source, 1)
    assert "would wait (below_threshold): 1 of 2 new approved example(s)" in _policy()

    _approve(stack, source, 2)
    shown = _policy()
    assert "new approved examples 2" in shown
    assert "would queue (threshold): 2 new approved example(s) reached the threshold" in shown
    assert "last automatic job none" in shown

    # Another adapter's policy with the same filter sees the same examples; nothing was queued
    # by asking (the command changes nothing).
    assert "would queue (threshold)" in _policy("--adapter", f"other{adapter}")
    assert not stack.query("SELECT 1 FROM finetune_jobs WHERE adapter_name = :a", a=adapter)


def test_a_disabled_policy_says_so(stack, monkeypatch):
    monkeypatch.setenv("CUSTOMLLM_FINETUNE_AUTO_ENABLED", "0")
    finetune_settings.cache_clear()
    try:
        shown = _policy()
    finally:
        finetune_settings.cache_clear()
    assert "policy off (CUSTOMLLM_FINETUNE_AUTO_ENABLED)" in shown
    assert "would wait (disabled): the retraining policy is off" in shown
