"""Reading a style guide from .md, .txt, .pdf or .docx.

`read_style_guide` turns any supported file into one Markdown-ish text (headings as `#` lines,
bullets as `- `) and refuses hostile or broken files with an InputError that says what to do.
`chatbot.brand.guide_rules` finds the checkable rules in that text and
`chatbot.brand.guide_prompt` condenses a system prompt from it.
"""

from __future__ import annotations

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

from chatbot.errors import InputError
from chatbot.ingest import limits
from chatbot.ingest.decoding import decode_bytes

__all__ = ["GuideFormat", "StyleGuide", "read_style_guide"]

GuideFormat = Literal["markdown", "text", "pdf", "docx"]
_FORMATS: dict[str, GuideFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
    ".docx": "docx",
}

# A style guide is a few pages. These limits (and the file and text sizes in `limits`) are far
# above any real one and keep a hostile file from costing more than a few seconds and a bounded
# amount of memory.
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
    if len(text) > limits.MAX_GUIDE_CHARS:
        raise _too_long(name)
    return StyleGuide(text=text, source=name, format=fmt, warnings=warnings)


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError("is not a file", file=path.name)
        if size > limits.MAX_GUIDE_BYTES:
            raise InputError(
                f"is {size / 1e6:.1f} MB; a style guide should be a few pages "
                f"(limit {limits.MAX_GUIDE_BYTES / 1e6:,.0f} MB)",
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
        f"holds more than {limits.MAX_GUIDE_CHARS / 1e6:,.0f} MB of text; a style guide should "
        "be a few pages. "
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

_BINARY_ADVICE = "choose the style guide itself, saved as .md, .txt, .pdf or .docx"


def _decode_text(data: bytes, name: str, warnings: list[str]) -> str:
    """Text as conversation files are decoded (`chatbot.ingest.decoding`), line endings unified."""
    decoded = decode_bytes(data, name, advice=_BINARY_ADVICE)
    warnings += [f"{name}, {where}: {message}" for message, where in decoded.warnings]
    return decoded.text.replace("\r\n", "\n").replace("\r", "\n")


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
        if total > limits.MAX_GUIDE_CHARS:
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
            if total > limits.MAX_GUIDE_CHARS:
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
