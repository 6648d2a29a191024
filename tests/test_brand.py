"""The brand profile (brand.yaml round trip and validation) and the reply rule checker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from chatbot.brand.emoji import find_emoji
from chatbot.brand.profile import (
    AddressRule,
    BrandProfile,
    BrandRules,
    EmojiRule,
    LengthRule,
    PreferredTerm,
    PrivacySettings,
)
from chatbot.brand.rule_check import RuleResult, check_reply
from chatbot.errors import ConfigError

SIGNOFF = "Steep well, the Kettlebird flock"
RULES = BrandRules(
    banned_phrases=["Unfortunately", "per our policy", "Dear customer"],
    required_signoff=SIGNOFF,
    preferred_terms=[PreferredTerm("tea parcel", "package"), PreferredTerm("right away", "ASAP")],
    emoji=EmojiRule(max_per_reply=1, allowed=["🫖", "🍵"]),
    max_exclamations=1,
    length=LengthRule(max_words=30, min_sentences=2, max_sentences=4),
    address_customer=AddressRule(term="friend", greeting="Hi friend,", allow_first_name=True),
)
GOOD = f"Hi friend, your tea parcel left today. It arrives on Friday 🫖\n\n{SIGNOFF}"


def results(reply: str, rules: BrandRules = RULES) -> dict[str, RuleResult]:
    return {r.rule: r for r in check_reply(rules, reply)}


def failed(reply: str, rules: BrandRules = RULES) -> set[str]:
    return {r.rule for r in check_reply(rules, reply) if not r.passed}


# --------------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------------


def test_a_good_reply_passes_every_rule() -> None:
    got = results(GOOD)
    assert set(got) == {
        "banned_phrase:unfortunately",
        "banned_phrase:per our policy",
        "banned_phrase:dear customer",
        "signoff",
        "preferred_term:package",
        "preferred_term:asap",
        "emoji",
        "exclamations",
        "length",
        "address",
    }
    assert all(r.passed for r in got.values()), got


def test_no_rules_no_results() -> None:
    assert check_reply(BrandRules(), "Anything at all!!! 🎉🎉") == []


@pytest.mark.parametrize(
    ("reply", "broken"),
    [
        ("UNFORTUNATELY it is late.", True),
        ("unfortunately, it is late.", True),
        ("Per our\npolicy we can't.", True),  # whitespace inside the phrase may differ
        ("Fortunately it is early.", False),  # whole words only
        ("Unfortunatelyish, it is late.", False),
    ],
)
def test_banned_phrases(reply: str, broken: bool) -> None:
    rule = (
        "banned_phrase:unfortunately"
        if "ortun" in reply.lower()
        else "banned_phrase:per our policy"
    )
    result = results(reply)[rule]
    assert result.passed is not broken
    if broken:
        assert result.detail.startswith("uses ")


def test_banned_phrase_with_curly_apostrophe() -> None:
    rules = BrandRules(banned_phrases=["we're swamped"])
    assert failed("Sorry, we’re swamped today.", rules) == {"banned_phrase:we're swamped"}


@pytest.mark.parametrize(
    ("ending", "passed"),
    [
        (SIGNOFF, True),
        (SIGNOFF + ".", True),
        (SIGNOFF + " 🫖  \n", True),
        ("steep well — the Kettlebird flock!", True),  # case and punctuation are tolerated
        ("Steep well,\nthe Kettlebird flock", True),
        (SIGNOFF + "\nPS: write back any time.", False),  # not at the end
        ("Steep well, the flock", False),
        ("", False),
    ],
)
def test_signoff_at_the_end(ending: str, passed: bool) -> None:
    result = results(f"Hi friend, it left today. It arrives Friday. {ending}")["signoff"]
    assert result.passed is passed


@pytest.mark.parametrize(
    ("reply", "broken"),
    [
        ("Your package left.", True),
        ("Both packages left.", True),  # plurals count
        ("Your Package left.", True),
        ("Your tea parcel left.", False),
        ("The packaging is recyclable.", False),
    ],
)
def test_preferred_terms(reply: str, broken: bool) -> None:
    result = results(reply)["preferred_term:package"]
    assert result.passed is not broken
    if broken:
        assert 'use "tea parcel"' in result.detail


def test_emoji_counting() -> None:
    assert find_emoji("hi 👍🏽 🇬🇧 👩‍💻 ☕ ❤️ 1️⃣ 🏴󠁧󠁢󠁳󠁣󠁴󠁿") == ["👍🏽", "🇬🇧", "👩‍💻", "☕", "❤️", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
    # Text-style symbols are not emoji unless asked to be (U+FE0F).
    assert find_emoji("© 2026 ™ ✓ → 5 * 3 #1") == []
    assert find_emoji("✔️") == ["✔️"]


@pytest.mark.parametrize(
    ("reply", "passed", "detail"),
    [
        ("Hi friend, on its way.", True, "0 emoji"),
        ("Hi friend, on its way 🍵", True, "1 emoji"),
        ("Hi friend, on its way 🍵\ufe0f", True, "1 emoji"),  # same emoji, emoji-style selector
        ("Hi friend, on its way 🍵🫖", False, "2 emoji, at most 1 allowed"),
        ("Hi friend, on its way 👍🏽", False, "uses 👍🏽; only 🫖 🍵 allowed"),
    ],
)
def test_emoji_rule(reply: str, passed: bool, detail: str) -> None:
    result = results(reply)["emoji"]
    assert (result.passed, result.detail) == (passed, detail)


def test_no_emoji_at_all() -> None:
    rules = BrandRules(emoji=EmojiRule(max_per_reply=0))
    assert failed("Thanks 🙏", rules) == {"emoji"}
    assert failed("Thanks!", rules) == set()


@pytest.mark.parametrize(
    ("reply", "passed"),
    [("Thanks!", True), ("Thanks! Really!", False), ("Thanks!!", False), ("What?!", True)],
)
def test_exclamations(reply: str, passed: bool) -> None:
    assert results(reply)["exclamations"].passed is passed


def test_zero_exclamations() -> None:
    assert failed("Great!", BrandRules(max_exclamations=0)) == {"exclamations"}


def test_length_words_and_sentences() -> None:
    rules = BrandRules(
        required_signoff=SIGNOFF, length=LengthRule(max_words=10, min_sentences=2, max_sentences=3)
    )
    # The sign-off's own words are not counted.
    assert results(f"One two three four five. Six seven eight nine ten. {SIGNOFF}", rules)[
        "length"
    ].passed
    long = results("One two three four five six. Seven eight nine ten eleven.", rules)["length"]
    assert (long.passed, long.detail) == (False, "11 words, at most 10")
    short = results("Just one sentence here.", rules)["length"]
    assert (short.passed, short.detail) == (False, "1 sentence, at least 2")
    many = results("One. Two. Three. Four.", rules)["length"]
    assert (many.passed, many.detail) == (False, "4 sentences, at most 3")


def test_min_words() -> None:
    assert failed("Too short.", BrandRules(length=LengthRule(min_words=5))) == {"length"}


@pytest.mark.parametrize(
    ("reply", "passed"),
    [
        ("Hi friend, it's on its way.", True),
        ("hi friend! It's on its way.", True),
        ("  Hi Maya, it's on its way.", True),  # the first name may stand in for "friend"
        ("Hi Maya Lin, it's on its way.", True),
        ("Hello friend, it's on its way.", False),
        ("Hi friendly people, it's on its way.", False),
        ("Hi maya, it's on its way.", False),  # a name is capitalised
        ("It's on its way. Hi friend,", False),  # the greeting starts the reply
    ],
)
def test_greeting(reply: str, passed: bool) -> None:
    assert results(reply)["address"].passed is passed


def test_greeting_with_a_placeholder() -> None:
    rules = BrandRules(address_customer=AddressRule(greeting="Hello <first name>,"))
    assert failed("Hello Sam, all done.", rules) == set()
    assert failed("Hey Sam, all done.", rules) == {"address"}


def test_greeting_without_first_name_fallback() -> None:
    rules = BrandRules(address_customer=AddressRule(term="friend", greeting="Hi friend,"))
    assert failed("Hi Maya, all done.", rules) == {"address"}


def test_address_term_without_greeting() -> None:
    rules = BrandRules(address_customer=AddressRule(term="friend"))
    assert failed("Thanks, friend. All done.", rules) == set()
    assert failed("Thanks. All done.", rules) == {"address"}
    # "friend, or their first name" with no greeting cannot be checked: no result at all.
    loose = BrandRules(address_customer=AddressRule(term="friend", allow_first_name=True))
    assert check_reply(loose, "Thanks. All done.") == []


def test_checker_is_fast_on_a_huge_reply() -> None:
    start = time.monotonic()
    check_reply(RULES, ("Hi friend, a word! " * 20_000) + "🫖" * 1000)
    assert time.monotonic() - start < 5


# --------------------------------------------------------------------------------------------
# brand.yaml
# --------------------------------------------------------------------------------------------

PROFILE = BrandProfile(
    name="Kettlebird Tea Co.",
    system_prompt="You are the customer-care voice of Kettlebird Tea Co. Keep it warm and brief.",
    rules=RULES,
    privacy=PrivacySettings(redact_social_handles=True, keep_handles=["@kettlebird"]),
    system_prompt_mode="never",
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "brand" / "brand.yaml"
    PROFILE.save(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Brand profile for Kettlebird Tea Co.\n# This file is yours to edit")
    assert "🫖" in text  # written as itself, not as an escape
    assert BrandProfile.load(path) == PROFILE
    assert [p.name for p in path.parent.iterdir()] == ["brand.yaml"]  # no temporary left over


def test_defaults_from_a_minimal_file(tmp_path: Path) -> None:
    path = tmp_path / "brand.yaml"
    path.write_text("name: Lumen Lamps\n", encoding="utf-8")
    profile = BrandProfile.load(path)
    assert profile == BrandProfile(name="Lumen Lamps")
    assert profile.privacy.redact_pii is True and profile.system_prompt_mode == "always"


def test_save_refuses_an_invalid_profile(tmp_path: Path) -> None:
    bad = BrandProfile(name="X", rules=BrandRules(max_exclamations=-1))
    with pytest.raises(ConfigError, match="rules.max_exclamations: must be a whole number ≥ 0"):
        bad.save(tmp_path / "brand.yaml")
    assert not (tmp_path / "brand.yaml").exists()


def load_problems(tmp_path: Path, data: object) -> list[str]:
    path = tmp_path / "brand.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        BrandProfile.load(path)
    assert str(info.value).startswith(f"Invalid settings in {path}:")
    return info.value.problems


def test_the_example_message(tmp_path: Path) -> None:
    problems = load_problems(tmp_path, {"name": "X", "rules": {"max_exclamations": "many"}})
    assert problems == ["rules.max_exclamations: must be a whole number ≥ 0, got 'many'"]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    data = {
        "name": "",
        "system_prompt": ["not", "text"],
        "system_prompt_mode": "sometimes",
        "colour": "teal",
        "rules": {
            "banned_phrase": ["typo in the key"],
            "banned_phrases": ["ok", "", 3],
            "required_signoff": "  ",
            "preferred_terms": [
                {"use": "parcel"},
                "package",
                {"use": "swap", "instead_of": "SWAP"},
                {"use": "x", "instead_of": "y", "extra": 1},
            ],
            "emoji": {"max_per_reply": True, "allowed": ["🫖", "tea", "🫖🍵"]},
            "max_exclamations": -1,
            "length": {"max_words": 0, "min_sentences": 5, "max_sentences": 2, "min_words": 2.5},
            "address_customer": {"term": 7, "allow_first_name": "yes please"},
        },
        "privacy": {"redact_pii": "no", "keep_handles": ["@ok", "@has space"]},
    }
    assert load_problems(tmp_path, data) == [
        "colour: unknown setting (known: name, system_prompt, rules, privacy, system_prompt_mode)",
        "name: must not be empty",
        "system_prompt: must be text, got a list",
        "system_prompt_mode: must be 'always' or 'never', got 'sometimes'",
        "rules.banned_phrase: unknown setting (did you mean 'banned_phrases'?)",
        "rules.banned_phrases[1]: must be non-empty text, got ''",
        "rules.banned_phrases[2]: must be non-empty text, got 3",
        "rules.required_signoff: must not be empty text; remove the line or write null",
        "rules.preferred_terms[0].instead_of: is required",
        "rules.preferred_terms[1]: must be {use, instead_of}, got 'package'",
        "rules.preferred_terms[2].instead_of: is the same as 'use' ('swap')",
        "rules.preferred_terms[3].extra: unknown setting (known: use, instead_of)",
        "rules.max_exclamations: must be a whole number ≥ 0, got -1",
        "rules.emoji.allowed[1]: must be a single emoji, got 'tea'",
        "rules.emoji.allowed[2]: must be a single emoji, got '🫖🍵'",
        "rules.emoji.max_per_reply: must be a whole number ≥ 0, got true",
        "rules.length.max_words: must be a whole number ≥ 1, got 0",
        "rules.length.min_words: must be a whole number ≥ 0, got 2.5",
        "rules.length.min_sentences: (5) is more than max_sentences (2)",
        "rules.address_customer.term: must be text, got 7",
        "rules.address_customer.allow_first_name: must be true or false, got 'yes please'",
        "privacy.keep_handles[1]: a handle has no spaces, got '@has space'",
        "privacy.redact_pii: must be true or false, got 'no'",
    ]


@pytest.mark.parametrize(
    ("section", "value"),
    [("rules", ["a", "list"]), ("privacy", "off"), ("rules", {"emoji": 3})],
)
def test_sections_must_be_mappings(tmp_path: Path, section: str, value: object) -> None:
    problems = load_problems(tmp_path, {"name": "X", section: value})
    assert len(problems) == 1 and "must be a mapping of settings" in problems[0]


def test_null_sections_and_optional_values_are_defaults(tmp_path: Path) -> None:
    path = tmp_path / "brand.yaml"
    path.write_text(
        "name: X\nrules:\n  required_signoff: null\n  emoji:\n  length: {max_words: null}\n"
        "privacy:\n",
        encoding="utf-8",
    )
    assert BrandProfile.load(path) == BrandProfile(name="X")


def hostile(tmp_path: Path, content: bytes | str, match: str) -> None:
    path = tmp_path / "brand.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=match):
        BrandProfile.load(path)
    assert time.monotonic() - start < 5


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(ord("b"), ord("j")):
        prev = chr(i - 1)
        lines.append(f"{chr(i)}: &{chr(i)} [{', '.join(['*' + prev] * 9)}]")
    lines.append("name: X\nrules: {banned_phrases: *i}")
    hostile(tmp_path, "\n".join(lines), "YAML alias")


def test_hostile_yaml(tmp_path: Path) -> None:
    hostile(tmp_path, "- just\n- a list\n", "must be a mapping of settings .* got a list")
    hostile(tmp_path, "plain text", "must be a mapping of settings .* got 'plain text'")
    hostile(tmp_path, "", "the file is empty")
    hostile(tmp_path, "name: [unclosed\n", "line 2, column 1")
    hostile(tmp_path, b"name: \xff\xfe\x00bad", "not UTF-8")
    hostile(tmp_path, "name: X\nnote: " + "x" * 1_100_000, "limit 1 MB")
    hostile(tmp_path, "name: " + "[" * 50_000 + "]" * 50_000, "nested too deeply")
    hostile(tmp_path, "name: !!python/object/apply:os.system ['true']", "could not determine")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        BrandProfile.load(tmp_path / "nope.yaml")
