"""The brand profile: the `brand.yaml` model, its validated load/save, and the rule checker.

A profile holds what the product knows about one brand's voice: its name, the system prompt, the
checkable rules taken from the style guide (`chatbot.ingest.guide_rules` extracts them) and the
privacy settings for its data. `check_reply` scores one reply against those rules; it knows nothing
about models or how the reply was produced.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from chatbot.errors import ConfigError
from chatbot.storage import atomic_write_yaml

__all__ = [
    "AddressRule",
    "BrandProfile",
    "BrandRules",
    "EmojiRule",
    "LengthRule",
    "PreferredTerm",
    "PrivacySettings",
    "RuleResult",
    "SystemPromptMode",
    "check_reply",
    "count_sentences",
    "find_emoji",
    "rule_key",
]

SystemPromptMode = Literal["always", "never"]
_PROMPT_MODES: tuple[str, ...] = ("always", "never")

# brand.yaml is a page of settings; anything far bigger is not one, and reading it would only
# spend memory before failing.
_MAX_PROFILE_BYTES = 1_000_000


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


@dataclass
class PreferredTerm:
    """Say `use`, not `instead_of` ("tea parcel", not "package")."""

    use: str
    instead_of: str


@dataclass
class EmojiRule:
    max_per_reply: int | None = None
    """At most this many emoji in a reply; None: no limit, 0: no emoji at all."""
    allowed: list[str] = field(default_factory=list)
    """When not empty, the only emoji a reply may use."""


@dataclass
class LengthRule:
    """Reply length bounds, all inclusive; the brand's sign-off does not count towards them."""

    max_words: int | None = None
    min_words: int | None = None
    max_sentences: int | None = None
    min_sentences: int | None = None


@dataclass
class AddressRule:
    term: str | None = None
    """How the customer is addressed ("friend")."""
    greeting: str | None = None
    """How every reply starts ("Hi friend,"); may hold a placeholder such as "<first name>"."""
    allow_first_name: bool = False
    """The customer's first name may stand in for `term` ("Hi Maya," for "Hi friend,")."""


@dataclass
class BrandRules:
    """The style guide's checkable rules. Every rule is optional; an empty one checks nothing."""

    banned_phrases: list[str] = field(default_factory=list)
    required_signoff: str | None = None
    preferred_terms: list[PreferredTerm] = field(default_factory=list)
    emoji: EmojiRule = field(default_factory=EmojiRule)
    max_exclamations: int | None = None
    length: LengthRule = field(default_factory=LengthRule)
    address_customer: AddressRule = field(default_factory=AddressRule)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PrivacySettings:
    redact_pii: bool = True
    """Replace names, emails, phone numbers, addresses and order numbers before training."""
    redact_social_handles: bool = False
    """Also replace @handles (the brand's own, in `keep_handles`, are always kept)."""
    keep_handles: list[str] = field(default_factory=list)
    """The brand's own handles, never redacted."""


@dataclass
class BrandProfile:
    """One brand, as `brand.yaml` holds it. `load` validates every field; `save` is atomic."""

    name: str
    system_prompt: str = ""
    rules: BrandRules = field(default_factory=BrandRules)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    system_prompt_mode: SystemPromptMode = "always"
    """"always": training examples carry the system prompt; "never": they are trained without it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "system_prompt": self.system_prompt,
            "system_prompt_mode": self.system_prompt_mode,
            "rules": self.rules.to_dict(),
            "privacy": asdict(self.privacy),
        }

    @classmethod
    def from_dict(cls, data: object, *, source: str | None = None) -> BrandProfile:
        """Build a profile from parsed YAML, raising one ConfigError that lists every problem."""
        problems: list[str] = []
        profile = _parse_profile(data, problems)
        if problems or profile is None:
            raise ConfigError(problems, source=source)
        return profile

    def save(self, path: Path) -> None:
        """Write `brand.yaml` atomically. Refuses a profile that `load` would reject."""
        data = self.to_dict()
        BrandProfile.from_dict(data, source=f"{path} (not written)")
        atomic_write_yaml(Path(path), data, header=_header(self.name))

    @classmethod
    def load(cls, path: Path) -> BrandProfile:
        path = Path(path)
        return cls.from_dict(_read_yaml(path), source=str(path))


def _header(name: str) -> str:
    return (
        f"# Brand profile for {name.splitlines()[0] if name else 'this brand'}\n"
        "# This file is yours to edit: change the system prompt, remove or adjust a rule, or\n"
        "# add one. The rules were read from the style guide and may be incomplete. Every field\n"
        "# is checked when the profile is loaded; a problem is reported with its field name.\n"
    )


# --------------------------------------------------------------------------------------------
# Reading brand.yaml
# --------------------------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors and aliases.

    The product never writes them, and an alias bomb (a few lines that reference each other into
    billions of nodes) is the one way a small YAML file can make later code walk forever.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                "uses a YAML alias (*name), which brand.yaml does not allow",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _read_yaml(path: Path) -> object:
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source=source) from exc
    if size > _MAX_PROFILE_BYTES:
        raise ConfigError(
            [f"the file is {size:,} bytes; a brand profile is a few kB (limit 1 MB)"], source=source
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"], source=source
        ) from exc
    if not text.strip():
        raise ConfigError(
            ["the file is empty; it needs at least `name: <brand name>`"], source=source
        )
    try:
        # A SafeLoader subclass: plain data only, as yaml.safe_load, minus aliases.
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{where}{exc.problem or exc.context}"], source=source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=source) from exc
    except RecursionError as exc:
        raise ConfigError(
            ["the YAML is nested too deeply to be a brand profile"], source=source
        ) from exc


def _describe(value: object) -> str:
    """A short, safe rendering of a bad value for an error message (never a huge repr)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


