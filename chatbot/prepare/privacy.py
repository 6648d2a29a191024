"""PII redaction: finds personal data in conversations and swaps it for typed placeholders.

This module owns what counts as personal data before training (e-mail addresses, phone numbers,
payment cards, IBANs, IP addresses and, when asked, social-media handles), how confident a
detection must be to be replaced, and the review samples that show a person what changed.
URLs are deliberately kept: brands link their help pages, and those links are part of the voice.

Detection leans on presidio-analyzer's predefined pattern recognizers, run fully offline: no
spaCy model (a no-op NLP engine) and no public-suffix download. It knows nothing about files,
datasets or training; callers hand it `Conversation`s and get new ones back.

Redaction fails closed. A text that could not be checked (longer than `MAX_TEXT_CHARS`, a detector
that raised, or a presidio regex that timed out, which presidio only logs before skipping the
pattern) is never passed through: `redact_text` raises `RedactionError`, and
`redact_conversations` leaves the conversation out and reports it as an error finding.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import chain, zip_longest
from typing import Any, NamedTuple

import phonenumbers
import tldextract
from phonenumbers import Leniency, NumberParseException
from presidio_analyzer import (
    AnalyzerEngine,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
)

from chatbot.errors import BrandVoiceError
from chatbot.types import Conversation, Finding, Turn

__all__ = [
    "PLACEHOLDERS",
    "MAX_SAMPLES_PER_TYPE",
    "MAX_TEXT_CHARS",
    "UNCHECKED",
    "Redactor",
    "RedactionError",
    "RedactionResult",
    "RedactionSample",
]

# presidio entity name -> the placeholder type written into the text as "<TYPE>".
PLACEHOLDERS: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "HANDLE": "HANDLE",
}

MAX_SAMPLES_PER_TYPE = 5
"""Before/after samples kept per placeholder type for review."""

MAX_TEXT_CHARS = 200_000
"""Longest single text (one turn) checked for personal data; a longer one is refused before any
detector runs. About 40,000 words: far beyond a chat message, and a bound on the time one text can
take (detection is linear, but a 1 MB turn is data no one meant to train a chat voice on)."""

UNCHECKED = "pii_unchecked"
"""The finding code of a conversation that could not be checked for personal data."""

_SAMPLE_CONTEXT = 30
"""Characters of text kept on each side of a change in a review sample."""

# Minimum score per entity. Most presidio recognizers here validate what their regex found
# (Luhn for cards, mod-97 for IBANs, a known public suffix for e-mail domains) and then score
# 1.0 or drop the match, so 0.5 simply means "passed its checksum". The IP recognizer scores
# real addresses 0.6 and the bare "::" 0.1, which is never worth redacting. Phone scores are our
# own (see `_phone_score`): 0.5 for number shapes people use for phones, 0.3 for digit runs that
# phonenumbers accepts but that read like order numbers.
_THRESHOLDS: dict[str, float] = {
    "EMAIL_ADDRESS": 0.5,
    "PHONE_NUMBER": 0.5,
    "CREDIT_CARD": 0.5,
    "IBAN_CODE": 0.5,
    "IP_ADDRESS": 0.5,
    "HANDLE": 0.5,
}

# National formats are read for these regions; numbers written with a "+" or "00" country code
# are recognised whatever the list. More regions means more passes of the phone matcher over
# every text, so this is the brand markets we expect rather than every region phonenumbers knows.
_PHONE_REGIONS = ("US", "GB", "IE", "DE", "FR", "ES", "IT", "NL", "IN", "AU")
_PHONE_LIKELY = 0.5
_PHONE_POSSIBLE = 0.3
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15  # E.164: longer runs are cards, barcodes or tracking numbers
_MAX_BARE_PHONE_DIGITS = 11  # unseparated runs longer than this read as barcodes or order ids

# A phone candidate glued to a code ("KB-20931", "X200-45"), a price ("$12.50"), a reference
# ("#1002934"), a path segment ("/orders/4155552671") or the middle of a longer digit group.
_CODE_BEFORE = re.compile(r"(?:[\w#$€£¥₹/]|\w-|\d[ .])\Z")
_CODE_AFTER = re.compile(r"(?:[\w/]|-\w)")
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b")

# Cheap hints that a text may hold an entity at all. Most chat messages hold none, and presidio
# runs every requested recognizer (ten phone-matcher passes among them) over every text it gets,
# so asking it only for the entities a text could contain is most of the speed. The phone hint
# is seven digits with at most a few separators between neighbours: every phone we keep has
# that, while "KB-20931", "$12.50" or "14:30" do not.
_PHONE_HINT = re.compile(r"(?:\d[^\w,]{0,3}){6}\d")
_CARD_HINT = re.compile(r"(?:\d[- ]?){12}\d")  # presidio's card pattern needs 13+ digits
_IBAN_HINT = re.compile(r"[A-Z]{2}\d{2}", re.IGNORECASE)
_IP_HINT = re.compile(r"\d\.\d{1,3}\.|[0-9a-f]:[0-9a-f]{0,4}:|::", re.IGNORECASE)
_DIGIT = re.compile(r"\d")

# "@name" in any script: a first letter or underscore keeps "@5pm" out; the look-behind keeps
# e-mail addresses ("jane@kettlebird.com") and profile links ("medium.com/@kettlebird") out.
_HANDLE_REGEX = r"(?<![\w@/.+-])@[^\W\d](?:[\w.]{0,28}\w)?(?![\w@])"
_HANDLE_SCORE = 0.6

# presidio logs at INFO for every loaded recognizer and, per result, that the no-op NLP engine
# gives it no context to work with; that is by design here. Warnings (a regex that timed out and
# was skipped) and errors still come through, and during detection they fail the text (`_detect`).
_PRESIDIO_LOGGER = "presidio-analyzer"


@dataclass(frozen=True)
class RedactionSample:
    """One change for review: a short window of the text before and after redaction.

    `before` shows the personal data itself unless the samples were asked for masked.
    """

    kind: str
    """Placeholder type, e.g. "EMAIL"."""
    before: str
    after: str
    source: str = ""
    location: str = ""


class RedactionError(BrandVoiceError):
    """A text could not be checked for personal data, so it must be neither stored nor trained on.

    `reason` says why in a few words ("a detector timed out", "250,000 characters long ...").
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"could not check for personal data: {reason}")


