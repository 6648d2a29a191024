"""How failures reach the person in the browser: one readable message, never a stack trace.

Handlers raise BrandVoiceError with a message that says what to fix. `shown_in` puts that message
into a visible message component of the same tab, next to what caused it, and leaves every other
output as it was (`gr.skip()`), so inputs, reports and editors stay on screen and editable; a
raised exception would turn every output of the event into an "Error" badge. `plain_words`
translates the words of file formats and parsers a marketer does not use. Anything that is not a
BrandVoiceError is a bug: it is logged with its traceback on the server and the browser gets a
short generic message in the same place.

`user_errors` (a popup) is kept for actions with nothing on the page to write into.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from chatbot.service import BrandVoiceError

__all__ = [
    "user_errors",
    "to_gr_error",
    "shown_in",
    "problem_html",
    "plain_words",
    "GENERIC_MESSAGE",
]

log = logging.getLogger("brandvoice.ui")

GENERIC_MESSAGE = (
    "Something went wrong on the server and this action did not finish. "
    "The details are in the server log."
)

F = TypeVar("F", bound=Callable[..., Any])

# Developer words in library messages, and what a marketer reads instead. Each pattern replaces
# the phrase it matches; the rest of the message (file name, line) stays.
_PLAIN: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.MULTILINE), words)
    for pattern, words in (
        (
            r"looks like a binary file \([^)]*\), not text: export the conversations as "
            r"CSV, JSON Lines or plain text",
            "isn't text (it looks like a spreadsheet, archive or image): export it as CSV or "
            "JSON Lines and upload that file",
        ),
        (r"looks like a binary file \([^)]*\), not text", "isn't text"),
        (
            r"is not a valid \.docx: the zip archive is damaged \([^)]*\); open it in Word and "
            r"save it again",
            "could not be opened as a Word document (the file is damaged): open it in Word and "
            "save it again as .docx, or save it as PDF or plain text and upload that",
        ),
        (r"\s*\((?:BadZipFile|zlib\.error|KeyError|XMLSyntaxError)[^)]*\)", ""),
        (
            r"mapping values are not allowed here",
            "a colon (:) inside a value; put the whole value in quotes, "
            'e.g. greeting: "Hi: friend"',
        ),
        (
            r"could not find expected ':'",
            "a line is missing its colon; every setting reads name: value",
        ),
        (
            r"found character '\\t' that cannot start any token",
            "a tab character; indent with spaces",
        ),
        (r"did not find expected key", "the indentation does not line up with the line above"),
        (r"UTF-16 without a byte-order mark", "UTF-16 text; save it as UTF-8"),
        (r"NUL (?:bytes|characters)", "unreadable characters"),
        (r"^Invalid settings in ([^\n]+):", r"To fix in \1:"),
    )
)


def plain_words(message: str) -> str:
    """`message` with the words of parsers and file formats replaced by plain ones."""
    for pattern, words in _PLAIN:
        message = pattern.sub(words, message)
    return message


def problem_html(message: str, *, title: str = "Please check") -> str:
    """A message block for a gr.Markdown/gr.HTML next to the cause (escaped; lines kept)."""
    text = html.escape(plain_words(message), quote=False).replace("\n", "<br>")
    return f'<div class="bv-problem" role="alert"><b>{html.escape(title)}</b><br>{text}</div>'


def _message(exc: BaseException) -> str:
    if isinstance(exc, BrandVoiceError):
        return problem_html(str(exc))
    log.error("unexpected error in a browser action", exc_info=exc)
    return problem_html(GENERIC_MESSAGE, title="Something went wrong")


def shown_in(fn: F, *, outputs: int, at: int) -> F:
    """Wrap a handler with `outputs` outputs so an error becomes a message in output `at`.

    The other outputs are skipped (left as they were). Works for plain and generator handlers;
    a generator that fails part-way keeps what it had already shown.
    """

    def skipped(exc: BaseException) -> Any:
        values = [gr.skip() for _ in range(outputs)]
        values[at] = _message(exc)
        return values[0] if outputs == 1 else tuple(values)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            # The browser boundary: nothing may escape to become "Error" badges; bugs are logged.
            except Exception as exc:  # noqa: BLE001
                yield skipped(exc)

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - see gen_wrapper
            return skipped(exc)

    return wrapper  # type: ignore[return-value]


def to_gr_error(exc: BaseException) -> gr.Error:
    """The popup for an exception. gr.Error renders HTML, so the text is escaped first
    (a message may quote data such as "<EMAIL>")."""
    if isinstance(exc, BrandVoiceError):
        text = html.escape(plain_words(str(exc))).replace("\n", "<br>")
        return gr.Error(text, duration=None, title="Please check", print_exception=False)
    log.error("unexpected error in a browser action", exc_info=exc)
    return gr.Error(GENERIC_MESSAGE, duration=None, title="Error", print_exception=False)


def user_errors(fn: F) -> F:
    """Wrap a handler (plain or generator) so every error becomes a readable popup."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            # The browser boundary: a bug must not show a traceback; it is logged in full.
            except Exception as exc:  # noqa: BLE001
                raise to_gr_error(exc) from exc

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise to_gr_error(exc) from exc

    return wrapper  # type: ignore[return-value]
