"""Checking one reply against a brand's rules: `check_reply` gives a verdict per rule, and
`locate_breaks` says where in the reply each broken rule shows.

It knows nothing about models or how the reply was produced; what the rules are is
`chatbot.brand.profile.BrandRules`, and `chatbot.brand.guide_rules` finds them in a style guide.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from chatbot.brand.emoji import emoji_key, emoji_spans, find_emoji
from chatbot.brand.profile import AddressRule, BrandRules, EmojiRule, LengthRule, PreferredTerm

__all__ = [
    "RuleResult",
    "RuleSpan",
    "check_reply",
    "count_sentences",
    "greeting_patterns",
    "locate_breaks",
    "normalize_text",
    "phrase_pattern",
    "rule_key",
    "sentence_spans",
    "signoff_start",
    "split_signoff",
]


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict on one reply. `rule` is stable: "banned_phrase:unfortunately", "signoff",
    "preferred_term:package", "emoji", "exclamations", "length", "address"."""

    rule: str
    passed: bool
    detail: str


_TOKEN_RE = re.compile(r"\w+(?:'\w+)*")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_PLACEHOLDER_RE = re.compile(r"<[^<>]{1,40}>|\[[^\[\]]{1,40}\]|\{+[^{}]{1,40}\}+")
# A first name as it starts a greeting: capitalised whatever the case-insensitive flag says.
_NAME = r"(?-i:[A-ZÀ-ÖØ-Þ][\w'-]*)(?:\s+(?-i:[A-ZÀ-ÖØ-Þ][\w'-]*))?"


def normalize_text(text: str) -> str:
    """The text as every rule reads it: NFC, with curly quotes made straight (one for one, so
    offsets into an NFC text hold in its normalized form)."""
    # Curly and straight apostrophes/quotes mean the same to a reader; so should they to a rule.
    text = unicodedata.normalize("NFC", text)
    return text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'}))


def rule_key(phrase: str) -> str:
    """The part of a rule id that names a phrase: "Unfortunately" -> "unfortunately"."""
    return " ".join(normalize_text(phrase).casefold().split())


@lru_cache(maxsize=512)
def phrase_pattern(phrase: str, plural: bool = False) -> re.Pattern[str]:
    """A phrase as a whole-word, case-insensitive pattern; `plural` also matches "-s"/"-es"."""
    words = [re.escape(w) for w in normalize_text(phrase).strip().split()]
    # Lookarounds rather than \b so a phrase that starts or ends with punctuation still matches.
    suffix = "(?:e?s)?" if plural and phrase.strip()[-1:].isalpha() else ""
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + suffix + r"(?!\w)", re.IGNORECASE)


def _tokens_pattern(text: str) -> str:
    tokens = _TOKEN_RE.findall(normalize_text(text))
    return r"[\W_]+".join(re.escape(t) for t in tokens)


@lru_cache(maxsize=64)
def _signoff_re(signoff: str) -> re.Pattern[str] | None:
    body = _tokens_pattern(signoff)
    if not body:
        return None
    # Only the words must match, in order, at the very end: punctuation, emoji and whitespace
    # between or after them ("Steep well — the Kettlebird flock 🫖") are tolerated.
    return re.compile(r"(?<!\w)(?P<signoff>" + body + r")(?P<tail>[\W_]*)\Z", re.IGNORECASE)


def signoff_start(text: str, signoff: str | None) -> int | None:
    """Where the reply's closing sign-off starts, or None when it does not end with it."""
    pattern = _signoff_re(signoff) if signoff else None
    match = pattern.search(text) if pattern else None
    return match.start("signoff") if match else None


def split_signoff(text: str, signoff: str | None) -> tuple[str, bool]:
    """The reply without its sign-off (what the limits count), and whether it ends with it."""
    pattern = _signoff_re(signoff) if signoff else None
    match = pattern.search(text) if pattern else None
    if not match:
        return text, False
    return text[: match.start("signoff")] + match.group("tail"), True


