"""Limits that keep a broken or hostile input file from exhausting time or memory.

They live in one module so an operator, or a test, can change them in one place: readers look
them up at call time (`limits.MAX_FILE_BYTES`), never copy them at import.
"""

from __future__ import annotations

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_ERRORS",
    "MAX_WARNINGS",
    "MAX_CELL_CHARS",
    "MAX_SEPARATORS_PER_LINE",
    "MAX_GUIDE_BYTES",
    "MAX_GUIDE_CHARS",
]

MAX_FILE_BYTES: int = 500 * 1024 * 1024
"""Largest file read at all; the whole file is held in memory, decoded, while it is parsed."""

MAX_JSON_DEPTH: int = 64
"""Deepest JSON nesting accepted; chat data nests 3 or 4 levels, deeper is an attack or junk."""

MAX_ERRORS: int = 1000
"""Error findings recorded per file before reading stops with a summary finding."""

MAX_WARNINGS: int = 1000
"""Warning findings kept per file; further ones are counted in one summary warning."""

MAX_CELL_CHARS: int = 1_000_000
"""Longest CSV/TSV cell; the csv module's own default (131,072) is too small for long replies."""

MAX_SEPARATORS_PER_LINE: int = 10_000
"""Most delimiters on one physical line of a table. The csv module holds a whole row as a list,
so one line of millions of commas would take gigabytes; no conversation table is that wide."""

MAX_GUIDE_BYTES: int = 20_000_000
"""Largest style-guide file (any format): a guide is a few pages, far below this."""

MAX_GUIDE_CHARS: int = 2_000_000
"""Most text a style guide may hold once read."""
