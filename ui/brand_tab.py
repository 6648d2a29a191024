"""The Brand tab: upload conversations and a style guide, read the report, edit the voice rules.

`prepare_brand`, `load_brand` and `save_rules` are plain functions over `Services` (the tests call
them directly); `build` lays out the tab and wires them to its components.
"""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import gradio as gr
import yaml

from chatbot.brand.profile import BrandProfile
from chatbot.config import PrepareConfig
from chatbot.errors import BrandVoiceError, ConfigError
from chatbot.prepare.pipeline import prepare
from chatbot.storage import read_jsonl
from ui.errors import user_errors
from ui.services import Services
from ui.theme import empty_state, table
from ui.uploads import discard

__all__ = [
    "BrandView",
    "prepare_brand",
    "load_brand",
    "save_rules",
    "brand_choices",
    "build",
    "CONVERSATION_TYPES",
    "STYLE_GUIDE_TYPES",
]

CONVERSATION_TYPES = [".jsonl", ".json", ".csv", ".tsv", ".txt", ".md"]
STYLE_GUIDE_TYPES = [".md", ".txt", ".pdf", ".docx"]
STATS_HEADERS = ["Measure", "Value"]
FINDING_HEADERS = ["Severity", "File", "Where", "Problem"]
PII_HEADERS = ["Type", "Before", "After", "Where"]
PREVIEW_HEADERS = ["Where", "Customer", "Brand reply", "Turns"]
PREVIEW_ROWS = 50
_CELL = 160  # characters of a message shown in a preview cell

Progress = Callable[[str, int, int], None]


@dataclass
class BrandView:
    """Everything the tab shows about one brand's data."""

    status: str = ""
    """Markdown: what happened and what to do next."""
    stats: list[list] = field(default_factory=list)
    findings: list[list] = field(default_factory=list)
    pii: str = ""
    pii_samples: list[list] = field(default_factory=list)
    preview: list[list] = field(default_factory=list)
    rules_yaml: str = ""
    unsure: str = ""
    slug: str | None = None
    """The brand this view belongs to, when it is written in the workspace."""
    name: str = ""

    @property
    def has_report(self) -> bool:
        return bool(self.status)


# --- handlers -----------------------------------------------------------------------------------


def brand_choices(services: Services) -> list[tuple[str, str]]:
    """(display name, slug) of every prepared brand, for the brand picker."""
    return [(b["name"], b["slug"]) for b in services.workspace.brands()]


