"""Reader for plain-text transcripts where each turn starts with a speaker label.

    Customer: My kettle won't switch off.
    Kettlebird: Sorry to hear that! Is the lid fully closed?
    ---
    Customer: ...

Separation is deliberately simple: if any line consists of three or more dashes (`---`), those
lines separate conversations and blank lines are paragraph breaks inside a turn; otherwise blank
lines separate conversations. A line without a known label continues the previous turn, so a
reply may span lines (and a line such as "Tip: descale monthly" inside a reply stays text).

Labels are matched case-insensitively, with optional Markdown bold (`**Agent:**`). User side:
Customer, User, Client, Human, Visitor, Guest, Caller, Q, plus `customer_labels`. Assistant
side: Agent, Assistant, Support, Bot, AI, Rep, A, plus each of `brand_names` and any label that
starts with one ("Kettlebird Support"). System: System. A conversation's location is the line
where it starts. Timestamps or other prefixes before the label are not recognised.

A transcript between the customer and one other named speaker ("Customer:" / "Maple Bakery:",
or "Customer:" / "Jo:") reads that speaker as the brand, whatever name the brand was given:
`SpeakerLabels.with_other_speaker` finds it. A label counts as a speaker there only when it
starts about as many lines as the customer's, so a "Tip:" line inside a reply is not one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from chatbot.ingest.normalize import clean_text, finish_conversation
from chatbot.ingest.records import short
from chatbot.ingest.report import Report
from chatbot.types import Conversation, Role, Turn

__all__ = ["SpeakerLabels", "read_transcript", "looks_like_transcript"]

_USER_LABELS = ("Customer", "User", "Client", "Human", "Visitor", "Guest", "Caller", "Q")
_ASSISTANT_LABELS = ("Agent", "Assistant", "Support", "Bot", "AI", "Rep", "A")
_MAX_LABEL_CHARS = 40
_DETECT_LINES = 1000


@dataclass(frozen=True)
class SpeakerLabels:
    """Which labels mean which role; brand names also match as label prefixes."""

    roles: Mapping[str, Role]
    brands: tuple[str, ...] = ()
    assistant_names: tuple[str, ...] = _ASSISTANT_LABELS
    user_names: tuple[str, ...] = _USER_LABELS

    @classmethod
    def build(
        cls, brand_names: Sequence[str] = (), customer_labels: Sequence[str] = ()
    ) -> SpeakerLabels:
        brands = tuple(b.strip() for b in brand_names if b.strip())
        roles: dict[str, Role] = {"system": "system"}
        roles.update({label.casefold(): "assistant" for label in (*_ASSISTANT_LABELS, *brands)})
        customers = (*_USER_LABELS, *(c.strip() for c in customer_labels if c.strip()))
        roles.update({label.casefold(): "user" for label in customers})
        brand_keys = tuple(b.casefold() for b in brands)
        return cls(roles, brand_keys, (*_ASSISTANT_LABELS, *brands), customers)

    def with_other_speaker(self, text: str) -> SpeakerLabels:
        """These labels, plus the one speaker beside the customer as the brand when the text is
        a two-party transcript whose other speaker has no known label ("Customer:" / "Jo:")."""
        customer, others, known_assistant = 0, Counter[str](), False
        for line in _lines(text)[:_DETECT_LINES]:
            label, _ = _label_and_text(line)
            if label is None or len(label.split()) > 3:
                continue
            role = self.role_of(label)
            customer += role == "user"
            known_assistant |= role == "assistant"
            if role is None:
                others[label] += 1
        # Turns alternate, so the brand starts about as many lines as the customer does.
        speakers = [name for name, n in others.items() if 2 * n >= customer]
        if customer == 0 or known_assistant or len(speakers) != 1:
            return self
        name = speakers[0]
        roles = {**self.roles, name.casefold(): "assistant"}
        return replace(self, roles=roles, assistant_names=(*self.assistant_names, name))

    def role_of(self, label: str) -> Role | None:
        key = label.casefold()
        role = self.roles.get(key)
        if role is None and any(key.startswith(brand + " ") for brand in self.brands):
            return "assistant"
        return role

    def split(self, line: str) -> tuple[Role, str] | None:
        """(role, text after the label) when the line starts with a known label."""
        label, text = _label_and_text(line)
        if label is None:
            return None
        role = self.role_of(label)
        return (role, text) if role is not None else None


def _label_and_text(line: str) -> tuple[str | None, str]:
    head, colon, rest = line.partition(":")
    if not colon or len(head) > _MAX_LABEL_CHARS:
        return None, line
    label = head.strip().strip("*_").strip()
    if not label:
        return None, line
    if head.lstrip().startswith(("*", "_")):
        rest = rest.lstrip("*_")
    return label, rest


def _is_rule(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 3 and not stripped.strip("-")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def looks_like_transcript(text: str, labels: SpeakerLabels) -> bool:
    """The first text line has a known label, or at least two of the first lines have one."""
    labelled = 0
    seen_text = False
    for line in _lines(text)[:_DETECT_LINES]:
        if not line.strip() or _is_rule(line):
            continue
        if labels.split(line) is not None:
            if not seen_text:
                return True
            labelled += 1
        seen_text = True
    return labelled >= 2


def _blocks(lines: list[str]) -> Iterator[list[tuple[int, str]]]:
    dashed = any(_is_rule(line) for line in lines)
    block: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        boundary = _is_rule(line) if dashed else not line.strip()
        if boundary:
            if block:
                yield block
            block = []
        elif block or line.strip():
            block.append((number, line))
    if block:
        yield block


def read_transcript(text: str, labels: SpeakerLabels, report: Report) -> Iterator[Conversation]:
    """One conversation per block of labelled lines; bad blocks become findings."""
    hint = (
        f" (assistant speakers: {', '.join(labels.assistant_names)}; pass brand names for others)"
    )
    for block in _blocks(_lines(text)):
        turns = _block_turns(block, labels, report)
        if turns is not None:
            conversation = finish_conversation(turns, report, f"line {block[0][0]}", hint=hint)
            if conversation is not None:
                yield conversation


def _block_turns(
    block: list[tuple[int, str]], labels: SpeakerLabels, report: Report
) -> list[Turn] | None:
    speakers: list[tuple[Role, list[str], int]] = []
    for number, line in block:
        split = labels.split(line)
        if split is not None:
            speakers.append((split[0], [split[1]], number))
        elif speakers:
            speakers[-1][1].append(line)
        else:
            _report_unlabelled(line, number, labels, report)
            return None
    turns: list[Turn] = []
    for role, parts, number in speakers:
        content = clean_text("\n".join(parts))
        if not content:
            report.error(
                "empty turn: the label has no text", f"line {number}", code="empty-content"
            )
            return None
        turns.append(Turn(role, content))
    return turns


def _report_unlabelled(line: str, number: int, labels: SpeakerLabels, report: Report) -> None:
    label, _ = _label_and_text(line)
    if label is not None and len(label.split()) <= 3:
        message = (
            f"unknown speaker '{short(label)}'; known: {', '.join(labels.user_names)} (customer), "
            f"{', '.join(labels.assistant_names)} (assistant); pass brand names or customer "
            "labels for others"
        )
        code = "unknown-role"
    else:
        message = "text before the first speaker label; start each turn with e.g. 'Customer:'"
        code = "no-label"
    report.error(message, f"line {number}", code=code)