@dataclass
class RedactionResult:
    """Redacted conversations, how many spans of each type were replaced, and review samples."""

    conversations: list[Conversation]
    """The redacted conversations; those that could not be checked are left out."""
    enabled: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    """Replacements per placeholder type ("EMAIL", "PHONE", ...)."""
    samples: dict[str, list[RedactionSample]] = field(default_factory=dict)
    """Up to `MAX_SAMPLES_PER_TYPE` samples per placeholder type, in input order."""
    failures: list[Finding] = field(default_factory=list)
    """One error finding (code `UNCHECKED`) per conversation left out because a turn of it could
    not be checked for personal data."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and samples for reports; samples alternate between types."""
        interleaved = chain.from_iterable(zip_longest(*self.samples.values()))
        return {
            "enabled": self.enabled,
            "total": self.total,
            "counts": dict(sorted(self.counts.items())),
            "samples": [asdict(s) for s in interleaved if s is not None],
        }


class _Span(NamedTuple):
    start: int
    end: int
    kind: str
    score: float

    @property
    def placeholder(self) -> str:
        return f"<{self.kind}>"


class _Pass(NamedTuple):
    """One redaction pass over a text: the text before, after, and the spans replaced."""

    before: str
    after: str
    spans: list[_Span]


class Redactor:
    """Replaces personal data with `<EMAIL>`, `<PHONE>`, `<CARD>`, `<IBAN>`, `<IP>`, `<HANDLE>`.

    `social_handles` turns on "@name" redaction; `keep_handles` are the brand's own handles
    (with or without "@", any case), which are never redacted. The presidio analyzer is built on
    first use and shared by every redactor with the same handle settings.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        social_handles: bool = False,
        keep_handles: Sequence[str] = (),
    ) -> None:
        self.enabled = enabled
        self.social_handles = social_handles
        self.keep_handles = tuple(sorted({_normalize_handle(h) for h in keep_handles if h}))

    def redact_text(self, text: str) -> tuple[str, Counter[str]]:
        """Return `text` with every detected span replaced, and the replacements per type.

        Raises `RedactionError` when the text could not be checked (see the module doc).
        """
        passes = self._redact(text)
        return (passes[-1].after if passes else text), _count(passes)

    def redact_conversations(
        self,
        conversations: Iterable[Conversation],
        *,
        max_samples: int = MAX_SAMPLES_PER_TYPE,
        mask_samples: bool = False,
    ) -> RedactionResult:
        """Redact every turn of every conversation; the inputs are left unchanged.

        With `mask_samples`, the values in the samples' `before` are masked ("+•• •••• ••••23",
        "••••@example.com"): the shape still tells a phone number from an order number, and a
        report stored next to the redacted data then does not bring the personal data back.
        """
        result = RedactionResult(conversations=[], enabled=self.enabled)
        for conv in conversations:
            done: list[list[_Pass]] = []
            try:
                for turn in conv.turns:
                    done.append(self._redact(turn.content))
            except RedactionError as exc:
                result.failures.append(_unchecked(conv, len(done) + 1, exc))
                continue
            turns = []
            for turn, passes in zip(conv.turns, done, strict=True):
                turns.append(Turn(turn.role, passes[-1].after) if passes else turn)
                result.counts.update(_count(passes))
                for sample in _samples(passes, conv, mask_samples):
                    kept = result.samples.setdefault(sample.kind, [])
                    if len(kept) < max_samples:
                        kept.append(sample)
            result.conversations.append(Conversation(turns, conv.source, conv.location))
        return result

    def _redact(self, text: str) -> list[_Pass]:
        """Redact `text` pass after pass until a pass finds nothing.

        One pass is almost always enough. A second one matters when a replacement uncovers
        another entity: the phone in "4111 1111 1111 1111 0301234567" reads as the tail of a
        longer digit group until the card before it is replaced. Repeating until nothing is
        found makes redacting twice the same as redacting once. It ends because every
        replacement removes at least one digit, "@" or ":" and placeholders hold none.
        """
        if not self.enabled:
            return []
        if len(text) > MAX_TEXT_CHARS:
            raise RedactionError(
                f"the text is {len(text):,} characters long, over the {MAX_TEXT_CHARS:,} that are "
                "checked; split it or leave it out"
            )
        passes: list[_Pass] = []
        while spans := self._find_spans(text):
            redacted = _replace(text, spans, [span.placeholder for span in spans])
            passes.append(_Pass(text, redacted, spans))
            text = redacted
        return passes

    def _find_spans(self, text: str) -> list[_Span]:
        entities = _candidate_entities(text, self.social_handles)
        if not entities:
            return []
        analyzer = _analyzer(self.social_handles, self.keep_handles)
        results = _detect(analyzer, text, entities)
        spans = [
            _Span(r.start, r.end, PLACEHOLDERS[r.entity_type], r.score)
            for r in results
            if r.score >= _THRESHOLDS[r.entity_type]
        ]
        return _resolve_overlaps(spans)


def _detect(analyzer: AnalyzerEngine, text: str, entities: list[str]) -> list[RecognizerResult]:
    """Every recognizer's results for `entities`; raises `RedactionError` if any could not run.

    The recognizers are called directly rather than through `AnalyzerEngine.analyze`: with the
    no-op NLP engine its context step finds no context words but deep-copies every result, which
    was most of the time for texts with thousands of matches.
    """
    found: list[RecognizerResult] = []
    with _PROBLEMS.watching() as problems:
        for recognizer in analyzer.registry.get_recognizers(language="en", entities=entities):
            wanted = [e for e in recognizer.supported_entities if e in entities]
            try:
                found += recognizer.analyze(text, wanted, None)
            # Fail closed: whatever went wrong inside a detector, the text was not fully checked,
            # so it is refused (with the cause attached) rather than passed on unredacted.
            except Exception as exc:  # noqa: BLE001
                raise RedactionError(
                    f"the {recognizer.name} detector failed ({type(exc).__name__}: {exc})"
                ) from exc
    if problems:
        raise RedactionError(f"a detector gave up ({problems[0]})")
    return found


class _ProblemLog(logging.Handler):
    """Collects presidio's warnings while a text is checked, per thread.

    presidio catches a regex that runs past its timeout, logs a warning and skips the pattern,
    which would let everything that pattern finds through. Any warning during detection therefore
    means the text was not fully checked.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    @contextmanager
    def watching(self) -> Iterator[list[str]]:
        problems: list[str] = []
        self._local.problems = problems
        try:
            yield problems
        finally:
            self._local.problems = None

    def emit(self, record: logging.LogRecord) -> None:
        problems = getattr(self._local, "problems", None)
        if problems is not None:
            problems.append(record.getMessage())


