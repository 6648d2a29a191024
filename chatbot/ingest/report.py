"""The findings of one file read, capped so a file full of bad records cannot use unbounded memory.

Readers report per-record problems here and move on to the next record. Once `MAX_ERRORS`
errors are recorded, the report adds a summary finding and raises `StopReading`, which
`read_conversations` catches: the first thousand problems are enough to act on.
"""

from __future__ import annotations

from chatbot.ingest import limits
from chatbot.types import Finding

__all__ = ["Report", "StopReading"]


class StopReading(Exception):
    """Raised by `Report.error` when the error cap is reached; never leaves `read_conversations`."""


class Report:
    """Collects findings for one file; every finding names that file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[Finding] = []
        self._errors = 0
        self._warnings = 0
        self._dropped_warnings = 0

    def error(self, message: str, location: str = "", field: str = "", code: str = "") -> None:
        self.findings.append(Finding("error", message, self.file, location, field, code))
        self._errors += 1
        if self._errors >= limits.MAX_ERRORS:
            self.findings.append(
                Finding(
                    "error",
                    f"stopped reading after {self._errors} errors; fix these and read the file "
                    "again",
                    self.file,
                    location,
                    code="too-many-errors",
                )
            )
            raise StopReading

    def warning(self, message: str, location: str = "", field: str = "", code: str = "") -> None:
        if self._warnings >= limits.MAX_WARNINGS:
            self._dropped_warnings += 1
            return
        self._warnings += 1
        self.findings.append(Finding("warning", message, self.file, location, field, code))

    def close(self) -> list[Finding]:
        """The findings, with one summary line for warnings beyond the cap."""
        if self._dropped_warnings:
            self.findings.append(
                Finding(
                    "warning",
                    f"{self._dropped_warnings} more warnings not shown",
                    self.file,
                    code="too-many-warnings",
                )
            )
            self._dropped_warnings = 0
        return self.findings
