"""Conversations: the user turns of multi-turn sessions, and the history a turn resends.

A conversation is a tuple of user turns, each a :class:`RequestSpec` whose ``prompt`` is the user's new message
(``messages``, when set, are the messages this turn adds: a system message before the first user turn) and whose
``max_tokens`` is the answer's budget. What the assistant said is never in the workload: each turn resends the
history with the server's ACTUAL answers (``History``), so turn k+1 can only be built once turn k has ended.

Sources: synthetic turns (``--input-len`` per user message, ``--output-len`` per answer), a ``--prompts`` file
whose lines hold ``messages`` (the user turns replayed in order; an assistant message's length, ≈ chars/4,
becomes the next answer's budget), and ShareGPT's ``conversations`` (human turns; the gpt replies' lengths as
budgets).

History policy (``--history``): ``strip-reasoning`` resends only the answer (DeepSeek-R1's convention: the
reasoning the server just computed is not reused); ``keep-reasoning`` resends the reasoning too, as the model
produced it: ``<think>REASONING</think>ANSWER`` in the assistant message (chat) or the prompt text
(completions, where a server that parses no reasoning sends it inline, often with those markers already).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadgen.errors import WorkloadError
from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import approx_tokens

Conversation = tuple[RequestSpec, ...]

STRIP = "strip-reasoning"
KEEP = "keep-reasoning"
FIXED = "fixed"  # a trace's turns: every prompt is given whole (a Mooncake session), no history is added

_THINK = re.compile(r"<think>.*?</think>", re.S)
_HUMAN = frozenset({"human", "user"})
_ASSISTANT = frozenset({"gpt", "chatgpt", "assistant", "bard", "bing", "model"})


def strip_reasoning(text: str) -> str:
    """The answer without its reasoning: ``<think>…</think>`` blocks removed; a text that holds only the end
    marker (the template opened the block in the prompt) keeps what follows the last ``</think>``, one that
    holds only the start marker (cut off while reasoning) what precedes it."""
    text = _THINK.sub("", text)
    cut = text.rfind("</think>")
    if cut >= 0:
        text = text[cut + len("</think>") :]
    opened = text.find("<think>")  # cut off inside its reasoning (max_tokens): no answer after it
    return (text[:opened] if opened >= 0 else text).lstrip()


def assistant_text(answer: str, reasoning: str | None, policy: str) -> str:
    """What the history keeps of one answer under ``policy`` (see the module docstring)."""
    if policy == KEEP:
        return f"<think>{reasoning}</think>{answer}" if reasoning else answer
    return strip_reasoning(answer)


@dataclass(slots=True)
class History:
    """One live session's history, as the next turn will send it (chat messages, or one completions prompt)."""

    chat: bool
    policy: str
    messages: list[Mapping[str, Any]] = field(default_factory=list)
    text: str = ""

    def turn_spec(self, user: RequestSpec) -> RequestSpec:
        """The request for user turn ``user``: the history so far, then the turn's own messages."""
        if self.policy == FIXED:
            return user
        own = list(user.messages) if user.messages is not None else [{"role": "user", "content": user.prompt}]
        if self.chat:
            return RequestSpec(
                prompt=user.prompt,
                messages=(*self.messages, *own),
                max_tokens=user.max_tokens,
                tags=user.tags,
                extra_body=user.extra_body,
                input_tokens_hint=user.input_tokens_hint,
            )
        added = "\n\n".join(str(m.get("content", "")) for m in own)
        prompt = f"{self.text}\n\n{added}" if self.text else added
        return RequestSpec(
            prompt=prompt,
            max_tokens=user.max_tokens,
            tags=user.tags,
            extra_body=user.extra_body,
            input_tokens_hint=user.input_tokens_hint,
        )

    def answered(self, sent: RequestSpec, answer: str, reasoning: str | None) -> None:
        """Turn ``sent`` was answered: the history becomes what was sent plus the answer under the policy."""
        if self.policy == FIXED:
            return
        kept = assistant_text(answer, reasoning, self.policy)
        if self.chat:
            self.messages = [*sent.chat_messages(), {"role": "assistant", "content": kept}]
        else:
            self.text = sent.prompt + kept


def conversations_from_messages(
    messages: Sequence[Mapping[str, Any]], tags: Mapping[str, Any]
) -> Conversation:
    """The user turns of one recorded conversation; system messages go with the next user turn, an assistant
    message's length becomes the budget of the answer it stands for (the server's own answer replaces it)."""
    turns: list[RequestSpec] = []
    pending: list[Mapping[str, Any]] = []
    for m in messages:
        role = str(m.get("role", m.get("from", ""))).lower()
        content = str(m.get("content", m.get("value", "")) or "")
        if role in _HUMAN:
            pending.append({"role": "user", "content": content})
            turns.append(RequestSpec(prompt=content, messages=tuple(pending), tags=dict(tags)))
            pending = []
        elif role in _ASSISTANT:
            if turns and turns[-1].max_tokens is None:
                last = turns[-1]
                turns[-1] = RequestSpec(
                    prompt=last.prompt, messages=last.messages, tags=last.tags,
                    max_tokens=max(1, approx_tokens(content)),
                )  # fmt: skip
        elif role == "system":
            pending.append({"role": "system", "content": content})
    return tuple(turns)


def file_conversations(path: str) -> list[Conversation]:
    """A ``--prompts`` file: each line a conversation (``messages``), or a one-turn one (``prompt``)."""
    from loadgen.workload.prompts_file import load_prompts_file

    out = []
    for spec in load_prompts_file(path):
        if spec.messages is None:
            out.append((spec,))
            continue
        conv = conversations_from_messages(spec.messages, spec.tags)
        if conv:
            if spec.max_tokens is not None:
                conv = tuple(_budget(t, spec.max_tokens) for t in conv)
            out.append(conv)
    if not out:
        raise WorkloadError(f"prompts file {path}: no conversation with a user turn")
    return out


def sharegpt_conversations(rows: Sequence[Mapping[str, Any]]) -> list[Conversation]:
    """ShareGPT rows (``conversations: [{from, value}]``) as conversations of their human turns."""
    out = []
    for index, row in enumerate(rows):
        turns = row.get("conversations") or row.get("conversation") or []
        if not isinstance(turns, list):
            continue
        item = str(row.get("id") or index)
        conv = conversations_from_messages(
            [t for t in turns if isinstance(t, Mapping)], {"dataset": "sharegpt", "item": f"sharegpt/{item}"}
        )
        if conv and all(t.prompt.strip() for t in conv):
            out.append(conv)
    if not out:
        raise WorkloadError("ShareGPT: no conversation with a human turn")
    return out


def _budget(spec: RequestSpec, max_tokens: int) -> RequestSpec:
    if spec.max_tokens is not None:
        return spec
    return RequestSpec(prompt=spec.prompt, messages=spec.messages, tags=spec.tags, max_tokens=max_tokens)
