"""What the JSON formats share: records from JSON Lines or an array, and message lists.

A record's location is "line N" in JSON Lines (1-based, as editors show) and "item N" in a JSON
array (1-based); field paths inside a record use 0-based indices, as in code:
`messages[2].content`. The first problem in a record is reported and the record skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from chatbot.ingest.jsonsafe import JsonProblem, json_type, load_json
from chatbot.ingest.normalize import clean_text
from chatbot.ingest.report import Report
from chatbot.types import Role, Turn

__all__ = ["MessageSpec", "iter_json_lines", "iter_items", "parse_messages", "short"]


def short(value: str, limit: int = 40) -> str:
    """A user-supplied value cut down for quoting in a message."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def iter_json_lines(text: str, report: Report) -> Iterator[tuple[str, object]]:
    """(location, value) for each non-blank line; unparseable lines become error findings."""
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters that
    # splitlines() treats as line ends.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        location = f"line {number}"
        try:
            yield location, load_json(line)
        except JsonProblem as problem:
            column = f" (column {problem.column})" if problem.column else ""
            report.error(f"{problem.reason}{column}", location, code="bad-json")


def iter_items(items: list[object]) -> Iterator[tuple[str, object]]:
    """(location, value) for each element of a top-level JSON array."""
    for number, item in enumerate(items, 1):
        yield f"item {number}", item


@dataclass(frozen=True)
class MessageSpec:
    """Which keys hold a message's role and text, and which role names mean what."""

    role_keys: tuple[str, ...]
    content_keys: tuple[str, ...]
    roles: Mapping[str, Role]

    def allowed(self) -> str:
        return ", ".join(sorted(self.roles))


def parse_messages(
    items: object, field: str, spec: MessageSpec, location: str, report: Report
) -> list[Turn] | None:
    """The turns of a message list, or None after reporting the first problem."""
    if not isinstance(items, list):
        report.error(
            f"expected an array of messages, found {json_type(items)}",
            location,
            field,
            "wrong-type",
        )
        return None
    if not items:
        report.error("the message list is empty", location, field, "empty-content")
        return None
    turns: list[Turn] = []
    for index, message in enumerate(items):
        turn = _parse_message(message, f"{field}[{index}]", spec, location, report)
        if turn is None:
            return None
        turns.append(turn)
    return turns


def _parse_message(
    message: object, field: str, spec: MessageSpec, location: str, report: Report
) -> Turn | None:
    if not isinstance(message, dict):
        report.error(
            f"expected a message object, found {json_type(message)}", location, field, "wrong-type"
        )
        return None
    role = _role(message, field, spec, location, report)
    if role is None:
        return None
    text = _content(message, field, spec, location, report)
    if text is None:
        return None
    return Turn(role, text)


def _first_key(message: dict, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in message), None)


def _role(
    message: dict, field: str, spec: MessageSpec, location: str, report: Report
) -> Role | None:
    key = _first_key(message, spec.role_keys)
    if key is None:
        report.error(
            f"missing '{spec.role_keys[0]}'",
            location,
            f"{field}.{spec.role_keys[0]}",
            "missing-field",
        )
        return None
    value = message[key]
    if not isinstance(value, str):
        report.error(
            f"the role must be a string, found {json_type(value)}",
            location,
            f"{field}.{key}",
            "wrong-type",
        )
        return None
    role = spec.roles.get(value.strip().casefold())
    if role is None:
        report.error(
            f"unknown role '{short(value)}'; allowed: {spec.allowed()}",
            location,
            f"{field}.{key}",
            "unknown-role",
        )
    return role


def _content(
    message: dict, field: str, spec: MessageSpec, location: str, report: Report
) -> str | None:
    key = _first_key(message, spec.content_keys)
    name = f"{field}.{key or spec.content_keys[0]}"
    value = message.get(key) if key else None
    if value is None:
        report.error("missing message text", location, name, "empty-content")
        return None
    raw = _text_of(value)
    if raw is None:
        report.error(
            f"the message text must be a string, found {json_type(value)}",
            location,
            name,
            "wrong-type",
        )
        return None
    text = clean_text(raw)
    if not text:
        report.error("empty message text", location, name, "empty-content")
        return None
    return text


def _text_of(value: object) -> str | None:
    """A string, or OpenAI's list of text parts ([{"type": "text", "text": ...}]) joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(_is_text_part(p) for p in value):
        return "\n".join(p["text"] for p in value)
    return None


def _is_text_part(part: object) -> bool:
    return (
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )
