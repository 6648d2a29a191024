"""A renderer for the small part of Go's text/template that brandvoice's Ollama templates use.

Ollama renders a Modelfile's TEMPLATE with Go's `text/template`; brandvoice checks the template it
writes by rendering it here and comparing the text with the model's own chat template. Supported,
with Go's semantics:

- text, and actions `{{ ... }}` with the trim markers `{{- ` (drop the whitespace before) and
  ` -}}` (drop the whitespace after);
- `range $i, $m := .Messages` ... `end`, `if` / `else if` / `else` / `end`;
- the functions `eq`, `ne`, `and`, `or`, `not`, parenthesised calls, `$var`, `$var.Field`,
  `.Field`, string literals in double quotes and integer literals.

No escaping (text/template writes values as they are). Anything else raises `TemplateError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TemplateError", "render"]


class TemplateError(ValueError):
    """A template outside the supported subset, or malformed."""


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r'\s*("(?:[^"\\]|\\.)*"|\(|\)|:=|,|-?\d+|\$\w+(?:\.\w+)*|(?:\.\w+)+|[A-Za-z_]\w*)'
)


@dataclass
class _Node:
    kind: str  # "text", "output", "if", "range"
    text: str = ""
    branches: list[tuple[str, list[_Node]]] = field(default_factory=list)
    """if: (condition, body) pairs, condition "" for else; range: one (header, body) pair."""


def render(template: str, data: dict[str, Any]) -> str:
    """Render `template` with `data` (the dot), as Go's text/template would."""
    nodes, rest = _parse(_lex(template), top=True)
    assert not rest
    out: list[str] = []
    _run(nodes, {".": data}, out)
    return "".join(out)


# ----------------------------------------------------------------------------------------------
# Lexing: text and actions, with trim markers applied
# ----------------------------------------------------------------------------------------------


def _lex(template: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", body) items; trim markers already applied to the texts."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        items.append(("text", text))
        body = match.group(2).strip()
        if body.startswith("/*"):
            body = ""  # a comment
        items.append(("action", body))
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = template[pos:]
    items.append(("text", tail.lstrip(" \t\r\n") if trim_next else tail))
    if "{{" in tail:
        raise TemplateError("an action is not closed with }}")
    return items


# ----------------------------------------------------------------------------------------------
# Parsing into a tree of text, outputs, ifs and ranges
# ----------------------------------------------------------------------------------------------


def _parse(
    items: list[tuple[str, str]], *, top: bool = False
) -> tuple[list[_Node], list[tuple[str, str]]]:
    """Nodes up to the `end`/`else` that closes this block; returns them and what follows."""
    nodes: list[_Node] = []
    while items:
        kind, body = items[0]
        items = items[1:]
        if kind == "text":
            if body:
                nodes.append(_Node("text", body))
        elif body == "":
            continue
        elif body == "end" or body.startswith("else"):
            if top:
                raise TemplateError(f"unexpected {{{{ {body} }}}}")
            return nodes, [(kind, body), *items]
        elif body.startswith("if "):
            node, items = _parse_if(body[3:], items)
            nodes.append(node)
        elif body.startswith("range "):
            inner, items = _parse(items)
            items = _expect_end(items, "range")
            nodes.append(_Node("range", branches=[(body[6:], inner)]))
        else:
            nodes.append(_Node("output", body))
    if not top:
        raise TemplateError("a block is not closed with {{ end }}")
    return nodes, items


def _parse_if(condition: str, items: list[tuple[str, str]]) -> tuple[_Node, list]:
    node = _Node("if")
    while True:
        body, items = _parse(items)
        node.branches.append((condition, body))
        _, closer = items[0]
        items = items[1:]
        if closer == "end":
            return node, items
        if closer == "else":
            condition = "true"
        elif closer.startswith("else if "):
            condition = closer[8:]
        else:
            raise TemplateError(f"unexpected {{{{ {closer} }}}}")


def _expect_end(items: list[tuple[str, str]], what: str) -> list[tuple[str, str]]:
    if not items or items[0][1] != "end":
        raise TemplateError(f"{what} is not closed with {{{{ end }}}}")
    return items[1:]


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def _run(nodes: list[_Node], scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "output":
            out.append(_to_text(_evaluate(node.text, scope)))
        elif node.kind == "if":
            for condition, body in node.branches:
                if condition == "true" or _truthy(_evaluate(condition, scope)):
                    _run(body, scope, out)
                    break
        else:
            _run_range(node, scope, out)


def _run_range(node: _Node, scope: dict[str, Any], out: list[str]) -> None:
    header, body = node.branches[0]
    match = re.fullmatch(r"\s*(\$\w+)\s*,\s*(\$\w+)\s*:=\s*(.+)", header)
    if match is None:
        raise TemplateError(f"unsupported range {header!r}: use `range $i, $m := .Messages`")
    index_var, item_var, source = match.groups()
    for index, item in enumerate(_evaluate(source, scope) or []):
        _run(body, {**scope, index_var: index, item_var: item}, out)


def _tokens(expression: str) -> Iterator[str]:
    pos = 0
    while pos < len(expression.rstrip()):
        match = _TOKEN.match(expression, pos)
        if match is None or not match.group(1):
            raise TemplateError(f"cannot read {expression[pos:]!r}")
        yield match.group(1)
        pos = match.end()


def _evaluate(expression: str, scope: dict[str, Any]) -> Any:
    tokens = list(_tokens(expression))
    value, rest = _call(tokens, scope)
    if rest:
        raise TemplateError(f"unexpected {' '.join(rest)!r} in {expression!r}")
    return value


def _call(tokens: list[str], scope: dict[str, Any]) -> tuple[Any, list[str]]:
    """A function call (name followed by arguments up to ")" or the end), or one operand."""
    head = tokens[0]
    if head not in _FUNCTIONS:
        return _operand(tokens, scope)
    args: list[Any] = []
    rest = tokens[1:]
    while rest and rest[0] != ")":
        value, rest = _operand(rest, scope)
        args.append(value)
    return _FUNCTIONS[head](*args), rest


def _operand(tokens: list[str], scope: dict[str, Any]) -> tuple[Any, list[str]]:
    head, rest = tokens[0], tokens[1:]
    if head == "(":
        value, rest = _call(rest, scope)
        if not rest or rest[0] != ")":
            raise TemplateError("a ( is not closed")
        return value, rest[1:]
    if head.startswith('"'):
        return json.loads(head), rest
    if re.fullmatch(r"-?\d+", head):
        return int(head), rest
    return _lookup(head, scope), rest


def _lookup(name: str, scope: dict[str, Any]) -> Any:
    if name.startswith("$"):
        root, _, path = name.partition(".")
        if root not in scope:
            raise TemplateError(f"undefined variable {root}")
        value = scope[root]
    elif name.startswith("."):
        value, path = scope["."], name[1:]
    else:
        raise TemplateError(f"unknown function or value {name!r}")
    for part in filter(None, path.split(".")):
        # The data stands for Go structs (Ollama's messages): a missing field is an error.
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"{name}: no field {part!r}")
        value = value[part]
    return value


def _truthy(value: Any) -> bool:
    return bool(value)


def _to_text(value: Any) -> str:
    return str(value)


def _and(*args: Any) -> Any:
    for arg in args:
        if not _truthy(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if _truthy(arg):
            return arg
    return args[-1]


_FUNCTIONS = {
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "and": _and,
    "or": _or,
    "not": lambda a: not _truthy(a),
}
