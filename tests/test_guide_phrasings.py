"""How style guides really phrase their rules, each with the rule it must become."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.brand import AddressRule, BrandRules, EmojiRule, LengthRule, PreferredTerm
from chatbot.ingest.guide_prompt import condense_system_prompt
from chatbot.ingest.guide_rules import extract_rules
from chatbot.ingest.style_guide import StyleGuide, read_style_guide
from chatbot.rule_check import check_reply


def _rules(**fields: object) -> BrandRules:
    return BrandRules(**fields)  # type: ignore[arg-type]


PHRASINGS = [
    ('Never say "no worries".', _rules(banned_phrases=["no worries"])),
    (
        'Avoid "per our policy" and "valued customer".',
        _rules(banned_phrases=["per our policy", "valued customer"]),
    ),
    (
        'Avoid saying "I understand your frustration".',
        _rules(banned_phrases=["I understand your frustration"]),
    ),
    ('Say "parcel", not "package".', _rules(preferred_terms=[PreferredTerm("parcel", "package")])),
    (
        'Use "plant parcel" instead of "package".',
        _rules(preferred_terms=[PreferredTerm("plant parcel", "package")]),
    ),
    (
        'Never use "cheap" — say "affordable" instead.',
        _rules(preferred_terms=[PreferredTerm("affordable", "cheap")]),
    ),
    ('Start with "Hi there,".', _rules(address_customer=AddressRule(greeting="Hi there,"))),
    (
        'Start every reply with "Hi <first name>,".',
        _rules(address_customer=AddressRule(greeting="Hi <first name>,", allow_first_name=True)),
    ),
    (
        'End every reply with "Cheers, the Fernhill team".',
        _rules(required_signoff="Cheers, the Fernhill team"),
    ),
    ('Always close with "Talk soon, Fernhill".', _rules(required_signoff="Talk soon, Fernhill")),
    ("Keep replies under 80 words.", _rules(length=LengthRule(max_words=80))),
    ("Replies should be 50 words or fewer.", _rules(length=LengthRule(max_words=50))),
    ("Use at most one exclamation mark.", _rules(max_exclamations=1)),
    ("Don't use exclamation marks.", _rules(max_exclamations=0)),
    ("Use the customer's first name.", _rules(address_customer=AddressRule(allow_first_name=True))),
    (
        "Address customers by their first name.",
        _rules(address_customer=AddressRule(allow_first_name=True)),
    ),
    ("No emoji.", _rules(emoji=EmojiRule(max_per_reply=0))),
    ("No emoji, please.", _rules(emoji=EmojiRule(max_per_reply=0))),
    ("No emoji except ☕.", _rules(emoji=EmojiRule(max_per_reply=1, allowed=["☕"]))),
    (
        "Never use emoji, except ☕ now and then.",
        _rules(emoji=EmojiRule(max_per_reply=1, allowed=["☕"])),
    ),
    (
        "One emoji at most, and only 🌿 or ☕.",
        _rules(emoji=EmojiRule(max_per_reply=1, allowed=["🌿", "☕"])),
    ),
    (
        "Emoji: only ☕, and never more than one.",
        _rules(emoji=EmojiRule(max_per_reply=1, allowed=["☕"])),
    ),
    ("Emoji are welcome, up to two per reply.", _rules(emoji=EmojiRule(max_per_reply=2))),
]


@pytest.mark.parametrize(("line", "expected"), PHRASINGS, ids=[p[0] for p in PHRASINGS])
@pytest.mark.parametrize("layout", ["bullet", "prose"])
def test_phrasing_becomes_its_rule(line: str, expected: BrandRules, layout: str) -> None:
    text = f"# Fernhill Plants\n\n- {line}\n" if layout == "bullet" else f"{line}\n"
    extraction = extract_rules(StyleGuide(text, "guide.md", "markdown"))
    assert extraction.rules == expected
    assert extraction.unsure == []


@pytest.mark.parametrize(
    "line", ["Emoji are fine in moderation.", "Avoid jargon.", "Keep it friendly."]
)
def test_no_exact_rule_is_left_for_the_user(line: str) -> None:
    """Nothing to count or quote: no rule is guessed, the line is handed back instead."""
    extraction = extract_rules(StyleGuide(f"- {line}\n", "guide.md", "markdown"))
    assert extraction.rules == BrandRules()
    assert extraction.unsure == [f"line 1: {line}"]


@pytest.mark.parametrize("suffix", [".md", ".txt"])
def test_no_emoji_except_one_is_an_allow_list(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"guide{suffix}"
    path.write_text(
        "# Fernhill Plants\n\nWe write like a gardener over the fence.\n\n"
        "## Emoji\n\n- No emoji except ☕.\n",
        encoding="utf-8",
    )
    guide = read_style_guide(path)
    rules = extract_rules(guide).rules
    assert rules.emoji == EmojiRule(max_per_reply=1, allowed=["☕"])
    prompt = condense_system_prompt(guide, rules, "Fernhill Plants")
    assert "Use at most one emoji, and only ☕." in prompt
    assert "no emoji" not in prompt.lower()
    emoji_check = {r.rule: r.passed for r in check_reply(rules, "Your fern ships today ☕")}
    assert emoji_check["emoji"]
    assert not {r.rule: r.passed for r in check_reply(rules, "Ships today 🌵")}["emoji"]
