"""The style-guide reader (every format, every hostile file) and rule extraction."""

from __future__ import annotations

import codecs
import contextlib
import io
import random
import time
import zipfile
from pathlib import Path

import docx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter

from chatbot.brand.guide_prompt import condense_system_prompt
from chatbot.brand.guide_rules import extract_rules
from chatbot.brand.profile import BrandProfile, BrandRules, PreferredTerm
from chatbot.brand.rule_check import check_reply
from chatbot.errors import InputError
from chatbot.ingest.style_guide import StyleGuide, read_style_guide

ROOT = Path(__file__).resolve().parents[1]
KETTLEBIRD = ROOT / "data" / "kettlebird" / "style_guide.md"
GUIDES = Path(__file__).parent / "assets" / "guides"
FAST = 5.0  # seconds; every hostile file is refused well within this


# --------------------------------------------------------------------------------------------
# Building the guide in other formats
# --------------------------------------------------------------------------------------------


def markdown_blocks(md: str) -> list[tuple[str, str]]:
    """The Markdown guide as (kind, text) blocks: heading level "h1".."h6", "bullet", "para"."""
    blocks: list[tuple[str, str]] = []
    para: list[str] = []
    for line in [*md.splitlines(), ""]:
        if para and (not line.strip() or line.startswith(("#", "- "))):
            blocks.append(("para", " ".join(para)))
            para = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            blocks.append((f"h{level}", line.lstrip("#").strip()))
        elif line.startswith("- "):
            blocks.append(("bullet", line[2:]))
        elif line.strip():
            para.append(line.strip())
    return blocks


def wrap(text: str, width: int = 88) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*lines, current]


def plain_export(md: str) -> list[str]:
    """The guide as a PDF or word processor's text export shows it: no `#`, "•" bullets, and
    long lines wrapped, with no blank lines between anything."""
    lines: list[str] = []
    for kind, text in markdown_blocks(md):
        if kind == "bullet":
            first, *rest = wrap(text)
            lines += [f"• {first}", *rest]
        elif kind == "para":
            lines += wrap(text)
        else:
            lines.append(text)
    return lines


