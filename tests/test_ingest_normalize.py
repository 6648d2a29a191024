"""The one shape every conversation leaves ingest in, and cross-file de-duplication."""

from __future__ import annotations

import json
from pathlib import Path

from chatbot.ingest import deduplicate, read_conversations
from chatbot.ingest.normalize import clean_text
from chatbot.types import Conversation, Turn


def read_messages(tmp_path: Path, *messages: tuple[str, str]):
    record = {"messages": [{"role": r, "content": c} for r, c in messages]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record) + "\n")
    result = read_conversations(path)
    turns = [(t.role, t.content) for c in result.conversations for t in c.turns]
    return turns, [(f.severity, f.code) for f in result.findings]


def test_clean_text():
    assert clean_text("  Tea &amp; cake &lt;3&nbsp;\r\n") == "Tea & cake <3"
    assert clean_text("line one\r\nline two\rthree") == "line one\nline two\nthree"
    assert clean_text("a\x00b") == "ab"
    assert clean_text("x\udc80y") == "x\ufffdy"


def test_consecutive_same_role_turns_merge(tmp_path: Path):
    turns, findings = read_messages(
        tmp_path,
        ("user", "Hi"),
        ("user", "My kettle leaks"),
        ("assistant", "Oh no!"),
        ("assistant", "Where does it leak?"),
    )
    assert turns == [("user", "Hi\nMy kettle leaks"), ("assistant", "Oh no!\nWhere does it leak?")]
    assert findings == []


def test_trailing_user_turns_dropped_silently(tmp_path: Path):
    turns, findings = read_messages(
        tmp_path, ("user", "q"), ("assistant", "a"), ("user", "thanks"), ("user", "bye")
    )
    assert turns == [("user", "q"), ("assistant", "a")]
    assert findings == []


def test_leading_assistant_dropped_with_warning(tmp_path: Path):
    turns, findings = read_messages(
        tmp_path,
        ("system", "s"),
        ("assistant", "Hi, I'm Kettlebird!"),
        ("user", "q"),
        ("assistant", "a"),
    )
    assert turns == [("system", "s"), ("user", "q"), ("assistant", "a")]
    assert findings == [("warning", "leading-assistant")]


def test_assistant_then_user_only_is_no_reply(tmp_path: Path):
    turns, findings = read_messages(tmp_path, ("assistant", "Hi!"), ("user", "q"))
    assert turns == []
    assert ("error", "no-reply") in findings


def test_only_assistant_is_no_user(tmp_path: Path):
    turns, findings = read_messages(tmp_path, ("assistant", "Hi!"))
    assert (turns, findings) == ([], [("error", "no-user")])


def test_system_turns_merge_first_and_late_ones_drop(tmp_path: Path):
    turns, findings = read_messages(
        tmp_path,
        ("system", "a"),
        ("system", "b"),
        ("user", "q"),
        ("system", "late"),
        ("assistant", "r"),
    )
    assert turns == [("system", "a\nb"), ("user", "q"), ("assistant", "r")]
    assert findings == [("warning", "late-system")]


def conv(source: str, location: str, *texts: str) -> Conversation:
    turns = [Turn("assistant" if i % 2 else "user", text) for i, text in enumerate(texts)]
    return Conversation(turns, source, location)


def test_deduplicate_across_files():
    items = [
        conv("a.jsonl", "line 1", "q", "r"),
        conv("a.jsonl", "line 2", "q", "other"),
        conv("b.csv", "row 7", "q", "r"),
        conv("a.jsonl", "line 9", "q", "r"),
    ]
    kept, findings = deduplicate(items)
    assert kept == items[:2]
    assert [(f.file, f.location, f.code, f.severity) for f in findings] == [
        ("b.csv", "row 7", "duplicate", "warning"),
        ("a.jsonl", "line 9", "duplicate", "warning"),
    ]
    assert "a.jsonl, line 1" in findings[0].message


def test_deduplicate_keeps_distinct_and_accepts_iterators():
    items = [conv("a", "1", "q", "r"), conv("a", "2", "Q", "r")]
    kept, findings = deduplicate(iter(items))
    assert (kept, findings) == (items, [])


def test_deduplicate_sees_through_normalisation(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Tea &amp; cake?"},
                    {"role": "assistant", "content": "Yes"},
                ]
            }
        )
    )
    (tmp_path / "b.csv").write_text('prompt,response\n"  Tea & cake?",Yes\n')
    every = [
        c
        for name in ("a.jsonl", "b.csv")
        for c in read_conversations(tmp_path / name).conversations
    ]
    kept, findings = deduplicate(every)
    assert len(kept) == 1 and findings[0].file == "b.csv" and findings[0].location == "row 2"
