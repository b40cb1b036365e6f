"""Which asyncio event loop a process runs: uvloop where installed, unless told otherwise.

Why it matters here: aiokafka, under every Faust worker, parses the Kafka protocol in Python on
the event loop, and a retrieval-only request crosses four such hops; uvloop's transports and
scheduling cost less per hop than asyncio's pure-Python selector loop. The gateway's uvicorn
makes the same choice through its own ``loop`` option (``uvicorn_loop``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging

logger = logging.getLogger(__name__)


def chosen(setting: str) -> str:
    """``asyncio`` or ``uvloop`` for a setting of ``auto``, ``asyncio`` or ``uvloop``; asking
    for uvloop where it is not installed is an error, not a silent fallback."""
    available = importlib.util.find_spec("uvloop") is not None
    if setting == "uvloop" and not available:
        raise RuntimeError("CUSTOMLLM_EVENT_LOOP=uvloop but uvloop is not installed")
    if setting == "asyncio":
        return "asyncio"
    if setting in ("auto", "uvloop"):
        return "uvloop" if available else "asyncio"
    raise ValueError(f"unknown event loop {setting!r}; expected auto, asyncio or uvloop")


def install(setting: str) -> str:
    """Set the process's event loop policy before any loop exists; returns the loop chosen."""
    loop = chosen(setting)
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logger.debug("event loop: %s", loop)
    return loop


def uvicorn_loop(setting: str) -> str:
    """uvicorn's ``loop`` option for the same choice."""
    return "uvloop" if chosen(setting) == "uvloop" else "asyncio"
