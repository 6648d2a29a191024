"""`brandvoice chat`: talk to the base, prompted, few-shot or tuned model in the terminal.

One plain function, `run_chat`, that the CLI module calls with a loaded engine. It reads lines with
`input_fn` and writes with `output` (both default to the terminal), so tests drive it with a
script; replies are streamed. Commands: `/mode base|prompted|fewshot|tuned`, `/reset`, `/help`,
`/quit`. Ctrl-C during a reply stops that reply; Ctrl-C or Ctrl-D at the prompt ends the chat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from chatbot.engine import MODES, GenerationSettings
from chatbot.errors import BrandVoiceError

__all__ = ["run_chat"]

Messages = list[dict[str, str]]

HELP = (
    "Commands: /mode base|prompted|fewshot|tuned (switch model), /reset (forget the "
    "conversation), /help, /quit."
)


class _Streams(Protocol):
    """What the chat loop needs from `chatbot.engine.ChatEngine`."""

    def stream(
        self, messages: Messages, mode: str, settings: GenerationSettings | None = None
    ) -> Iterator[str]: ...


class Output(Protocol):
    """`print`-compatible: the loop writes reply pieces with end="" and flush=True."""

    def __call__(self, text: str = "", *, end: str = "\n", flush: bool = False) -> None: ...


def run_chat(
    engine: _Streams,
    mode: str,
    settings: GenerationSettings,
    input_fn: Callable[[str], str] = input,
    output: Output = print,
) -> Messages:
    """Chat until /quit or end of input; return the conversation as it stands at the end."""
    if mode not in MODES:
        raise BrandVoiceError(f"Unknown chat mode {mode!r}; use one of {', '.join(MODES)}.")
    history: Messages = []
    output(f"Chatting with the {mode} model. {HELP}")
    while True:
        try:
            line = input_fn("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            output("")
            return history
        if not line:
            continue
        if line.startswith("/"):
            outcome = _command(line, mode, output)
            if outcome is None:
                return history
            if outcome == "reset":
                history = []
            else:
                mode = outcome
            continue
        history.append({"role": "user", "content": line})
        reply = _answer(engine, history, mode, settings, output)
        if reply is None:
            history.pop()  # the request failed: leave the conversation as it was
        else:
            history.append({"role": "assistant", "content": reply})


def _command(line: str, mode: str, output: Output) -> str | None:
    """Carry out a slash command: the new mode, "reset", or None to quit."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return None
    if name == "/reset":
        output("(conversation cleared)")
        return "reset"
    if name == "/mode" and argument in MODES:
        output(f"(now chatting with the {argument} model)")
        return argument
    if name == "/mode":
        output(f"(usage: /mode {'|'.join(MODES)}; now {mode})")
    else:
        output(f"({HELP})" if name == "/help" else f"(unknown command {name}. {HELP})")
    return mode


def _answer(
    engine: _Streams, history: Messages, mode: str, settings: GenerationSettings, output: Output
) -> str | None:
    """Stream one reply to the terminal; the text (cut short on Ctrl-C), or None if it failed."""
    output(f"{mode}> ", end="", flush=True)
    reply = ""
    stream = engine.stream(history, mode, settings)
    try:
        for delta in stream:
            output(delta, end="", flush=True)
            reply += delta
    except KeyboardInterrupt:
        output(" [stopped]", end="")
    except BrandVoiceError as exc:
        output(f"\n(error: {exc})")
        return None
    finally:
        # Closing the stream stops generation at once when the reply was interrupted.
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    output("")
    return reply
