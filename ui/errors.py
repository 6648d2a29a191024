"""How failures reach the person in the browser: one readable message, never a stack trace.

Handlers raise BrandVoiceError with a message that says what to fix; `user_errors` turns it into a
gr.Error popup. Anything else is a bug: it is logged with its traceback on the server and the
browser gets a short generic message.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from chatbot.errors import BrandVoiceError

__all__ = ["user_errors", "to_gr_error", "GENERIC_MESSAGE"]

log = logging.getLogger("brandvoice.ui")

GENERIC_MESSAGE = (
    "Something went wrong on the server and this action did not finish. "
    "The details are in the server log."
)

F = TypeVar("F", bound=Callable[..., Any])


def to_gr_error(exc: BaseException) -> gr.Error:
    """The popup for an exception. gr.Error renders HTML, so the text is escaped first
    (a message may quote data such as "<EMAIL>")."""
    if isinstance(exc, BrandVoiceError):
        text = html.escape(str(exc)).replace("\n", "<br>")
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
        except Exception as exc:  # noqa: BLE001 - see gen_wrapper
            raise to_gr_error(exc) from exc

    return wrapper  # type: ignore[return-value]
