"""From a path to text: size limit, byte-order marks, the Windows-1252 fallback, binary refusal.

Order of decisions, each for a reason:

1. A byte-order mark is trusted first (UTF-32, UTF-8, UTF-16 LE/BE): it is the one unambiguous
   statement of an encoding a file can make.
2. Without a mark, NUL bytes mean binary (spreadsheets, archives, images) or UTF-16 without a
   mark; either way the file is refused with what to do instead.
3. Valid UTF-8 is taken as is.
4. Invalid UTF-8 is decoded as Windows-1252 (what Excel and older Windows tools write), with a
   warning, unless the file already holds more valid multi-byte UTF-8 characters than invalid
   bytes: then it is UTF-8 with a few damaged bytes, which are replaced (U+FFFD) with a warning
   rather than turning every accent in the file into mojibake.
5. Text with a high share of control characters is refused as binary.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.errors import InputError
from chatbot.ingest import limits

__all__ = ["Decoded", "decode_bytes", "decode_file"]

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    # UTF-32 marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)
# C0 controls other than tab, newline, vertical tab, form feed, carriage return and escape.
_CONTROLS = tuple(chr(c) for c in range(32) if c not in (9, 10, 11, 12, 13, 27)) + ("\x7f",)
_CONTROL_SHARE = 0.05
_SAMPLE_CHARS = 65536
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx or .docx file?): export the sheet as CSV"),
    (b"%PDF-", "a PDF document: export the conversations as CSV, JSON Lines or plain text"),
)
_BINARY_ADVICE = "export the conversations as CSV, JSON Lines or plain text"


@dataclass
class Decoded:
    """A file's text, the encoding it was read with, and (message, location) warnings."""

    text: str
    encoding: str
    warnings: list[tuple[str, str]] = field(default_factory=list)


def decode_file(path: Path) -> Decoded:
    """Read and decode `path`, or raise `InputError` naming the file and what to do."""
    name = path.name
    data = _read_bytes(path, name)
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            raise InputError(f"this is {what}", file=name)
    decoded = decode_bytes(data, name)
    if not decoded.text.strip():
        raise InputError("the file is empty", file=name)
    return decoded


def decode_bytes(data: bytes, name: str, *, advice: str = _BINARY_ADVICE) -> Decoded:
    """Decode a text file's bytes (steps 1-5 above); `advice` ends the message for binary data.

    Conversation files and text style guides both come through here, so they are read alike.
    """
    decoded = _decode(data, name, advice)
    _refuse_binary(decoded.text, name, advice)
    return decoded


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise InputError(what, file=name)
        size = path.stat().st_size
        if size > limits.MAX_FILE_BYTES:
            raise InputError(
                f"the file is {size / 1e6:,.0f} MB; the limit is "
                f"{limits.MAX_FILE_BYTES / 1e6:,.0f} MB: split it into smaller files",
                file=name,
            )
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=name) from exc
    if not data.strip():
        raise InputError("the file is empty", file=name)
    return data


def _line_of(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"line {line}"


def _decode(data: bytes, name: str, advice: str) -> Decoded:
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            return _decode_marked(data[len(bom) :], codec, label)
    if b"\x00" in data:
        raise InputError(_nul_reason(data, advice), file=name)
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        return _decode_invalid_utf8(data, exc.start)


def _decode_marked(body: bytes, codec: str, label: str) -> Decoded:
    try:
        return Decoded(body.decode(codec), label)
    except UnicodeDecodeError as exc:
        prefix = body[: exc.start].decode(codec, "replace")
        line = prefix.count("\n") + 1
        where = f"line {line}"
        text = body.decode(codec, "replace")
        warning = (f"invalid {label} bytes replaced with \ufffd; check the text there", where)
        return Decoded(text, label, [warning])


def _decode_invalid_utf8(data: bytes, first_bad: int) -> Decoded:
    where = _line_of(data, first_bad)
    text = data.decode("utf-8", "replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if non_ascii - replaced > replaced:
        message = f"{replaced} invalid UTF-8 byte sequence(s) replaced with \ufffd; check the text"
        return Decoded(text, "utf-8", [(message, where)])
    # Windows-1252 leaves five bytes undefined; "replace" keeps them visible instead of failing.
    text = data.decode("cp1252", "replace")
    message = "not valid UTF-8, decoded as Windows-1252; check accented characters"
    return Decoded(text, "cp1252", [(message, where)])


def _nul_reason(data: bytes, advice: str) -> str:
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if max(even, odd) > len(sample) // 4 and min(even, odd) < max(even, odd) // 8:
        return "looks like UTF-16 without a byte-order mark; save it as UTF-8"
    return f"looks like a binary file (it contains NUL bytes), not text: {advice}"


def _refuse_binary(text: str, name: str, advice: str) -> None:
    sample = text[:_SAMPLE_CHARS]
    if "\x00" in sample:
        raise InputError(
            f"looks like a binary file (NUL characters), not text: {advice}", file=name
        )
    controls = sum(sample.count(c) for c in _CONTROLS)
    if sample and controls / len(sample) > _CONTROL_SHARE:
        raise InputError(
            f"looks like a binary file ({controls} control characters in the first "
            f"{len(sample):,}), not text: {advice}",
            file=name,
        )
