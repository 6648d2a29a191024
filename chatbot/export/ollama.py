"""The Ollama bundle of a GGUF export: a Modelfile whose TEMPLATE speaks the model's chat format.

Ollama does not read the Jinja chat template inside a GGUF; it needs a Go template. Rather than
translate Jinja, brandvoice reads the turn format off the model's own chat template by rendering a
few probe conversations (`turn_format`): the text before the first turn, what opens and closes a
turn of each role, the system prompt the template adds when a conversation has none, and the prompt
that asks for the assistant's reply. From that it writes a Go template over Ollama's `.Messages`
(`go_template`). Before the Modelfile is written, `check_template` renders the Go template (with
Go's semantics, `chatbot.export.go_template`) for several conversations and compares the result
with the chat template's, token for token: a template this reading cannot express (one that dates
its system prompt, say) is refused rather than shipped subtly wrong.

The Modelfile also carries a `PARAMETER stop` for every token that ends a turn, the brand's system
prompt as `SYSTEM`, and brandvoice's chat sampling settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatbot.errors import BrandVoiceError
from chatbot.export.go_template import render

__all__ = [
    "TurnFormat",
    "turn_format",
    "go_template",
    "check_template",
    "modelfile",
    "ollama_messages",
    "CHECK_CONVERSATIONS",
]

Messages = list[dict[str, str]]
_ROLES = ("system", "user", "assistant")
# Sentinels that no template writes itself, so they can be found in its output.
_S, _U, _A, _V = "\x02S\x03", "\x02U\x03", "\x02A\x03", "\x02V\x03"

CHECK_CONVERSATIONS: list[Messages] = [
    [{"role": "user", "content": "Hi! Where is my order?"}],
    [
        {"role": "user", "content": "Can I return a kettle?\nIt leaks."},
        {"role": "assistant", "content": "I'm sorry to hear that! Yes, within 30 days."},
        {"role": "user", "content": "Great, how?  Do I need the box?"},
    ],
    [
        {"role": "user", "content": 'Quotes " and {{ braces }} and <tags> & emoji 🍵'},
        {"role": "assistant", "content": "Sure:\n- one\n- two"},
        {"role": "user", "content": "Thanks"},
    ],
]
"""Conversations the Go template must render exactly like the chat template (each also with the
system prompt first, as Ollama sends it)."""


@dataclass(frozen=True)
class TurnFormat:
    """A chat template read as turns: begin, then for each message open + content + close."""

    begin: str
    open: dict[str, str]
    close: dict[str, str]
    default_system: str | None
    """What the template puts in a system turn when a conversation starts without one."""
    generation: str
    """What follows the last turn to ask for the assistant's reply."""


