"""The entry point of ingest: one conversations file in, typed conversations and findings out.

`read_conversations` reads bytes (`decoding`), detects the format from the content
(`detect`), runs that format's reader, and returns every conversation together with every
per-record problem as a `Finding`. Problems with the file as a whole (missing, empty, binary,
too large, unknown format, bad header) raise `InputError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chatbot.ingest.decoding import decode_file
from chatbot.ingest.detect import SUPPORTED_FORMATS, ReadOptions, plan_read
from chatbot.ingest.report import Report, StopReading
from chatbot.types import Conversation, Finding

__all__ = ["ReadResult", "read_conversations", "SUPPORTED_FORMATS"]


@dataclass
class ReadResult:
    """What one file yielded."""

    conversations: list[Conversation]
    findings: list[Finding]
    format: str
    """One of "openai", "sharegpt", "table", "transcript", "zendesk"."""
    encoding: str
    """The encoding the file was decoded with: "utf-8", "utf-8-sig", "utf-16-le", "cp1252"..."""


def _names(values: Sequence[str] | str) -> tuple[str, ...]:
    # A lone string is one name, not a sequence of one-letter names.
    return (values,) if isinstance(values, str) else tuple(values)


def read_conversations(
    path: Path,
    *,
    column_map: Mapping[str, str] | None = None,
    brand_names: Sequence[str] = (),
    customer_labels: Sequence[str] = (),
) -> ReadResult:
    """Read every conversation in `path`, detecting its format from its content.

    `column_map` names a table's columns ({"prompt": ..., "response": ..., optionally
    "system" and "conversation"}). `brand_names` count as the assistant speaker in transcripts
    and ShareGPT data and as response columns in tables; `customer_labels` add customer-side
    speaker labels for transcripts. Raises `InputError` for problems with the file as a whole.
    """
    path = Path(path)
    decoded = decode_file(path)
    options = ReadOptions(column_map, _names(brand_names), _names(customer_labels))
    plan = plan_read(decoded.text, path.name, path.suffix.lower(), options)
    report = Report(path.name)
    for message, location in decoded.warnings:
        report.warning(message, location, code="encoding")
    conversations: list[Conversation] = []
    try:
        for conversation in plan.read(report):
            conversations.append(conversation)
    except StopReading:
        pass  # the report already ends with a summary finding
    return ReadResult(conversations, report.close(), plan.format, decoded.encoding)
