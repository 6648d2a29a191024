"""A starting brand profile read from the brand's own replies, for a brand without a style guide.

What the replies do consistently becomes a rule: a sign-off that ends most replies, an opener most
replies share ("Hello there," or "Hi <first name>,"), the emoji and exclamation marks they use (or
never use) and their usual length. Each rule comes with a plain sentence saying what was seen, so
a marketer can check it before training. The rules are the same `BrandRules` a style guide gives
(`chatbot.ingest.guide_rules`), and the system prompt is condensed from them the same way
(`chatbot.ingest.guide_prompt`). Replies should be redacted first: nothing personal may end up in
brand.yaml.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from chatbot.brand import AddressRule, BrandProfile, BrandRules, EmojiRule, LengthRule
from chatbot.emoji import emoji_key, emoji_spans, find_emoji
from chatbot.ingest.guide_prompt import condense_system_prompt
from chatbot.rule_check import normalize_text, split_signoff
from chatbot.types import Conversation

__all__ = ["DerivedRules", "brand_replies", "derive_profile", "derive_rules"]

_MOST = 0.6
"""A habit shared by at least this share of the replies becomes a rule."""
_MAX_ALLOWED_EMOJI = 5
"""A brand using more different emoji than this gets a limit per reply, not an allow-list."""
_MIN_REPLIES = 5
"""Fewer replies than this say too little about a habit to make it a rule."""
_GREETING_WORDS = ("hi", "hello", "hey", "dear", "good morning", "good afternoon", "good evening")
_NOT_NAMES = {"there", "friend", "friends", "team", "all", "everyone", "folks", "again", "you"}
_OPENER_RE = re.compile(r"\A\s*(?P<opener>[^\n,.!?:;]{1,40}?)(?P<mark>[,!:])")
_SIGNOFF_SPLIT_RE = re.compile(r"(?<=[.!?…])\s+|\n+")
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*")
_NAME_RE = re.compile(r"[A-ZÀ-ÖØ-Þ][\w'-]*")


@dataclass
class DerivedRules:
    """Rules read from replies, with one plain sentence per thing found (for the report)."""

    rules: BrandRules
    found: list[str] = field(default_factory=list)
    replies: int = 0
    """How many replies the rules were read from."""


def brand_replies(conversations: Sequence[Conversation]) -> list[str]:
    """Every reply the brand wrote, in order."""
    return [t.content for c in conversations for t in c.turns if t.role == "assistant"]


def _share(count: int, total: int) -> str:
    return f"{count} of {total} replies"


def _high(values: Sequence[int], fraction: float = 0.95) -> int:
    """The value that `fraction` of `values` stay at or under (a max that ignores rare outliers)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _signoff(replies: Sequence[str], found: list[str]) -> str | None:
    """The closing line most replies share ("Shine on, Lumen Lamps")."""
    tails = Counter()
    spelled: dict[str, str] = {}
    for reply in replies:
        # A sign-off starts after a sentence, a line break or an emoji ("noon ☕ Warm crumbs,").
        text = normalize_text(reply)
        for start, end in reversed(emoji_spans(text)):
            text = text[:start] + "\n" + text[end:]
        parts = [p for p in _SIGNOFF_SPLIT_RE.split(text.strip()) if p.strip()]
        if len(parts) < 2:
            continue  # a reply that is all sign-off (or has none) says nothing about one
        # A sign-off over two lines ("Warmly,\nThe Otter crew") is one sign-off.
        tail = parts[-1] if not parts[-2].rstrip().endswith(",") else f"{parts[-2]} {parts[-1]}"
        tail = " ".join(tail.split()).rstrip(" .")
        if 0 < len(tail.split()) <= 8:
            key = tail.casefold()
            tails[key] += 1
            spelled.setdefault(key, tail)
    if not tails:
        return None
    key, count = tails.most_common(1)[0]
    if count < _MOST * len(replies):
        return None
    found.append(
        f'Sign-off: {_share(count, len(replies))} end with "{spelled[key]}", so every reply '
        "must end with it."
    )
    return spelled[key]


def _opener(reply: str) -> tuple[str, str] | None:
    """(opener, its mark) when the reply starts with a short greeting: ("Hello there", ",")."""
    match = _OPENER_RE.match(normalize_text(reply))
    if match is None:
        return None
    opener = " ".join(match.group("opener").split())
    if not opener or len(opener.split()) > 4:
        return None
    return opener, match.group("mark").strip()


def _named(opener: str) -> str | None:
    """ "Hi Maya" -> "Hi": the greeting word when the rest is a first name."""
    for word in _GREETING_WORDS:
        if opener.casefold().startswith(word + " "):
            rest = opener[len(word) + 1 :].strip()
            if _NAME_RE.fullmatch(rest) and rest.casefold() not in _NOT_NAMES:
                return opener[: len(word)]
    return None