def build_docx(md: str, *, terms_table: bool = False) -> bytes:
    document = docx.Document()
    in_terms = False
    for kind, text in markdown_blocks(md):
        if kind.startswith("h"):
            document.add_heading(text, level=int(kind[1:]))
            in_terms = text.lower().startswith("say this")
            if in_terms and terms_table:
                table = document.add_table(rows=1, cols=2)
                table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Say", "Not"
        elif kind == "bullet" and in_terms and terms_table:
            use, _, instead = text.partition(", not ")
            cells = table.add_row().cells
            cells[0].text, cells[1].text = use[5:-1], instead.rstrip(".").strip('"')
        elif kind == "bullet":
            document.add_paragraph(text, style="List Bullet")
        else:
            document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _utf16_hex(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def build_pdf(pages: list[list[str]]) -> bytes:
    """A minimal, valid PDF whose text pypdf can extract, emoji included.

    No PDF writer is a dependency, so it is written by hand: one Type0 font with Identity-H
    encoding (two bytes per character) and a ToUnicode map from those codes to Unicode, which is
    how word processors export text that is not Latin-1. The glyphs themselves are not embedded:
    only text extraction reads this file.
    """
    chars = sorted({ch for page in pages for line in page for ch in line})
    code = {ch: i + 1 for i, ch in enumerate(chars)}
    mappings = [f"<{code[ch]:04X}> <{_utf16_hex(ch)}>" for ch in chars]
    bfchars = "".join(
        f"{len(chunk)} beginbfchar\n" + "\n".join(chunk) + "\nendbfchar\n"
        for chunk in (mappings[i : i + 100] for i in range(0, len(mappings), 100))
    )
    cmap = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{bfchars}endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode()
    page_ids = [6 + 2 * i for i in range(len(pages))]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % i for i in page_ids)
        + b"] /Count %d >>" % len(pages),
        b"<< /Type /Font /Subtype /Type0 /BaseFont /Helvetica /Encoding /Identity-H "
        b"/DescendantFonts [4 0 R] /ToUnicode 5 0 R >>",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Helvetica /CIDSystemInfo "
        b"<< /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 500 "
        b"/CIDToGIDMap /Identity >>",
        _stream(cmap),
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        shows = "".join(
            "<" + "".join(f"{code[ch]:04X}" for ch in line) + "> Tj T*\n" for line in lines
        )
        content = f"BT /F1 10 Tf 40 800 Td 13 TL\n{shows}ET\n".encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(_stream(content))
    return _pdf_file(objects)


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _pdf_file(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --------------------------------------------------------------------------------------------
# The demo guide: exactly these rules, from every format
# --------------------------------------------------------------------------------------------

BANNED = [
    "Unfortunately",
    "valued customer",
    "per our policy",
    "Dear customer",
    "We apologize for any inconvenience",
]
TERMS = [("tea parcel", "package"), ("sorry", "apologize"), ("swap", "exchange")]
TERMS.append(("right away", "ASAP"))


def assert_kettlebird_rules(rules: BrandRules) -> None:
    assert rules.banned_phrases == BANNED
    assert rules.required_signoff == "Steep well, the Kettlebird flock"
    assert [(t.use, t.instead_of) for t in rules.preferred_terms] == TERMS
    assert rules.emoji.max_per_reply == 1
    assert rules.emoji.allowed == ["🫖", "🍵"]
    assert rules.max_exclamations == 1
    length = rules.length
    assert (length.max_words, length.min_words) == (60, None)
    assert (length.min_sentences, length.max_sentences) == (2, 4)
    assert rules.address_customer.term == "friend"
    assert rules.address_customer.greeting == "Hi friend,"
    assert rules.address_customer.allow_first_name


EXPECTED_UNSURE = [
    "Always offer one concrete next step",
    "Always thank the customer for their patience",
    "Don't blame the courier or the customer",
    "No ALL-CAPS words, except product codes",
]


def assert_kettlebird_extraction(guide: StyleGuide) -> None:
    extraction = extract_rules(guide)
    assert_kettlebird_rules(extraction.rules)
    assert len(extraction.unsure) == len(EXPECTED_UNSURE)
    for wanted, got in zip(EXPECTED_UNSURE, extraction.unsure, strict=True):
        assert wanted in got
    assert "courier" not in " ".join(extraction.rules.banned_phrases).lower()
    assert [e.kind for e in extraction.examples] == ["do", "dont"]
    assert extraction.examples[1].text.startswith("Dear customer, unfortunately")


def test_kettlebird_markdown_rules_and_their_lines() -> None:
    guide = read_style_guide(KETTLEBIRD)
    assert (guide.format, guide.source, guide.warnings) == ("markdown", "style_guide.md", [])
    assert_kettlebird_extraction(guide)
    extraction = extract_rules(guide)
    lines = guide.text.split("\n")
    for source in extraction.sources:
        assert source.text.split('"')[0] in lines[source.line - 1]
    assert "Never say" in lines[extraction.lines_of("banned_phrase:unfortunately")[0] - 1]
    assert extraction.lines_of("signoff") == [21]
    courier = next(u for u in extraction.unsure if "courier" in u)
    assert courier == "line 32: Don't blame the courier or the customer."


def test_kettlebird_same_text_as_txt(tmp_path: Path) -> None:
    guide = read_style_guide(write(tmp_path, "guide.txt", KETTLEBIRD.read_bytes()))
    assert guide.format == "text"
    assert_kettlebird_extraction(guide)


def test_kettlebird_as_plain_text_export(tmp_path: Path) -> None:
    """No `#` headings, • bullets, wrapped lines: headings are inferred from short lines."""
    lines = plain_export(KETTLEBIRD.read_text(encoding="utf-8"))
    guide = read_style_guide(write(tmp_path, "guide.txt", "\r\n".join(lines)))
    assert '- Never say "Unfortunately".' in guide.text.split("\n")
    assert_kettlebird_extraction(guide)


def test_kettlebird_as_docx(tmp_path: Path) -> None:
    guide = read_style_guide(write(tmp_path, "guide.docx", build_docx(KETTLEBIRD.read_text())))
    assert guide.format == "docx"
    text = guide.text.split("\n")
    assert "# Kettlebird Tea Co. — Voice & Style Guide" in text
    assert "## Never" in text and '- Never say "Unfortunately".' in text
    assert_kettlebird_extraction(guide)


def test_docx_terms_table(tmp_path: Path) -> None:
    data = build_docx(KETTLEBIRD.read_text(), terms_table=True)
    guide = read_style_guide(write(tmp_path, "guide.docx", data))
    assert "| tea parcel | package |" in guide.text
    assert_kettlebird_rules(extract_rules(guide).rules)


def test_kettlebird_as_pdf(tmp_path: Path) -> None:
    lines = plain_export(KETTLEBIRD.read_text(encoding="utf-8"))
    pdf = build_pdf([lines[:30], lines[30:]])
    guide = read_style_guide(write(tmp_path, "guide.pdf", pdf))
    assert guide.format == "pdf" and guide.warnings == []
    assert "🫖" in guide.text and '- Say "swap", not "exchange".' in guide.text
    assert_kettlebird_extraction(guide)


def test_lumen_lamps_guide() -> None:
    """The second test brand: a different sign-off, no emoji, a greeting without a term."""
    extraction = extract_rules(read_style_guide(ROOT / "tests/assets/brand/style_guide.md"))
    rules = extraction.rules
    assert rules.required_signoff == "Shine on, Lumen Lamps"
    assert rules.emoji.max_per_reply == 0 and rules.emoji.allowed == []
    assert (rules.length.max_words, rules.length.max_sentences) == (40, 3)
    assert rules.address_customer.greeting == "Hello there,"
    assert rules.address_customer.term is None
    assert any("same friendly way" in u for u in extraction.unsure)


def test_guide_examples_pass_and_fail_their_own_rules() -> None:
    extraction = extract_rules(read_style_guide(KETTLEBIRD))
    do, dont = extraction.examples
    assert all(r.passed for r in check_reply(extraction.rules, do.text))
    failed = {r.rule for r in check_reply(extraction.rules, dont.text) if not r.passed}
    assert {"banned_phrase:dear customer", "banned_phrase:unfortunately", "signoff"} <= failed
    assert "preferred_term:exchange" in failed


# --------------------------------------------------------------------------------------------
# System prompt
# --------------------------------------------------------------------------------------------


def test_condensed_system_prompt() -> None:
    guide = read_style_guide(KETTLEBIRD)
    prompt = condense_system_prompt(guide, extract_rules(guide).rules, "Kettlebird Tea Co.")
    assert prompt.startswith("You are the customer-care voice of Kettlebird Tea Co. ")
    assert len(prompt.split()) <= 120
    assert "Every reply should feel like a note from a friend" in prompt
    assert 'Never say "Unfortunately"' in prompt
    assert prompt.endswith('End every reply with "Steep well, the Kettlebird flock".')
    assert "courier" not in prompt  # unsure lines are never stated as rules


def test_condensed_prompt_stays_short_with_many_rules() -> None:
    many = BrandRules(
        banned_phrases=[f"phrase number {i}" for i in range(40)],
        preferred_terms=[PreferredTerm(f"new word {i}", f"old word {i}") for i in range(20)],
        required_signoff="Best, the team",
    )
    guide = StyleGuide(
        "# Guide\n\n" + "We are friendly and warm in every reply. " * 30, "g", "text"
    )
    prompt = condense_system_prompt(guide, many, "Acme")
    assert len(prompt.split()) <= 120
    assert "phrase number 7" in prompt and "phrase number 8" not in prompt


# --------------------------------------------------------------------------------------------
# Phrasings
# --------------------------------------------------------------------------------------------


def rules_of(md: str) -> tuple[BrandRules, list[str]]:
    extraction = extract_rules(StyleGuide(md, "guide.md", "markdown"))
    return extraction.rules, extraction.unsure


def test_varied_phrasings_fixture() -> None:
    extraction = extract_rules(read_style_guide(GUIDES / "varied.md"))
    rules = extraction.rules
    assert rules.banned_phrases == [
        "cheers mate",
        "no worries",
        "Regards",
        "per our policy",
        "valued customer",
        "kind regards",
        "at your earliest convenience",
    ]
    assert rules.required_signoff == "Warmly, the Otter Outdoors crew"
    assert [(t.use, t.instead_of) for t in rules.preferred_terms] == [
        ("jacket", "coat"),
        ("parcel", "package"),
        ("trail", "path"),
        ("refund", "reimbursement"),
        ("swap", "exchange"),
        ("swap", "return"),
        ("gear", "equipment"),
    ]
    assert (rules.emoji.max_per_reply, rules.emoji.allowed) == (0, [])
    assert rules.max_exclamations == 0
    length = rules.length
    assert (length.min_words, length.max_words) == (10, 80)
    assert (length.min_sentences, length.max_sentences) == (1, 2)
    address = rules.address_customer
    assert (address.greeting, address.allow_first_name) == ("Hello <first name>,", True)
    unsure = " | ".join(extraction.unsure)
    for line in (
        "Use simple words instead of jargon",
        "Use emoji sparingly",
        "Don't blame the weather",
        "Sign off with your first name",
        'Sign off with "Best, Otter Outdoors"',  # a second, different sign-off
    ):
        assert line in unsure
    assert "Otters love rivers" not in unsure  # prose, not a rule
    assert [e.kind for e in extraction.examples] == ["do", "dont"]


@pytest.mark.parametrize(
    ("line", "max_emoji"),
    [
        ("No emoji.", 0),
        ("Don't use emoji.", 0),
        ("Avoid using emoji in replies.", 0),
        ("Use a single emoji at most.", 1),
        ("Use no more than two emoji per reply.", 2),
        ("Use up to 3 emoji.", 3),
    ],
)
def test_emoji_phrasings(line: str, max_emoji: int) -> None:
    rules, unsure = rules_of(f"- {line}")
    assert rules.emoji.max_per_reply == max_emoji and unsure == []


def test_emoji_heading_gives_the_noun() -> None:
    rules, _ = rules_of("## Emoji\n\n- At most one per reply, and only ☕ or 🍰.")
    assert (rules.emoji.max_per_reply, rules.emoji.allowed) == (1, ["☕", "🍰"])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Keep replies under 60 words.", (None, 60, None, None)),
        ("Replies are twenty-five words or fewer.", (None, 25, None, None)),
        ("Write at least 10 words.", (10, None, None, None)),
        ("Write between 20 and 80 words.", (20, 80, None, None)),
        ("Use one or two sentences.", (None, None, 1, 2)),
        ("Keep it to 2-4 sentences.", (None, None, 2, 4)),
        ("No more than three sentences.", (None, None, None, 3)),
    ],
)
def test_length_phrasings(line: str, expected: tuple) -> None:
    rules, _ = rules_of(f"- {line}")
    length = rules.length
    assert (length.min_words, length.max_words, length.min_sentences, length.max_sentences) == (
        expected
    )


