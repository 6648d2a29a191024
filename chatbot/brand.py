"""The brand profile: the `brand.yaml` model and its validated load/save.

A profile holds what the product knows about one brand's voice: its name, the system prompt, the
checkable rules taken from the style guide (`chatbot.ingest.guide_rules` extracts them) and the
privacy settings for its data. `chatbot.rule_check.check_reply` scores a reply against the rules.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from chatbot.emoji import emoji_key, find_emoji
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
    "SystemPromptMode",
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
        "# add one. The rules were read from the style guide (without one, from the brand's own\n"
        "# replies) and may be incomplete. Every field is checked when the profile is loaded; a\n"
        "# problem is reported with its field name.\n"
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
        if [emoji_key(e) for e in find_emoji(item)] != [emoji_key(item.strip())]:
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