class _Fields:
    """Reads one mapping's fields, collecting problems rather than stopping at the first."""

    def __init__(self, data: object, path: str, problems: list[str], known: tuple[str, ...]):
        self.path = path
        self.problems = problems
        self.data: dict = {}
        if data is None:
            return
        if not isinstance(data, dict):
            self.problems.append(f"{path}: must be a mapping of settings, got {_describe(data)}")
            return
        self.data = data
        for key in data:
            if key not in known:
                self._unknown(key, known)

    def _unknown(self, key: object, known: tuple[str, ...]) -> None:
        near = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(known)})"
        self.problems.append(f"{self.at(str(key))}: unknown setting{hint}")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def text(self, key: str, default: str | None, *, required: bool = False) -> str | None:
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return default
        value = self.data[key]
        if value is None and not required:
            return None
        if not isinstance(value, str):
            self.problem(key, f"must be text, got {_describe(value)}")
            return default
        if required and not value.strip():
            self.problem(key, "must not be empty")
            return default
        return value

    def whole(self, key: str, minimum: int = 0) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        # bool is an int in Python; `true` is never a meaningful count.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(key, f"must be a whole number ≥ {minimum}, got {_describe(value)}")
            return None
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {_describe(value)}")
            return default
        return value

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"must be a list of text, got {_describe(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problem(f"{key}[{i}]", f"must be non-empty text, got {_describe(item)}")
            else:
                out.append(item)
        return out

    def section(self, key: str, known: tuple[str, ...]) -> _Fields:
        return _Fields(self.data.get(key), self.at(key), self.problems, known)


def _fields_of(cls: type) -> tuple[str, ...]:
    return tuple(cls.__dataclass_fields__)


def _parse_profile(data: object, problems: list[str]) -> BrandProfile | None:
    if not isinstance(data, dict):
        problems.append(
            f"the file must be a mapping of settings (name: ..., rules: ...), got {_describe(data)}"
        )
        return None
    top = _Fields(data, "", problems, _fields_of(BrandProfile))
    name = top.text("name", "", required=True) or ""
    prompt = top.text("system_prompt", "") or ""
    mode = top.data.get("system_prompt_mode", "always")
    if mode not in _PROMPT_MODES:
        top.problem("system_prompt_mode", f"must be 'always' or 'never', got {_describe(mode)}")
        mode = "always"
    rules = _parse_rules(top.section("rules", _fields_of(BrandRules)))
    privacy = _parse_privacy(top.section("privacy", _fields_of(PrivacySettings)))
    return BrandProfile(name, prompt, rules, privacy, mode)


def _parse_rules(f: _Fields) -> BrandRules:
    rules = BrandRules(
        banned_phrases=f.texts("banned_phrases"),
        required_signoff=_non_empty(f, "required_signoff"),
        preferred_terms=_parse_terms(f),
        max_exclamations=f.whole("max_exclamations"),
    )
    rules.emoji = _parse_emoji(f.section("emoji", _fields_of(EmojiRule)))
    rules.length = _parse_length(f.section("length", _fields_of(LengthRule)))
    address = f.section("address_customer", _fields_of(AddressRule))
    rules.address_customer = AddressRule(
        term=_non_empty(address, "term"),
        greeting=_non_empty(address, "greeting"),
        allow_first_name=address.flag("allow_first_name", False),
    )
    return rules


def _non_empty(f: _Fields, key: str) -> str | None:
    value = f.text(key, None)
    if value is not None and not value.strip():
        f.problem(key, "must not be empty text; remove the line or write null")
        return None
    return value


