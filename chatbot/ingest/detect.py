"""Which format a file is in, decided by its content; the file extension only breaks ties.

1. Text whose first character is `{` or `[` is JSON. It is JSON Lines when most of its first
   non-blank lines (two at least) each look like a whole object `{...}`; otherwise the file is
   one JSON document. Keys decide the format: `messages` → openai, `conversations` →
   sharegpt, `tickets` or `comments` → zendesk.
2. Other text is a table when its header names a prompt and a response column (or a column map
   is given); else a transcript when lines start with speaker labels; else a table when its
   first rows are consistently delimited, or the extension is .csv/.tsv (so that the error
   names the columns found); else the format is unknown.

The result is a `Plan`: the format's name and a function that reads the text into
conversations, so JSON parsed here is not parsed again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from chatbot.errors import InputError
from chatbot.ingest.jsonsafe import JsonProblem, json_type, load_json
from chatbot.ingest.openai_chat import read_openai
from chatbot.ingest.records import iter_items, iter_json_lines, short
from chatbot.ingest.report import Report
from chatbot.ingest.sharegpt import read_sharegpt
from chatbot.ingest.table import read_table, sniff_table
from chatbot.ingest.transcript import SpeakerLabels, looks_like_transcript, read_transcript
from chatbot.ingest.zendesk import read_tickets, read_zendesk_document
from chatbot.types import Conversation

__all__ = ["SUPPORTED_FORMATS", "ReadOptions", "Plan", "plan_read"]

SUPPORTED_FORMATS: tuple[str, ...] = (
    'openai: OpenAI chat JSONL, one {"messages": [{"role", "content"}, ...]} per line '
    "(or a JSON array of them)",
    'sharegpt: ShareGPT JSON, an array (or JSONL) of {"conversations": [{"from", "value"}, ...]}',
    "table: CSV or TSV with a header naming a prompt and a response column "
    '(e.g. "Customer Message" and "Agent Reply"), one exchange per row',
    'transcript: plain text, each turn starting with a speaker label ("Customer:", "Agent:", '
    'or the brand name), conversations separated by "---" lines or blank lines',
    'zendesk: Zendesk ticket export JSON ("tickets" with "comments", and "users" with roles)',
)
_SUMMARY = (
    "supported formats: OpenAI chat JSONL, ShareGPT JSON, CSV/TSV table, text transcript, "
    "Zendesk ticket export"
)
_TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".tab"})
_JSON_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson"})
_DETECT_LINES = 20
_DETECT_RECORDS = 100
_LEADING_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class ReadOptions:
    """What the caller knows about the data: an explicit table column map, the brand's names."""

    column_map: Mapping[str, str] | None = None
    brand_names: tuple[str, ...] = ()
    customer_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A detected format and how to read it."""

    format: str
    read: Callable[[Report], Iterable[Conversation]]


def plan_read(text: str, file: str, suffix: str, options: ReadOptions) -> Plan:
    """Detect the format of `text` (the content of `file`); raise `InputError` when unknown."""
    leading = _LEADING_SPACE.match(text)
    start = leading.end() if leading else 0
    if text[start : start + 1] in ("{", "["):
        return _plan_json(text, start, file, options)
    return _plan_text(text, file, suffix, options)


# --- JSON ---------------------------------------------------------------------------------------


def _kind(record: object) -> str | None:
    if not isinstance(record, dict):
        return None
    for key, kind in (
        ("messages", "openai"),
        ("conversations", "sharegpt"),
        ("comments", "zendesk"),
    ):
        if key in record:
            return kind
    return None


def _first_lines(text: str, count: int) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for the first `count` non-blank lines, without splitting
    the whole text."""
    position = 0
    number = 0
    while count and position < len(text):
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        line = text[position:end].strip()
        position = end + 1
        number += 1
        if line:
            count -= 1
            yield number, line


def _is_json_lines(text: str) -> bool:
    lines = [line for _, line in _first_lines(text, _DETECT_LINES)]
    objects = sum(1 for line in lines if line.startswith("{") and line.endswith("}"))
    return len(lines) >= 2 and objects * 2 > len(lines)


def _first_line_is_json(text: str) -> bool:
    _, first = next(_first_lines(text, 1), (0, ""))
    try:
        load_json(first)
    except JsonProblem:
        return False
    return True