def prepare_brand(
    services: Services,
    name: str,
    conversation_files: Sequence[str | Path] | None,
    style_guide: str | Path | None,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> BrandView:
    """Run prepare on uploaded files and describe the result."""
    if not (name or "").strip():
        raise BrandVoiceError("Give the brand a name first (for example 'Kettlebird Tea Co.').")
    if not conversation_files:
        raise BrandVoiceError("Add at least one file of sample conversations.")
    if not style_guide:
        raise BrandVoiceError("Add the brand's style guide (.md, .txt, .pdf or .docx).")
    try:
        result = prepare(
            services.workspace,
            name.strip(),
            [Path(f) for f in conversation_files],
            Path(style_guide),
            PrepareConfig(skip_invalid=skip_invalid),
            count_tokens=services.token_counter(),
            progress=progress,
        )
    finally:
        # Uploads hold personal data not yet redacted: once read, they are deleted.
        discard([*conversation_files, style_guide], services.workspace.root)
    report = result.to_dict()
    if not result.ok:
        return _report_view(report, status=_failed_status(report))
    return _written_view(services, result.slug, report)


def load_brand(services: Services, slug: str | None) -> BrandView:
    """The view of a prepared brand, read back from its folder (after a reload, or a switch)."""
    if not slug:
        return BrandView()
    brand_dir = services.workspace.brand_dir(slug)
    report_path = brand_dir / "report.json"
    report = json.loads(report_path.read_text("utf-8")) if report_path.exists() else {}
    return _written_view(services, slug, report)


def save_rules(services: Services, slug: str | None, yaml_text: str) -> tuple[str, str]:
    """Validate edited brand.yaml text and save it; returns (status markdown, saved YAML).

    Raises ConfigError listing every problem (with its field or line) and leaves the file as is.
    """
    if not slug:
        raise BrandVoiceError("Prepare a brand first: there are no rules to save yet.")
    target = services.workspace.brand_dir(slug) / "brand.yaml"
    if not target.parent.is_dir():
        raise BrandVoiceError(f"Brand '{slug}' is not in this workspace any more.")
    profile = _parse_profile(yaml_text)
    profile.save(target)
    return (
        f"Saved. The next training run uses these rules and this system prompt "
        f"({len(profile.rules.banned_phrases)} banned phrases, "
        f"{len(profile.rules.preferred_terms)} preferred terms).",
        target.read_text("utf-8"),
    )


def _parse_profile(yaml_text: str) -> BrandProfile:
    # BrandProfile.load holds the safe YAML reading (no aliases, size limit, line numbers), so the
    # text goes through a file of the same name; errors then read "Invalid settings in brand.yaml".
    with tempfile.TemporaryDirectory(prefix="brandvoice-rules-") as tmp:
        path = Path(tmp) / "brand.yaml"
        path.write_text(yaml_text or "", encoding="utf-8")
        try:
            return BrandProfile.load(path)
        except ConfigError as exc:
            raise ConfigError(exc.problems, source="brand.yaml") from None


# --- views --------------------------------------------------------------------------------------


def _written_view(services: Services, slug: str, report: dict) -> BrandView:
    brand_dir = services.workspace.brand_dir(slug)
    yaml_path = brand_dir / "brand.yaml"
    rules_yaml = yaml_path.read_text("utf-8") if yaml_path.exists() else ""
    name = report.get("brand") or _profile_name(rules_yaml) or slug
    view = _report_view(report, status=_ok_status(name, report))
    view.slug, view.name, view.rules_yaml = slug, name, rules_yaml
    view.preview = _preview(brand_dir / "conversations.jsonl")
    return view


def _profile_name(rules_yaml: str) -> str:
    try:
        data = yaml.safe_load(rules_yaml)
    except yaml.YAMLError:
        return ""
    return str(data.get("name", "")) if isinstance(data, dict) else ""


def _report_view(report: dict, status: str) -> BrandView:
    return BrandView(
        status=status,
        stats=_stats_rows(report.get("stats", {}), report.get("split", {})),
        findings=_finding_rows(report),
        pii=_pii_summary(report.get("pii", {})),
        pii_samples=_pii_rows(report.get("pii", {})),
        unsure=_unsure(report.get("rules_unsure", [])),
        name=report.get("brand", ""),
    )


def _ok_status(name: str, report: dict) -> str:
    if not report:
        return f"### {name}\nPrepared earlier; the report of that run is not available."
    split = report.get("split", {})
    warnings = len(report.get("warnings", []))
    formats = ", ".join(f"{f} ({kind})" for f, kind in report.get("formats", {}).items())
    lines = [
        f'### <span class="bv-badge ok">Ready</span> {html.escape(name)} is ready to train',
        f"{split.get('train', 0)} conversations for training, {split.get('eval', 0)} held out "
        "to measure progress.",
    ]
    if formats:
        lines.append(f"Read: {formats}.")
    if warnings:
        lines.append(f"{warnings} warning(s) below are worth a look; they do not block training.")
    return "\n\n".join(lines)


def _failed_status(report: dict) -> str:
    n = len(report.get("errors", []))
    return (
        f'### <span class="bv-badge bad">Not saved</span> '
        f"{html.escape(report.get('brand') or 'This brand')} was not saved\n\n"
        f"{n} error(s) below must be fixed first (or tick *Skip broken records* to leave them "
        "out). Nothing in the workspace changed. Add the files again to retry: uploads are "
        "deleted once read."
    )


def _spread(p: dict) -> str:
    return f"{p.get('p50', 0):g} typical · {p.get('p5', 0):g}–{p.get('p95', 0):g} (5–95%)"


def _stats_rows(stats: dict, split: dict) -> list[list]:
    rows: list[list] = []
    counts = (
        ("conversations", "Conversations"),
        ("turns", "Turns"),
        ("assistant_replies", "Brand replies"),
        ("total_tokens", "Tokens"),
        ("assistant_tokens", "Tokens in brand replies"),
    )
    rows += [[label, f"{stats[key]:,}"] for key, label in counts if key in stats]
    spreads = (
        ("turns_per_conversation", "Turns per conversation"),
        ("words_per_reply", "Words per reply"),
        ("tokens_per_example", "Tokens per conversation"),
    )
    rows += [[label, _spread(stats[key])] for key, label in spreads if key in stats]
    if split:
        rows.append(["Train / held out", f"{split.get('train', 0)} / {split.get('eval', 0)}"])
    return rows


def _finding_rows(report: dict) -> list[list]:
    rows = []
    for severity, key in (("error", "errors"), ("warning", "warnings")):
        for f in report.get(key, []):
            where = ", ".join(x for x in (f.get("location", ""), f.get("field", "")) if x)
            rows.append([severity, f.get("file", "") or "—", where or "—", f.get("message", "")])
    return rows


def _pii_samples(pii: dict) -> list[dict]:
    samples = pii.get("samples", [])
    if isinstance(samples, dict):  # grouped by type
        return [s | {"kind": s.get("kind", k)} for k, group in samples.items() for s in group]
    return list(samples)


def _pii_summary(pii: dict) -> str:
    if not pii:
        return ""
    if pii.get("enabled") is False:
        return "Personal-data redaction is **off** for this brand (`privacy.redact_pii: false`)."
    counts = pii.get("counts", {})
    if not counts:
        return "No personal data found: no e-mail addresses, phone numbers, cards, IBANs or IPs."
    total = sum(counts.values())
    parts = ", ".join(f"{n} × `<{kind}>`" for kind, n in sorted(counts.items()))
    return f"**{total} item(s) of personal data replaced** before anything was stored: {parts}."


def _pii_rows(pii: dict) -> list[list]:
    rows = []
    for s in _pii_samples(pii):
        where = ", ".join(x for x in (s.get("source", ""), s.get("location", "")) if x)
        rows.append([s.get("kind", ""), s.get("before", ""), s.get("after", ""), where or "—"])
    return rows


def _unsure(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "\n".join(f"- {line}" for line in lines)
    return (
        "**Lines of the style guide that were not turned into rules** — add them to the rules "
        f"below if they matter:\n\n{items}"
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _preview(path: Path) -> list[list]:
    if not path.exists():
        return []
    rows = []
    for record in read_jsonl(path)[:PREVIEW_ROWS]:
        messages = record.get("messages", [])
        first = {m["role"]: m["content"] for m in reversed(messages)}  # first of each role
        where = ", ".join(x for x in (record.get("source", ""), record.get("location", "")) if x)
        rows.append(
            [
                where,
                _clip(first.get("user", "")),
                _clip(first.get("assistant", "")),
                len(messages),
            ]
        )
    return rows


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Outputs:
    """The components a BrandView is shown in, in the order `_show` returns values for them."""

    empty: gr.Markdown
    results: gr.Column
    status: gr.Markdown
    stats: gr.Dataframe
    findings: gr.Dataframe
    pii: gr.Markdown
    pii_samples: gr.Dataframe
    preview: gr.Dataframe
    rules: gr.Code
    unsure: gr.Markdown
    name: gr.Textbox

    def all(self) -> list[gr.components.Component]:
        return list(vars(self).values())


def _show(view: BrandView) -> tuple:
    has = view.has_report
    return (
        gr.update(visible=not has),
        gr.update(visible=has),
        view.status,
        view.stats,
        gr.update(value=view.findings, visible=bool(view.findings)),
        view.pii,
        gr.update(value=view.pii_samples, visible=bool(view.pii_samples)),
        view.preview,
        view.rules_yaml,
        view.unsure,
        view.name or gr.update(),
    )


def _upload_column() -> tuple[gr.Textbox, gr.File, gr.File, gr.Checkbox, gr.Button]:
    with gr.Column(scale=1, min_width=300, elem_classes="bv-card"):
        gr.Markdown("#### Your data")
        name = gr.Textbox(label="Brand name", placeholder="Kettlebird Tea Co.")
        files = gr.File(
            label="Sample conversations",
            file_count="multiple",
            file_types=CONVERSATION_TYPES,
            type="filepath",
            height=150,
            elem_id="bv-conversations",
        )
        guide = gr.File(
            label="Style guide",
            file_types=STYLE_GUIDE_TYPES,
            type="filepath",
            height=150,
            elem_id="bv-style-guide",
        )
        gr.Markdown(
            "Chat exports (OpenAI JSONL, ShareGPT), CSV/TSV with prompt and reply columns, "
            "plain-text transcripts and Zendesk exports are recognised from their content. "
            "Personal data is replaced before anything is stored.",
            elem_classes="bv-hint",
        )
        skip = gr.Checkbox(label="Skip broken records instead of stopping", value=False)
        run = gr.Button("Check and prepare", variant="primary")
    return name, files, guide, skip, run


def _results_column(name: gr.Textbox) -> tuple[_Outputs, gr.Button, gr.Markdown]:
    with gr.Column(scale=2):
        empty = gr.Markdown(
            empty_state(
                "No brand prepared yet",
                "Upload a few hundred sample conversations and your style guide, then press "
                "<b>Check and prepare</b>. The report, the personal-data summary and the voice "
                "rules read from your guide appear here.",
            )
        )
        with gr.Column(visible=False) as results:
            status = gr.Markdown(elem_classes="bv-status")
            with gr.Tabs():
                with gr.Tab("Report"):
                    stats = table(STATS_HEADERS)
                    findings = table(
                        FINDING_HEADERS, max_height=360, column_widths=["12%", "20%", "20%", "48%"]
                    )
                with gr.Tab("Personal data"):
                    pii = gr.Markdown()
                    pii_samples = table(PII_HEADERS, column_widths=["12%", "35%", "35%", "18%"])
                with gr.Tab("Conversations"):
                    preview = table(
                        PREVIEW_HEADERS, max_height=480, column_widths=["18%", "34%", "40%", "8%"]
                    )
                with gr.Tab("Voice rules"):
                    unsure = gr.Markdown()
                    rules = gr.Code(label="brand.yaml", language="yaml", lines=18, max_lines=40)
                    save = gr.Button("Save rules", variant="primary", size="md")
                    saved = gr.Markdown()
    outputs = _Outputs(
        empty, results, status, stats, findings, pii, pii_samples, preview, rules, unsure, name
    )
    return outputs, save, saved


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Brand tab inside `tab`; `brand` is the app-wide brand picker."""
    del tab  # nothing on this tab goes stale while another one is open
    with gr.Row(equal_height=False):
        name, files, guide, skip, run = _upload_column()
        out, save, saved = _results_column(name)

    def on_prepare(
        name: str,
        files: list[str],
        guide: str,
        skip: bool,
        progress=gr.Progress(),  # noqa: B008
    ) -> tuple:
        def report(stage: str, done: int, total: int) -> None:
            progress((done, max(total, 1)), desc=stage.capitalize())

        view = prepare_brand(services, name, files, guide, skip, report)
        choices = brand_choices(services)
        picker = (
            gr.update(choices=choices, value=view.slug) if view.slug else gr.update(choices=choices)
        )
        return (*_show(view), picker, None, None)  # the uploads were read and deleted

    run.click(
        user_errors(on_prepare),
        [name, files, guide, skip],
        [*out.all(), brand, files, guide],
        concurrency_id="prepare",
    )
    brand.change(
        user_errors(lambda slug: _show(load_brand(services, slug))),
        brand,
        out.all(),
        show_progress="hidden",
    )
    save.click(user_errors(partial(save_rules, services)), [brand, out.rules], [saved, out.rules])