def _address(replies: Sequence[str], found: list[str]) -> AddressRule:
    # Counted without their mark ("Hello there," and "Hello there!" are one opener), which is
    # then the one most replies use.
    openers: Counter[str] = Counter()
    named: Counter[str] = Counter()
    marks: dict[str, Counter[str]] = {}
    for reply in replies:
        opening = _opener(reply)
        if opening is None:
            continue
        opener, mark = opening
        greeting = _named(opener)
        key = ("\0" + greeting if greeting is not None else opener).casefold()
        (named if greeting is not None else openers)[key] += 1
        spelled = f"{greeting} <first name>" if greeting is not None else opener
        marks.setdefault(key, Counter())[spelled + mark] += 1
    total = len(replies)
    for counter, by_name in ((openers, False), (named, True)):
        key, count = counter.most_common(1)[0] if counter else ("", 0)
        if count >= _MOST * total:
            greeting = marks[key].most_common(1)[0][0]
            name = " (the customer's first name)" if by_name else ""
            found.append(f'Greeting: {_share(count, total)} open with "{greeting}"{name}.')
            return AddressRule(greeting=greeting, allow_first_name=by_name)
    if sum(named.values()) >= _MOST * total:
        found.append(
            f"First name: {_share(sum(named.values()), total)} greet the customer by first name."
        )
        return AddressRule(allow_first_name=True)
    found.append("Greeting: no opener is shared by most replies, so none is required.")
    return AddressRule()


def _emoji(replies: Sequence[str], found: list[str]) -> EmojiRule:
    per_reply = [find_emoji(r) for r in replies]
    seen = Counter(emoji_key(e) for emojis in per_reply for e in emojis)
    if not seen:
        found.append("Emoji: none in any reply, so replies use no emoji.")
        return EmojiRule(max_per_reply=0)
    with_emoji = sum(1 for emojis in per_reply if emojis)
    most = max(1, _high([len(emojis) for emojis in per_reply if emojis]))
    allowed = [e for e, _ in seen.most_common()] if len(seen) <= _MAX_ALLOWED_EMOJI else []
    only = f", only {' '.join(allowed)}" if allowed else ""
    found.append(
        f"Emoji: {_share(with_emoji, len(replies))} use emoji{only}; at most {most} per reply."
    )
    return EmojiRule(max_per_reply=most, allowed=allowed)


def _exclamations(replies: Sequence[str], found: list[str]) -> int:
    counts = [r.count("!") for r in replies]
    if not any(counts):
        found.append("Exclamation marks: none in any reply, so replies use none.")
        return 0
    most = max(1, _high(counts))
    with_marks = sum(1 for c in counts if c)
    found.append(
        f"Exclamation marks: {_share(with_marks, len(replies))} use them; at most {most} per reply."
    )
    return most


def _length(replies: Sequence[str], signoff: str | None, found: list[str]) -> LengthRule:
    # Counted as the length rule counts them: words, the sign-off left out.
    words = [len(_TOKEN_RE.findall(split_signoff(r, signoff)[0])) for r in replies]
    median = round(statistics.median(words))
    # The longest replies bar rare outliers, rounded up to a round number to leave some room.
    limit = max(10, math.ceil(_high(words) / 10) * 10)
    found.append(
        f"Length: replies are typically {median} words long; almost all stay under {limit} "
        f"words, so {limit} is the limit."
    )
    return LengthRule(max_words=limit)


def derive_rules(replies: Sequence[str]) -> DerivedRules:
    """The rules the brand's own replies follow, each with a sentence saying what was seen.

    With fewer than a handful of replies nothing is a habit yet: the rules stay empty.
    """
    replies = [r for r in replies if r.strip()]
    found: list[str] = []
    if len(replies) < _MIN_REPLIES:
        found.append(
            f"Only {len(replies)} replies: too few to read the brand's habits from, so no rules "
            "were set. Add rules to brand.yaml by hand, or prepare again with a style guide."
        )
        return DerivedRules(BrandRules(), found, len(replies))
    rules = BrandRules()
    rules.address_customer = _address(replies, found)
    rules.required_signoff = _signoff(replies, found)
    rules.emoji = _emoji(replies, found)
    rules.max_exclamations = _exclamations(replies, found)
    rules.length = _length(replies, rules.required_signoff, found)
    return DerivedRules(rules, found, len(replies))


def derive_profile(
    conversations: Sequence[Conversation], brand: str
) -> tuple[BrandProfile, DerivedRules]:
    """A starting profile for `brand` from its conversations: rules and a condensed prompt."""
    derived = derive_rules(brand_replies(conversations))
    prompt = condense_system_prompt(None, derived.rules, brand)
    return BrandProfile(name=brand, system_prompt=prompt, rules=derived.rules), derived
