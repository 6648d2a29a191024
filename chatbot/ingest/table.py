"""Reader for CSV/TSV tables: a prompt column and a response column, one exchange per row.

The delimiter is sniffed from the header line (tab, comma, semicolon or pipe); quoted cells may
span lines. Columns are found by header name, case-, space- and punctuation-insensitively:
"Customer Message"/"Agent Reply", prompt/response, question/answer, input/output,
instruction/output, user/assistant, query/reply, the brand's name + "reply"... The first
matching column wins (so in Alpaca's instruction/input/output, "instruction" is the prompt).
An explicit column map (`{"prompt": "Col A", "response": "Col B"}`, optionally "system" and
"conversation") overrides the guess.

Rows are numbered as a spreadsheet shows them: the header is row 1. Each row is one
conversation, unless a conversation-id column ("conversation_id", "thread_id", "ticket_id"...)
is present: then rows sharing an id form one multi-turn conversation, in file order, located at
its first row. An empty prompt or response cell is an error naming the row and the column, and
so is a row with more non-empty cells than the header (an unquoted delimiter would otherwise cut
a reply short silently).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from chatbot.errors import InputError
from chatbot.ingest import limits
from chatbot.ingest.normalize import clean_text, finish_conversation
from chatbot.ingest.records import short
from chatbot.ingest.report import Report
from chatbot.types import Conversation, Role, Turn

__all__ = ["TableLayout", "sniff_table", "read_table", "COLUMN_KEYS"]

COLUMN_KEYS = ("prompt", "response", "system", "conversation")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Header names are compared normalised (lower case, no spaces or punctuation); a prompt column is
# any base name followed by any suffix ("customer" + "message"), likewise a response column.
_PROMPT_BASES = _words(
    "customer user client human question prompt query input instruction request inquiry enquiry "
    "message q"
)
_PROMPT_SUFFIXES = (
    "",
    *_words("message text msg body content question query input prompt request"),
)
_RESPONSE_BASES = _words(
    "agent assistant support bot answer response reply output completion gpt model a"
)
_RESPONSE_SUFFIXES = ("", *_words("message text msg body content reply response answer output"))
_SYSTEM_NAMES = frozenset(_words("system systemprompt systemmessage"))
_CONVERSATION_NAMES = frozenset(
    _words(
        "conversationid conversation threadid thread ticketid chatid sessionid dialogueid dialogid"
    )
)
_CELL_ROLES: tuple[tuple[str, Role], ...] = (("prompt", "user"), ("response", "assistant"))
_NON_WORD = re.compile(r"[\W_]+")
_SNIFF_CHARS = 1024
_SAMPLE_CHARS = 65536
_DELIMITERS = "\t,;|"


def _norm(name: str) -> str:
    return _NON_WORD.sub("", name).casefold()


def _names(bases: Sequence[str], suffixes: Sequence[str]) -> frozenset[str]:
    return frozenset(_norm(base) + suffix for base in bases for suffix in suffixes)


_PROMPT_NAMES = _names(_PROMPT_BASES, _PROMPT_SUFFIXES)


@dataclass(frozen=True)
class TableLayout:
    """A table's delimiter and header, as read from the start of the file."""

    delimiter: str
    header: list[str]
    consistent: bool
    """True when the first rows all have the header's number (at least two) of cells."""

    def recognised(self, brand_names: Sequence[str] = ()) -> bool:
        """Whether both a prompt and a response column are found by name."""
        found = _auto_columns(self.header, brand_names, {})
        return "prompt" in found and "response" in found


@dataclass(frozen=True)
class _Columns:
    header: list[str]
    index: dict[str, int]

    def cell(self, row: list[str], key: str) -> str:
        position = self.index.get(key)
        return row[position] if position is not None and position < len(row) else ""


@dataclass
class _Group:
    location: str
    turns: list[Turn] = field(default_factory=list)
    broken: bool = False


