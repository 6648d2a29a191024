"""The prepare stage: a brand's files in, a clean, redacted, split dataset and brand profile out.

    read files -> deduplicate -> read style guide -> redact PII -> validate -> split -> write

The style guide is optional: without one, the starting rules are read from the brand's own
(redacted) replies by `chatbot.brand.from_replies`, and the report says so.

Nothing under `<workspace>/brands/<slug>/` changes unless the whole new version is good: the folder
is rebuilt beside the old one and swapped in at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chatbot.brand.from_replies import derive_profile
from chatbot.brand.guide_prompt import condense_system_prompt
from chatbot.brand.guide_rules import extract_rules
from chatbot.brand.profile import BrandProfile
from chatbot.config import PrepareConfig
from chatbot.errors import BrandVoiceError
from chatbot.ingest import deduplicate, read_conversations
from chatbot.ingest.style_guide import read_style_guide
from chatbot.prepare.privacy import Redactor
from chatbot.prepare.validation import (
    TokenCounter,
    ValidationLimits,
    ValidationReport,
    data_size_advice,
    validate,
)
from chatbot.storage import atomic_dir, atomic_write_json, atomic_write_jsonl, atomic_write_text
from chatbot.types import Conversation, Finding
from chatbot.workspace import Workspace, slugify

__all__ = ["prepare", "PrepareResult", "RulesSource", "split_train_eval"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)
RulesSource = Literal["guide", "conversations", "kept"]
"""Where brand.yaml's rules came from this time: the style guide given, the brand's replies (no
guide given), or the brand's existing brand.yaml, kept as it was (no guide given)."""

_RULES_NOTES: dict[str, str] = {
    "guide": "",
    "conversations": (
        "No style guide was given, so the rules were derived from the brand's own replies in "
        "the conversations. Check them in brand.yaml before training; a style guide, given "
        "later, replaces them."
    ),
    "kept": (
        "No style guide was given, so the brand's existing brand.yaml (your rules and system "
        "prompt) was kept as it is. To read the rules from the conversations again, delete "
        "brand.yaml and prepare again."
    ),
}


@dataclass
class PrepareResult:
    brand: str
    slug: str
    report: ValidationReport
    brand_dir: Path | None = None
    """Where the prepared brand was written; None when errors kept it from being written."""
    formats: dict[str, str] = field(default_factory=dict)
    pii: dict = field(default_factory=dict)
    rules_unsure: list[str] = field(default_factory=list)
    split: dict[str, int] = field(default_factory=dict)
    data_size_advice: str | None = None
    """Whether there are enough conversations, in one plain sentence; None when plenty."""
    rules_source: RulesSource = "guide"
    rules_found: list[str] = field(default_factory=list)
    """With rules derived from the conversations: one plain sentence per rule found."""

    @property
    def rules_note(self) -> str:
        """One plain sentence on where the rules came from; empty when from the style guide."""
        return _RULES_NOTES[self.rules_source]

    @property
    def ok(self) -> bool:
        return self.report.ok and self.brand_dir is not None

    def to_dict(self) -> dict:
        return {
            "brand": self.brand,
            "slug": self.slug,
            "ok": self.ok,
            "formats": self.formats,
            "split": self.split,
            "data_size_advice": self.data_size_advice,
            "pii": self.pii,
            "rules_unsure": self.rules_unsure,
            "rules_source": self.rules_source,
            "rules_note": self.rules_note,
            "rules_found": self.rules_found,
            **self.report.to_dict(),
        }


def _conversation_hash(conv: Conversation) -> str:
    return hashlib.sha256(json.dumps(conv.key(), ensure_ascii=False).encode()).hexdigest()