@pytest.mark.parametrize(
    ("line", "limit"),
    [
        ("Avoid exclamation marks.", 0),
        ("Never use exclamation points.", 0),
        ("Use no more than one exclamation mark per reply.", 1),
        ("At most two exclamation marks.", 2),
    ],
)
def test_exclamation_phrasings(line: str, limit: int) -> None:
    rules, _ = rules_of(f"- {line}")
    assert rules.max_exclamations == limit


@pytest.mark.parametrize(
    "line",
    [
        "Don't blame the courier or the customer.",
        "Never blame the weather.",
        'Don\'t blame "the courier".',  # quoted, but not something to say
        "Use one emoji per reply.",  # one, or at most one? not a limit word
        "Use simple words instead of jargon.",
        "Keep replies short.",
        "Sign off warmly.",
    ],
)
def test_unsure_never_becomes_a_rule(line: str) -> None:
    rules, unsure = rules_of(f"## Never\n\n- {line}")
    assert rules == BrandRules()
    assert unsure == [f"line 3: {line}"]


def test_do_and_dont_examples_are_not_rules() -> None:
    rules, unsure = rules_of(
        '## Examples\n\n- Don\'t: "Dear customer, unfortunately we cannot help."\n'
        '- Do: "Hi Sam, I\'m on it. Cheers, the team"'
    )
    assert rules == BrandRules() and unsure == []


