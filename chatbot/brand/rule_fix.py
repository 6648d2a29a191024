"""Fixing a reply by the brand's own rules: the changes a rule spells out, applied exactly.

`fix_reply` makes, in this order: banned phrases removed, preferred terms swapped in, the greeting
put at the start, the sign-off put at the end, exclamation marks beyond the limit turned into full
stops, emoji the brand does not allow removed. Every change is listed (`Fix`), so a writer sees
what changed and why. Nothing here invents wording: a rule no rule-made change can satisfy (reply
length, a greeting with a placeholder and no term to fill it) is reported as left to the writer.
Matching is `chatbot.brand.rule_check`'s, so a fixed reply passes the rules it was fixed for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatbot.brand.emoji import emoji_key, emoji_spans
from chatbot.brand.profile import AddressRule, BrandRules, EmojiRule, PreferredTerm
from chatbot.brand.rule_check import (
    check_reply,
    greeting_patterns,
    normalize_text,
    phrase_pattern,
    rule_key,
    signoff_start,
    split_signoff,
)

__all__ = ["Fix", "FixedReply", "fix_reply"]


@dataclass(frozen=True)
class Fix:
    """One change: `before` became `after` ("" when something was removed) because of `rule`."""

    rule: str
    before: str
    after: str


@dataclass(frozen=True)
class FixedReply:
    text: str
    fixes: list[Fix]
    unfixed: list[str]
    """Rules the fixed text still breaks (no rule-made change satisfies them)."""


# A greeting another writer may have used, replaced by the brand's own ("Dear customer,").
_OTHER_GREETING = re.compile(
    r"\A\s*(?:hi|hello|hey|hiya|dear|greetings|good\s+(?:morning|afternoon|evening)|howdy)\b"
    r"[^,\n.!?]{0,40}[,!.]?[ \t]*\n?[ \t]*",
    re.IGNORECASE,
)
# A closing another writer may have used ("Kind regards,\nThe team"), replaced by the sign-off.
_OTHER_CLOSING = re.compile(
    r"(?:\A|\n|(?<=[.!?])[ \t])[ \t]*(?:(?:kind|best|warm|warmest)\s+(?:regards|wishes)|regards|"
    r"sincerely|cheers|many\s+thanks|thanks|thank\s+you|best|yours(?:\s+(?:truly|sincerely))?)"
    r"[ \t]*,[^\n]{0,60}(?:\n[^\n]{0,60}){0,2}\s*\Z",
    re.IGNORECASE,
)
# Words that are capitalised only because they opened a sentence; after "Hi friend," they are not.
_PLAIN_OPENER = re.compile(
    r"(?:a|an|and|as|but|for|if|it|its|it's|just|my|no|now|our|please|so|sorry|thanks|thank|that|"
    r"the|there|this|we|we'll|we're|we've|what|when|you|you'll|you're|your)\Z",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"<[^<>]{1,40}>|\[[^\[\]]{1,40}\]|\{+[^{}]{1,40}\}+")
_SENTENCE_START = re.compile(r"(?:\A|[.!?…]\s+|\n)\s*\Z")


def fix_reply(rules: BrandRules, reply: str) -> FixedReply:
    """The reply with every rule-made fix applied, the fixes made, and what is left to fix."""
    text = normalize_text(reply).strip()
    fixes: list[Fix] = []
    for phrase in rules.banned_phrases:
        text = _remove_phrase(text, phrase, fixes)
    for term in rules.preferred_terms:
        text = _swap_term(text, term, fixes)
    text = _fix_greeting(text, rules.address_customer, fixes)
    text = _fix_signoff(text, rules.required_signoff, fixes)
    body, signoff = _body_and_signoff(text, rules.required_signoff)
    if rules.max_exclamations is not None:
        body = _limit_exclamations(body, rules.max_exclamations, fixes)
    body = _fix_emoji(body, rules.emoji, fixes)
    text = body + signoff
    unfixed = [r.rule for r in check_reply(rules, text) if not r.passed]
    return FixedReply(text, fixes, unfixed)


# -- phrases -------------------------------------------------------------------------------------


def _remove_phrase(text: str, phrase: str, fixes: list[Fix]) -> str:
    if not phrase.strip():
        return text
    rule = f"banned_phrase:{rule_key(phrase)}"
    while match := phrase_pattern(phrase).search(text):
        text = _cut(text, match.start(), match.end())
        fixes.append(Fix(rule, match.group(), ""))
    return text


def _cut(text: str, start: int, end: int) -> str:
    """`text` without [start, end) and the punctuation that went with it, joined cleanly."""
    left, right = text[:start], text[end:]
    starts_sentence = bool(_SENTENCE_START.search(left))
    right = re.sub(r"\A[ \t]*[,;:]?[ \t]*", "", right)
    if starts_sentence:
        right = re.sub(r"\A[.!?…]+\s*", "", right)  # a whole sentence went: its stop goes too
        return left + right[:1].upper() + right[1:]
    if right[:1] in (".", "!", "?", "…", "") or right[:1] == "\n":
        left = re.sub(r"[ \t]*[,;:]?[ \t]*\Z", "", left)  # "no, unfortunately." -> "no."
    elif left and not left[-1].isspace():
        left += " "
    return left + right


def _swap_term(text: str, term: PreferredTerm, fixes: list[Fix]) -> str:
    rule = f"preferred_term:{rule_key(term.instead_of)}"
    pattern = phrase_pattern(term.instead_of, plural=True)

    def swap(match: re.Match[str]) -> str:
        found = match.group()
        plural = len(found) > len(" ".join(term.instead_of.split()))
        use = term.use + (_plural_suffix(term.use) if plural else "")
        if found != term.instead_of and not term.instead_of.isupper():
            if found.isupper() and len(found) > 1:
                use = use.upper()
            elif found[:1].isupper():
                use = use[:1].upper() + use[1:]
        fixes.append(Fix(rule, found, use))
        return use

    return pattern.sub(swap, text)


def _plural_suffix(word: str) -> str:
    return "es" if re.search(r"(?:s|x|z|ch|sh)\Z", word, re.IGNORECASE) else "s"


# -- greeting and sign-off -----------------------------------------------------------------------


def _fix_greeting(text: str, rule: AddressRule, fixes: list[Fix]) -> str:
    if not rule.greeting or any(p.search(text) for p in greeting_patterns(rule)):
        return text
    greeting = rule.greeting
    if _PLACEHOLDER.search(greeting):
        if not rule.term:
            return text  # "Hi <first name>," with no term: only the writer knows the name
        greeting = _PLACEHOLDER.sub(rule.term, greeting, count=1)
    old = _OTHER_GREETING.match(text)
    rest = text[old.end() :] if old else text
    fixes.append(Fix("address", old.group().strip() if old else "", greeting))
    first = rest.split(" ", 1)[0]
    if greeting.endswith(",") and first[:1].isupper() and _PLAIN_OPENER.match(first):
        rest = rest[:1].lower() + rest[1:]  # "Hi friend, your tea parcel", as the brand writes
    return f"{greeting} {rest}" if rest else greeting


def _fix_signoff(text: str, signoff: str | None, fixes: list[Fix]) -> str:
    if not signoff or split_signoff(text, signoff)[1]:
        return text
    old = _OTHER_CLOSING.search(text)
    body = text[: old.start()].rstrip() if old else text.rstrip()
    fixes.append(Fix("signoff", old.group().strip() if old else "", signoff))
    # The sign-off stands where the old closing stood: on its own line if that one did.
    gap = re.match(r"\s*", text[len(body) :]).group() if old else ""
    separator = gap if "\n" in gap else "\n\n" if "\n" in body else " "
    return f"{body}{separator}{signoff}" if body else signoff


def _body_and_signoff(text: str, signoff: str | None) -> tuple[str, str]:
    """The reply split before its sign-off: limits apply to the body only, as the rules say."""
    start = signoff_start(text, signoff)
    return (text, "") if start is None else (text[:start], text[start:])


# -- punctuation and emoji -----------------------------------------------------------------------


def _limit_exclamations(text: str, limit: int, fixes: list[Fix]) -> str:
    out, seen = [], 0
    for i, char in enumerate(text):
        if char not in "!！":
            out.append(char)
            continue
        seen += 1
        if seen <= limit:
            out.append(char)
        elif i and text[i - 1] in "!！.?":
            fixes.append(Fix("exclamations", char, ""))  # "!!": the extra mark just goes
        else:
            fixes.append(Fix("exclamations", char, "."))
            out.append(".")
    return "".join(out)


def _fix_emoji(text: str, rule: EmojiRule, fixes: list[Fix]) -> str:
    allowed = {emoji_key(e) for e in rule.allowed}
    kept, drop = 0, []
    for start, end in emoji_spans(text):
        ok = not allowed or emoji_key(text[start:end]) in allowed
        if ok and (rule.max_per_reply is None or kept < rule.max_per_reply):
            kept += 1
        else:
            drop.append((start, end))
    for start, end in reversed(drop):
        fixes.append(Fix("emoji", text[start:end], ""))
        left, right = text[:start], text[end:]
        if left.endswith(" ") and (not right or right[0] in " .,;:!?…\n"):
            left = left[:-1]
        text = left + right
    return text