def check_reply(rules: BrandRules, reply: str) -> list[RuleResult]:
    """Check one reply against every rule that is set; rules left empty give no result.

    Matching is case-insensitive and whole-word. The brand's sign-off is fixed text, so its words,
    emoji and exclamation marks do not count against the reply's limits.
    """
    text = normalize_text(reply)
    body, signed = split_signoff(text, rules.required_signoff)
    results = [_check_banned(p, text) for p in _unique(rules.banned_phrases)]
    if rules.required_signoff:
        results.append(_check_signoff(rules.required_signoff, signed))
    results += [_check_term(t, text) for t in rules.preferred_terms]
    results += _optional(_check_emoji(rules.emoji, body))
    if rules.max_exclamations is not None:
        results.append(_check_exclamations(rules.max_exclamations, body))
    results += _optional(_check_length(rules.length, body))
    results += _optional(_check_address(rules.address_customer, text))
    return results


def _unique(phrases: list[str]) -> list[str]:
    return list({rule_key(p): p for p in phrases if p.strip()}.values())


def _optional(result: RuleResult | None) -> list[RuleResult]:
    return [result] if result else []


def _check_banned(phrase: str, text: str) -> RuleResult:
    hits = phrase_pattern(phrase).findall(text)
    detail = f'uses "{hits[0]}"' + (f" ({len(hits)}×)" if len(hits) > 1 else "") if hits else ""
    return RuleResult(f"banned_phrase:{rule_key(phrase)}", not hits, detail or "not used")


def _check_signoff(signoff: str, signed: bool) -> RuleResult:
    detail = "ends with the sign-off" if signed else f'does not end with "{signoff}"'
    return RuleResult("signoff", signed, detail)


def _check_term(term: PreferredTerm, text: str) -> RuleResult:
    # Plurals count too: "Say tea parcel, not package" is broken by "packages" as well.
    hits = phrase_pattern(term.instead_of, plural=True).findall(text)
    detail = f'says "{hits[0]}"; use "{term.use}"' if hits else f'does not say "{term.instead_of}"'
    return RuleResult(f"preferred_term:{rule_key(term.instead_of)}", not hits, detail)


def _check_emoji(rule: EmojiRule, text: str) -> RuleResult | None:
    if rule.max_per_reply is None and not rule.allowed:
        return None
    found = find_emoji(text)
    allowed = {emoji_key(e) for e in rule.allowed}
    others = [e for e in found if allowed and emoji_key(e) not in allowed]
    problems = []
    if rule.max_per_reply is not None and len(found) > rule.max_per_reply:
        problems.append(f"{len(found)} emoji, at most {rule.max_per_reply} allowed")
    if others:
        problems.append(f"uses {''.join(others)}; only {' '.join(rule.allowed)} allowed")
    return RuleResult("emoji", not problems, "; ".join(problems) or f"{len(found)} emoji")


def _check_exclamations(limit: int, text: str) -> RuleResult:
    count = text.count("!") + text.count("！") + 2 * text.count("‼") + text.count("⁉")
    detail = _plural(count, "exclamation marks")
    passed = count <= limit
    return RuleResult("exclamations", passed, detail if passed else f"{detail}, at most {limit}")


def count_sentences(text: str) -> int:
    """Sentences end at . ! ? or … followed by a space; a line break alone does not end one."""
    return sum(1 for part in _SENTENCE_END_RE.split(text) if _TOKEN_RE.search(part))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence `count_sentences` counts, spaces between them left out.

    A part without a word (an emoji on its own) joins the sentence before it.
    """
    parts, start = [], 0
    for match in _SENTENCE_END_RE.finditer(text):
        parts.append((start, match.start() + len(match.group().rstrip())))
        start = match.end()
    parts.append((start, len(text.rstrip())))
    spans: list[tuple[int, int]] = []
    for begin, end in parts:
        if _TOKEN_RE.search(text[begin:end]) or not spans:
            spans.append((begin, end))
        elif end > begin:
            spans[-1] = (spans[-1][0], end)
    return [(b, e) for b, e in spans if e > b]


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit if count != 1 else unit[:-1]}"


def _check_length(rule: LengthRule, text: str) -> RuleResult | None:
    bounds = (rule.min_words, rule.max_words, rule.min_sentences, rule.max_sentences)
    if all(b is None for b in bounds):
        return None
    words, sentences = len(_TOKEN_RE.findall(text)), count_sentences(text)
    problems = [
        f"{_plural(value, unit)}, {word} {limit}"
        for value, unit, word, limit, broken in (
            (words, "words", "at least", rule.min_words, lambda v, b: v < b),
            (words, "words", "at most", rule.max_words, lambda v, b: v > b),
            (sentences, "sentences", "at least", rule.min_sentences, lambda v, b: v < b),
            (sentences, "sentences", "at most", rule.max_sentences, lambda v, b: v > b),
        )
        if limit is not None and broken(value, limit)
    ]
    detail = "; ".join(problems) or f"{_plural(words, 'words')}, {_plural(sentences, 'sentences')}"
    return RuleResult("length", not problems, detail)


def greeting_patterns(rule: AddressRule) -> list[re.Pattern[str]]:
    """Patterns a reply that opens with the brand's greeting matches at its start."""
    variants = [rule.greeting] if rule.greeting else []
    if rule.greeting and rule.allow_first_name and rule.term:
        variants.append(
            phrase_pattern(rule.term).sub("<name>", normalize_text(rule.greeting), count=1)
        )
    patterns = []
    for variant in variants:
        parts = [_tokens_pattern(p) for p in _PLACEHOLDER_RE.split(variant)]
        body = (r"[\W_]*" + _NAME + r"[\W_]*").join(parts)
        patterns.append(re.compile(r"\A[\W_]*" + body + r"(?!\w)", re.IGNORECASE))
    return patterns


