"""The strongest prompt to beat: the brand's style prompt plus k of its own example exchanges.

Before tuning, a careful user would show the base model a few real replies of the brand. That
baseline ("fewshot") is what tuning must beat to be worth shipping. Its examples are one customer
message and the brand's reply each, taken only from the training split, spread evenly through it,
and never one whose customer message or reply also appears in the held-out split (a duplicate
there would let the baseline copy the answer it is scored on). How many fit, k, is the engine's
call: it knows the model's context window (`chatbot.engine.ChatEngine`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["Example", "MAX_EXAMPLES", "fewshot_candidates", "as_messages"]

Messages = list[dict[str, str]]
Example = tuple[tuple[str, str], ...]
"""One example exchange as (role, content) pairs: a customer message, then the brand's reply.
Hashable, so a chat model's settings that hold examples can be compared and cached."""

MAX_EXAMPLES = 16
"""More examples than this add little to a small model and cost context and time on a CPU."""
_LONG_REPLY = 2.0
"""Replies longer than this many times the median are left out: one would crowd out several."""


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _first_exchange(conversation: Messages) -> Example | None:
    messages = [m for m in conversation if m["role"] != "system"]
    for ask, answer in zip(messages, messages[1:], strict=False):
        roles = (ask["role"], answer["role"]) == ("user", "assistant")
        if roles and ask["content"].strip() and answer["content"].strip():
            return (("user", ask["content"]), ("assistant", answer["content"]))
    return None


def fewshot_candidates(
    train: Sequence[Messages], held_out: Sequence[Messages], limit: int = MAX_EXAMPLES
) -> tuple[Example, ...]:
    """Up to `limit` example exchanges from `train`, evenly spread, none shared with `held_out`.

    Each is the first customer message of a training conversation and the brand's reply to it.
    The engine keeps as many, in this order, as fit its context.
    """
    seen = {_key(m["content"]) for c in held_out for m in c if m["role"] != "system"}
    exchanges = [e for c in train if (e := _first_exchange(c)) is not None]
    exchanges = [e for e in exchanges if not any(_key(text) in seen for _, text in e)]
    if not exchanges:
        return ()
    words = [len(e[1][1].split()) for e in exchanges]
    longest = _LONG_REPLY * statistics.median(words)
    exchanges = [e for e, n in zip(exchanges, words, strict=True) if n <= longest]
    if len(exchanges) > limit:
        exchanges = [exchanges[(i * len(exchanges)) // limit] for i in range(limit)]
    return tuple(exchanges)


def as_messages(examples: Sequence[Example]) -> Messages:
    """The examples as chat turns, one exchange after the other."""
    return [{"role": role, "content": text} for example in examples for role, text in example]
