"""Every encoding a conversations file arrives in: UTF-8 (with or without BOM), UTF-16 with a
BOM, the Windows-1252 fallback, and what is refused."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from chatbot.errors import InputError
from chatbot.ingest import read_conversations

TEXT = "Customer: Is the café open?\nAgent: Oui — naïve question, it’s open till 6 €.\n"
TABLE = 'prompt,response\nCafé?,"Oui — naïve, €4."\n'
EXPECTED_REPLY = "Oui — naïve question, it’s open till 6 €."


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), "utf-32-le"),
    ],
)
def test_unicode_encodings(tmp_path: Path, data: bytes, encoding: str):
    result = read_conversations(write(tmp_path, "chat.txt", data))
    assert (result.encoding, result.findings) == (encoding, [])
    assert result.conversations[0].turns[0].content == "Is the café open?"
    assert result.conversations[0].turns[1].content == EXPECTED_REPLY


def test_utf8_bom_does_not_leak_into_first_header(tmp_path: Path):
    data = codecs.BOM_UTF8 + TABLE.encode("utf-8")
    result = read_conversations(write(tmp_path, "t.csv", data))
    assert result.format == "table" and result.encoding == "utf-8-sig"


def test_utf16_crlf_table(tmp_path: Path):
    data = codecs.BOM_UTF16_LE + TABLE.replace("\n", "\r\n").encode("utf-16-le")
    result = read_conversations(write(tmp_path, "t.csv", data))
    assert result.conversations[0].turns[1].content == "Oui — naïve, €4."


def test_windows_1252_fallback_warns(tmp_path: Path):
    result = read_conversations(write(tmp_path, "t.csv", TABLE.encode("cp1252")))
    assert result.encoding == "cp1252"
    assert result.conversations[0].turns[1].content == "Oui — naïve, €4."
    (warning,) = result.findings
    assert warning.severity == "warning" and warning.code == "encoding"
    assert warning.location == "line 2"
    assert "decoded as Windows-1252; check accented characters" in warning.message


def test_utf8_with_a_damaged_byte_keeps_utf8(tmp_path: Path):
    good = "Customer: café crème brûlée?\nAgent: Très bien, naïve façade.\n".encode()
    data = good + b"\n" + b"Customer: bad \xff byte\nAgent: ok\n"
    result = read_conversations(write(tmp_path, "chat.txt", data))
    assert result.encoding == "utf-8"
    assert result.conversations[0].turns[0].content == "café crème brûlée?"
    assert result.conversations[1].turns[0].content == "bad \ufffd byte"
    (warning,) = result.findings
    assert warning.location == "line 4" and "replaced" in warning.message


def test_invalid_utf16_is_replaced_with_warning(tmp_path: Path):
    body = "Customer: hi\nAgent: yo".encode("utf-16-le") + b"\x00\xd8" + "!\n".encode("utf-16-le")
    result = read_conversations(write(tmp_path, "chat.txt", codecs.BOM_UTF16_LE + body))
    assert result.conversations[0].turns[1].content == "yo\ufffd!"
    assert [f.code for f in result.findings] == ["encoding"]
    assert result.findings[0].location == "line 2"


def test_lone_surrogate_escape_in_json_is_replaced(tmp_path: Path):
    line = '{"messages": [{"role": "user", "content": "a\\ud800b"}, '
    line += '{"role": "assistant", "content": "ok"}]}'
    result = read_conversations(write(tmp_path, "d.jsonl", line.encode()))
    content = result.conversations[0].turns[0].content
    assert content == "a\ufffdb"
    content.encode("utf-8")  # every later stage can write it


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00\x01\x02binary\x00" * 100, "looks like a binary file"),
        ("Customer: hi\nAgent: yo\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
        (b"PK\x03\x04\x14\x00\x06\x00", "ZIP archive"),
        (b"%PDF-1.7\n", "PDF document"),
        (bytes(range(1, 32)) * 50, "control characters"),
        (codecs.BOM_UTF8, "the file is empty"),
        (codecs.BOM_UTF16_LE + "Customer: hi\x00".encode("utf-16-le"), "NUL characters"),
    ],
)
def test_binary_is_refused(tmp_path: Path, data: bytes, words: str):
    with pytest.raises(InputError) as info:
        read_conversations(write(tmp_path, "upload.csv", data))
    assert str(info.value).startswith("upload.csv: ")
    assert words in str(info.value)