def test_never_end_with_is_a_banned_phrase_not_a_signoff() -> None:
    rules, _ = rules_of('- Never end with "Regards".')
    assert rules.banned_phrases == ["Regards"] and rules.required_signoff is None


def test_curly_quotes_and_emphasis() -> None:
    rules, _ = rules_of("- **Never** say “no worries”.\n- Don’t say ‘we’re swamped’.")
    assert rules.banned_phrases == ["no worries", "we’re swamped"]


def test_prose_paragraph_rules() -> None:
    rules, _ = rules_of(
        'Our voice is calm. Never say "sadly". Always sign off with "Take care, Bo".\n'
        "Replies stay under 50 words."
    )
    assert rules.banned_phrases == ["sadly"]
    assert rules.required_signoff == "Take care, Bo"
    assert rules.length.max_words == 50


def test_markdown_table_of_terms() -> None:
    rules, _ = rules_of("## Terminology\n\n| Say | Not |\n|---|---|\n| parcel | package |\n")
    assert rules.preferred_terms == [PreferredTerm("parcel", "package")]


# --------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------

SAMPLE = '# Café guide\n\n- Never say "Unfortunately".\n'


@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + SAMPLE.encode("utf-8"),
        SAMPLE.encode("utf-16"),  # with its byte-order mark
        codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"),
        SAMPLE.encode("utf-32"),
    ],
)
def test_unicode_encodings_with_bom(tmp_path: Path, data: bytes) -> None:
    guide = read_style_guide(write(tmp_path, "g.md", data))
    assert guide.text.startswith("# Café guide") and guide.warnings == []


