"""ChatML prompt rendering for servers that take a raw prompt (TGI's ``/generate``).

SmolLM2 (and Qwen, Hermes...) are trained on ChatML: ``<|im_start|>role\\ncontent<|im_end|>\\n``
per message, then ``<|im_start|>assistant\\n`` to ask for the next turn. A remote TGI server
does not apply the chat template on ``/generate``, so the client has to.
"""

from __future__ import annotations

from collections.abc import Sequence

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
GENERATION_PROMPT = f"{IM_START}assistant\n"

# SmolLM2's own chat template adds this system turn when the conversation has none; keeping it
# makes a TGI-served SmolLM2 see exactly the prompt the local engine builds.
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def render_chatml(messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True,
                  default_system: str | None = SMOLLM2_DEFAULT_SYSTEM) -> str:
    """The ChatML prompt for ``messages``; ``default_system`` is prepended when the first message
    is not a system message (pass None to send the conversation unchanged)."""
    parts: list[str] = []
    if default_system is not None and (not messages or messages[0]["role"] != "system"):
        parts.append(f"{IM_START}system\n{default_system}{IM_END}\n")
    parts.extend(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    if add_generation_prompt:
        parts.append(GENERATION_PROMPT)
    return "".join(parts)