def _check_address(rule: AddressRule, text: str) -> RuleResult | None:
    if rule.greeting:
        passed = any(p.search(text) for p in greeting_patterns(rule))
        alt = " (or the customer's first name)" if rule.allow_first_name else ""
        detail = "starts with the greeting" if passed else f'does not start with "{rule.greeting}"'
        return RuleResult("address", passed, detail + ("" if passed else alt))
    if rule.term and not rule.allow_first_name:
        passed = bool(phrase_pattern(rule.term).search(text))
        detail = f'calls the customer "{rule.term}"' if passed else f'never says "{rule.term}"'
        return RuleResult("address", passed, detail)
    # "friend, or their first name" with no fixed greeting: nothing a reply can be checked for.
    return None


@dataclass(frozen=True)
class RuleSpan:
    """Where a broken rule shows in a reply: characters [start, end) of the reply, or None for
    the reply as a whole (its length). A missing greeting points at the first sentence, a missing
    sign-off at the last."""

    rule: str
    detail: str
    start: int | None
    end: int | None


def locate_breaks(rules: BrandRules, reply: str) -> list[RuleSpan]:
    """Every broken rule of `check_reply`, with where it shows; offsets are into `reply`, which
    should be NFC (`normalize_text` keeps the offsets of an NFC text)."""
    text = normalize_text(reply)
    sentences = sentence_spans(text) or [(0, len(text))]
    out: list[RuleSpan] = []
    for result in check_reply(rules, reply):
        if result.passed:
            continue
        kind, _, key = result.rule.partition(":")
        spans = _rule_spans(rules, kind, key, text, sentences)
        out += [RuleSpan(result.rule, result.detail, s, e) for s, e in spans or [(None, None)]]
    return sorted(out, key=lambda r: (r.start is None, r.start or 0))


def _rule_spans(
    rules: BrandRules, kind: str, key: str, text: str, sentences: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The character spans of one broken rule (empty: the reply as a whole)."""
    if kind == "banned_phrase":
        phrase = next(p for p in rules.banned_phrases if rule_key(p) == key)
        return [m.span() for m in phrase_pattern(phrase).finditer(text)]
    if kind == "preferred_term":
        term = next(t for t in rules.preferred_terms if rule_key(t.instead_of) == key)
        return [m.span() for m in phrase_pattern(term.instead_of, plural=True).finditer(text)]
    if kind == "address":
        return [sentences[0]]
    if kind == "signoff":
        return [sentences[-1]]
    if kind == "exclamations" and rules.max_exclamations is not None:
        marks = [(i, i + 1) for i, c in enumerate(text) if c in "!！‼⁉"]
        return marks[rules.max_exclamations :] or marks
    if kind == "emoji":
        return _emoji_breaks(rules.emoji, text)
    return []


def _emoji_breaks(rule: EmojiRule, text: str) -> list[tuple[int, int]]:
    allowed = {emoji_key(e) for e in rule.allowed}
    spans = emoji_spans(text)
    bad = [s for s in spans if allowed and emoji_key(text[s[0] : s[1]]) not in allowed]
    if rule.max_per_reply is not None:
        bad += [s for s in spans[rule.max_per_reply :] if s not in bad]
    return sorted(bad)
