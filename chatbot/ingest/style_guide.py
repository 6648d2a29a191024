"""The style guide: reading it from .md/.txt/.pdf/.docx, and finding its checkable rules.

`read_style_guide` turns any supported file into one Markdown-ish text (headings as `#` lines,
bullets as `- `) and refuses hostile or broken files with an InputError that says what to do.
`extract_rules` reads that text and keeps only the rules it can check exactly (a quoted phrase, a
number); anything else that reads like a rule is handed back in `unsure` for the user to decide,
never guessed at. `condense_system_prompt` writes a short system prompt from the guide and rules.

What the rules mean and how a reply is checked against them belongs to `chatbot.brand`.
"""

from __future__ import annotations

import bisect
import codecs
import io
import re
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.parsers import expat

import docx
from docx.document import Document as DocxDocument
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree
from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

from chatbot.brand import BrandRules, PreferredTerm, find_emoji, rule_key
from chatbot.errors import InputError

__all__ = [
    "GuideExample",
    "GuideFormat",
    "RuleExtraction",
    "RuleSource",
    "StyleGuide",
    "condense_system_prompt",
    "extract_rules",
    "read_style_guide",
]

GuideFormat = Literal["markdown", "text", "pdf", "docx"]
_FORMATS: dict[str, GuideFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
    ".docx": "docx",
}

# A style guide is a few pages. These limits are far above any real one and keep a hostile file
# from costing more than a few seconds and a bounded amount of memory.
_MAX_FILE_BYTES = 20_000_000
_MAX_TEXT_CHARS = 2_000_000
_MAX_PDF_PAGES = 200
_PDF_SECONDS = 20.0
_MAX_PAGE_CONTENT_BYTES = 5_000_000
_MAX_DOCX_BYTES = 50_000_000  # all parts of the package, uncompressed
_MAX_DOCX_XML_BYTES = 20_000_000  # the XML parts, which python-docx parses into memory
_DOCX_SECONDS = 20.0
_MAX_DOCX_RATIO = 100  # Word's XML compresses ~5-20×; a bomb compresses thousands of times
_MAX_DOCX_PARTS = 5_000


@dataclass
class StyleGuide:
    """A style guide as Markdown-ish text: `#` headings and `- ` bullets, whatever the format.

    For .md and .txt the lines are the file's own, so line numbers match the user's editor; for
    .pdf and .docx they are the lines of the extracted text.
    """

    text: str
    source: str
    """The file name, for messages."""
    format: GuideFormat
    warnings: list[str] = field(default_factory=list)
    """Things the user should know about how the file was read (encoding guessed, pages cut)."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_style_guide(path: Path) -> StyleGuide:
    """Read a .md, .txt, .pdf or .docx style guide.

    The file's content decides how it is read, not only its name: a file whose content does not
    match its extension (plain text named .pdf, a PDF named .docx) is refused with a message that
    says what it looks like, because reading it as something else would silently produce the wrong
    rules. Raises InputError for anything that cannot be read.
    """
    path = Path(path)
    name = path.name
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"unsupported style-guide format '{path.suffix or '(no extension)'}'; "
            "save the guide as .md, .txt, .pdf or .docx",
            file=name,
        )
    data = _read_bytes(path)
    _check_content_matches(fmt, _sniff(data), name)
    warnings: list[str] = []
    if fmt == "pdf":
        text = _finish(_pdf_text(data, name, warnings))
    elif fmt == "docx":
        text = _finish(_docx_text(data, name))
    else:
        # Text files keep their lines exactly, so rule line numbers match the user's editor.
        text = _normalize_bullets(_decode_text(data, name, warnings), markdown=True)
    if not text.strip():
        raise InputError("has no text; is it the right file?", file=name)
    if len(text) > _MAX_TEXT_CHARS:
        raise _too_long(name)
    return StyleGuide(text=text, source=name, format=fmt, warnings=warnings)


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError("is not a file", file=path.name)
        if size > _MAX_FILE_BYTES:
            raise InputError(
                f"is {size / 1e6:.1f} MB; a style guide should be a few pages (limit 20 MB)",
                file=path.name,
            )
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError("file not found", file=str(path)) from exc
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", file=path.name) from exc
    if not data:
        raise InputError("is empty", file=path.name)
    return data


def _too_long(name: str) -> InputError:
    return InputError(
        "holds more than 2 MB of text; a style guide should be a few pages. "
        "Keep the voice and rules and leave out the rest",
        file=name,
    )


_Kind = Literal["pdf", "zip", "ole", "rtf", "image", "text", "binary"]
_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _sniff(data: bytes) -> _Kind:
    """What the bytes are, whatever the file is called."""
    head = data[:1024]
    if b"%PDF-" in head:  # the spec lets a few bytes of junk precede the header
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if head.startswith(b"{\\rtf"):
        return "rtf"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")):
        return "image"
    if head.startswith(_TEXT_BOMS) or head.startswith(codecs.BOM_UTF32_LE):
        return "text"
    return "binary" if b"\x00" in data[:8192] else "text"


_LOOKS_LIKE = {
    "pdf": ("a PDF", "rename it to .pdf"),
    "zip": ("a Word .docx or another zip archive", "rename it to .docx if it is a Word document"),
    "ole": (
        "an old Word .doc file or a password-protected document",
        "open it in Word, remove any password and save it as .docx",
    ),
    "rtf": ("an RTF document", "save it as .docx, .md or .txt"),
    "image": ("an image", "a style guide must be text: choose a .md, .txt, .pdf or .docx file"),
    "text": ("plain text", "rename it to .md or .txt, or export the guide again as PDF/.docx"),
    "binary": (
        "binary data",
        "choose the style guide itself (.md, .txt, .pdf or .docx); if it is UTF-16 text "
        "without a byte-order mark, save it as UTF-8",
    ),
}
_EXPECTED = {"markdown": "text", "text": "text", "pdf": "pdf", "docx": "zip"}
_NOT_A = {"markdown": "a text file", "text": "a text file", "pdf": "a PDF", "docx": "a Word .docx"}


def _check_content_matches(fmt: GuideFormat, kind: _Kind, name: str) -> None:
    if kind == _EXPECTED[fmt]:
        return
    looks, advice = _LOOKS_LIKE[kind]
    raise InputError(f"is not {_NOT_A[fmt]} (it looks like {looks}); {advice}", file=name)


# -- text ------------------------------------------------------------------------------------

_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _decode_text(data: bytes, name: str, warnings: list[str]) -> str:
    text = _decode_with_bom(data, name)
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_cp1252(data, name)
            warnings.append(
                f"{name} is not UTF-8; it was read as Windows-1252 (cp1252). If any characters "
                "look wrong, save the file as UTF-8 and read it again."
            )
    # Text with many control characters is a binary file that happens to decode.
    if len(_CONTROL_RE.findall(text)) > max(5, len(text) // 100):
        raise InputError(f"is not {_NOT_A['text']} (it looks like binary data)", file=name)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_with_bom(data: bytes, name: str) -> str | None:
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"starts with a {codec.upper().replace('-SIG', '')} byte-order mark but is "
                    f"not valid {codec.replace('-sig', '')} text (byte {exc.start}); "
                    "save it as UTF-8",
                    file=name,
                ) from exc
    return None


def _decode_cp1252(data: bytes, name: str) -> str:
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is neither UTF-8 nor Windows-1252 text (byte {exc.start}); save it as UTF-8",
            file=name,
        ) from exc


# Bullets as PDF and Word exports write them, including the private-use glyphs of Symbol and
# Wingdings fonts that Word uses for its default bullets.
_BULLET_GLYPHS_RE = re.compile(r"^([ \t]*)[•◦▪▫■□●○‣⁃∙·\uf0b7\uf0a7\uf076\uf0d8\uf0fc][ \t]*", re.M)
_MD_BULLET_RE = re.compile(r"^([ \t]*)[*+][ \t]+", re.M)


def _normalize_bullets(text: str, *, markdown: bool) -> str:
    text = _BULLET_GLYPHS_RE.sub(r"\1- ", text)
    return _MD_BULLET_RE.sub(r"\1- ", text) if markdown else text


def _finish(text: str) -> str:
    """Tidy text extracted from a PDF or .docx: no trailing spaces, at most one blank line."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


