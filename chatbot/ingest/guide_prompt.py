"""A short system prompt condensed from a style guide and its checkable rules."""

from __future__ import annotations

import re

from chatbot.brand import BrandRules
from chatbot.ingest.guide_rules import block_sentences, guide_blocks
from chatbot.ingest.style_guide import StyleGuide

__all__ = ["condense_system_prompt"]

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
    elif address.allow_first_name:
        out.append("Address the customer by their first name.")
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
        only = f", and only {' or '.join(emoji.allowed)}" if emoji.allowed else ""
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
    for block in guide_blocks(guide.text):
        if block.kind == "bullet" or (block.kind == "heading" and sentences):
            break
        if block.kind == "paragraph":
            sentences += [s.text for s in block_sentences(block)]
    return sentences


def _words(text: str) -> int:
    return len(text.split())


def condense_system_prompt(guide: StyleGuide | None, rules: BrandRules, brand_name: str) -> str:
    """A compact system prompt (at most ~120 words) from the guide's opening and its rules.

    The rules always go in; the guide's opening sentences fill what room is left, those that
    describe the voice first, then kept in the guide's order. Without a guide (rules read from
    the brand's replies) the prompt is the opening line and the rules.
    """
    name = brand_name.strip()
    opening = f"You are the customer-care voice of {name}{'' if name.endswith('.') else '.'}"
    rule_text = _rule_sentences(rules)
    room = _PROMPT_WORDS - _words(opening) - sum(_words(r) for r in rule_text)
    intro = _intro_sentences(guide) if guide is not None else []
    ranked = sorted(range(len(intro)), key=lambda i: (not _VOICE_RE.search(intro[i]), i))
    chosen = []
    for i in ranked:
        if _words(intro[i]) <= room:
            chosen.append(i)
            room -= _words(intro[i])
    return " ".join([opening, *(intro[i] for i in sorted(chosen)), *rule_text])
