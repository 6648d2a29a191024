"""JSON parsing that cannot recurse without bound, and JSON vocabulary for messages.

Python's `json` recurses once per nesting level, so a line of 100,000 `[` raises RecursionError
(or worse, in other stages that walk the value). The depth is therefore measured before parsing:
strings are blanked out with a linear regex, the remaining brackets are counted, and parsing
only starts under `MAX_JSON_DEPTH`. A cheap count of opening brackets skips the scan for the
usual short record, which cannot be deep.
"""

from __future__ import annotations

import json
import re

from chatbot.ingest import limits

__all__ = ["JsonProblem", "load_json", "json_type"]

# Unrolled-loop string pattern: linear, no nested quantifier over the same characters. The
# closing quote is optional so an unterminated string swallows the rest instead of leaking its
# brackets into the count.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonProblem(Exception):
    """Why a piece of JSON was refused, with its line and column when the parser knows them."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column

    @property
    def where(self) -> str:
        """'line 3, column 14' (empty when unknown)."""
        if self.line is None:
            return ""
        return f"line {self.line}, column {self.column}"


def _too_deep(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def load_json(text: str) -> object:
    """`json.loads` that raises only `JsonProblem`, and refuses deep nesting before parsing."""
    limit = limits.MAX_JSON_DEPTH
    if _too_deep(text, limit):
        raise JsonProblem(f"JSON nested deeper than {limit} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except ValueError:
        # The one other ValueError json raises: an integer longer than Python's conversion
        # limit (4300 digits); its own message suggests a Python setting, useless to the user.
        raise JsonProblem("invalid JSON: a number has too many digits") from None
    except RecursionError:
        # Unreachable after the depth check; kept so no input can ever surface a RecursionError.
        raise JsonProblem(f"JSON nested deeper than {limit} levels") from None


def json_type(value: object) -> str:
    """How a JSON value is named in messages: 'an object', 'a number', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