def test_cp1252_is_read_with_a_warning(tmp_path: Path) -> None:
    guide = read_style_guide(write(tmp_path, "g.txt", SAMPLE.replace('"', "’").encode("cp1252")))
    assert "Café" in guide.text and "’" in guide.text
    assert "Windows-1252" in guide.warnings[0]


def test_bytes_undefined_in_cp1252_stay_visible_with_a_warning(tmp_path: Path) -> None:
    # Read as conversation files are (chatbot.ingest.decoding): replaced, shown, never guessed.
    guide = read_style_guide(write(tmp_path, "g.md", b"# Guide\n\nNever say \x81\x8d\x90 ever\n"))
    assert "Never say \ufffd\ufffd\ufffd ever" in guide.text
    assert guide.warnings == [
        "g.md, line 3: not valid UTF-8, decoded as Windows-1252; check accented characters"
    ]


def test_broken_utf16_after_bom_is_read_with_a_warning(tmp_path: Path) -> None:
    guide = read_style_guide(write(tmp_path, "g.md", codecs.BOM_UTF16_LE + b"a\x00\x00\xd8"))
    assert guide.text.startswith("a\ufffd")
    assert guide.warnings[0].startswith("g.md, line 1: invalid utf-16-le bytes replaced")


# --------------------------------------------------------------------------------------------
# Hostile and broken files: a clear InputError, fast
# --------------------------------------------------------------------------------------------


def refused(path: Path, match: str) -> InputError:
    start = time.monotonic()
    with pytest.raises(InputError, match=match) as info:
        read_style_guide(path)
    assert time.monotonic() - start < FAST
    assert info.value.file in (path.name, str(path))
    return info.value


def test_empty_and_blank(tmp_path: Path) -> None:
    refused(write(tmp_path, "g.md", b""), "is empty")
    refused(write(tmp_path, "h.md", b" \n\n\t\n"), "has no text")


def test_missing_directory_and_unsupported(tmp_path: Path) -> None:
    refused(tmp_path / "nope.md", "file not found")
    (tmp_path / "dir.md").mkdir()
    refused(tmp_path / "dir.md", "is not a file")
    refused(write(tmp_path, "g.rtf", b"{\\rtf1 hi}"), "unsupported style-guide format '.rtf'")


