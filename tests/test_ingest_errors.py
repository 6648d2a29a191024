"""Per-record problems become findings naming file, line/row and field; file problems raise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.errors import InputError
from chatbot.ingest import limits, read_conversations
from chatbot.types import Finding


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def only_error(findings: list[Finding]) -> Finding:
    errors = [f for f in findings if f.severity == "error"]
    assert len(errors) == 1, findings
    return errors[0]


# --- per-record problems: finding, record skipped, reading goes on ---------------------------


def test_malformed_json_line(tmp_path: Path):
    path = write(tmp_path, "data.jsonl", jsonl(GOOD, '{"messages": [', GOOD))
    result = read_conversations(path)
    assert len(result.conversations) == 2
    finding = only_error(result.findings)
    assert (finding.file, finding.location, finding.code) == ("data.jsonl", "line 2", "bad-json")
    assert "invalid JSON" in finding.message and "column" in finding.message
    assert str(finding).startswith("data.jsonl, line 2: invalid JSON")


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]},
            "messages[1].role",
            ["unknown role 'tool'", "assistant, developer, system, user"],
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "  "},
                ]
            },
            "messages[1].content",
            ["empty message text"],
        ),
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]},
            "messages[0].content",
            ["missing message text"],
        ),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", ["missing"]),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", ["a number"]),
        ({"messages": [{"content": "a"}]}, "messages[0].role", ["missing 'role'"]),
        ({"messages": [{"role": ["user"], "content": "a"}]}, "messages[0].role", ["an array"]),
        ({"messages": ["hi"]}, "messages[0]", ["expected a message object", "a string"]),
        ({"messages": "hi"}, "messages", ["expected an array of messages"]),
        ({"messages": []}, "messages", ["empty"]),
        ({"prompt": "a"}, "messages", ["missing 'messages'"]),
        ([1, 2], "", ["expected an object with 'messages'", "an array"]),
    ],
)
def test_openai_record_problems(tmp_path: Path, record: object, field: str, words: list[str]):
    path = write(tmp_path, "data.jsonl", jsonl(GOOD, record))
    result = read_conversations(path)
    assert len(result.conversations) == 1
    finding = only_error(result.findings)
    assert (finding.file, finding.location, finding.field) == ("data.jsonl", "line 2", field)
    for word in words:
        assert word in finding.message


def test_problem_in_json_array_names_item(tmp_path: Path):
    bad = {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}
    path = write(tmp_path, "data.json", json.dumps([GOOD, bad]))
    finding = only_error(read_conversations(path).findings)
    assert (finding.location, finding.field) == ("item 2", "messages[1].role")


def test_conversation_without_reply_is_an_error(tmp_path: Path):
    record = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]}
    path = write(tmp_path, "data.jsonl", jsonl(record))
    result = read_conversations(path)
    assert result.conversations == []
    finding = only_error(result.findings)
    assert (finding.location, finding.code) == ("line 1", "no-reply")


def test_sharegpt_problems_name_field(tmp_path: Path):
    rows = [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": 5}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
    ]
    path = write(tmp_path, "sg.json", json.dumps(rows))
    result = read_conversations(path)
    assert len(result.conversations) == 1
    finding = only_error(result.findings)
    assert (finding.location, finding.field) == ("item 1", "conversations[1].value")


def test_csv_empty_cell_names_row_and_column(tmp_path: Path):
    text = '"Customer Message","Agent Reply"\n"a","b"\n"c",""\n"","f"\n"g","h"\n'
    result = read_conversations(write(tmp_path, "t.csv", text))
    assert [c.location for c in result.conversations] == ["row 2", "row 5"]
    errors = [f for f in result.findings if f.severity == "error"]
    assert [(f.location, f.field) for f in errors] == [
        ("row 3", "Agent Reply"),
        ("row 4", "Customer Message"),
    ]
    assert "empty cell in column 'Agent Reply'" in errors[0].message


def test_csv_rows_count_multiline_cells_as_one_row(tmp_path: Path):
    text = 'prompt,response\n"line one\nline two",ok\nq,\n'
    finding = only_error(read_conversations(write(tmp_path, "t.csv", text)).findings)
    assert finding.location == "row 3"


def test_csv_missing_column_names_columns_found(tmp_path: Path):
    path = write(tmp_path, "t.csv", "Name,Email,Notes\na,b,c\n")
    with pytest.raises(InputError) as info:
        read_conversations(path)
    message = str(info.value)
    assert message.startswith("t.csv, row 1: no prompt column")
    assert "'Name', 'Email', 'Notes'" in message and "column map" in message


def test_csv_only_prompt_column(tmp_path: Path):
    with pytest.raises(InputError, match="no response column; columns found: 'question', 'x'"):
        read_conversations(write(tmp_path, "t.csv", "question,x\na,b\n"))


def test_column_map_problems(tmp_path: Path):
    path = write(tmp_path, "t.csv", "A,B\na,b\n")
    with pytest.raises(InputError, match="column 'C' \\(given for 'response'\\) not found"):
        read_conversations(path, column_map={"prompt": "A", "response": "C"})
    with pytest.raises(InputError, match="unknown column-map key 'answer'"):
        read_conversations(path, column_map={"prompt": "A", "answer": "B"})
    with pytest.raises(InputError, match="must differ"):
        read_conversations(path, column_map={"prompt": "A", "response": "A"})


def test_transcript_problems_name_line(tmp_path: Path):
    text = (
        "Customer: hi\nAgent: hello\n---\n"
        "Sarah: hi\nCustomer: ok\n---\n"
        "just some text\nAgent: hello\n---\n"
        "Customer: where is it?\nCustomer: hello?\n---\n"
        "Customer:\nAgent: hello\n"
    )
    result = read_conversations(write(tmp_path, "chat.txt", text))
    assert len(result.conversations) == 1
    errors = [f for f in result.findings if f.severity == "error"]
    assert [(f.location, f.code) for f in errors] == [
        ("line 4", "unknown-role"),
        ("line 7", "no-label"),
        ("line 10", "no-reply"),
        ("line 13", "empty-content"),
    ]
    assert "unknown speaker 'Sarah'" in errors[0].message
    assert "Agent" in errors[2].message and "brand names" in errors[2].message


def test_zendesk_problems(tmp_path: Path):
    doc = {
        "tickets": [
            {"id": 1, "comments": [{"author_id": 1, "body": "q"}, {"author_id": 9, "body": "a"}]},
            {"id": 2, "comments": [{"author_id": 1, "body": "q"}, {"author_id": 3, "body": "a"}]},
            {"id": 3, "comments": [{"author_id": 1, "body": 4}]},
            {"id": 4, "comments": [{"body": "q"}]},
            {"id": 5},
            {"id": 6, "comments": "none"},
            "ticket",
            {"id": 8, "comments": [{"author_id": 1, "body": "q"}, {"author_id": 2, "body": "a"}]},
        ],
        "users": [
            {"id": 1, "role": "end-user"},
            {"id": 2, "role": "agent"},
            {"id": 3, "role": "x"},
        ],
    }
    result = read_conversations(write(tmp_path, "z.json", json.dumps(doc)))
    assert [c.location for c in result.conversations] == ["ticket 8 (item 8)"]
    errors = [(f.location, f.field, f.code) for f in result.findings]
    assert errors == [
        ("ticket 1 (item 1)", "comments[1].author_id", "unknown-author"),
        ("ticket 2 (item 2)", "comments[1].author_id", "unknown-role"),
        ("ticket 3 (item 3)", "comments[0].body", "wrong-type"),
        ("ticket 4 (item 4)", "comments[0].author_id", "missing-field"),
        ("ticket 5 (item 5)", "comments", "missing-field"),
        ("ticket 6 (item 6)", "comments", "wrong-type"),
        ("item 7", "", "wrong-type"),
    ]


def test_error_cap_stops_with_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limits, "MAX_ERRORS", 10)
    path = write(tmp_path, "data.jsonl", jsonl(*[{"messages": 1}] * 50))
    result = read_conversations(path)
    assert len(result.findings) == 11
    assert result.findings[-1].code == "too-many-errors"
    assert "stopped reading after 10 errors" in result.findings[-1].message


def test_error_cap_default_is_a_thousand(tmp_path: Path):
    path = write(tmp_path, "data.jsonl", jsonl(*[{"messages": 1}] * 1500))
    result = read_conversations(path)
    assert len(result.findings) == 1001


def test_warning_cap_summarises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limits, "MAX_WARNINGS", 3)
    lead = {"messages": [{"role": "assistant", "content": "Hi!"}, *GOOD["messages"]]}
    path = write(tmp_path, "data.jsonl", jsonl(*[lead] * 10))
    result = read_conversations(path)
    assert len(result.conversations) == 10
    assert [f.code for f in result.findings] == ["leading-assistant"] * 3 + ["too-many-warnings"]
    assert result.findings[-1].message == "7 more warnings not shown"


# --- file-level problems: InputError naming the file ------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.jsonl", "", "empty.jsonl: the file is empty"),
        ("blank.csv", " \n\t\n", "blank.csv: the file is empty"),
        ("n.json", "42", "n.json: the file holds a number, not conversations"),
        ("s.json", '"text"', "s.json: the file holds a string"),
        ("null.json", "null", "null.json: the file holds null"),
        ("t.json", "true", "t.json: the file holds true/false"),
        ("e.json", "[]", "e.json: the file holds an empty JSON array"),
        ("a.json", "[1, 2]", "a.json: a JSON array whose items have no 'messages'"),
        ("o.json", '{"data": 1}', "o.json: a JSON object with keys 'data' is not a known format"),
        ("bad.json", '{"messages": [}', "bad.json, line 1, column 15: invalid JSON"),
        ("prose.txt", "Just some words.\nNothing else.", "prose.txt: cannot tell the format"),
        ("j.jsonl", '{"a": 1}\n{"b": 2}\n', "j.jsonl: unrecognised JSON Lines"),
        ("k.jsonl", "{x}\n{y}\n", "k.jsonl: unrecognised JSON Lines (line 1: invalid JSON"),
        ("z.json", '{"tickets": 3}', "z.json, field 'tickets': 'tickets' must be an array"),
    ],
)
def test_file_level_problems(tmp_path: Path, name: str, content: str, words: str):
    with pytest.raises(InputError) as info:
        read_conversations(write(tmp_path, name, content))
    assert str(info.value).startswith(words)
    assert info.value.file == name


def test_unknown_format_lists_supported_formats(tmp_path: Path):
    with pytest.raises(InputError) as info:
        read_conversations(write(tmp_path, "x.txt", "hello"))
    for name in ("OpenAI chat JSONL", "ShareGPT", "CSV/TSV", "transcript", "Zendesk"):
        assert name in str(info.value)


def test_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1000)
    path = write(tmp_path, "big.jsonl", jsonl(*[GOOD] * 50))
    with pytest.raises(InputError, match="big.jsonl: the file is .* MB; the limit is .* MB"):
        read_conversations(path)


def test_deep_json_document(tmp_path: Path):
    with pytest.raises(InputError, match="deep.json: JSON nested deeper than 64 levels"):
        read_conversations(write(tmp_path, "deep.json", "[" * 65 + "]" * 65))
    # 64 levels is fine as far as depth goes (and then not a known format)
    with pytest.raises(InputError, match="whose items have no"):
        read_conversations(write(tmp_path, "ok.json", "[" * 64 + "]" * 64))


def test_brackets_inside_strings_do_not_count_as_depth(tmp_path: Path):
    content = "[" * 200 + '\\"{'
    record = {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}]
    }
    path = write(tmp_path, "data.jsonl", jsonl(record, record))
    result = read_conversations(path)
    assert result.findings == [] and result.conversations[0].turns[0].content == content


def test_deep_json_line_is_a_finding(tmp_path: Path):
    path = write(tmp_path, "data.jsonl", jsonl(GOOD, '{"a":' * 100 + "1" + "}" * 100, GOOD))
    result = read_conversations(path)
    assert len(result.conversations) == 2
    finding = only_error(result.findings)
    assert finding.location == "line 2" and "nested deeper than 64" in finding.message


def test_csv_cell_too_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limits, "MAX_CELL_CHARS", 100)
    path = write(tmp_path, "t.csv", f"prompt,response\na,b\nc,{'x' * 200}\n")
    with pytest.raises(InputError, match="t.csv, row 3: a cell is longer than 100 characters"):
        read_conversations(path)


def test_csv_row_with_extra_cells_is_an_error(tmp_path: Path):
    text = "prompt,response\nhi,hello, and welcome\nok,fine,,\n"
    result = read_conversations(write(tmp_path, "t.csv", text))
    assert [c.location for c in result.conversations] == ["row 3"]  # trailing empty cells are fine
    finding = only_error(result.findings)
    assert (finding.location, finding.code) == ("row 2", "extra-cells")
    assert "3 cells but the header has 2" in finding.message


def test_csv_line_with_too_many_separators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limits, "MAX_SEPARATORS_PER_LINE", 5)
    path = write(tmp_path, "t.csv", "prompt,response\na,b\n" + "x," * 10 + "\n")
    with pytest.raises(InputError, match="t.csv, line 3: more than 5 ',' separators on one line"):
        read_conversations(path)


def test_json_array_with_trailing_junk_reports_the_junk(tmp_path: Path):
    path = write(tmp_path, "d.json", json.dumps([GOOD], indent=2) + "\n}\n")
    with pytest.raises(InputError, match="d.json, line 15, column 1: invalid JSON: Extra data"):
        read_conversations(path)