_PROBLEMS = _ProblemLog()


def _unchecked(conv: Conversation, turn: int, exc: RedactionError) -> Finding:
    return Finding(
        "error",
        f"{exc}. The conversation was left out: nothing of it is stored or trained on.",
        conv.source,
        conv.location,
        f"turn {turn}",
        UNCHECKED,
    )


def _replace(text: str, spans: Sequence[_Span], values: Sequence[str]) -> str:
    """`text` with each of the sorted, disjoint `spans` replaced by its value, in one join."""
    pieces = []
    last = 0
    for span, value in zip(spans, values, strict=True):
        pieces += (text[last : span.start], value)
        last = span.end
    pieces.append(text[last:])
    return "".join(pieces)


def _candidate_entities(text: str, social_handles: bool) -> list[str]:
    """The entities `text` could hold at all; an empty list means presidio is skipped."""
    entities = []
    if "@" in text:
        entities.append("EMAIL_ADDRESS")
        if social_handles:
            entities.append("HANDLE")
    if _PHONE_HINT.search(text):
        entities.append("PHONE_NUMBER")
    if _CARD_HINT.search(text):
        entities.append("CREDIT_CARD")
    if _IBAN_HINT.search(text):
        entities.append("IBAN_CODE")
    if _IP_HINT.search(text):
        entities.append("IP_ADDRESS")
    return entities