# -- PDF -------------------------------------------------------------------------------------

# pypdf reports a damaged file with its own errors, but a crafted one can also surface as a plain
# Python error from deep inside its parser. Both mean "this PDF cannot be read" and are turned
# into an InputError that keeps the original as its cause.
_PDF_ERRORS: tuple[type[BaseException], ...] = (
    PyPdfError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    AssertionError,
    RecursionError,
    OverflowError,
    struct.error,
    zlib.error,
)


def _pdf_text(data: bytes, name: str, warnings: list[str]) -> str:
    reader = _open_pdf(data, name)
    count = len(reader.pages)
    if count > _MAX_PDF_PAGES:
        warnings.append(
            f"{name} has {count} pages; only the first {_MAX_PDF_PAGES} were read. "
            "A style guide is usually a few pages: remove what is not about voice and rules."
        )
    deadline = time.monotonic() + _PDF_SECONDS
    texts: list[str] = []
    total = 0
    for number in range(1, min(count, _MAX_PDF_PAGES) + 1):
        if time.monotonic() > deadline:
            raise InputError(
                f"took too long to read (stopped at page {number}); export it again as PDF or "
                "save the guide as .docx or .md",
                file=name,
            )
        text = _page_text(reader, number, name, warnings)
        total += len(text)
        if total > _MAX_TEXT_CHARS:
            raise _too_long(name)
        texts.append(text)
    if not any(t.strip() for t in texts):
        raise InputError(
            "has no text layer (it may be a scanned image); export the guide as PDF from the "
            "original document, or save it as .docx or .md",
            file=name,
        )
    return _normalize_bullets("\n\n".join(texts), markdown=False)


def _open_pdf(data: bytes, name: str) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _password_protected(name)
        if len(reader.pages) == 0:
            raise InputError("has no pages; export the guide again as PDF", file=name)
        return reader
    except (DependencyError, FileNotDecryptedError, NotImplementedError) as exc:
        raise _password_protected(name) from exc
    except _PDF_ERRORS as exc:
        raise InputError(
            f"is not a readable PDF ({_reason(exc)}); it may be damaged. Export it again "
            "from the original document, or save the guide as .docx or .md",
            file=name,
        ) from exc


def _password_protected(name: str) -> InputError:
    return InputError(
        "is password-protected or encrypted; save an unprotected copy (for example print it to "
        "a new PDF) and read that",
        file=name,
    )


def _page_text(reader: PdfReader, number: int, name: str, warnings: list[str]) -> str:
    """One page's text; a page that cannot be read is skipped with a warning, not fatal."""
    try:
        page = reader.pages[number - 1]
        contents = page.get_contents()
        # The decoded content stream is what text extraction walks operator by operator in pure
        # Python; a few MB is already far more than any page of prose.
        if contents is not None and len(contents.get_data()) > _MAX_PAGE_CONTENT_BYTES:
            warnings.append(f"{name}, page {number}: unusually large page content; skipped.")
            return ""
        return page.extract_text() or ""
    except _PDF_ERRORS as exc:
        warnings.append(f"{name}, page {number}: could not be read ({_reason(exc)}); skipped.")
        return ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- .docx -----------------------------------------------------------------------------------

_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


