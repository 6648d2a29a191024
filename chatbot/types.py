"""The typed records every stage shares: turns, conversations and validation findings.

Also the named choices several faces offer (the CLI's `choices`, the app's pickers): each is a
`Literal` here, and its values are read from it (`typing.get_args`), so a choice is added once.
This module imports nothing heavy, so the command line can build its parser from it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ROLES",
    "ChatMode",
    "Conversation",
    "ExportFormat",
    "Finding",
    "GgufQuant",
    "PreferenceKind",
    "PromptStyle",
    "Role",
    "Severity",
    "Turn",
]

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = typing.get_args(Role)
Severity = Literal["error", "warning"]
ChatMode = Literal["base", "prompted", "fewshot", "tuned"]
"""Which model answers in chat: see `chatbot.engine.chat_engine`."""
ExportFormat = Literal["adapter", "merged", "gguf"]
"""What `brandvoice export` writes: see `chatbot.export.package`."""
GgufQuant = Literal["f16", "q8_0", "q4_k_m"]
"""The weight types a GGUF export can have: see `chatbot.export.gguf_file`."""
PreferenceKind = Literal["dpo", "kto"]
"""The preference-data layouts votes are exported in (and runs from votes learn with)."""
PromptStyle = Literal["conversational", "standard"]
"""Prompts of exported preference data as message lists or plain strings."""


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str

    def to_message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Conversation:
    """One conversation as read from a source file.

    `source` is the file name and `location` where in it the conversation starts ("line 12",
    "row 7", "ticket 4521", "block 3"), so every later finding can point back at the input.
    """

    turns: list[Turn]
    source: str = ""
    location: str = ""

    def to_messages(self) -> list[dict[str, str]]:
        return [t.to_message() for t in self.turns]

    def to_record(self) -> dict:
        return {"messages": self.to_messages(), "source": self.source, "location": self.location}

    def key(self) -> tuple[tuple[str, str], ...]:
        """Identity for exact-duplicate detection."""
        return tuple((t.role, t.content) for t in self.turns)


@dataclass(frozen=True)
class Finding:
    """A problem found in the input: an error blocks prepare, a warning is reported."""

    severity: Severity
    message: str
    file: str = ""
    location: str = ""
    field: str = ""
    code: str = ""

    def __str__(self) -> str:
        where = ", ".join(
            p
            for p in (self.file, self.location, f"field '{self.field}'" if self.field else "")
            if p
        )
        return f"{where}: {self.message}" if where else self.message
