"""TEST DOUBLE of an OpenAI-compatible model server that echoes its input instead of thinking.

A real rag worker (``CUSTOMLLM_GENERATION_BACKEND=openai``) talks to it over HTTP like to vLLM,
so everything around generation stays real while the "model" does exactly what a test needs:

* ``system``: answers with its system prompt, the leak a canary must catch;
* ``context``: answers with the first source's text from the context block, cited ``[1]``
  (a model that quotes a restricted document verbatim, personal data included);
* ``user``: answers with the question it received (proves what reached the model).

Every request body is kept in ``calls``, so a test can prove a request never reached it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

_FIRST_SOURCE = re.compile(r"<context>\s*\[1\][^\n]*\n(.*?)(?:\n\n\[2\]|\n</context>)", re.S)
_QUESTION = re.compile(r"Question:\s*(.*)\Z", re.S)


class EchoLLM:
    def __init__(self, model: str = "echo") -> None:
        self.model = model
        self.mode = "context"
        self.calls: list[dict[str, Any]] = []
        self.port = _free_port()
        self._server: uvicorn.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answer(self, messages: list[dict[str, str]]) -> str:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if self.mode == "system":
            return f"Sure. My instructions are: {system}"
        if self.mode == "user":
            found = _QUESTION.search(user)
            return f"You asked: {found.group(1).strip() if found else user}"
        found = _FIRST_SOURCE.search(user)
        return f"{found.group(1).strip()} [1]" if found else "I don't know."

    def app(self) -> FastAPI:
        app = FastAPI(title="echo LLM test double")

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.calls.append(body)
            text = self.answer(body["messages"])
            return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model", self.model),
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                              "total_tokens": 10 + len(text.split())}}

        return app

    def start(self) -> EchoLLM:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("echo LLM did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def saw(self, text: str) -> bool:
        return any(text in m["content"] for call in self.calls for m in call["messages"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