def _parse_terms(f: _Fields) -> list[PreferredTerm]:
    value = f.data.get("preferred_terms")
    if value is None:
        return []
    if not isinstance(value, list):
        f.problem(
            "preferred_terms", f"must be a list of {{use, instead_of}}, got {_describe(value)}"
        )
        return []
    terms = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            f.problem(
                f"preferred_terms[{i}]", f"must be {{use, instead_of}}, got {_describe(item)}"
            )
            continue
        entry = _Fields(
            item, f"{f.at('preferred_terms')}[{i}]", f.problems, _fields_of(PreferredTerm)
        )
        use = entry.text("use", None, required=True)
        instead = entry.text("instead_of", None, required=True)
        if use and instead and use.strip().casefold() == instead.strip().casefold():
            entry.problem("instead_of", f"is the same as 'use' ({_describe(use)})")
        elif use and instead:
            terms.append(PreferredTerm(use, instead))
    return terms


def _parse_emoji(f: _Fields) -> EmojiRule:
    allowed = f.texts("allowed")
    for i, item in enumerate(allowed):
        if [_emoji_key(e) for e in find_emoji(item)] != [_emoji_key(item.strip())]:
            f.problem(f"allowed[{i}]", f"must be a single emoji, got {_describe(item)}")
    return EmojiRule(max_per_reply=f.whole("max_per_reply"), allowed=allowed)


def _parse_length(f: _Fields) -> LengthRule:
    rule = LengthRule(
        max_words=f.whole("max_words", 1),
        min_words=f.whole("min_words"),
        max_sentences=f.whole("max_sentences", 1),
        min_sentences=f.whole("min_sentences"),
    )
    for unit in ("words", "sentences"):
        low, high = getattr(rule, f"min_{unit}"), getattr(rule, f"max_{unit}")
        if low is not None and high is not None and low > high:
            f.problem(f"min_{unit}", f"({low}) is more than max_{unit} ({high})")
    return rule


def _parse_privacy(f: _Fields) -> PrivacySettings:
    handles = f.texts("keep_handles")
    for i, handle in enumerate(handles):
        if any(ch.isspace() for ch in handle.strip()):
            f.problem(f"keep_handles[{i}]", f"a handle has no spaces, got {_describe(handle)}")
    return PrivacySettings(
        redact_pii=f.flag("redact_pii", True),
        redact_social_handles=f.flag("redact_social_handles", False),
        keep_handles=handles,
    )


# --------------------------------------------------------------------------------------------
# Emoji
# --------------------------------------------------------------------------------------------

# A hand-made emoji pattern rather than the `emoji` package or `regex`'s \p{Extended_Pictographic}:
# neither is a dependency, and counting emoji in a reply only needs the code points that render as
# emoji. Characters whose default look is an emoji count on their own; text-style symbols (©, ™,
# ✓, arrows) count only with the emoji variation selector U+FE0F, except a few that platforms draw
# as emoji anyway (❤, ☺, ✌, ...). Skin tones, ZWJ sequences (👩‍💻), flags and keycaps are one emoji.
_EMOJI_DEFAULT = (
    "\U0001f000-\U0001f0ff\U0001f16d-\U0001f171\U0001f17e\U0001f17f\U0001f18e"
    "\U0001f191-\U0001f19a\U0001f1e6-\U0001f1ff\U0001f201-\U0001f3fa\U0001f400-\U0001faff"
    "\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653\u267f\u2693"
    "\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa\u26fd"
    "\u2705\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf\u2b1b"
    "\u2b1c\u2b50\u2b55"
    "\u2600\u2601\u2639\u263a\u2665\u2708\u270c\u2764"
)
_TEXT_DEFAULT = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u2300-\u23ff\u24c2"
    "\u25aa-\u25fe\u2600-\u27bf\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299"
)
_MODIFIER = "[\U0001f3fb-\U0001f3ff]"
_ONE = f"(?:[{_EMOJI_DEFAULT}]\ufe0f?|[{_TEXT_DEFAULT}]\ufe0f)"
_JOINED = f"(?:[{_EMOJI_DEFAULT}{_TEXT_DEFAULT}]\ufe0f?)"
_EMOJI_RE = re.compile(
    "[\U0001f1e6-\U0001f1ff]{2}"  # a flag: two regional indicators
    "|[0-9#*]\ufe0f?\u20e3"  # a keycap
    f"|{_ONE}{_MODIFIER}?[\U000e0020-\U000e007f]*(?:\u200d{_JOINED}{_MODIFIER}?)*"
)


def find_emoji(text: str) -> list[str]:
    """Every emoji in `text`, in order, each a whole cluster (👍🏽, 🇬🇧, 👩‍💻 count as one)."""
    return _EMOJI_RE.findall(text)


