"""The prepare stage: a brand's files in, a clean, redacted, split dataset and brand profile out.

    read files -> deduplicate -> read style guide -> redact PII -> validate -> split -> write

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

from chatbot.brand.guide_prompt import condense_system_prompt
from chatbot.brand.guide_rules import extract_rules
from chatbot.brand.profile import BrandProfile
from chatbot.config import PrepareConfig
from chatbot.errors import BrandVoiceError
from chatbot.ingest import deduplicate, read_conversations
from chatbot.ingest.style_guide import read_style_guide
from chatbot.prepare.privacy import Redactor
from chatbot.prepare.validation import TokenCounter, ValidationLimits, ValidationReport, validate
from chatbot.storage import atomic_dir, atomic_write_json, atomic_write_jsonl, atomic_write_text
from chatbot.types import Conversation, Finding
from chatbot.workspace import Workspace, slugify

__all__ = ["prepare", "PrepareResult", "split_train_eval"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)


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
            "pii": self.pii,
            "rules_unsure": self.rules_unsure,
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


def _write_brand(
    ws: Workspace,
    slug: str,
    profile: BrandProfile,
    guide_text: str,
    convs: list[Conversation],
    train: list[Conversation],
    evals: list[Conversation],
    result: PrepareResult,
) -> Path:
    target = ws.brand_dir(slug)
    previous_yaml = target / "brand.yaml"
    with atomic_dir(target) as tmp:
        atomic_write_jsonl(tmp / "conversations.jsonl", (c.to_record() for c in convs))
        atomic_write_jsonl(tmp / "train.jsonl", ({"messages": c.to_messages()} for c in train))
        atomic_write_jsonl(tmp / "eval.jsonl", ({"messages": c.to_messages()} for c in evals))
        atomic_write_text(tmp / "style_guide.md", guide_text)
        if previous_yaml.exists():
            # Regenerated rules replace the old file; the user's previous edits stay recoverable.
            (tmp / "brand.previous.yaml").write_bytes(previous_yaml.read_bytes())
        profile.save(tmp / "brand.yaml")
        result.brand_dir = target
        atomic_write_json(tmp / "report.json", result.to_dict() | {"created": time.time()})
    ws.record_brand(slug, profile.name, len(convs), len(train), len(evals))
    return target


def prepare(
    workspace: Workspace,
    brand: str,
    conversation_files: Sequence[Path],
    style_guide: Path,
    config: PrepareConfig | None = None,
    *,
    count_tokens: TokenCounter | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """Prepare a brand. Returns the report; writes the brand folder only when there are no errors.

    Raises InputError for a file that cannot be read at all; per-record problems are in the report.
    """
    config = config or PrepareConfig()
    if not conversation_files:
        raise BrandVoiceError(
            "No conversation files given: pass at least one with --conversations."
        )
    slug = slugify(brand)
    brand_dir = workspace.brand_dir(slug)

    convs, findings, formats = _read_all(conversation_files, config, brand, progress)
    profile, guide_text, unsure = _load_profile(brand_dir, brand, style_guide, config)

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
        rules_unsure=unsure,
    )
    if not report.ok:
        return result
    train, evals = split_train_eval(convs, config.eval_fraction, config.min_eval, config.seed)
    result.split = {"train": len(train), "eval": len(evals)}
    _write_brand(workspace, slug, profile, guide_text, convs, train, evals, result)
    return result