def _plan_json(text: str, start: int, file: str, options: ReadOptions) -> Plan:
    if _is_json_lines(text):
        return _plan_json_lines(text, file, options)
    try:
        document = load_json(text)
    except JsonProblem as problem:
        if problem.reason.endswith("Extra data") and _first_line_is_json(text):
            # several top-level values and the first is a whole line: JSON Lines after all
            return _plan_json_lines(text, file, options)
        raise InputError(problem.reason, file=file, location=problem.where or None) from None
    first_line = text.count("\n", 0, start) + 1
    return _plan_document(document, f"line {first_line}", file, options)


def _plan_json_lines(text: str, file: str, options: ReadOptions) -> Plan:
    first_problem: str | None = None
    kind: str | None = None
    for number, line in _first_lines(text, _DETECT_RECORDS):
        try:
            kind = _kind(load_json(line))
        except JsonProblem as problem:
            first_problem = first_problem or f"line {number}: {problem.reason}"
            continue
        if kind is not None:
            break
    if kind is None:
        reason = first_problem or "no record has 'messages', 'conversations' or 'comments'"
        raise InputError(f"unrecognised JSON Lines ({reason}); {_SUMMARY}", file=file)
    return _plan_records(kind, lambda report: iter_json_lines(text, report), options)


def _plan_records(
    kind: str, records: Callable[[Report], Iterable[tuple[str, object]]], options: ReadOptions
) -> Plan:
    if kind == "openai":
        return Plan(kind, lambda report: read_openai(records(report), report))
    if kind == "sharegpt":
        return Plan(kind, lambda r: read_sharegpt(records(r), r, options.brand_names))
    return Plan(kind, lambda report: read_tickets(records(report), report))


def _plan_document(document: object, location: str, file: str, options: ReadOptions) -> Plan:
    if isinstance(document, list):
        return _plan_array(document, file, options)
    if not isinstance(document, dict):
        raise InputError(
            f"the file holds {json_type(document)}, not conversations; {_SUMMARY}", file=file
        )
    single_ticket = "id" in document or "requester_id" in document
    if "tickets" in document or ("comments" in document and not single_ticket):
        return Plan("zendesk", lambda report: read_zendesk_document(document, report))
    kind = _kind(document)
    if kind is None:
        keys = ", ".join(f"'{short(str(k))}'" for k in list(document)[:10]) or "none"
        raise InputError(
            f"a JSON object with keys {keys} is not a known format; {_SUMMARY}", file=file
        )
    return _plan_records(kind, lambda report: [(location, document)], options)


def _plan_array(items: list[object], file: str, options: ReadOptions) -> Plan:
    if not items:
        raise InputError("the file holds an empty JSON array", file=file)
    kind = next(filter(None, map(_kind, items[:_DETECT_RECORDS])), None)
    if kind is None:
        raise InputError(
            f"a JSON array whose items have no 'messages', 'conversations' or 'comments' (the "
            f"first item is {json_type(items[0])}); {_SUMMARY}",
            file=file,
        )
    return _plan_records(kind, lambda report: iter_items(items), options)


# --- text ---------------------------------------------------------------------------------------


def _plan_text(text: str, file: str, suffix: str, options: ReadOptions) -> Plan:
    layout = sniff_table(text, suffix)
    brands = options.brand_names
    recognised = layout is not None and layout.recognised(brands)
    if layout is not None and (options.column_map is not None or recognised):
        return Plan("table", lambda r: read_table(text, layout, r, options.column_map, brands))
    labels = SpeakerLabels.build(brands, options.customer_labels).with_other_speaker(text)
    if looks_like_transcript(text, labels):
        return Plan("transcript", lambda report: read_transcript(text, labels, report))
    if layout is not None and (layout.consistent or suffix in _TABLE_SUFFIXES):
        return Plan("table", lambda r: read_table(text, layout, r, options.column_map, brands))
    if suffix in _JSON_SUFFIXES:
        # A .json file holding a bare number, string or null: say so rather than "unknown".
        return _plan_json(text, 0, file, options)
    raise InputError(f"cannot tell the format of this file; {_SUMMARY}", file=file)
