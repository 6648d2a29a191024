"""One shape for every conversation, whatever format it came from.

Every reader hands its turns to `finish_conversation`, so every conversation leaves ingest as:
at most one system turn first, then user and assistant turns strictly alternating, starting with
the user and ending with the assistant. The rules, in order:

- consecutive turns of the same role are merged, joined with a newline (chat exports often split
  one reply over several messages);
- system turns are merged into one at the start; a system turn later in the conversation is
  dropped with a warning, because several chat templates accept a system message only first;
- a conversation without any assistant turn, or without any user turn, is an error finding and
  is skipped;
- a leading assistant turn (a greeting, or an agent opening an outbound ticket) is dropped with a
  warning: the model learns to reply to a customer, and several chat templates refuse a
  conversation whose first non-system turn is not the user's;
- trailing user turns (often a closing "thanks") are dropped silently, so the last turn is the
  reply the model learns.

`clean_text` is applied by every reader to every message before it becomes a `Turn`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from chatbot.ingest.report import Report
from chatbot.types import Conversation, Turn

__all__ = ["clean_text", "finish_conversation"]

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Unescape HTML entities, unify line ends, trim, and replace what UTF-8 cannot hold."""
    text = html.unescape(value)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # JSON escapes such as "\ud800" decode to lone surrogates, which no later stage could
        # write to a UTF-8 file; the replacement character keeps the rest of the message.
        text = _SURROGATES.sub("\ufffd", text)
    return text.strip()


def _merge(turns: Sequence[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].content}\n{turn.content}")
        else:
            merged.append(turn)
    return merged


def _split_system(
    turns: Sequence[Turn], location: str, report: Report
) -> tuple[list[Turn], list[Turn]]:
    lead = 0
    while lead < len(turns) and turns[lead].role == "system":
        lead += 1
    system = _merge(turns[:lead])
    rest = [t for t in turns[lead:] if t.role != "system"]
    if len(rest) < len(turns) - lead:
        report.warning(
            "a system message after the conversation started was dropped; put instructions in "
            "the first message",
            location,
            code="late-system",
        )
    return system, rest


def finish_conversation(
    turns: Sequence[Turn], report: Report, location: str, *, hint: str = ""
) -> Conversation | None:
    """Apply the module's rules; None (with an error finding) when nothing usable remains.

    `hint` is appended to the "no assistant reply" message, e.g. which speaker labels count as
    the assistant in a transcript.
    """
    system, rest = _split_system(turns, location, report)
    rest = _merge(rest)
    roles = {t.role for t in rest}
    if "assistant" not in roles:
        report.error(f"conversation has no assistant reply{hint}", location, code="no-reply")
        return None
    if "user" not in roles:
        report.error("conversation has no user message", location, code="no-user")
        return None
    if rest[0].role == "assistant":
        rest = rest[1:]
        report.warning(
            "conversation starts with the assistant; that opening message was dropped because "
            "the model learns to reply to the user",
            location,
            code="leading-assistant",
        )
    while rest and rest[-1].role == "user":
        rest.pop()
    if not rest:
        report.error(
            "conversation has no assistant reply after a user message", location, code="no-reply"
        )
        return None
    return Conversation([*system, *rest], report.file, location)
