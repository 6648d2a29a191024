"""The product's own errors: every message says what is wrong and where (file, line, field)."""

from __future__ import annotations

__all__ = ["BrandVoiceError", "InputError", "ConfigError", "BusyError"]


class BrandVoiceError(Exception):
    """An error meant for the user: its message is shown as is, never with a traceback.

    The message names no command-line flag: the library serves the app too. `option`, when set,
    names what fixes the problem, a setting by its field name ("base_model", "brand", "quant") or
    a step ("prepare", "train"); each face adds how it is given there (the CLI: its flag).
    """

    def __init__(self, *args: object, option: str | None = None) -> None:
        super().__init__(*args)
        self.option = option


class InputError(BrandVoiceError):
    """A user-supplied file cannot be read. Names the file and, where known, the line/row/field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        location: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.location = location
        self.field = field
        self.reason = message
        where = ", ".join(p for p in (file, location, f"field '{field}'" if field else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(BrandVoiceError):
    """One or more settings are invalid; the message lists every problem at once."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = problems
        head = f"Invalid settings in {source}:" if source else "Invalid settings:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


class BusyError(BrandVoiceError):
    """The one model is serving as many requests as may wait; the caller may try again shortly."""