def _resolve_overlaps(spans: list[_Span]) -> list[_Span]:
    """Keep the best of overlapping spans (higher score, then longer), sorted by position.

    presidio only merges overlaps within one entity type; across types (an IP address that also
    parses as a phone number, a card number inside an IBAN-like string) we decide here. The kept
    spans never overlap, so they stay sorted by start and by end alike, and each candidate is
    checked against its two neighbours found by bisection: n log n, not n².
    """
    starts: list[int] = []
    kept: list[_Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, s.start - s.end, s.start)):
        i = bisect.bisect_right(starts, span.start)
        if i and kept[i - 1].end > span.start:
            continue
        if i < len(kept) and kept[i].start < span.end:
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    return kept


def _count(passes: list[_Pass]) -> Counter[str]:
    return Counter(span.kind for one in passes for span in one.spans)


def _samples(passes: list[_Pass], conv: Conversation, mask: bool) -> Iterator[RedactionSample]:
    for one in passes:
        before = one.before
        if mask:
            # Every value of the pass is masked, not only the sample's own: windows can overlap.
            before = _replace(before, one.spans, [_mask(span, before) for span in one.spans])
        shift = 0  # how far the replacements so far have moved positions in `after`
        for span in one.spans:
            new_start = span.start + shift
            new_end = new_start + len(span.placeholder)
            shift += len(span.placeholder) - (span.end - span.start)
            yield RedactionSample(
                kind=span.kind,
                before=_window(before, span.start, span.end),
                after=_window(one.after, new_start, new_end),
                source=conv.source,
                location=conv.location,
            )


def _mask(span: _Span, text: str) -> str:
    """The replaced value with its letters and digits hidden, keeping what shows its kind.

    The mask has the value's length, so offsets in the text stay valid. Separators stay, and so
    do an e-mail's domain (rarely personal on its own, and what tells a customer's address from
    the brand's own) and the last two characters of anything else.
    """
    value = text[span.start : span.end]
    if span.kind == "EMAIL":
        local, _, domain = value.rpartition("@")
        return re.sub(r"\w", "•", local) + "@" + domain
    hidden = re.sub(r"\w", "•", value[:-2])
    return hidden + value[-2:]


def _window(text: str, start: int, end: int) -> str:
    left = max(0, start - _SAMPLE_CONTEXT)
    right = min(len(text), end + _SAMPLE_CONTEXT)
    return ("…" if left else "") + text[left:right] + ("…" if right < len(text) else "")


def _normalize_handle(handle: str) -> str:
    return "@" + handle.strip().lstrip("@").lower()


# --- recognizers -----------------------------------------------------------------------------


