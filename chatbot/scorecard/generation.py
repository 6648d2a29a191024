"""Replies to read side by side: which customer turns are answered, and by whom, two at a time.

Every assistant turn of a held-out conversation that answers a customer's message is a prompt:
the conversation up to that turn is the context and the brand's real reply is the reference.
Taking every turn (not only the last) scores follow-ups as well as openers; a cap takes the first
turn of every conversation before any second turn, so it still covers as many as it can.

Replies come from the chat engine, so they are exactly what the Compare tab would show with the
same settings. The engine answers two rows in one batched `generate` (`stream_pair`, each row with
or without the adapter), so rows are sent in pairs, and a batch runs until its longer reply ends.
So rows that end alike share a batch: the base and the prompted reply to the same prompt (both
without the adapter, and both tend to run to the token limit), then the tuned replies two by two
(which stop at the brand's usual reply length).

The style classifier also needs the base model's own voice: its replies to training prompts.
Those depend only on the base model, the brand's training data and the generation settings, not on
the run, so they are kept in the workspace's cache and reused by the next scorecard of the brand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatbot.engine import GenerationSettings
from chatbot.scorecard.likelihood import without_system_messages
from chatbot.storage import atomic_write_json

__all__ = [
    "Turn",
    "ReplyEngine",
    "customer_turns",
    "system_rows",
    "generate_replies",
    "spread",
    "cached_base_replies",
]

Messages = list[dict[str, str]]
Step = Callable[[int, int], None]
"""Called with (rows done, rows in all) after each batch."""


class ReplyEngine(Protocol):
    """The part of `chatbot.engine.ChatEngine` the scorecard generates with."""

    def stream(
        self, messages: Messages, mode: str, settings: GenerationSettings | None = None
    ) -> Iterator[str]: ...

    def stream_pair(
        self,
        messages_left: Messages,
        mode_left: str,
        messages_right: Messages,
        mode_right: str,
        settings: GenerationSettings | None = None,
    ) -> Iterator[tuple[str, str]]: ...


@dataclass(frozen=True)
class Turn:
    """One customer turn to answer: the conversation so far and the brand's real reply."""

    conversation: int
    turn: int
    context: tuple[tuple[str, str], ...]
    """(role, content) pairs, first and last a customer's; hashable so turns can be cached."""
    reply: str

    @property
    def messages(self) -> Messages:
        return [{"role": role, "content": content} for role, content in self.context]


def _turns_of(index: int, conversation: Messages) -> list[Turn]:
    messages = without_system_messages(conversation)
    turns = []
    for position, message in enumerate(messages):
        if message["role"] != "assistant" or position == 0:
            continue
        number = sum(m["role"] == "assistant" for m in messages[:position])
        context = messages[:position]
        while context and context[0]["role"] != "user":
            context = context[1:]  # the brand spoke first: the engine needs a customer opener
        # A reply that follows another reply answers no customer message: nothing to compare.
        if context and context[-1]["role"] == "user":
            pairs = tuple((m["role"], m["content"]) for m in context)
            turns.append(Turn(index, number, pairs, message["content"]))
    return turns


def customer_turns(conversations: list[Messages], limit: int | None) -> list[Turn]:
    """Up to `limit` (None: all) customer turns: each conversation's first, then each second..."""
    per_conversation = [_turns_of(i, c) for i, c in enumerate(conversations)]
    out: list[Turn] = []
    depth = max((len(t) for t in per_conversation), default=0)
    for k in range(depth):
        out += [turns[k] for turns in per_conversation if k < len(turns)]
    return out if limit is None else out[:limit]


def generate_replies(
    engine: ReplyEngine,
    rows: list[tuple[Messages, str]],
    settings: GenerationSettings,
    step: Step | None = None,
) -> list[str]:
    """The reply to each (messages, mode) row, generated two rows per batch in the given order."""
    replies: list[str] = []
    for start in range(0, len(rows), 2):
        pair = rows[start : start + 2]
        if len(pair) == 2:
            (left, mode_left), (right, mode_right) = pair
            texts = ["", ""]
            for deltas in engine.stream_pair(left, mode_left, right, mode_right, settings):
                texts = [text + delta for text, delta in zip(texts, deltas, strict=True)]
            replies += texts
        else:
            (messages, mode) = pair[0]
            replies.append("".join(engine.stream(messages, mode, settings)))
        if step:
            step(len(replies), len(rows))
    return [reply.strip() for reply in replies]


def system_rows(turns: list[Turn], *, fewshot: bool = False) -> list[tuple[Messages, str]]:
    """Every turn for base, prompted, (fewshot) and tuned, ordered so each batch of two is cheap.

    Base and prompted replies to the same prompt share a batch; the few-shot replies (which, shown
    the brand's examples, tend to stop at the brand's length) and then the tuned replies follow,
    two by two. Pairing a short reply with a long base one would keep its row busy doing nothing.
    """
    rows = [(t.messages, mode) for t in turns for mode in ("base", "prompted")]
    rows += [(t.messages, "fewshot") for t in turns] if fewshot else []
    return rows + [(t.messages, "tuned") for t in turns]


def spread(items: list[Any], count: int) -> list[Any]:
    """`count` items evenly spaced through `items` (all of them if there are no more)."""
    if len(items) <= count:
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def cached_base_replies(
    engine: ReplyEngine,
    turns: list[Turn],
    settings: GenerationSettings,
    cache_dir: Path,
    identity: dict[str, Any],
    step: Step | None = None,
) -> tuple[list[str], bool]:
    """The base model's replies to `turns`, from the cache when the same ones were made before.

    `identity` names what the replies depend on besides the turns and settings (base model,
    quantization). Returns the replies and whether they came from the cache.
    """
    key = {
        **identity,
        "settings": {
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "repetition_penalty": settings.repetition_penalty,
            "seed": settings.seed,
        },
        "turns": [list(t.context) for t in turns],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"base-replies-{digest}.json"
    cached = _read_cache(path, len(turns))
    if cached is not None:
        if step:
            step(len(turns), len(turns))
        return cached, True
    replies = generate_replies(engine, [(t.messages, "base") for t in turns], settings, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"replies": replies})
    return replies, False


def _read_cache(path: Path, expected: int) -> list[str] | None:
    try:
        replies = json.loads(path.read_text(encoding="utf-8"))["replies"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    ok = isinstance(replies, list) and len(replies) == expected
    return replies if ok and all(isinstance(r, str) for r in replies) else None
