"""RequestSpec: one request as the workload describes it, before any schedule or network is involved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestSpec"]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """An immutable request description.

    ``prompt`` is the plain text (used as-is by ``/v1/completions``); ``messages`` are chat messages (used by
    ``/v1/chat/completions``; when absent, the prompt becomes one user message). ``reference`` is the expected answer
    for accuracy scoring; ``tags`` are short labels from a closed vocabulary (dataset, domain, difficulty, budget).
    ``extra_body`` is merged into the request body after the run-wide ``--extra-body``.
    """

    prompt: str
    messages: tuple[Mapping[str, Any], ...] | None = None
    max_tokens: int | None = None
    reference: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    extra_body: Mapping[str, Any] | None = None
    input_tokens_hint: int | None = None  # the workload's own estimate of the prompt's length in tokens

    def chat_messages(self) -> list[Mapping[str, Any]]:
        if self.messages is not None:
            return list(self.messages)
        return [{"role": "user", "content": self.prompt}]

    def completion_prompt(self) -> str:
        if self.messages is None:
            return self.prompt
        return "\n\n".join(str(m.get("content", "")) for m in self.messages)