def split_train_eval(
    conversations: Sequence[Conversation], eval_fraction: float, min_eval: int, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """A fixed split: conversations are ranked by a seeded hash of their content.

    The same data always gives the same split, and adding new conversations never moves an old one
    from eval into train (it would leak held-out replies into training).
    """
    n = len(conversations)
    n_eval = min(max(min_eval, round(n * eval_fraction)), n // 2) if n >= 2 else 0
    ranked = sorted(
        conversations,
        key=lambda c: hashlib.sha256(f"{seed}:{_conversation_hash(c)}".encode()).hexdigest(),
    )
    eval_ids = {id(c) for c in ranked[:n_eval]}
    train = [c for c in conversations if id(c) not in eval_ids]
    evals = [c for c in conversations if id(c) in eval_ids]
    return train, evals


def _read_all(
    files: Sequence[Path], config: PrepareConfig, brand: str, progress: Progress | None
) -> tuple[list[Conversation], list[Finding], dict[str, str]]:
    convs: list[Conversation] = []
    findings: list[Finding] = []
    formats: dict[str, str] = {}
    for i, path in enumerate(files):
        if progress:
            progress("reading", i, len(files))
        result = read_conversations(
            Path(path), column_map=config.column_map or None, brand_names=[brand]
        )
        convs += result.conversations
        findings += result.findings
        formats[Path(path).name] = result.format
    if progress:
        progress("reading", len(files), len(files))
    kept, dupes = deduplicate(convs)
    return kept, findings + dupes, formats


def _load_profile(
    brand_dir: Path, brand: str, style_guide: Path, config: PrepareConfig
) -> tuple[BrandProfile, str, list[str]]:
    """Extract rules from the guide; keep an edited brand.yaml while the guide is unchanged."""
    guide = read_style_guide(Path(style_guide))
    extraction = extract_rules(guide)
    existing = brand_dir / "brand.yaml"
    old_guide = brand_dir / "style_guide.md"
    if existing.exists() and old_guide.exists() and old_guide.read_text("utf-8") == guide.text:
        profile = BrandProfile.load(existing)
    else:
        prompt = condense_system_prompt(guide, extraction.rules, brand)
        profile = BrandProfile(name=brand, system_prompt=prompt, rules=extraction.rules)
    if config.redact_pii is not None:
        profile.privacy.redact_pii = config.redact_pii
    return profile, guide.text, list(extraction.unsure)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _kept_without_guide(brand_dir: Path) -> BrandProfile | None:
    """The brand's existing brand.yaml when it is the user's to keep: read from a style guide,
    or edited since prepare derived it. One derived and left as written is derived afresh."""
    existing = brand_dir / "brand.yaml"
    if not existing.exists():
        return None
    try:
        previous = json.loads((brand_dir / "report.json").read_text("utf-8"))
    except (OSError, ValueError):
        previous = {}
    derived = previous.get("derived_profile_sha256") if isinstance(previous, dict) else None
    if derived is not None and derived == _digest(existing.read_bytes()):
        return None
    return BrandProfile.load(existing)


@dataclass
class _Profile:
    profile: BrandProfile
    source: RulesSource
    guide_text: str | None
    unsure: list[str]


def _setup_profile(
    brand_dir: Path, brand: str, style_guide: Path | None, config: PrepareConfig
) -> _Profile:
    """The profile whose privacy settings redact the data. Without a guide and without a
    brand.yaml to keep, its rules are derived after redaction (`_derive_rules`)."""
    if style_guide is not None:
        profile, guide_text, unsure = _load_profile(brand_dir, brand, style_guide, config)
        return _Profile(profile, "guide", guide_text, unsure)
    kept = _kept_without_guide(brand_dir)
    old_guide = brand_dir / "style_guide.md"
    guide_text = old_guide.read_text("utf-8") if kept and old_guide.exists() else None
    profile = kept or BrandProfile(name=brand)
    if config.redact_pii is not None:
        profile.privacy.redact_pii = config.redact_pii
    return _Profile(profile, "kept" if kept else "conversations", guide_text, [])


def _derive_rules(setup: _Profile, convs: list[Conversation], result: PrepareResult) -> None:
    """Rules from the brand's redacted replies, when no guide was given and none is kept."""
    if setup.source != "conversations":
        return
    derived, found = derive_profile(convs, setup.profile.name)
    derived.privacy = setup.profile.privacy
    setup.profile = derived
    result.rules_found = found.found


def _write_brand(
    ws: Workspace,
    slug: str,
    setup: _Profile,
    convs: list[Conversation],
    train: list[Conversation],
    evals: list[Conversation],
    result: PrepareResult,
) -> Path:
    target = ws.brand_dir(slug)
    previous_yaml = target / "brand.yaml"
    profile, extra = setup.profile, {}
    with atomic_dir(target) as tmp:
        atomic_write_jsonl(tmp / "conversations.jsonl", (c.to_record() for c in convs))
        atomic_write_jsonl(tmp / "train.jsonl", ({"messages": c.to_messages()} for c in train))
        atomic_write_jsonl(tmp / "eval.jsonl", ({"messages": c.to_messages()} for c in evals))
        if setup.guide_text is not None:
            atomic_write_text(tmp / "style_guide.md", setup.guide_text)
        if previous_yaml.exists():
            # Regenerated rules replace the old file; the user's previous edits stay recoverable.
            (tmp / "brand.previous.yaml").write_bytes(previous_yaml.read_bytes())
        profile.save(tmp / "brand.yaml")
        if setup.source == "conversations":
            # Lets the next prepare without a guide tell an edited brand.yaml (kept) from this one.
            extra["derived_profile_sha256"] = _digest((tmp / "brand.yaml").read_bytes())
        result.brand_dir = target
        atomic_write_json(tmp / "report.json", result.to_dict() | extra | {"created": time.time()})
    ws.record_brand(slug, profile.name, len(convs), len(train), len(evals))
    return target


def prepare(
    workspace: Workspace,
    brand: str,
    conversation_files: Sequence[Path],
    style_guide: Path | None = None,
    config: PrepareConfig | None = None,
    *,
    count_tokens: TokenCounter | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """Prepare a brand. Returns the report; writes the brand folder only when there are no errors.

    Without `style_guide`, the rules are derived from the brand's replies (an existing brand.yaml
    that was edited, or came from a guide, is kept instead); `PrepareResult.rules_note` says which.
    Raises InputError for a file that cannot be read at all; per-record problems are in the report.
    """
    config = config or PrepareConfig()
    if not conversation_files:
        raise BrandVoiceError(
            "No conversation files given: give at least one.", option="conversations"
        )
    slug = slugify(brand)
    brand_dir = workspace.brand_dir(slug)

    convs, findings, formats = _read_all(conversation_files, config, brand, progress)
    setup = _setup_profile(brand_dir, brand, style_guide, config)
    profile = setup.profile

    if progress:
        progress("redacting", 0, len(convs))
    redactor = Redactor(
        enabled=profile.privacy.redact_pii,
        social_handles=profile.privacy.redact_social_handles,
        keep_handles=profile.privacy.keep_handles,
    )
    # Samples are masked (`•••@example.com`): report.json must not store what was redacted.
    redaction = redactor.redact_conversations(convs, mask_samples=True)
    # A conversation that could not be checked for personal data is not among the redacted ones;
    # its error finding blocks the write, or with skip_invalid reports it as left out.
    convs = list(redaction.conversations)
    findings = findings + redaction.failures
    if progress:
        progress("redacting", len(convs), len(convs))

    limits = ValidationLimits.from_config(config)
    if progress:
        progress("validating", 0, 1)
    report = validate(convs, findings, count_tokens=count_tokens, limits=limits)
    if config.skip_invalid and report.errors and len(convs) >= limits.min_conversations:
        # The broken records were already left out by the readers; keep going with the rest.
        report.warnings = [
            Finding("warning", f"{str(e)} (skipped)", e.file, e.location, e.field, e.code)
            for e in report.errors
        ] + report.warnings
        report.errors = []
    if progress:
        progress("validating", 1, 1)

    result = PrepareResult(
        brand=brand,
        slug=slug,
        report=report,
        formats=formats,
        pii=redaction.summary(),
        rules_unsure=setup.unsure,
        rules_source=setup.source,
        data_size_advice=data_size_advice(len(convs), limits.min_conversations),
    )
    _derive_rules(setup, convs, result)
    if not report.ok:
        return result
    train, evals = split_train_eval(convs, config.eval_fraction, config.min_eval, config.seed)
    result.split = {"train": len(train), "eval": len(evals)}
    _write_brand(workspace, slug, setup, convs, train, evals, result)
    return result