def test_binary_and_mismatched_content(tmp_path: Path) -> None:
    refused(write(tmp_path, "g.md", bytes(range(256))), "binary data")
    refused(write(tmp_path, "g.txt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32), "an image")
    refused(write(tmp_path, "g.md", build_pdf([["hi"]])), "is not a text file .*a PDF.*\\.pdf")
    refused(write(tmp_path, "g.txt", b"ok\x01\x02\x03\x04\x05\x06\x07\x08" * 10), "binary")


def test_text_named_pdf(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "guide.pdf", KETTLEBIRD.read_bytes()), "is not a PDF")
    assert "(it looks like plain text); rename it to .md or .txt" in str(error)


def test_too_big_and_too_long(tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    with open(big, "wb") as fh:
        fh.truncate(21_000_000)  # sparse: the size alone is refused, nothing is read
    refused(big, "limit 20 MB")
    refused(write(tmp_path, "long.md", "- Never say it.\n" * 140_000), "more than 2 MB of text")


def test_corrupt_pdf(tmp_path: Path) -> None:
    refused(write(tmp_path, "g.pdf", b"%PDF-1.7\n" + random.Random(0).randbytes(2000)), "PDF")
    refused(write(tmp_path, "h.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"), "PDF")


def test_truncated_pdf_is_read_or_refused(tmp_path: Path) -> None:
    pdf = build_pdf([['Never say "sadly".']] * 3)
    for cut in (len(pdf) // 3, len(pdf) // 2, len(pdf) - 40):
        with contextlib.suppress(InputError):  # refused is fine; anything else is not
            read_style_guide(write(tmp_path, f"cut{cut}.pdf", pdf[:cut]))


def test_encrypted_pdf(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(build_pdf([["Secret rules"]]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    refused(write(tmp_path, "locked.pdf", out.getvalue()), "password-protected")


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(build_pdf([['Never say "sadly".']]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    guide = read_style_guide(write(tmp_path, "restricted.pdf", out.getvalue()))
    assert 'Never say "sadly".' in guide.text


def test_pdf_without_text(tmp_path: Path) -> None:
    refused(write(tmp_path, "scan.pdf", build_pdf([[]])), "no text layer")


def test_pdf_page_cap(tmp_path: Path) -> None:
    pages = [[f"Page {n}: keep it kind."] for n in range(1, 251)]
    guide = read_style_guide(write(tmp_path, "long.pdf", build_pdf(pages)))
    assert "Page 200:" in guide.text and "Page 201:" not in guide.text
    assert "250 pages; only the first 200 were read" in guide.warnings[0]


def docx_with(parts: dict[str, bytes], base: bytes | None = None) -> bytes:
    """A .docx whose parts are replaced or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        if base is not None:
            with zipfile.ZipFile(io.BytesIO(base)) as source:
                for info in source.infolist():
                    if info.filename not in parts:
                        target.writestr(info, source.read(info))
        for name, data in parts.items():
            target.writestr(name, data)
    return out.getvalue()


SIMPLE_DOCX = build_docx('# Guide\n\n- Never say "sadly".\n')


def test_simple_docx_reads(tmp_path: Path) -> None:
    guide = read_style_guide(write(tmp_path, "g.docx", SIMPLE_DOCX))
    assert guide.text == '# Guide\n\n- Never say "sadly".\n'


def test_docx_that_is_not_a_zip(tmp_path: Path) -> None:
    refused(write(tmp_path, "g.docx", b"just some text\n"), "is not a Word .docx .*plain text")
    refused(write(tmp_path, "h.docx", b"PK\x03\x04" + random.Random(1).randbytes(300)), "damaged")
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)
    refused(write(tmp_path, "old.docx", ole), "old Word .doc .* save it as .docx")


def test_zip_without_document_xml(tmp_path: Path) -> None:
    refused(write(tmp_path, "g.docx", docx_with({"notes.txt": b"hi"})), "no word/document.xml")


def test_docx_decompression_bombs(tmp_path: Path) -> None:
    huge = docx_with({"word/media/blob.bin": bytes(60_000_000)}, SIMPLE_DOCX)
    assert len(huge) < 1_000_000
    refused(write(tmp_path, "huge.docx", huge), "unpacks to 6\\d MB")
    dense = docx_with({"word/media/blob.bin": bytes(5_000_000)}, SIMPLE_DOCX)
    refused(write(tmp_path, "dense.docx", dense), "decompression bomb")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p></w:body></w:document>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_docx_entity_tricks(tmp_path: Path, xml: bytes) -> None:
    data = docx_with({"word/document.xml": xml}, SIMPLE_DOCX)
    refused(write(tmp_path, "g.docx", data), "word/document.xml declares a DTD")


def test_docx_entity_trick_in_another_part(tmp_path: Path) -> None:
    data = docx_with({"word/styles.xml": EXTERNAL_ENTITY}, SIMPLE_DOCX)
    refused(write(tmp_path, "g.docx", data), "word/styles.xml declares a DTD")


def test_docx_with_broken_xml(tmp_path: Path) -> None:
    data = docx_with({"word/document.xml": b"<w:document><w:body>"}, SIMPLE_DOCX)
    refused(write(tmp_path, "g.docx", data), "not well-formed XML")


def test_docx_with_a_missing_part(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(SIMPLE_DOCX)) as source:
        parts = {i.filename: source.read(i) for i in source.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in parts.items():
            if name != "[Content_Types].xml":
                target.writestr(name, data)
    refused(write(tmp_path, "g.docx", out.getvalue()), "not a readable Word document")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".md", ".txt", ".pdf", ".docx"]))
def test_random_bytes_only_ever_give_input_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = write(tmp_path, f"fuzz{suffix}", data)
    try:
        guide = read_style_guide(path)
    except InputError:
        return
    extract_rules(guide)


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("#-*|:\"“”'’ \nNever say Avoid 1 two emoji words!🫖")),
        max_size=300,
    )
)
def test_extraction_never_crashes(text: str) -> None:
    extraction = extract_rules(StyleGuide(text, "fuzz.md", "markdown"))
    check_reply(extraction.rules, text)
    # Whatever is extracted can be saved: brand.yaml's validation accepts it.
    BrandProfile.from_dict(BrandProfile(name="Fuzz", rules=extraction.rules).to_dict())


def test_degenerate_rules_are_not_extracted() -> None:
    rules, _ = rules_of('- Sign off with "  ".\n- Address the customer as ".".\n- Under 0 words.')
    assert rules == BrandRules()


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_damaged_copies_only_ever_give_input_error(tmp_path: Path, fmt: str) -> None:
    md = KETTLEBIRD.read_text(encoding="utf-8")
    good = build_pdf([plain_export(md)]) if fmt == "pdf" else build_docx(md)
    rng = random.Random(7)
    for i in range(40):
        data = bytearray(good)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = write(tmp_path, f"damaged{i}.{fmt}", bytes(data))
        start = time.monotonic()
        with contextlib.suppress(InputError):
            extract_rules(read_style_guide(path))
        assert time.monotonic() - start < FAST


def test_extraction_is_fast_on_a_big_guide() -> None:
    text = KETTLEBIRD.read_text() * 400  # ~1.2 MB
    start = time.monotonic()
    extraction = extract_rules(StyleGuide(text, "big.md", "markdown"))
    assert time.monotonic() - start < 20
    assert extraction.rules.required_signoff == "Steep well, the Kettlebird flock"


@pytest.mark.parametrize(
    ("fmt", "limit", "value", "match"),
    [
        ("docx", "_MAX_DOCX_XML_BYTES", 1000, "MB of document XML"),
        ("docx", "_DOCX_SECONDS", -1.0, "took too long"),
        ("docx", "MAX_GUIDE_CHARS", 10, "MB of text; a style guide should be a few pages"),
        ("pdf", "_PDF_SECONDS", -1.0, "took too long"),
        ("pdf", "MAX_GUIDE_CHARS", 10, "MB of text; a style guide should be a few pages"),
    ],
)
def test_limits_while_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, limit: str, value: float, match: str
) -> None:
    """Each limit stops a long read with its own message (made small here, not the files big)."""
    from chatbot.ingest import limits, style_guide

    data = SIMPLE_DOCX if fmt == "docx" else build_pdf([["Never say sadly."]])
    monkeypatch.setattr(limits if limit.startswith("MAX_GUIDE") else style_guide, limit, value)
    refused(write(tmp_path, f"g.{fmt}", data), match)


def test_conflicting_rules_go_to_unsure() -> None:
    rules, unsure = rules_of(
        '- Say "parcel", not "package".\n- Say "box", not "package".\n'
        "- No more than one exclamation mark.\n- No more than two exclamation marks.\n"
    )
    assert rules.preferred_terms == [PreferredTerm("parcel", "package")]
    assert rules.max_exclamations == 1
    assert unsure == [
        'line 2: Say "box", not "package".',
        "line 4: No more than two exclamation marks.",
    ]


def test_setext_headings_and_numbered_lists() -> None:
    extraction = extract_rules(
        StyleGuide('Never\n=====\n\n1. "Unfortunately"\n2) "no worries"\n', "g.md", "markdown")
    )
    assert extraction.rules.banned_phrases == ["Unfortunately", "no worries"]
    assert extraction.lines_of("banned_phrase:no worries") == [5]


def test_exported_from_the_ingest_package() -> None:
    import chatbot.ingest as ingest

    assert ingest.read_style_guide is read_style_guide and "StyleGuide" in ingest.__all__