class _OfflineEmailRecognizer(EmailRecognizer):
    """presidio's e-mail recognizer, checking domains against the bundled public-suffix list.

    presidio validates a match with the module-level `tldextract.extract`, whose first call
    downloads the public-suffix list and, offline, logs two warnings with full tracebacks before
    falling back to the snapshot shipped inside tldextract (and writes a cache under ~/.cache).
    An extractor of our own with no URLs goes straight to that snapshot: no network attempt, no
    log, no global state patched, and no cache directory. Suffixes added after the installed
    tldextract release are not known, which matters little for telling an e-mail from a typo.
    The answer depends on the domain alone, so it is kept per domain: a text with thousands of
    addresses at a few domains looks each domain up once.
    """

    def __init__(self) -> None:
        super().__init__()
        tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        self._known_domain = functools.lru_cache(maxsize=4096)(
            lambda domain: tld(domain).fqdn != ""
        )

    def validate_result(self, pattern_text: str) -> bool:
        return self._known_domain(pattern_text.rpartition("@")[2])


class _PhoneShapeRecognizer(PhoneRecognizer):
    """presidio's phone recognizer, scored by how much a match reads like a phone number.

    presidio gives every phonenumbers match the same score and, by default, only keeps numbers
    valid in a numbering plan. That misses the reserved numbers people use in examples and test
    data ("(555) 123-4567", "+44 7700 900123"), while validity itself says little: most 7-12
    digit strings are valid German numbers. So we match leniently and score the shape instead.
    """

    def __init__(self) -> None:
        super().__init__(supported_regions=_PHONE_REGIONS, leniency=Leniency.POSSIBLE)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts)
        for result in results:
            result.score = _phone_score(text, result.start, result.end)
        return [r for r in results if r.score > 0]


def _phone_score(text: str, start: int, end: int) -> float:
    """0 for what is plainly not a phone number, else `_PHONE_LIKELY` or `_PHONE_POSSIBLE`."""
    span = text[start:end]
    digits = len(_DIGIT.findall(span))
    if not _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS or "," in span:
        return 0.0
    if _DATE_LIKE.match(span) or _is_glued(text, start, end):
        return 0.0
    if span.startswith("+"):
        return _PHONE_LIKELY
    if span.isdigit() and digits > _MAX_BARE_PHONE_DIGITS:
        return _PHONE_POSSIBLE
    if digits >= 10:
        return _PHONE_LIKELY
    # 7-9 digits: only a national number written with its trunk "0" ("030 901820") is likely.
    if span.lstrip("(").startswith("0") and _is_valid_number(span):
        return _PHONE_LIKELY
    return _PHONE_POSSIBLE


def _is_glued(text: str, start: int, end: int) -> bool:
    return bool(_CODE_BEFORE.search(text, max(0, start - 2), start) or _CODE_AFTER.match(text, end))


def _is_valid_number(span: str) -> bool:
    for region in _PHONE_REGIONS:
        try:
            number = phonenumbers.parse(span, region)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


class _HandleRecognizer(PatternRecognizer):
    """Social-media handles ("@name"), except the brand's own."""

    def __init__(self, keep_handles: Sequence[str]) -> None:
        super().__init__(
            supported_entity="HANDLE",
            name="HandleRecognizer",
            patterns=[Pattern("handle", _HANDLE_REGEX, _HANDLE_SCORE)],
        )
        self._keep = frozenset(keep_handles)

    def invalidate_result(self, pattern_text: str) -> bool:
        return _normalize_handle(pattern_text) in self._keep


@functools.lru_cache(maxsize=8)
def _analyzer(social_handles: bool, keep_handles: tuple[str, ...]) -> AnalyzerEngine:
    """Build the analyzer once per handle settings; redactors with equal settings share it."""
    logger = logging.getLogger(_PRESIDIO_LOGGER)
    logger.setLevel(logging.WARNING)
    if _PROBLEMS not in logger.handlers:
        logger.addHandler(_PROBLEMS)
    recognizers = [
        _OfflineEmailRecognizer(),
        _PhoneShapeRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
    ]
    if social_handles:
        recognizers.append(_HandleRecognizer(keep_handles))
    return AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognizers, supported_languages=["en"]),
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
        supported_languages=["en"],
    )
