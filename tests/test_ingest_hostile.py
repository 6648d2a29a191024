"""Hostile and random input: only `InputError` or findings, fast, never a traceback or hang."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.errors import InputError
from chatbot.ingest import ReadResult, read_conversations
from chatbot.types import ROLES

HANG = 60  # seconds: a hang guard, not a speed target (scripts/bench_ingest.py measures speed)


@contextlib.contextmanager
def no_hang(seconds: int = HANG):
    """Fail the test if reading has not returned after `seconds` (a hang, not slowness)."""

    def _timeout(*_):
        raise AssertionError(f"no answer after {seconds}s: the reader hangs on this input")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def read_or_refuse(path: Path) -> ReadResult | None:
    """Read `path`; an InputError is an acceptable answer, anything else fails the test."""
    try:
        result = read_conversations(path)
    except InputError as exc:
        assert exc.file == path.name and str(exc).startswith(path.name)
        return None
    check_shape(result)
    return result


def check_shape(result: ReadResult) -> None:
    """What every later stage relies on, whatever the input was."""
    assert result.format in {"openai", "sharegpt", "table", "transcript", "zendesk"}
    for conversation in result.conversations:
        roles = [t.role for t in conversation.turns]
        assert set(roles) <= set(ROLES)
        if roles[0] == "system":
            roles = roles[1:]
        assert roles and roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in pairwise(roles))
        for turn in conversation.turns:
            assert turn.content and turn.content == turn.content.strip()
            turn.content.encode("utf-8")
    for finding in result.findings:
        assert finding.severity in {"error", "warning"} and finding.file


HOSTILE = {
    "empty.jsonl": lambda: b"",
    "random.bin": lambda: os.urandom(1_000_000),
    "random_no_nul.csv": lambda: os.urandom(200_000).replace(b"\x00", b"\x01"),
    "one_line.txt": lambda: b"x" * 5_000_000,
    "one_line.csv": lambda: b"a," * 2_500_000,
    "one_line_brackets.jsonl": lambda: b"[" * 5_000_000,
    "one_line_record.jsonl": lambda: (
        b'{"messages": [{"role": "user", "content": "'
        + b"q" * 5_000_000
        + b'"}, {"role": "assistant", "content": "a"}]}'
    ),
    "deep_array.json": lambda: b"[" * 100_000 + b"]" * 100_000,
    "deep_object.json": lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep_line.jsonl": lambda: b'{"messages": 1}\n' + b'{"a":' * 100_000 + b"}" * 100_000,
    "unterminated_string.json": lambda: b'["' + b"[" * 1_000_000,
    "number.json": lambda: b"12345",
    "huge_number.json": lambda: b"9" * 1_000_000,
    "string.json": lambda: b'"just a string"',
    "null.json": lambda: b"null",
    "big_cell.csv": lambda: b'prompt,response\n"' + b"x" * 10_000_000 + b'",ok\n',
    "unclosed_quote.csv": lambda: b'prompt,response\n"' + b"x\n" * 100_000,
    "surrogates.jsonl": lambda: b'{"messages": [{"role": "user", "content": "\\udfff\\ud800"}]}',
    "invalid_utf8.txt": lambda: b"Customer: caf\xc3\xa9\nAgent: \xed\xa0\x80 \xff\xfe ok\n",
    "many_labels.txt": lambda: b"Customer: " + b"Agent: " * 500_000,
    "many_dashes.txt": lambda: b"---\n" * 500_000,
    "many_blank_lines.txt": lambda: b"Customer: hi\n" + b"\n" * 2_000_000 + b"Agent: yo\n",
    "many_bad_lines.jsonl": lambda: b'{"messages": 1}\n' * 200_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(HOSTILE[name]())
    with no_hang():
        read_or_refuse(path)


def test_ten_thousand_conversations_read_completely(tmp_path: Path):
    lines = []
    for i in range(10_000):
        messages = [{"role": "system", "content": "You are Kettlebird."}]
        for turn in range(3):
            messages.append({"role": "user", "content": f"Question {i}.{turn} &amp; more " * 4})
            messages.append({"role": "assistant", "content": f"Answer {i}.{turn}, kindly. " * 8})
        lines.append(json.dumps({"messages": messages}))
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines))
    with no_hang():
        result = read_conversations(path)
    assert len(result.conversations) == 10_000 and result.findings == []


HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SUFFIXES = st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt", ""])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "conversations",
                    "from",
                    "value",
                    "tickets",
                    "comments",
                    "users",
                    "id",
                    "author_id",
                    "body",
                    "public",
                    "requester_id",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)
message = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "tool", "USER", ""]) | json_values,
        "content": st.text(max_size=30) | json_values,
    },
)
record = st.fixed_dictionaries({"messages": st.lists(message | json_values, max_size=6)})


@HYPOTHESIS
@given(data=st.binary(max_size=2000), suffix=SUFFIXES)
def test_random_bytes_never_raise_anything_but_input_error(tmp_path: Path, data: bytes, suffix):
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(data)
    read_or_refuse(path)


@HYPOTHESIS
@given(value=json_values, suffix=SUFFIXES)
def test_random_json_never_raises_anything_but_input_error(tmp_path: Path, value, suffix):
    path = tmp_path / f"upload{suffix}"
    path.write_text(json.dumps(value), encoding="utf-8")
    read_or_refuse(path)


@HYPOTHESIS
@given(records=st.lists(record | json_values, min_size=1, max_size=6), as_lines=st.booleans())
def test_random_chat_records_never_raise(tmp_path: Path, records: list, as_lines: bool):
    path = tmp_path / "upload.jsonl"
    body = "\n".join(json.dumps(r) for r in records) if as_lines else json.dumps(records)
    path.write_text(body, encoding="utf-8")
    read_or_refuse(path)


@HYPOTHESIS
@given(text=st.text(alphabet=st.sampled_from(list('Customer:Agent: ,"\t\n-&;x\r')), max_size=300))
def test_random_text_never_raises(tmp_path: Path, text: str):
    path = tmp_path / "upload.txt"
    path.write_text(text, encoding="utf-8")
    read_or_refuse(path)
