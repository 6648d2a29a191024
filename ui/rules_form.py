"""The voice rules as a form: each rule a field in plain words, with the system prompt it produces.

The form edits the `rules` of a brand's `brand.yaml` (`chatbot.brand.BrandRules`); the system
prompt shown beside it is what `chatbot.brand.guide_prompt.condense_system_prompt` makes of the
brand's style guide and these rules, the same function prepare uses. Raw YAML stays one click
away for what the form does not cover.

`RulesForm`, `form_of`, `rules_of`, `preview_prompt` and `save_form` are plain functions (the
tests call them directly); the Brand tab lays the fields out and wires them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from chatbot.service import (
    AddressRule,
    BrandProfile,
    BrandRules,
    BrandVoiceError,
    ConfigError,
    EmojiRule,
    PreferredTerm,
    StyleGuide,
    brand_profile,
    brand_style_guide,
    brand_yaml,
    condense_system_prompt,
    save_brand_profile,
)
from ui.services import Services

__all__ = [
    "RulesForm",
    "EMOJI_CHOICES",
    "form_of",
    "rules_of",
    "preview_prompt",
    "save_form",
]

EMOJI_CHOICES = [
    ("Any emoji", "any"),
    ("No emoji", "none"),
    ("A limited number", "limit"),
]
# "tea parcel, not package" / "tea parcel | package" / "tea parcel instead of package"
_TERM_RE = re.compile(r"^\s*(.+?)\s*(?:,\s*not\s+|\s+not\s+|\s+instead of\s+|\|)\s*(.+?)\s*$", re.I)


@dataclass
class RulesForm:
    """The form's fields, as the browser sends them: text, numbers or None for empty."""

    banned: str = ""
    """Banned phrases, one per line."""
    preferred: str = ""
    """Preferred terms, one per line: "tea parcel, not package"."""
    greeting: str = ""
    signoff: str = ""
    address_term: str = ""
    first_name: bool = False
    emoji_policy: str = "any"
    emoji_max: float | None = None
    emoji_allowed: str = ""
    exclamations: float | None = None
    max_words: float | None = None
    max_sentences: float | None = None

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def form_of(rules: BrandRules) -> RulesForm:
    """The form showing `rules`."""
    emoji = rules.emoji
    if emoji.max_per_reply == 0:
        policy = "none"
    elif emoji.max_per_reply is not None:
        policy = "limit"
    else:
        policy = "any"
    return RulesForm(
        banned="\n".join(rules.banned_phrases),
        preferred="\n".join(f"{t.use}, not {t.instead_of}" for t in rules.preferred_terms),
        greeting=rules.address_customer.greeting or "",
        signoff=rules.required_signoff or "",
        address_term=rules.address_customer.term or "",
        first_name=rules.address_customer.allow_first_name,
        emoji_policy=policy,
        emoji_max=emoji.max_per_reply if policy == "limit" else None,
        emoji_allowed=" ".join(emoji.allowed),
        exclamations=rules.max_exclamations,
        max_words=rules.length.max_words,
        max_sentences=rules.length.max_sentences,
    )


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _count(value: float | None, label: str, problems: list[str], *, least: int = 0) -> int | None:
    if value is None or value == "":
        return None
    number = float(value)
    if number != int(number) or number < least:
        problems.append(f"{label}: use a whole number of {least} or more, or leave it empty")
        return None
    return int(number)


def _terms(text: str, problems: list[str]) -> list[PreferredTerm]:
    terms = []
    for n, line in enumerate(_lines(text), start=1):
        match = _TERM_RE.match(line)
        if not match:
            problems.append(
                f'Say this, not that, line {n} ("{line[:40]}"): write it as '
                '"tea parcel, not package"'
            )
            continue
        terms.append(PreferredTerm(use=match[1].strip("\"'“”"), instead_of=match[2].strip("\"'“”")))
    return terms


def _emoji(form: RulesForm, problems: list[str]) -> EmojiRule:
    allowed = (form.emoji_allowed or "").split()
    if form.emoji_policy == "none":
        return EmojiRule(max_per_reply=0, allowed=[])
    most = _count(form.emoji_max, "Most emoji per reply", problems, least=1)
    if form.emoji_policy == "limit" and most is None and form.emoji_max in (None, ""):
        problems.append("Most emoji per reply: give a number (1 or more), or choose Any emoji")
    return EmojiRule(max_per_reply=most if form.emoji_policy == "limit" else None, allowed=allowed)


def rules_of(form: RulesForm, base: BrandRules | None = None) -> BrandRules:
    """The rules the form describes, on top of `base` (what the form does not show is kept).

    Raises ConfigError listing every field with a problem, named as the form names it.
    """
    base = base or BrandRules()
    problems: list[str] = []
    rules = replace(
        base,
        banned_phrases=_lines(form.banned),
        preferred_terms=_terms(form.preferred, problems),
        required_signoff=(form.signoff or "").strip() or None,
        emoji=_emoji(form, problems),
        max_exclamations=_count(form.exclamations, "Most exclamation marks", problems),
        length=replace(
            base.length,
            max_words=_count(form.max_words, "Most words per reply", problems, least=1),
            max_sentences=_count(form.max_sentences, "Most sentences per reply", problems, least=1),
        ),
        address_customer=AddressRule(
            term=(form.address_term or "").strip() or None,
            greeting=(form.greeting or "").strip() or None,
            allow_first_name=bool(form.first_name),
        ),
    )
    if problems:
        raise ConfigError(problems, source="the voice rules")
    return rules


def _guide(services: Services, slug: str) -> StyleGuide:
    """The brand's style guide as prepare kept it; an empty one when it was prepared without."""
    return brand_style_guide(services.workspace, slug)


def _profile(services: Services, slug: str | None) -> BrandProfile:
    if not slug:
        raise BrandVoiceError("Prepare a brand first: there are no rules to edit yet.")
    if not brand_yaml(services.workspace, slug):
        raise BrandVoiceError(f"Brand '{slug}' is not in this workspace any more.")
    return brand_profile(services.workspace, slug)


def preview_prompt(services: Services, slug: str | None, form: RulesForm) -> str:
    """The system prompt these rules give the brand (what the next training run uses)."""
    profile = _profile(services, slug)
    rules = rules_of(form, profile.rules)
    return condense_system_prompt(_guide(services, slug or ""), rules, profile.name)


def save_form(services: Services, slug: str | None, form: RulesForm) -> tuple[str, str]:
    """Save the form's rules and the system prompt they give; returns (message, saved YAML).

    Raises ConfigError naming each field to fix; brand.yaml is left as it was.
    """
    profile = _profile(services, slug)
    rules = rules_of(form, profile.rules)
    prompt = condense_system_prompt(_guide(services, slug or ""), rules, profile.name)
    saved = save_brand_profile(
        services.workspace, slug or "", replace(profile, rules=rules, system_prompt=prompt)
    )
    message = (
        f"Saved: {len(rules.banned_phrases)} banned phrase(s), "
        f"{len(rules.preferred_terms)} preferred term(s). The next training run uses these "
        "rules and the system prompt shown."
    )
    return message, saved