def _docx_text(data: bytes, name: str) -> str:
    _check_docx_package(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        total = 0
        deadline = time.monotonic() + _DOCX_SECONDS
        styles = _style_names(document)
        for block in document.iter_inner_content():
            new = _docx_block_lines(block, styles)
            lines += new
            total += sum(len(line) for line in new)
            if total > _MAX_TEXT_CHARS:
                raise _too_long(name)
            if time.monotonic() > deadline:
                raise InputError(
                    "took too long to read; it holds far more than a style guide. Save the "
                    "voice and rules as a shorter .docx or as .md",
                    file=name,
                )
    except (PackageNotFoundError, etree.LxmlError, KeyError, AttributeError, *_ZIP_ERRORS) as exc:
        raise InputError(
            f"is not a readable Word document ({_reason(exc)}); open it in Word and save it "
            "again as .docx",
            file=name,
        ) from exc
    return "\n".join(lines)


def _check_docx_package(data: bytes, name: str) -> None:
    """Refuse zip bombs and XML entity tricks before python-docx parses anything.

    Sizes are the ones the archive declares; zipfile never inflates an entry past its declared
    size (it stops there and fails the CRC check), so checking them bounds what is read later.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            _check_docx_sizes(infos, name)
            if "word/document.xml" not in {i.filename for i in infos}:
                raise InputError(
                    "is not a Word document: the archive has no word/document.xml "
                    "(is it another kind of zip file?)",
                    file=name,
                )
            for info in infos:
                if info.flag_bits & 0x1:
                    raise _password_protected(name)
                if info.filename.endswith((".xml", ".rels")):
                    _refuse_dtd(archive.read(info), info.filename, name)
    except _ZIP_ERRORS as exc:
        raise InputError(
            f"is not a valid .docx: the zip archive is damaged ({_reason(exc)}); open it in "
            "Word and save it again",
            file=name,
        ) from exc


def _check_docx_sizes(infos: list[zipfile.ZipInfo], name: str) -> None:
    if len(infos) > _MAX_DOCX_PARTS:
        raise InputError(f"has {len(infos)} parts; that is not a style guide", file=name)
    total = sum(i.file_size for i in infos)
    xml = sum(i.file_size for i in infos if i.filename.endswith((".xml", ".rels")))
    if xml > _MAX_DOCX_XML_BYTES:
        raise InputError(
            f"holds {xml / 1e6:.0f} MB of document XML; a style guide is far smaller "
            f"(limit {_MAX_DOCX_XML_BYTES // 1_000_000} MB)",
            file=name,
        )
    bomb = any(
        i.file_size > 1_000_000 and i.file_size > _MAX_DOCX_RATIO * max(i.compress_size, 1)
        for i in infos
    )
    if total > _MAX_DOCX_BYTES or bomb:
        raise InputError(
            f"unpacks to {total / 1e6:.0f} MB"
            + (" from a tiny archive (a decompression bomb)" if bomb else "")
            + f"; refusing it (limit {_MAX_DOCX_BYTES // 1_000_000} MB). Save the guide again "
            "without embedded media",
            file=name,
        )


class _DtdFound(Exception):
    pass


def _refuse_dtd(xml: bytes, part: str, name: str) -> None:
    """Stream the part through expat, stopping at any DOCTYPE or entity declaration.

    Word never writes a DTD; one in a .docx is there for entity expansion ("billion laughs") or
    external entities that read other files. Expat is used as a streaming scanner, so this costs
    no tree in memory; defusedxml would build one just to throw it away.
    """

    def found(*_args: object) -> None:
        raise _DtdFound

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = found
    parser.EntityDeclHandler = found
    parser.ExternalEntityRefHandler = found
    try:
        parser.Parse(xml, True)
    except _DtdFound:
        raise InputError(
            f"{part} declares a DTD or XML entities, which Word never writes; refusing it "
            "because entity tricks can exhaust memory or read other files",
            file=name,
        ) from None
    except expat.ExpatError as exc:
        raise InputError(
            f"{part} is not well-formed XML ({exc}); open the document in Word and save it again",
            file=name,
        ) from exc


_HEADING_STYLE_RE = re.compile(r"heading\s*([1-6])", re.IGNORECASE)


def _docx_block_lines(block: Paragraph | Table, styles: dict[str, str]) -> list[str]:
    if isinstance(block, Table):
        return _docx_table_lines(block)
    return _docx_paragraph_lines(block, styles)


def _style_names(document: DocxDocument) -> dict[str, str]:
    # `Paragraph.style` searches the style sheet on every call (about a millisecond each), which
    # made a long document take minutes; one lookup table serves every paragraph instead.
    return {s.style_id: s.name or "" for s in document.styles if s.style_id}


def _docx_paragraph_lines(paragraph: Paragraph, styles: dict[str, str]) -> list[str]:
    text = paragraph.text.strip()
    if not text:
        return []
    # python-docx exposes a paragraph's own style id and numbering only through its XML (`_p`).
    p = paragraph._p
    style = styles.get(p.style or "", "")
    heading = _HEADING_STYLE_RE.fullmatch(style)
    if heading or style == "Title":
        level = int(heading.group(1)) if heading else 1
        return ["", "#" * level + " " + " ".join(text.split()), ""]
    # Word marks a list item either by a "List ..." style or by numbering on the paragraph itself
    # (what the bullet button does).
    numbered = p.pPr is not None and p.pPr.numPr is not None
    if style.startswith("List") or numbered:
        return ["- " + " ".join(text.split())]
    return ["", text, ""]


def _docx_table_lines(table: Table) -> list[str]:
    lines = [""]
    for i, row in enumerate(table.rows):
        cells = [" ".join(c.text.split()).replace("|", "/") for c in row.cells]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + " --- |" * len(cells))
    return [*lines, ""]


# --------------------------------------------------------------------------------------------
# Rule extraction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSource:
    """Where a rule came from: `rule` is the id `chatbot.brand.check_reply` reports."""

    rule: str
    line: int
    """1-based line in StyleGuide.text (for .md/.txt, the line in the file)."""
    text: str


@dataclass(frozen=True)
class GuideExample:
    """A "Do:" / "Don't:" example reply from the guide: kept to show, never turned into a rule."""

    kind: Literal["do", "dont", "example"]
    text: str
    line: int


@dataclass
class RuleExtraction:
    rules: BrandRules
    unsure: list[str] = field(default_factory=list)
    """Guide lines that read like rules but cannot be checked, as "line N: text", for the user."""
    sources: list[RuleSource] = field(default_factory=list)
    examples: list[GuideExample] = field(default_factory=list)

    def lines_of(self, rule: str) -> list[int]:
        return [s.line for s in self.sources if s.rule == rule]


@dataclass
class _Block:
    kind: Literal["heading", "bullet", "paragraph", "row", "header_row"]
    lines: list[tuple[int, str]]
    level: int = 0

    @property
    def text(self) -> str:
        return " ".join(t for _, t in self.lines)


@dataclass
class _Sentence:
    text: str
    """The sentence as written, whitespace collapsed and Markdown emphasis removed."""
    line: int
    masked: str
    """Lower-cased, apostrophes straightened, each quoted phrase replaced by QUOTE(i)."""
    quotes: list[str]


_MD_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET_RE = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+(.*)$")
_SETEXT_RE = re.compile(r"^(?:=+|-{2,})\s*$")
_TABLE_SEP_RE = re.compile(r"^\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_TERMINAL = (".", "!", "?", ":", '"', "”", "'", "’", ")", "…")


def _blocks(text: str) -> list[_Block]:
    """Group lines into headings, bullet items (with their wrapped lines), paragraphs, table rows.

    Text from a PDF, or a guide written without Markdown, has no `#` headings; then a short line
    standing alone (the previous line ended a sentence) is taken as a heading.
    """
    lines = text.split("\n")
    infer = not any(_MD_HEADING_RE.match(line.strip()) for line in lines)
    blocks: list[_Block] = []
    current: _Block | None = None
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            current = None
            continue
        block = _classify(line, index + 1, current, lines, infer)
        if block is None:  # a wrapped line that continues the current block
            assert current is not None
            current.lines.append((index + 1, line))
            continue
        if block.kind == "header_row" and blocks and blocks[-1].kind == "row":
            blocks[-1].kind = "header_row"
            continue
        if block.kind == "heading" and block.level == -1:  # a setext underline
            assert current is not None
            current.kind, current.level = "heading", 2
            current = None
            continue
        blocks.append(block)
        current = block if block.kind in ("bullet", "paragraph") else None
    return blocks


def _classify(
    line: str, number: int, current: _Block | None, lines: list[str], infer: bool
) -> _Block | None:
    heading = _MD_HEADING_RE.match(line)
    if heading:
        return _Block("heading", [(number, heading.group(2))], len(heading.group(1)))
    if _SETEXT_RE.match(line) and current and current.kind == "paragraph":
        return _Block("heading", [], -1)
    if line.startswith("|"):
        kind = "header_row" if _TABLE_SEP_RE.match(line) else "row"
        return _Block(kind, [(number, line)])
    bullet = _BULLET_RE.match(line)
    if bullet:
        return _Block("bullet", [(number, bullet.group(1))])
    if infer and _looks_like_heading(line, number, lines):
        return _Block("heading", [(number, line)], 2)
    if current is not None:
        return None
    return _Block("paragraph", [(number, line)])


def _looks_like_heading(line: str, number: int, lines: list[str]) -> bool:
    words = line.split()
    if len(words) > 8 or len(line) > 60 or line.endswith((*_TERMINAL, ",", ";")):
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    previous = lines[number - 2].strip() if number >= 2 else ""
    following = any(rest.strip() for rest in lines[number : number + 3])
    return following and (not previous or previous.endswith(_TERMINAL))


# -- sentences -------------------------------------------------------------------------------

# Every quoted span is bounded in length: an opening mark that is never closed would otherwise
# be scanned to the end of the text from each of its occurrences (quadratic time on hostile text).
# Single quotes double as apostrophes ('we're swamped'), so those phrases may contain them.
_QUOTE_RE = re.compile(
    r'"([^"]{1,300}?)"'
    r"|“([^”]{1,300}?)”"
    r"|„([^“”]{1,300}?)[“”]"
    r"|«\s?([^»]{1,300}?)\s?»"
    r"|`([^`]{1,300}?)`"
    r"|(?<!\w)'((?:[^']|'(?=\w)){1,80}?)'(?!\w)"
    r"|(?<!\w)‘((?:[^’]|’(?=\w)){1,80}?)’(?!\w)"
)
_EMPHASIS_RE = re.compile(r"\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
# Rules are short; a very long "sentence" is prose, and skipping it keeps the regexes cheap.
_MAX_SENTENCE_CHARS = 400


def _quote_token(i: int) -> str:
    return f"\ue000{i}\ue001"


def _sentences(block: _Block) -> list[_Sentence]:
    starts, pieces, offset = [], [], 0
    for _, text in block.lines:
        piece = _EMPHASIS_RE.sub("", text)  # "**Never** say" reads as "Never say"
        starts.append(offset)
        pieces.append(piece)
        offset += len(piece) + 1
    joined = " ".join(pieces)
    # Split outside quotes only: "Do: "Hi Maya. I've sent..."" is one sentence.
    shielded = _QUOTE_RE.sub(lambda m: "Q" * len(m.group(0)), joined)
    out, start = [], 0
    for cut in [*(m.end() for m in _SENTENCE_SPLIT_RE.finditer(shielded)), len(joined)]:
        text = " ".join(joined[start:cut].split())
        if text and len(text) <= _MAX_SENTENCE_CHARS:
            line = block.lines[max(0, bisect.bisect_right(starts, start) - 1)][0]
            out.append(_make_sentence(text, line))
        start = cut
    return out


def _make_sentence(text: str, line: int) -> _Sentence:
    quotes: list[str] = []

    def token(match: re.Match[str]) -> str:
        quotes.append(next(g for g in match.groups() if g is not None).strip())
        return _quote_token(len(quotes) - 1)

    masked = _QUOTE_RE.sub(token, text).replace("’", "'").replace("‘", "'").lower()
    return _Sentence(text=text, line=line, masked=masked, quotes=quotes)


# -- numbers ---------------------------------------------------------------------------------

_UNITS = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUM = (
    r"(?:\d{1,4}|a single|a hundred|one hundred|"
    rf"(?:{'|'.join(_TENS)})(?:[- ](?:{'|'.join(_UNITS[1:10])}))?|(?:{'|'.join(_UNITS)}))"
)


def _number(words: str) -> int:
    words = words.strip().lower()
    if words.isdigit():
        return int(words)
    if words == "a single":
        return 1
    if words.endswith("hundred"):
        return 100
    parts = re.split(r"[- ]", words)
    value = _TENS.index(parts[0]) * 10 + 20 if parts[0] in _TENS else _UNITS.index(parts[0])
    return value + (_UNITS.index(parts[1]) if len(parts) > 1 else 0)


_GAP = r"(?:\s+[\w-]+){0,2}?\s+"  # up to two words between a number and its noun ("short")
_AT_MOST = (
    r"(?:no more than|not more than|never more than|(?:never|don't|do not) use more than|"
    r"at most|up to|a maximum of|maximum(?: of)?|max\.?|limit(?:ed)? (?:it )?to|only|just)"
)
_UNDER = rf"(?:{_AT_MOST}|under|fewer than|less than|below|within|no longer than|shorter than)"
_AT_LEAST = (
    # "more than", but not "no more than" / "never use more than", which are upper bounds.
    r"(?:at least|(?<!no )(?<!not )(?<!never )(?<!use )more than|over|no fewer than|"
    r"no less than|not less than|"
    r"a minimum of|minimum(?: of)?|longer than)"
)
_NONE_OF = r"(?:no|zero|avoid|avoid using|never use|don't use|do not use|not use|never add)"


def _max_count(masked: str, noun: str | None) -> int | None:
    """The most of `noun` a sentence allows: "no more than one X" -> 1, "no X" / "avoid X" -> 0."""
    tail = rf"{_GAP}(?:{noun})\b" if noun else r"\b"
    match = re.search(rf"\b{_AT_MOST}\s+({_NUM}){tail}", masked)
    if match:
        return _number(match.group(1))
    if noun is None:
        return None
    match = re.search(
        rf"\b({_NUM})\s+(?:{noun})\s+(?:at most|max(?:imum)?|or (?:fewer|less))", masked
    )
    if match:
        return _number(match.group(1))
    return 0 if re.search(rf"\b{_NONE_OF}\s+(?:any\s+)?(?:{noun})\b", masked) else None


# -- the accumulator -------------------------------------------------------------------------


class _Collector:
    """Gathers rules with their sources; a rule stated twice differently keeps the first."""

    def __init__(self) -> None:
        self.rules = BrandRules()
        self.result = RuleExtraction(rules=self.rules)
        # Sets and dicts beside the result's lists keep a long guide linear, not quadratic.
        self._sources: set[RuleSource] = set()
        self._unsure: set[str] = set()
        self._banned: set[str] = set()
        self._terms: dict[str, str] = {}

    def source(self, rule: str, sentence: _Sentence) -> None:
        entry = RuleSource(rule, sentence.line, sentence.text)
        if entry not in self._sources:
            self._sources.add(entry)
            self.result.sources.append(entry)

    def unsure(self, sentence: _Sentence) -> None:
        entry = f"line {sentence.line}: {sentence.text}"
        if entry not in self._unsure:
            self._unsure.add(entry)
            self.result.unsure.append(entry)

    def set(self, owner: object, attr: str, value: object, rule: str, sentence: _Sentence) -> bool:
        """Set one field unless the guide already set it to something else (then: not sure)."""
        if isinstance(value, str) and not value.strip():
            return False  # an empty quote ("") is no rule
        if getattr(owner, attr) not in (None, value):
            return False
        setattr(owner, attr, value)
        self.source(rule, sentence)
        return True

    def ban(self, phrase: str, sentence: _Sentence) -> None:
        phrase = _clean_phrase(phrase)
        if not phrase:
            return
        if rule_key(phrase) not in self._banned:
            self._banned.add(rule_key(phrase))
            self.rules.banned_phrases.append(phrase)
        self.source(f"banned_phrase:{rule_key(phrase)}", sentence)

    def prefer(self, use: str, instead_of: str, sentence: _Sentence) -> bool:
        """Add a preferred term; False when it is empty or contradicts an earlier one."""
        use, instead_of = _clean_phrase(use), _clean_phrase(instead_of)
        old = rule_key(instead_of)
        if not use or not instead_of or rule_key(use) == old:
            return False
        known = self._terms.get(old)
        if known is not None and known != rule_key(use):
            return False
        if known is None:
            self._terms[old] = rule_key(use)
            self.rules.preferred_terms.append(PreferredTerm(use, instead_of))
        self.source(f"preferred_term:{old}", sentence)
        return True


def _clean_phrase(phrase: str) -> str:
    # A quoted phrase often carries the sentence's punctuation ("Unfortunately," / "ASAP.").
    return " ".join(phrase.split()).strip(" .,;:!?")


# -- context ---------------------------------------------------------------------------------

_Context = Literal["general", "examples", "terms", "never", "never_list", "always", "emoji"]


def _context(heading: str) -> _Context:
    h = heading.lower().replace("’", "'")
    if re.search(r"\bdo'?s?\b.*\bdon'?ts?\b|\bexamples?\b", h):
        return "examples"
    if re.search(r"say this|terminolog|vocabular|word ?list|glossary|preferred (?:words|terms)", h):
        return "terms"
    if re.search(r"\bnever\b|\bavoid|\bdon't\b|\bdo not\b|\bbanned\b|forbidden|off-limits", h):
        listed = re.search(r"\bsay|\bwords?\b|\bphrases?\b|\bterms\b|\bexpressions?\b|banned", h)
        return "never_list" if listed else "never"
    if re.search(r"\balways\b|\bmust\b", h):
        return "always"
    return "emoji" if re.search(r"\bemoji|\bemoticon", h) else "general"


# -- extractors, each: (sentence, context, collector) -> whether it made a rule -------------------

_QUOTES = r"\ue000\d+\ue001(?:\s*(?:,|/|or|and|nor)\s*\ue000\d+\ue001)*"
_EMOJI_NOUN = r"emoji(?:s|es)?|emoticons?|smileys?"
_EXCLAMATION_NOUN = r"exclamation(?:\s+(?:marks?|points?))?|exclamations"


def _quotes_in(sentence: _Sentence, group: str) -> list[str]:
    return [sentence.quotes[int(i)] for i in re.findall(r"\ue000(\d+)\ue001", group)]


def _emoji_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    named = re.search(rf"\b(?:{_EMOJI_NOUN})\b", s.masked)
    if not named and ctx != "emoji":
        return False
    count = _max_count(s.masked, _EMOJI_NOUN if named else None)
    found = False
    if count is not None:
        found = c.set(c.rules.emoji, "max_per_reply", count, "emoji", s)
    # "only 🫖 or 🍵": the emoji named in a sentence that limits them are the allowed ones.
    listed = find_emoji(s.text)
    limits = re.search(r"\b(?:only|allowed|stick to|limited to)\b", s.masked)
    if listed and limits and count != 0 and not c.rules.emoji.allowed:
        c.rules.emoji.allowed = list(dict.fromkeys(listed))
        c.source("emoji", s)
        found = True
    return found


def _exclamation_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    if not re.search(rf"\b(?:{_EXCLAMATION_NOUN})\b", s.masked):
        return False
    count = _max_count(s.masked, _EXCLAMATION_NOUN)
    return count is not None and c.set(c.rules, "max_exclamations", count, "exclamations", s)


def _length_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    found = False
    for unit in ("words", "sentences"):
        if re.search(rf"\b{unit[:-1]}s?\b", s.masked):
            found |= _length_bounds(s, unit, c)
    return found


def _range(masked: str, noun: str) -> tuple[int | None, int | None]:
    """ "two to four sentences", "20-60 words", "between 2 and 4 sentences"."""
    for match in re.finditer(
        rf"\b(?:between\s+)?({_NUM})\s*(?:to|-|–|—|and|or)\s*({_NUM}){_GAP}{noun}", masked
    ):
        low, high = _number(match.group(1)), _number(match.group(2))
        if low < high:  # "twenty-five words" also reads as 20 to 5
            return low, high
    return None, None


def _length_bounds(s: _Sentence, unit: str, c: _Collector) -> bool:
    noun = rf"{unit[:-1]}s?\b"
    low, high = _range(s.masked, noun)
    if low is None:
        most = re.search(rf"\b{_UNDER}\s+({_NUM}){_GAP}{noun}", s.masked) or re.search(
            rf"\b({_NUM}){_GAP}{noun}\s+(?:or (?:fewer|less)|max(?:imum)?|at most|tops)\b", s.masked
        )
        least = re.search(rf"\b{_AT_LEAST}\s+({_NUM}){_GAP}{noun}", s.masked) or re.search(
            rf"\b({_NUM}){_GAP}{noun}\s+or more\b", s.masked
        )
        high = _number(most.group(1)) if most else None
        low = _number(least.group(1)) if least else None
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        return False
    if high == 0:  # "under 0 words" cannot be met; it is a typo, not a rule
        return False
    length = c.rules.length
    ok_low = low is None or c.set(length, f"min_{unit}", low, "length", s)
    ok_high = high is None or c.set(length, f"max_{unit}", high, "length", s)
    return ok_low and ok_high


_NEGATIVE_START_RE = re.compile(r"^(?:please\s+)?(?:never|avoid|don't|do not|no)\b")
_REPLY = (
    r"(?:(?:every|each|all|your|the|a|our)\s+)?"
    r"(?:(?:repl(?:y|ies)|messages?|emails?|answers?|responses?|conversations?)\s+)?"
)
_SIGNOFF_RE = re.compile(rf"\bsign[- ]?off\b|\b(?:end|close|finish|sign)\s+{_REPLY}(?:with|by)\b")
_GREETING_RE = re.compile(rf"\b(?:start|begin|open)\s+{_REPLY}(?:with|by saying)\b|\bgreet\b")
_ADDRESS_RE = re.compile(
    r"\b(?:address|call|refer to)\s+(?:the\s+|our\s+|each\s+|every\s+)?"
    r"(?:customers?|clients?|guests?|people|them|everyone|the person)\b"
)
_PLACEHOLDER_RE = re.compile(r"<[^<>]{1,40}>|\[[^\[\]]{1,40}\]|\{+[^{}]{1,40}\}+")
_FIRST_NAME_RE = re.compile(r"\b(?:first|given|their|customer's)\s+name\b")


def _signoff_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    if not s.quotes or _NEGATIVE_START_RE.match(s.masked) or not _SIGNOFF_RE.search(s.masked):
        return False
    signoff = s.quotes[0].strip()
    return c.set(c.rules, "required_signoff", signoff, "signoff", s)


def _greeting_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    if not s.quotes or _NEGATIVE_START_RE.match(s.masked) or not _GREETING_RE.search(s.masked):
        return False
    plain = [q for q in s.quotes if not _PLACEHOLDER_RE.search(q)]
    address = c.rules.address_customer
    if not c.set(address, "greeting", (plain or s.quotes)[0], "address", s):
        return False
    if len(plain) < len(s.quotes) or _FIRST_NAME_RE.search(s.masked):
        address.allow_first_name = True
    return True


def _address_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    if not s.quotes or _NEGATIVE_START_RE.match(s.masked) or not _ADDRESS_RE.search(s.masked):
        return False
    address = c.rules.address_customer
    if not c.set(address, "term", _clean_phrase(s.quotes[0]), "address", s):
        return False
    if _FIRST_NAME_RE.search(s.masked):
        address.allow_first_name = True
    return True


_SAY = r"(?:say|use|write|prefer|we say|call it)"
_NOT = r"(?:not|instead of|rather than|over|never)"
_TERM_PATTERNS = (
    # Say "tea parcel", not "package".  /  Use "swap" instead of "exchange".
    re.compile(
        rf"^(?:(?:always|please)\s+)?{_SAY}\s+(?P<use>{_QUOTES})\s*,?\s*\(?{_NOT}\s+(?P<not>{_QUOTES})"
    ),
    # Instead of "package", say "tea parcel".
    re.compile(
        rf"^(?:instead of|rather than|not)\s+(?P<not>{_QUOTES})\s*,?\s*{_SAY}\s+(?P<use>{_QUOTES})"
    ),
    # Don't say "package"; say "tea parcel" (instead).  /  Never "package" — "tea parcel" instead.
    re.compile(
        rf"^(?:don't|do not|never|avoid)\s+(?:(?:say|use|write)(?:ing)?\s+)?(?P<not>{_QUOTES})"
        rf"\s*[,;:—–(-]*\s*(?:(?:say|use|write)\s+(?P<use>{_QUOTES})|(?P<use2>{_QUOTES})\s+instead)"
    ),
)
# Under a "Say this, not that" heading the verb is optional: "tea parcel", not "package".
_TERM_IN_LIST_RE = re.compile(rf"^(?P<use>{_QUOTES})\s*,?\s*\(?{_NOT}\s+(?P<not>{_QUOTES})")
_UNQUOTED_TERM_RE = re.compile(
    rf"^(?:{_SAY}\s+)?(?P<use>[^,;:()]+?)\s*,?\s*\(?{_NOT}\s+(?P<not>[^,;:()]+?)\)?[.!]?$",
    re.IGNORECASE,
)


def _term_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    patterns = (*_TERM_PATTERNS, _TERM_IN_LIST_RE) if ctx == "terms" else _TERM_PATTERNS
    for pattern in patterns:
        match = pattern.search(s.masked)
        if match:
            uses = _quotes_in(s, match.group("use") or match.groupdict().get("use2") or "")
            return any([c.prefer(uses[0], old, s) for old in _quotes_in(s, match.group("not"))])
    return not s.quotes and _unquoted_term(s, ctx, c)


def _unquoted_term(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    """Use parcel instead of package: taken only where the words are clearly terms.

    That is under a terminology heading, or when each side is a single word; "Use simple words
    instead of jargon" would otherwise become a rule against the word "jargon".
    """
    match = _UNQUOTED_TERM_RE.match(s.text.rstrip(".!").replace("’", "'"))
    has_verb = re.match(rf"^{_SAY}\s", s.masked) is not None
    if not match or not (has_verb or ctx == "terms"):
        return False
    use, instead = match.group("use"), match.group("not")
    olds = [o for o in re.split(r"\s*(?:/|\bor\b)\s*", instead) if o]
    words = max(len(use.split()), *(len(o.split()) for o in olds))
    if words > (4 if ctx == "terms" else 1):
        return False
    return any([c.prefer(use, old, s) for old in olds])


_BAN_LEAD = (
    r"^(?:please\s+)?(?:never|avoid|don't|do not|no)\b\s*"
    r"(?:(?:say(?:ing)?|us(?:e|ing)|writ(?:e|ing)|typ(?:e|ing)|"
    r"(?:open|start|begin|end|close|sign off|reply|respond)(?:ing)?\s+with|"
    r"(?:the\s+)?(?:words?|phrases?|expressions?|terms?)(?:\s+(?:like|such as))?)\s*)*:?\s*"
)
_BAN_RE = re.compile(rf"{_BAN_LEAD}(?P<phrases>{_QUOTES})(?!.*\binstead\b)")
_BAN_LIST_RE = re.compile(
    r"^(?:please\s+)?(?:never|avoid|don't|do not)\s+"
    r"(?:(?:say(?:ing)?|us(?:e|ing)|writ(?:e|ing))(?:\s+(?:these|the following))?"
    r"(?:\s+(?:words?|phrases?|expressions?))?|(?:these|the following|the)?\s*"
    r"(?:words?|phrases?|expressions?))\s*:\s*[^\ue000]+$"
)
_BARE_QUOTES_RE = re.compile(rf"^(?P<phrases>{_QUOTES})\s*[.!]?$")


def _banned_rule(s: _Sentence, ctx: _Context, c: _Collector) -> bool:
    match = _BAN_RE.match(s.masked)
    if match is None and ctx in ("never", "never_list"):
        match = _BARE_QUOTES_RE.match(s.masked)
    if match:
        for phrase in _quotes_in(s, match.group("phrases")):
            c.ban(phrase, s)
        return True
    # "Never say: per our policy, valued customer" and bare bullets under "Words we never use":
    # the phrases are delimited by the colon, commas and bullets even without quotes.
    listed = _BAN_LIST_RE.match(s.masked)
    if listed:
        items = [i for i in re.split(r"\s*(?:[,;]|\bor\b)\s*", s.text.split(":", 1)[1]) if i]
    elif ctx == "never_list" and not s.quotes and not _DIRECTIVE_RE.match(s.masked):
        items = [s.text]
    else:
        return False
    items = [_clean_phrase(i) for i in items]
    if not items or any(len(i.split()) > 6 or not i for i in items):
        return False
    for item in items:
        c.ban(item, s)
    return True


_EXAMPLE_RE = re.compile(
    r"^(?P<kind>do|don't|do not|dont|good|bad|right|wrong|better|worse|example|e\.g\.)"
    r"\s*[:—–-]\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_EXAMPLE_KINDS = {"do": "do", "good": "do", "right": "do", "better": "do"}


def _example(block: _Block, ctx: _Context, c: _Collector) -> bool:
    text = " ".join(block.text.replace("’", "'").split())
    match = _EXAMPLE_RE.match(text)
    if match is None or (ctx != "examples" and not _QUOTE_RE.match(match.group("rest"))):
        return False
    kind = match.group("kind").lower()
    rest = match.group("rest").strip()
    quoted = _QUOTE_RE.fullmatch(rest)
    if quoted:
        rest = next(g for g in quoted.groups() if g is not None)
    example_kind = _EXAMPLE_KINDS.get(kind, "example" if kind.startswith(("ex", "e.")) else "dont")
    c.result.examples.append(GuideExample(example_kind, rest, block.lines[0][0]))
    return True


_NOUN_EXTRACTORS = (_emoji_rule, _exclamation_rule, _length_rule)
_PHRASE_EXTRACTORS = (_signoff_rule, _greeting_rule, _address_rule, _term_rule, _banned_rule)
_DIRECTIVE_RE = re.compile(
    r"^(?:please\s+)?(?:always|never|avoid|don't|do not|must|should|use|say|write|keep|start|"
    r"begin|end|close|sign|address|call|greet|no|only|limit|include|offer|thank|mention|reply|"
    r"respond|ask|be|stay|make|refer|spell|capitali[sz]e|put|add|give|try|remember|stick)\b"
)


def _extract_sentence(s: _Sentence, ctx: _Context, c: _Collector, in_list: bool) -> None:
    # A sentence can state several counted rules ("no emoji and at most one exclamation mark"),
    # but a phrase rule claims the sentence: its quotes mean one thing.
    found = False
    for extractor in _NOUN_EXTRACTORS:
        found |= extractor(s, ctx, c)
    if not found:
        found = any(extractor(s, ctx, c) for extractor in _PHRASE_EXTRACTORS)
    rule_section = in_list and ctx in ("never", "never_list", "always", "terms", "emoji")
    if not found and (_DIRECTIVE_RE.match(s.masked) or rule_section):
        c.unsure(s)


def _rows(block: _Block, ctx: _Context, c: _Collector) -> None:
    """A "| Say | Not |" table under a terminology heading: one preferred term per row."""
    cells = [cell.strip() for cell in block.text.strip().strip("|").split("|")]
    sentence = _make_sentence(block.text, block.lines[0][0])
    taken = ctx == "terms" and len(cells) >= 2 and c.prefer(cells[0], cells[1], sentence)
    if not taken and ctx in ("terms", "never", "never_list", "always"):
        c.unsure(sentence)


def extract_rules(guide: StyleGuide) -> RuleExtraction:
    """Find the guide's checkable rules; everything that reads like a rule but is not exact
    enough to check goes to `unsure`. Headings give context: quoted bullets under "Never" are
    banned phrases, "X, not Y" under "Say this, not that" are preferred terms, and "Do:"/"Don't:"
    lines are examples, never rules."""
    collector = _Collector()
    ctx: _Context = "general"
    for block in _blocks(guide.text):
        if block.kind == "heading":
            ctx = _context(block.text)
        elif block.kind == "row":
            _rows(block, ctx, collector)
        elif block.kind != "header_row" and not _example(block, ctx, collector):
            for sentence in _sentences(block):
                _extract_sentence(sentence, ctx, collector, block.kind == "bullet")
    return collector.result


# --------------------------------------------------------------------------------------------
# The system prompt
# --------------------------------------------------------------------------------------------

_PROMPT_WORDS = 120
_VOICE_RE = re.compile(
    r"\b(?:repl(?:y|ies)|voice|tone|sound|feel|warm|friendly|formal|casual|"
    r"playful|brief|concise|like a)\b",
    re.IGNORECASE,
)
_SMALL = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _spell(n: int) -> str:
    return _SMALL[n] if 0 <= n < len(_SMALL) else str(n)


def _quoted_list(items: list[str], limit: int) -> str:
    shown = [f'"{i}"' for i in items[:limit]]
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + f" or {shown[-1]}"


def _rule_sentences(rules: BrandRules) -> list[str]:
    out: list[str] = []
    address = rules.address_customer
    if address.greeting:
        name = (
            f' (or their first name instead of "{address.term}")'
            if address.allow_first_name and address.term
            else ""
        )
        out.append(f'Start every reply with "{address.greeting}"{name}.')
    elif address.term:
        out.append(f'Address the customer as "{address.term}".')
    if rules.banned_phrases:
        out.append(f"Never say {_quoted_list(rules.banned_phrases, 8)}.")
    if rules.preferred_terms:
        pairs = [f'"{t.use}", not "{t.instead_of}"' for t in rules.preferred_terms[:6]]
        out.append("Say " + "; ".join(pairs) + ".")
    out += _limit_sentences(rules)
    if rules.required_signoff:
        out.append(f'End every reply with "{rules.required_signoff}".')
    return out


def _limit_sentences(rules: BrandRules) -> list[str]:
    out = []
    emoji = rules.emoji
    if emoji.max_per_reply == 0:
        out.append("Use no emoji.")
    elif emoji.max_per_reply is not None or emoji.allowed:
        most = f"at most {_spell(emoji.max_per_reply)} " if emoji.max_per_reply else ""
        only = f" (only {' or '.join(emoji.allowed)})" if emoji.allowed else ""
        out.append(f"Use {most}emoji{only}.")
    if rules.max_exclamations is not None:
        n = rules.max_exclamations
        out.append(
            f"Use {'no' if n == 0 else 'at most ' + _spell(n)} exclamation mark{'s' * (n != 1)}."
        )
    length = rules.length
    parts = []
    if length.max_words is not None:
        parts.append(f"under {length.max_words} words")
    if length.min_sentences is not None and length.max_sentences is not None:
        parts.append(f"{_spell(length.min_sentences)} to {_spell(length.max_sentences)} sentences")
    elif length.max_sentences is not None:
        parts.append(f"at most {_spell(length.max_sentences)} sentences")
    if parts:
        out.append("Keep replies " + ", ".join(parts) + ".")
    return out


def _intro_sentences(guide: StyleGuide) -> list[str]:
    """The guide's opening prose: paragraphs before the first rule section or bullet list."""
    sentences: list[str] = []
    for block in _blocks(guide.text):
        if block.kind == "bullet" or (block.kind == "heading" and sentences):
            break
        if block.kind == "paragraph":
            sentences += [s.text for s in _sentences(block)]
    return sentences


def _words(text: str) -> int:
    return len(text.split())


def condense_system_prompt(guide: StyleGuide, rules: BrandRules, brand_name: str) -> str:
    """A compact system prompt (at most ~120 words) from the guide's opening and its rules.

    The rules always go in; the guide's opening sentences fill what room is left, those that
    describe the voice first, then kept in the guide's order.
    """
    name = brand_name.strip()
    opening = f"You are the customer-care voice of {name}{'' if name.endswith('.') else '.'}"
    rule_text = _rule_sentences(rules)
    room = _PROMPT_WORDS - _words(opening) - sum(_words(r) for r in rule_text)
    intro = _intro_sentences(guide)
    ranked = sorted(range(len(intro)), key=lambda i: (not _VOICE_RE.search(intro[i]), i))
    chosen = []
    for i in ranked:
        if _words(intro[i]) <= room:
            chosen.append(i)
            room -= _words(intro[i])
    return " ".join([opening, *(intro[i] for i in sorted(chosen)), *rule_text])
