"""The event loop choice: uvloop where installed, asyncio when asked, an error for a typo or for
uvloop where it is missing (never a silent fallback the operator did not ask for)."""

import asyncio
import importlib.util

import pytest

from services.common import event_loop

pytestmark = pytest.mark.unit

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_when_asked():
    assert event_loop.chosen("asyncio") == "asyncio"
    assert event_loop.uvicorn_loop("asyncio") == "asyncio"


def test_auto_prefers_uvloop_when_installed():
    expected = "uvloop" if HAVE_UVLOOP else "asyncio"
    assert event_loop.chosen("auto") == expected
    assert event_loop.uvicorn_loop("auto") == expected


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match="unknown event loop"):
        event_loop.chosen("trio")


def test_uvloop_missing_is_an_error(monkeypatch):
    monkeypatch.setattr(event_loop.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="not installed"):
        event_loop.chosen("uvloop")
    assert event_loop.chosen("auto") == "asyncio"


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_install_sets_a_uvloop_policy():
    previous = asyncio.get_event_loop_policy()
    try:
        assert event_loop.install("auto") == "uvloop"
        loop = asyncio.new_event_loop()
        try:
            assert type(loop).__module__.startswith("uvloop")
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(previous)
