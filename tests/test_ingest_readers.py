"""Every conversation reader on its small fixture in tests/assets/ingest/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.errors import InputError
from chatbot.ingest import SUPPORTED_FORMATS, ReadResult, read_conversations

ASSETS = Path(__file__).parent / "assets" / "ingest"


def read(name: str, **kwargs) -> ReadResult:
    return read_conversations(ASSETS / name, **kwargs)


def messages(result: ReadResult) -> list[list[dict[str, str]]]:
    return [c.to_messages() for c in result.conversations]


def test_supported_formats_describe_every_format():
    names = [line.split(":", 1)[0] for line in SUPPORTED_FORMATS]
    assert names == ["openai", "sharegpt", "table", "transcript", "zendesk"]


def test_openai_jsonl():
    result = read("openai.jsonl")
    assert (result.format, result.encoding, result.findings) == ("openai", "utf-8", [])
    assert [c.location for c in result.conversations] == ["line 1", "line 2", "line 4"]
    assert all(c.source == "openai.jsonl" for c in result.conversations)
    first, second, third = messages(result)
    assert first[0] == {"role": "system", "content": "You are Kettlebird's support assistant."}
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]
    assert second[-1]["content"] == "Same terms & same carrier."  # HTML entity unescaped
    assert third[0]["content"] == "How do I descale it?"  # list of text parts
    assert third[1]["content"].startswith("Fill with") and third[1]["content"].endswith("twice.")


def test_openai_json_array_and_developer_role():
    result = read("openai_array.json")
    assert result.format == "openai"
    assert [c.location for c in result.conversations] == ["item 1", "item 2"]
    assert messages(result)[1][0] == {"role": "system", "content": "Keep replies short."}


def test_openai_single_object(tmp_path: Path):
    record = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    path = tmp_path / "one.json"
    path.write_text("\n" + json.dumps(record, indent=2))
    result = read_conversations(path)
    assert result.format == "openai"
    assert [c.location for c in result.conversations] == ["line 2"]


def test_sharegpt_with_brand_speaker_and_system_field():
    result = read("sharegpt.json", brand_names=["Kettlebird"])
    assert (result.format, result.findings) == ("sharegpt", [])
    first, second = messages(result)
    assert [m["role"] for m in first] == ["user", "assistant"]
    # top-level "system" becomes the first turn; the trailing "Thanks!" is dropped
    assert [m["role"] for m in second] == ["system", "user", "assistant"]
    assert second[-1]["content"] == "Slate, Sand and Sage."


def test_sharegpt_unknown_speaker_without_brand_names():
    result = read("sharegpt.json")
    assert len(result.conversations) == 1
    (finding,) = result.findings
    assert finding.location == "item 2" and finding.field == "conversations[1].from"
    assert "unknown role 'Kettlebird'" in finding.message and "gpt" in finding.message


def test_sharegpt_jsonl(tmp_path: Path):
    rows = [
        {"conversations": [{"from": "human", "value": "a?"}, {"from": "gpt", "value": "b."}]},
        {"conversations": [{"from": "HUMAN", "value": "c?"}, {"from": "ChatGPT", "value": "d."}]},
    ]
    path = tmp_path / "sg.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = read_conversations(path)
    assert result.format == "sharegpt" and len(result.conversations) == 2


def test_csv_with_customer_message_and_agent_reply_headers():
    result = read("tickets.csv")
    assert (result.format, result.findings) == ("table", [])
    assert [c.location for c in result.conversations] == ["row 2", "row 3", "row 4"]
    rows = messages(result)
    assert rows[1][1]["content"] == (
        "No: it is built for 220-240 V only.\nA travel adapter will not make it safe."
    )
    assert rows[2][0]["content"] == "Fish & chips kettle?"


def test_tsv_prompt_response():
    result = read("support.tsv")
    assert result.format == "table"
    assert messages(result)[0] == [
        {"role": "user", "content": "Is the lid dishwasher safe?"},
        {"role": "assistant", "content": "Hand wash only, please: the hinge has a seal."},
    ]


def test_table_groups_rows_by_conversation_id():
    result = read("grouped.csv")
    assert [c.location for c in result.conversations] == ["row 2", "row 3"]
    assert [m["content"] for m in messages(result)[0]] == [
        "Hi there",
        "Hello! How can I help?",
        "My kettle is loud.",
        "A little rumble is normal; a loud rattle isn't. Is it on a flat surface?",
    ]


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Question", "Answer"),
        ("input", "output"),
        ("Customer", "Agent"),
        ("user", "assistant"),
        ("instruction", "output"),
        ("Query", "Reply"),
        ("customer_message", "agent-response"),
        ("USER MESSAGE", "Kettlebird Reply"),
    ],
)
def test_table_header_names(tmp_path: Path, prompt: str, response: str):
    path = tmp_path / "t.csv"
    path.write_text(f"id,{prompt},{response}\n1,hello?,hi!\n")
    result = read_conversations(path, brand_names=["Kettlebird"])
    assert messages(result) == [
        [{"role": "user", "content": "hello?"}, {"role": "assistant", "content": "hi!"}]
    ]


def test_table_semicolon_delimiter_and_system_column(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_text("System;Question;Answer\nBe brief.;Colours?;Three.\n")
    result = read_conversations(path)
    assert result.format == "table"
    assert [m["role"] for m in messages(result)[0]] == ["system", "user", "assistant"]


def test_column_map_overrides_header_guess(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("Col A,Col B,question,answer\nmine?,yes.,not,this\n")
    result = read_conversations(path, column_map={"prompt": "Col A", "response": "col b"})
    assert messages(result) == [
        [{"role": "user", "content": "mine?"}, {"role": "assistant", "content": "yes."}]
    ]


def test_transcript_with_dashes():
    result = read("transcript.txt", brand_names=["Kettlebird"])
    assert (result.format, result.findings) == ("transcript", [])
    assert [c.location for c in result.conversations] == ["line 1", "line 8", "line 12"]
    first, second, third = messages(result)
    # continuation lines, a "Tip:" line and a paragraph break all stay in the agent's turn,
    # and the customer's closing thanks is dropped
    assert first[1]["content"] == (
        "That new-kettle smell fades after a few boils.\n"
        "Tip: boil a full kettle twice and pour it away.\n\n"
        "It should be gone by the third use."
    )
    assert len(first) == 2
    assert second[1] == {"role": "assistant", "content": "Yes! Spare filters are £4 in our shop."}
    assert [m["role"] for m in third] == ["user", "assistant"]


def test_transcript_with_blank_lines_brand_label_and_bold():
    result = read("transcript_blank.txt", brand_names=["Kettlebird"])
    assert result.format == "transcript"
    assert [c.location for c in result.conversations] == ["line 1", "line 4"]
    assert messages(result)[1] == [
        {"role": "user", "content": "When will the Finch be back in stock?"},
        {"role": "assistant", "content": "Early next month; I can email you when it is."},
    ]


def test_transcript_custom_customer_label_and_single_brand_string(tmp_path: Path):
    path = tmp_path / "chat.txt"
    path.write_text("Shopper: hi\nKettlebird: hello\n")
    result = read_conversations(path, brand_names="Kettlebird", customer_labels=["Shopper"])
    assert messages(result) == [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ]


def test_zendesk_export_with_users():
    result = read("zendesk.json")
    assert (result.format, result.findings) == ("zendesk", [])
    first, second = messages(result)
    # private note skipped, admin is the assistant, the closing "Thank you!" dropped
    assert [m["content"] for m in first] == [
        "My kettle stopped heating.",
        "Sorry about that! Is the base light on?",
        "No, it stays off.",
        "Then the base is at fault: we will send a new one today.",
    ]
    # an empty (attachment-only) public comment is skipped
    assert [m["role"] for m in second] == ["user", "assistant"]
    assert result.conversations[0].location == "ticket 4521 (item 1)"


def test_zendesk_jsonl_without_users_uses_requester():
    result = read("zendesk_tickets.jsonl")
    assert result.format == "zendesk"
    assert [c.location for c in result.conversations] == [
        "ticket 901 (line 1)",
        "ticket 902 (line 2)",
    ]
    assert [m["role"] for m in messages(result)[0]] == ["user", "assistant"]


def test_zendesk_comments_keyed_by_ticket(tmp_path: Path):
    doc = {
        "tickets": [{"id": 7}],
        "comments": {"7": [{"author_id": 1, "body": "q?"}, {"author_id": 2, "body": "a."}]},
        "users": [{"id": 1, "role": "end-user"}, {"id": 2, "role": "agent"}],
    }
    path = tmp_path / "z.json"
    path.write_text(json.dumps(doc))
    result = read_conversations(path)
    assert messages(result) == [
        [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a."}]
    ]


def test_zendesk_comments_api_response(tmp_path: Path):
    doc = {
        "comments": [
            {"author_id": 1, "plain_body": "q?", "body": "<p>q?</p>"},
            {"author_id": 2, "body": "a."},
        ],
        "users": [{"id": 1, "role": "end-user"}, {"id": 2, "role": "admin"}],
    }
    path = tmp_path / "comments.json"
    path.write_text(json.dumps(doc))
    result = read_conversations(path)
    assert result.format == "zendesk"
    assert [m["content"] for m in messages(result)[0]] == ["q?", "a."]
    assert result.conversations[0].location == "comments"


def test_content_decides_not_extension(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_bytes((ASSETS / "openai.jsonl").read_bytes())
    assert read_conversations(path).format == "openai"
    path = tmp_path / "chat.csv"
    path.write_text("Customer: hi\nAgent: hello\n")
    assert read_conversations(path).format == "transcript"


def test_path_may_be_a_string():
    assert read_conversations(str(ASSETS / "support.tsv")).format == "table"


def test_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(InputError, match="nope.jsonl: not found"):
        read_conversations(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="is a folder"):
        read_conversations(tmp_path)


def test_zendesk_single_ticket_object(tmp_path: Path):
    ticket = {
        "id": 31,
        "requester_id": 1,
        "comments": [{"author_id": 1, "body": "q?"}, {"author_id": 2, "body": "a."}],
    }
    path = tmp_path / "ticket.json"
    path.write_text(json.dumps(ticket, indent=2))
    result = read_conversations(path)
    assert result.format == "zendesk"
    assert [c.location for c in result.conversations] == ["ticket 31 (line 1)"]
