"""Checking many texts at once: read a folder or a CSV of drafts, write a report worst-first.

A folder gives one text per `.txt` or `.md` file (named by its file). A CSV gives one text per
row: the text from a column named text, draft, reply, response, body, content or message (or the
only column), the customer message it answers from customer, prompt, question or customer message
(optional), and a name from id, name, title or file (else "row N"). The report is a CSV (one row
per text) or a self-contained HTML page (sentences highlighted), sorted worst score first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

from chatbot.check.checker import DraftCheck, DraftChecker
from chatbot.errors import InputError
from chatbot.ingest.decoding import decode_file
from chatbot.storage import atomic_write_text

__all__ = ["Draft", "read_drafts", "check_drafts", "write_report", "REPORT_COLUMNS"]

_TEXT_FILES = (".txt", ".md")
_TEXT_HEADERS = ("text", "draft", "reply", "response", "body", "content", "message")
_CUSTOMER_HEADERS = ("customer", "customer message", "prompt", "question")
_NAME_HEADERS = ("id", "name", "title", "file")
REPORT_COLUMNS = [
    "rank",
    "name",
    "score",
    "likelihood",
    "style",
    "rules",
    "broken rules",
    "off-brand sentences",
    "text",
    "fixed text",
]


@dataclass(frozen=True)
class Draft:
    name: str
    text: str
    customer: str | None = None


def read_drafts(path: Path) -> list[Draft]:
    """The texts in a folder of .txt/.md files, a .csv file, or one text file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _TEXT_FILES)
        if not files:
            raise InputError("the folder holds no .txt or .md files to check", file=str(path))
        return [Draft(p.name, decode_file(p).text) for p in files]
    if not path.is_file():
        raise InputError("no such file or folder", file=str(path))
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    return [Draft(path.name, decode_file(path).text)]


def _column(header: list[str], names: Iterable[str]) -> int | None:
    folded = [h.strip().casefold() for h in header]
    return next((folded.index(n) for n in names if n in folded), None)


def _read_csv(path: Path) -> list[Draft]:
    rows = list(csv.reader(io.StringIO(decode_file(path).text)))
    if not rows:
        raise InputError("the CSV file is empty", file=path.name)
    header, body = rows[0], rows[1:]
    text_at = _column(header, _TEXT_HEADERS)
    if text_at is None and len(header) == 1:
        text_at = 0
    if text_at is None:
        raise InputError(
            f"no column holds the texts; name one {', '.join(_TEXT_HEADERS)} "
            f"(the header is: {', '.join(header)})",
            file=path.name,
            location="line 1",
        )
    customer_at, name_at = _column(header, _CUSTOMER_HEADERS), _column(header, _NAME_HEADERS)
    drafts = []
    for number, row in enumerate(body, 2):
        cell = row[text_at].strip() if text_at < len(row) else ""
        if not cell:
            continue  # a blank row is not a draft
        customer = (
            row[customer_at].strip() if customer_at is not None and customer_at < len(row) else ""
        )
        name = row[name_at].strip() if name_at is not None and name_at < len(row) else ""
        drafts.append(Draft(name or f"row {number}", cell, customer or None))
    if not drafts:
        raise InputError(f"the '{header[text_at]}' column has no text", file=path.name)
    return drafts


def _cell(row: list[str], at: int | None) -> str:
    return row[at].strip() if at is not None and at < len(row) else ""


def check_drafts(
    checker: DraftChecker,
    drafts: list[Draft],
    progress: Callable[[str, int, int], None] | None = None,
) -> list[tuple[Draft, DraftCheck]]:
    """Check every draft (no suggested replies: a batch audits what exists), worst score first."""
    out = []
    for done, draft in enumerate(drafts, 1):
        out.append((draft, checker.check(draft.text, draft.customer, suggest=False)))
        if progress:
            progress("checking", done, len(drafts))
    return sorted(out, key=lambda pair: (pair[1].score.total, pair[0].name))


def _row(rank: int, draft: Draft, check: DraftCheck) -> list[str]:
    parts = {p.key: p for p in check.score.parts}
    off = [s.text for s in check.sentences if s.verdict == "off-brand"]
    return [
        str(rank),
        draft.name,
        str(check.score.total),
        *(f"{parts[k].points}/{parts[k].max_points}" for k in ("likelihood", "style", "rules")),
        "; ".join(f"{r.rule}: {r.detail}" for r in check.broken),
        " | ".join(off),
        check.text,
        check.fixed.text if check.fixed.fixes else "",
    ]


def write_report(results: list[tuple[Draft, DraftCheck]], out: Path) -> Path:
    """Write the report as CSV (a .csv path) or HTML (any other), atomically; returns the path."""
    out = Path(out)
    rows = [_row(i, d, c) for i, (d, c) in enumerate(results, 1)]
    if out.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(rows)
        atomic_write_text(out, buffer.getvalue())
    else:
        atomic_write_text(out, _html(results))
    return out


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:6px 8px;
vertical-align:top;text-align:left}th{background:#f5f5f5}.score{font-size:20px;font-weight:600}
.on{background:#d8f0df}.mid{background:#fbf0cf}.off{background:#f8d7d3}.bad{color:#b3261e}
.small{color:#666;font-size:12px}
"""
_SHADE = {"on-brand": "on", "in between": "mid", "off-brand": "off"}


def _highlighted(check: DraftCheck) -> str:
    pieces, at = [], 0
    for sentence in check.sentences:
        pieces.append(escape(check.text[at : sentence.start]))
        title = f"{sentence.verdict} ({sentence.score if sentence.score is not None else '–'})"
        if sentence.breaks:
            title += "; breaks " + ", ".join(dict.fromkeys(b.detail for b in sentence.breaks))
        pieces.append(
            f'<span class="{_SHADE[sentence.verdict]}" title="{escape(title)}">'
            f"{escape(sentence.text)}</span>"
        )
        at = sentence.end
    pieces.append(escape(check.text[at:]))
    return "".join(pieces).replace("\n", "<br>")


def _html(results: list[tuple[Draft, DraftCheck]]) -> str:
    body = []
    for rank, (draft, check) in enumerate(results, 1):
        parts = "<br>".join(
            f"{escape(p.name)}: {p.points}/{p.max_points}" for p in check.score.parts
        )
        broken = "".join(f"<li>{escape(r.rule)}: {escape(r.detail)}</li>" for r in check.broken)
        body.append(
            f"<tr><td>{rank}</td><td>{escape(draft.name)}</td>"
            f'<td><div class="score">{check.score.total}</div><div class="small">{parts}</div></td>'
            f"<td>{_highlighted(check)}</td>"
            f'<td><ul class="bad">{broken}</ul></td></tr>'
        )
    note = escape(results[0][1].calibration) if results else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Brand check</title><style>{_CSS}</style>
</head><body><h1>Brand check: {len(results)} texts, worst first</h1>
<p class="small">Score 0-100: about 80 reads like the brand's own replies, about 20 like the
untuned base model. {note} Sentences: <span class="on">on-brand</span>
<span class="mid">in between</span> <span class="off">off-brand</span> (hover for details).</p>
<table><tr><th>#</th><th>Text</th><th>Score</th><th>Draft</th><th>Rules broken</th></tr>
{"".join(body)}</table></body></html>
"""