def _emoji_key(emoji: str) -> str:
    # 🍵 and 🍵 + U+FE0F are the same emoji to a reader.
    return emoji.replace("\ufe0f", "")


# --------------------------------------------------------------------------------------------
# The rule checker
# --------------------------------------------------------------------------------------------


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


def _normalize(text: str) -> str:
    # Curly and straight apostrophes/quotes mean the same to a reader; so should they to a rule.
    text = unicodedata.normalize("NFC", text)
    return text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'}))


def rule_key(phrase: str) -> str:
    """The part of a rule id that names a phrase: "Unfortunately" -> "unfortunately"."""
    return " ".join(_normalize(phrase).casefold().split())


@lru_cache(maxsize=512)
def _phrase_re(phrase: str, plural: bool = False) -> re.Pattern[str]:
    words = [re.escape(w) for w in _normalize(phrase).strip().split()]
    # Lookarounds rather than \b so a phrase that starts or ends with punctuation still matches.
    suffix = "(?:e?s)?" if plural and phrase.strip()[-1:].isalpha() else ""
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + suffix + r"(?!\w)", re.IGNORECASE)


def _tokens_pattern(text: str) -> str:
    tokens = _TOKEN_RE.findall(_normalize(text))
    return r"[\W_]+".join(re.escape(t) for t in tokens)


@lru_cache(maxsize=64)
def _signoff_re(signoff: str) -> re.Pattern[str] | None:
    body = _tokens_pattern(signoff)
    if not body:
        return None
    # Only the words must match, in order, at the very end: punctuation, emoji and whitespace
    # between or after them ("Steep well — the Kettlebird flock 🫖") are tolerated.
    return re.compile(r"(?<!\w)(?P<signoff>" + body + r")(?P<tail>[\W_]*)\Z", re.IGNORECASE)


def _split_signoff(text: str, signoff: str | None) -> tuple[str, bool]:
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
    text = _normalize(reply)
    body, signed = _split_signoff(text, rules.required_signoff)
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
    hits = _phrase_re(phrase).findall(text)
    detail = f'uses "{hits[0]}"' + (f" ({len(hits)}×)" if len(hits) > 1 else "") if hits else ""
    return RuleResult(f"banned_phrase:{rule_key(phrase)}", not hits, detail or "not used")


def _check_signoff(signoff: str, signed: bool) -> RuleResult:
    detail = "ends with the sign-off" if signed else f'does not end with "{signoff}"'
    return RuleResult("signoff", signed, detail)


def _check_term(term: PreferredTerm, text: str) -> RuleResult:
    # Plurals count too: "Say tea parcel, not package" is broken by "packages" as well.
    hits = _phrase_re(term.instead_of, plural=True).findall(text)
    detail = f'says "{hits[0]}"; use "{term.use}"' if hits else f'does not say "{term.instead_of}"'
    return RuleResult(f"preferred_term:{rule_key(term.instead_of)}", not hits, detail)


def _check_emoji(rule: EmojiRule, text: str) -> RuleResult | None:
    if rule.max_per_reply is None and not rule.allowed:
        return None
    found = find_emoji(text)
    allowed = {_emoji_key(e) for e in rule.allowed}
    others = [e for e in found if allowed and _emoji_key(e) not in allowed]
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


def _greeting_patterns(rule: AddressRule) -> list[re.Pattern[str]]:
    variants = [rule.greeting] if rule.greeting else []
    if rule.greeting and rule.allow_first_name and rule.term:
        variants.append(_phrase_re(rule.term).sub("<name>", _normalize(rule.greeting), count=1))
    patterns = []
    for variant in variants:
        parts = [_tokens_pattern(p) for p in _PLACEHOLDER_RE.split(variant)]
        body = (r"[\W_]*" + _NAME + r"[\W_]*").join(parts)
        patterns.append(re.compile(r"\A[\W_]*" + body + r"(?!\w)", re.IGNORECASE))
    return patterns


def _check_address(rule: AddressRule, text: str) -> RuleResult | None:
    if rule.greeting:
        passed = any(p.search(text) for p in _greeting_patterns(rule))
        alt = " (or the customer's first name)" if rule.allow_first_name else ""
        detail = "starts with the greeting" if passed else f'does not start with "{rule.greeting}"'
        return RuleResult("address", passed, detail + ("" if passed else alt))
    if rule.term and not rule.allow_first_name:
        passed = bool(_phrase_re(rule.term).search(text))
        detail = f'calls the customer "{rule.term}"' if passed else f'never says "{rule.term}"'
        return RuleResult("address", passed, detail)
    # "friend, or their first name" with no fixed greeting: nothing a reply can be checked for.
    return None