@contextlib.contextmanager
def _cell_limit() -> Iterator[None]:
    # csv's limit is process-wide; it is raised only while a table is read, then restored.
    previous = csv.field_size_limit(limits.MAX_CELL_CHARS)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _sniff_delimiter(text: str, suffix: str) -> str:
    first_line = text[:_SNIFF_CHARS].split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(first_line, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return "\t" if suffix == ".tsv" else ","


def sniff_table(text: str, suffix: str = "") -> TableLayout | None:
    """The table layout at the start of `text`, or None when no header row can be parsed."""
    delimiter = _sniff_delimiter(text, suffix)
    with _cell_limit():
        reader = csv.reader(io.StringIO(text[:_SAMPLE_CHARS], newline=""), delimiter=delimiter)
        try:
            header = next(reader, [])
        except csv.Error:
            return None
        if not header:
            return None
        try:
            rows = [row for _, row in zip(range(5), reader, strict=False) if row]
        except csv.Error:
            rows = []  # a bad cell in a data row is reported, with its row, when read
    consistent = len(header) >= 2 and all(0 < len(cell.strip()) <= 64 for cell in header)
    consistent = consistent and bool(rows) and all(len(row) == len(header) for row in rows)
    return TableLayout(delimiter, header, consistent)


def _auto_columns(
    header: Sequence[str], brand_names: Sequence[str], taken: Mapping[str, int]
) -> dict[str, int]:
    response_bases = (*_RESPONSE_BASES, *(b for b in brand_names if b.strip()))
    wanted = {
        "prompt": _PROMPT_NAMES,
        "response": _names(response_bases, _RESPONSE_SUFFIXES),
        "system": _SYSTEM_NAMES,
        "conversation": _CONVERSATION_NAMES,
    }
    found = dict(taken)
    normalised = [_norm(name) for name in header]
    for key, names in wanted.items():
        if key in found:
            continue
        used = set(found.values())
        match = next((i for i, n in enumerate(normalised) if n in names and i not in used), None)
        if match is not None:
            found[key] = match
    return found


def _listing(header: Sequence[str]) -> str:
    shown = ", ".join(f"'{short(name)}'" for name in header[:20])
    return shown + (f" and {len(header) - 20} more" if len(header) > 20 else "")


def _explicit_columns(
    header: list[str], column_map: Mapping[str, str], file: str
) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, name in column_map.items():
        if key not in COLUMN_KEYS:
            raise InputError(
                f"unknown column-map key '{short(key)}'; allowed: {', '.join(COLUMN_KEYS)}",
                file=file,
            )
        exact = [i for i, h in enumerate(header) if h == name]
        loose = [i for i, h in enumerate(header) if _norm(h) == _norm(name)]
        if not exact and not loose:
            raise InputError(
                f"column '{short(name)}' (given for '{key}') not found; columns "
                f"found: {_listing(header)}",
                file=file,
                location="row 1",
            )
        found[key] = (exact or loose)[0]
    return found


def _resolve(
    header: list[str], column_map: Mapping[str, str] | None, brands: Sequence[str], file: str
) -> _Columns:
    explicit = _explicit_columns(header, column_map or {}, file)
    found = _auto_columns(header, brands, explicit)
    for key in ("prompt", "response"):
        if key not in found:
            raise InputError(
                f"no {key} column; columns found: {_listing(header)}. Name them e.g. "
                "'prompt' and 'response' (or 'Customer Message' and 'Agent Reply'), or pass a "
                "column map",
                file=file,
                location="row 1",
            )
    if found["prompt"] == found["response"]:
        raise InputError("the prompt and response columns must differ", file=file, location="row 1")
    return _Columns(header, found)


def _csv_problem(exc: csv.Error) -> str:
    if "field limit" in str(exc):
        return f"a cell is longer than {limits.MAX_CELL_CHARS:,} characters (an unclosed quote?)"
    return f"cannot parse the table: {exc}"


def read_table(
    text: str,
    layout: TableLayout,
    report: Report,
    column_map: Mapping[str, str] | None = None,
    brand_names: Sequence[str] = (),
) -> list[Conversation]:
    """Conversations from a whole table; bad rows become findings, a bad header raises."""
    with _cell_limit():
        lines = _guarded_lines(text, layout.delimiter, report.file)
        rows = csv.reader(lines, delimiter=layout.delimiter)
        try:
            header = next(rows)
        except (csv.Error, StopIteration) as exc:
            raise InputError(
                "cannot read the header row", file=report.file, location="row 1"
            ) from exc
        columns = _resolve(header, column_map, brand_names, report.file)
        groups = _collect(rows, columns, report)
    conversations = []
    for group in groups.values():
        if not group.broken:
            conversation = finish_conversation(group.turns, report, group.location)
            if conversation is not None:
                conversations.append(conversation)
    return conversations


def _guarded_lines(text: str, delimiter: str, file: str) -> Iterator[str]:
    """The physical lines of `text`, refusing one with absurdly many delimiters before csv
    would split it into millions of cells."""
    limit = limits.MAX_SEPARATORS_PER_LINE
    for number, line in enumerate(io.StringIO(text, newline=""), 1):
        if line.count(delimiter) > limit:
            raise InputError(
                f"more than {limit:,} {delimiter!r} separators on one line; this does not look "
                "like a conversation table",
                file=file,
                location=f"line {number}",
            )
        yield line


def _collect(rows: Iterator[list[str]], columns: _Columns, report: Report) -> dict[object, _Group]:
    groups: dict[object, _Group] = {}
    number = 1
    try:
        for row in rows:
            number += 1
            if any(cell.strip() for cell in row):
                _add_row(row, number, columns, groups, report)
    except csv.Error as exc:
        raise InputError(
            _csv_problem(exc), file=report.file, location=f"row {number + 1}"
        ) from None
    return groups


def _add_row(
    row: list[str], number: int, columns: _Columns, groups: dict[object, _Group], report: Report
) -> None:
    location = f"row {number}"
    conversation_id = columns.cell(row, "conversation").strip()
    key = ("id", conversation_id) if conversation_id else ("row", number)
    group = groups.setdefault(key, _Group(location))
    if group.broken:
        return
    turns = _row_turns(row, location, columns, report, with_system=not group.turns)
    if turns is None:
        group.broken = True
    else:
        group.turns.extend(turns)


def _row_turns(
    row: list[str], location: str, columns: _Columns, report: Report, *, with_system: bool
) -> list[Turn] | None:
    if any(cell.strip() for cell in row[len(columns.header) :]):
        report.error(
            f"the row has {len(row)} cells but the header has {len(columns.header)}: quote cells "
            "that contain the delimiter",
            location,
            code="extra-cells",
        )
        return None
    turns: list[Turn] = []
    system = clean_text(columns.cell(row, "system"))
    if with_system and system:
        turns.append(Turn("system", system))
    for key, role in _CELL_ROLES:
        text = clean_text(columns.cell(row, key))
        if not text:
            name = columns.header[columns.index[key]]
            report.error(f"empty cell in column '{short(name)}'", location, name, "empty-cell")
            return None
        turns.append(Turn(role, text))
    return turns