def _render(tokenizer: Any, messages: Messages, generation: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _between(text: str, start: str, end: str | None) -> str:
    """The text after `start` and before `end` (to the end of `text` for None)."""
    if start not in text or (end is not None and end not in text):
        raise _Unreadable("a probe message is missing from the rendered conversation")
    after = text.split(start, 1)[1]
    return after if end is None else after.split(end, 1)[0]


class _Unreadable(BrandVoiceError):
    pass


def turn_format(tokenizer: Any) -> TurnFormat:
    """Read the turn format off the tokenizer's chat template; BrandVoiceError if it has none."""
    s = {"role": "system", "content": _S}
    u = {"role": "user", "content": _U}
    a = {"role": "assistant", "content": _A}
    try:
        full = _render(tokenizer, [s, u, a, {"role": "user", "content": _V}])
        close = {
            "system": _between(_render(tokenizer, [s]), _S, None),
            "user": _between(_render(tokenizer, [s, u]), _U, None),
            "assistant": _between(_render(tokenizer, [s, u, a]), _A, None),
        }
        opens = {
            "user": _between(full, _S, _U).removeprefix(close["system"]),
            "assistant": _between(full, _U, _A).removeprefix(close["user"]),
        }
        begin, opens["system"] = _split_begin(full.split(_S, 1)[0], opens["user"])
        default = _default_system(tokenizer, begin, opens, close)
        prompt = _render(tokenizer, [s, u])
        generation = _render(tokenizer, [s, u], generation=True).removeprefix(prompt)
    except (_Unreadable, ValueError, TypeError) as exc:  # jinja raises TemplateError (ValueError)
        raise BrandVoiceError(
            f"The model's chat template cannot be read as turns for an Ollama template ({exc})."
        ) from exc
    return TurnFormat(begin, opens, close, default, generation)


def _split_begin(before_system: str, open_user: str) -> tuple[str, str]:
    """Split the text before the first system message into (begin, open of a system turn).

    A system turn opens like a user turn with the role's name changed (ChatML, Llama 3); what comes
    before that is written once at the start (a BOS token, say).
    """
    guess = open_user.replace("user", "system")
    if guess != open_user and before_system.endswith(guess):
        return before_system[: -len(guess)], guess
    return "", before_system


def _default_system(
    tokenizer: Any, begin: str, opens: dict[str, str], close: dict[str, str]
) -> str | None:
    before_user = _render(tokenizer, [{"role": "user", "content": _U}]).split(_U, 1)[0]
    if before_user == begin + opens["user"]:
        return None
    head = begin + opens["system"]
    tail = close["system"] + opens["user"]
    if not (before_user.startswith(head) and before_user.endswith(tail)):
        raise _Unreadable("the template starts a conversation without a system turn oddly")
    return before_user[len(head) : len(before_user) - len(tail)]


# ----------------------------------------------------------------------------------------------
# The Go template
# ----------------------------------------------------------------------------------------------


def _literal(text: str) -> str:
    if "{{" in text or "}}" in text:
        raise BrandVoiceError(
            f"The chat template writes {text!r}, which a Go template cannot hold as plain text."
        )
    return text


def go_template(fmt: TurnFormat) -> str:
    """A Go template over Ollama's `.Messages` that renders `fmt` (generation prompt at the end).

    Actions that follow text ending in whitespace keep it (`{{`); others trim the line break the
    layout adds before them (`{{-`).
    """
    parts: list[str] = ["{{- range $i, $m := .Messages }}"]
    first = _literal(fmt.begin)
    if fmt.default_system is not None:
        default = fmt.open["system"] + fmt.default_system + fmt.close["system"]
        first += '{{ if ne $m.Role "system" }}' + _literal(default) + "{{ end }}"
    if first:
        parts.append("{{- if eq $i 0 }}" + first + "{{ end }}")
    branches = []
    for keyword, role in (("if", "system"), ("else if", "user"), ("else", "assistant")):
        test = f' eq $m.Role "{role}"' if keyword != "else" else ""
        opening = "{{ " + keyword + test + " }}" + _literal(fmt.open[role])
        branches.append(opening + "{{ $m.Content }}" + _literal(fmt.close[role]))
    parts.append("{{- " + branches[0].removeprefix("{{ ") + "".join(branches[1:]) + "{{ end }}")
    parts.append("{{- end }}" + _literal(fmt.generation))
    return "\n".join(parts)


def ollama_messages(system_prompt: str, messages: Messages) -> Messages:
    """What Ollama puts in `.Messages`: the Modelfile's SYSTEM first when the request has none."""
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def _go_message(message: dict[str, str]) -> dict[str, str]:
    """A message as Ollama's Go struct names its fields."""
    return {"Role": message["role"], "Content": message["content"]}


def check_template(template: str, tokenizer: Any, system_prompt: str) -> list[str]:
    """Problems where the Go template and the chat template disagree (empty: they agree).

    Each check conversation is rendered both ways, with and without the system prompt, and the two
    texts are tokenized and compared token for token.
    """
    problems = []
    prompts = {system_prompt, ""} if system_prompt else {""}
    for messages in CHECK_CONVERSATIONS:
        for system in sorted(prompts):
            sent = ollama_messages(system, messages)
            want = _render(tokenizer, sent, generation=True)
            got = render(template, {"Messages": [_go_message(m) for m in sent]})
            want_ids = tokenizer.encode(want, add_special_tokens=False)
            got_ids = tokenizer.encode(got, add_special_tokens=False)
            if got_ids != want_ids:
                problems.append(
                    f"{len(sent)}-message conversation: the Go template gives {got!r}, the chat "
                    f"template {want!r}"
                )
    return problems


# ----------------------------------------------------------------------------------------------
# The Modelfile
# ----------------------------------------------------------------------------------------------


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise BrandVoiceError(
            f'The {what} contains """, which a Modelfile cannot hold; edit it (in brand.yaml for '
            "the system prompt) and train again, or write the Modelfile by hand."
        )
    return f'"""{text}"""'


def modelfile(
    *,
    gguf_name: str,
    template: str,
    system_prompt: str,
    stops: list[str],
    sampling: dict[str, float | int],
    header: str,
) -> str:
    """The Modelfile's text: FROM, TEMPLATE, SYSTEM, a stop for every end token, sampling."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(template, 'template')}"]
    if system_prompt:
        lines.append(f"SYSTEM {_quoted(system_prompt, 'system prompt')}")
    for stop in stops:
        if '"' in stop or "\n" in stop:
            raise BrandVoiceError(f"The stop token {stop!r} cannot be written in a Modelfile.")
        lines.append(f'PARAMETER stop "{stop}"')
    lines += [f"PARAMETER {name} {value}" for name, value in sampling.items()]
    return "\n".join(lines) + "\n"


def stop_strings(tokenizer: Any, stop_ids: list[int], fmt: TurnFormat) -> list[str]:
    """Every text that ends a reply: the end-of-turn ids, and the special tokens that close an
    assistant turn or open the next user turn (a model that runs on starts one)."""
    special = set(tokenizer.all_special_tokens) | {
        t.content for t in tokenizer.added_tokens_decoder.values() if t.special
    }
    stops = [tokenizer.decode([i]) for i in stop_ids]
    for text in (fmt.close["assistant"], fmt.open["user"]):
        ids = tokenizer.encode(text, add_special_tokens=False)
        stops += [t for t in tokenizer.convert_ids_to_tokens(ids) if t in special]
    return list(dict.fromkeys(s for s in stops if s))
