"""The Brand tab: upload conversations and a style guide, read the report, edit the voice rules.

`prepare_brand`, `load_brand` and `save_rules` are plain functions over `Services` (the tests call
them directly); `build` lays out the tab and wires them to its components.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import yaml

from chatbot import service
from chatbot.service import (
    FIRST_TASTE_CONVERSATIONS,
    RECOMMENDED_CONVERSATIONS,
    BrandVoiceError,
    PrepareConfig,
    Run,
)
from ui import rules_form
from ui.errors import problem_html, shown_in
from ui.rules_form import EMOJI_CHOICES, RulesForm
from ui.services import Services
from ui.text import when_text
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
    form: RulesForm = field(default_factory=RulesForm)
    """The rules of brand.yaml as the form shows them."""
    prompt: str = ""
    """The system prompt brand.yaml holds (what the next training run uses)."""
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
    """Run prepare on uploaded files and describe the result. The style guide is optional:
    without one, the rules are read from the conversations themselves."""
    if not (name or "").strip():
        raise BrandVoiceError("Give the brand a name first (for example 'Kettlebird Tea Co.').")
    if not conversation_files:
        raise BrandVoiceError(
            "Add at least one file of sample conversations (a chat export, CSV or JSON Lines)."
        )
    try:
        result = service.prepare_brand(
            services.workspace,
            name.strip(),
            [Path(f) for f in conversation_files],
            Path(style_guide) if style_guide else None,
            PrepareConfig(skip_invalid=skip_invalid),
            count_tokens=services.token_counter(),
            progress=progress,
        )
    finally:
        # Uploads hold personal data not yet redacted: once read, they are deleted.
        discard([*conversation_files, style_guide], services.workspace.root)
    report = result.to_dict()
    if not result.ok:
        return _report_view(report, status=_failed_status(report, skip_invalid), skip=skip_invalid)
    return _written_view(services, result.slug, report)


def load_brand(services: Services, slug: str | None) -> BrandView:
    """The view of a prepared brand, read back from its folder (after a reload, or a switch)."""
    if not slug:
        return BrandView()
    return _written_view(services, slug, service.brand_report(services.workspace, slug))


def save_rules(services: Services, slug: str | None, yaml_text: str) -> tuple[str, str]:
    """Validate edited brand.yaml text and save it; returns (status markdown, saved YAML).

    Raises ConfigError listing every problem (with its field or line) and leaves the file as is.
    """
    if not slug:
        raise BrandVoiceError("Prepare a brand first: there are no rules to save yet.")
    profile = service.save_brand_yaml(services.workspace, slug, yaml_text)
    return (
        f"Saved. The next training run uses these rules and this system prompt "
        f"({len(profile.rules.banned_phrases)} banned phrases, "
        f"{len(profile.rules.preferred_terms)} preferred terms).",
        service.brand_yaml(services.workspace, slug),
    )


# --- views --------------------------------------------------------------------------------------


def _written_view(services: Services, slug: str, report: dict) -> BrandView:
    rules_yaml = service.brand_yaml(services.workspace, slug)
    name = report.get("brand") or _profile_name(rules_yaml) or slug
    view = _report_view(report, status=_ok_status(name, report, _trained_run(services, slug)))
    view.slug, view.name, view.rules_yaml = slug, name, rules_yaml
    try:
        profile = service.brand_profile(services.workspace, slug)
    except BrandVoiceError as exc:  # hand-edited into a broken state: the YAML shows it
        view.unsure = problem_html(str(exc)) + "\n\n" + view.unsure
    else:
        view.form, view.prompt = rules_form.form_of(profile.rules), profile.system_prompt
    view.preview = _preview(service.brand_conversations(services.workspace, slug, PREVIEW_ROWS))
    return view


def _profile_name(rules_yaml: str) -> str:
    try:
        data = yaml.safe_load(rules_yaml)
    except yaml.YAMLError:
        return ""
    return str(data.get("name", "")) if isinstance(data, dict) else ""


def _report_view(report: dict, status: str, skip: bool = False) -> BrandView:
    return BrandView(
        status=status,
        stats=_stats_rows(report.get("stats", {}), report.get("split", {})),
        findings=_finding_rows(report, skip),
        pii=_pii_summary(report.get("pii", {})),
        pii_samples=_pii_rows(report.get("pii", {})),
        unsure=_unsure(report.get("rules_unsure", [])),
        name=report.get("brand", ""),
    )


def _trained_run(services: Services, slug: str) -> Run | None:
    """The brand's newest run finished with an adapter, if it has one."""
    done = service.usable_runs(services.workspace, slug)
    return done[0] if done else None


def _ok_status(name: str, report: dict, trained: Run | None = None) -> str:
    if not report:
        return (
            f"### {html.escape(name)}\nPrepared earlier; the report of that run is not available."
        )
    split = report.get("split", {})
    warnings = len(report.get("warnings", []))
    formats = ", ".join(f"{f} ({kind})" for f, kind in report.get("formats", {}).items())
    if trained is not None:
        lines = [
            f'### <span class="bv-badge ok">Trained</span> {html.escape(name)} has a tuned voice',
            f"Trained on {when_text(trained.finished or trained.created)}. Chat with it on "
            "**Compare**, read its **Scorecard**, or hand it over on **Export**. To improve it, "
            "upload more conversations under the same name and press *Check and prepare* "
            "again, then train again: the models trained so far are kept.",
        ]
    else:
        lines = [
            f'### <span class="bv-badge ok">Ready</span> {html.escape(name)} is ready to train',
            f"{split.get('train', 0)} conversations for training, {split.get('eval', 0)} held "
            "out to check the result. Next: the **Train** tab.",
        ]
    if report.get("data_size_advice"):
        lines.append(f"**How much data:** {html.escape(report['data_size_advice'])}")
    if formats:
        lines.append(f"Read: {formats}.")
    if warnings:
        lines.append(f"{warnings} note(s) below are worth a look; they do not block training.")
    return "\n\n".join(lines)


def _failed_status(report: dict, skip: bool = False) -> str:
    errors = report.get("errors", [])
    n = len(errors)
    name = html.escape(report.get("brand") or "This brand")
    head = f'### <span class="bv-badge bad">Not saved</span> {name} was not saved\n\n'
    tail = (
        " Nothing in the workspace changed. Add the files again to retry: uploads are deleted "
        "once read, as they may hold personal data."
    )
    if skip:
        advice = report.get("data_size_advice") or (
            f"Too few conversations are left: at least {PrepareConfig().min_conversations} are "
            "needed."
        )
        return head + (
            f"*Skip broken records* is on, so the {n} broken record(s) below were left out. "
            f"{html.escape(advice)} Fix the lines named below, or add more conversations." + tail
        )
    return head + (
        f"{n} problem(s) below must be fixed first, or tick *Skip broken records* to leave "
        "those records out." + tail
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


def _finding_rows(report: dict, skip: bool = False) -> list[list]:
    rows = []
    # With Skip broken records on, a record's error means it was left out, not a stop.
    for severity, key in (("left out" if skip else "error", "errors"), ("note", "warnings")):
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
        return "Personal-data redaction is **off** for this brand (see Advanced on Voice rules)."
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


def _preview(records: list[dict]) -> list[list]:
    rows = []
    for record in records:
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


def upload_heading(view: BrandView) -> str:
    """The upload card's title: a new brand, or new data for the brand on screen."""
    if not view.slug:
        return "#### New brand"
    return (
        f"#### Update {html.escape(view.name)}\n"
        '<div class="bv-hint">Upload new files under this name to prepare it again (its trained '
        "models are kept), or type another name to add a new brand.</div>"
    )


def prompt_html(prompt: str) -> str:
    """The system prompt as the form's live preview shows it."""
    if not prompt:
        return ""
    return (
        "**The instructions the chatbot gets** (its system prompt; updates as you edit):\n\n"
        f'<div class="bv-prompt">{html.escape(prompt)}</div>'
    )


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Form:
    """The rules form's fields, in `RulesForm`'s order."""

    banned: gr.Textbox
    preferred: gr.Textbox
    greeting: gr.Textbox
    signoff: gr.Textbox
    address_term: gr.Textbox
    first_name: gr.Checkbox
    emoji_policy: gr.Radio
    emoji_max: gr.Number
    emoji_allowed: gr.Textbox
    exclamations: gr.Number
    max_words: gr.Number
    max_sentences: gr.Number

    def all(self) -> list[gr.components.Component]:
        return [getattr(self, name) for name in RulesForm.names()]


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
    heading: gr.Markdown
    prompt: gr.Markdown
    form: _Form

    def all(self) -> list[gr.components.Component]:
        plain = [v for k, v in vars(self).items() if k != "form"]
        return [*plain, *self.form.all()]


def _show(view: BrandView) -> tuple:
    has = view.has_report
    form = view.form
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
        upload_heading(view),
        prompt_html(view.prompt),
        *(getattr(form, name) for name in RulesForm.names()),
    )


def _upload_column() -> tuple:
    with gr.Column(scale=1, min_width=300, elem_classes="bv-card"):
        heading = gr.Markdown("#### New brand")
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
            label="Style guide (optional)",
            file_types=STYLE_GUIDE_TYPES,
            type="filepath",
            height=150,
            elem_id="bv-style-guide",
        )
        gr.Markdown(
            "Chat exports, spreadsheets saved as CSV (a customer column and a reply column), "
            "JSON Lines and plain-text transcripts are recognised from their content. Without a "
            "style guide, the voice rules are read from the conversations. Personal data is "
            "replaced before anything is stored.",
            elem_classes="bv-hint",
        )
        skip = gr.Checkbox(label="Skip broken records instead of stopping", value=False)
        run = gr.Button("Check and prepare", variant="primary")
        problem = gr.Markdown(elem_id="bv-brand-problem")
    return heading, name, files, guide, skip, run, problem


def _form_fields() -> _Form:
    with gr.Row():
        with gr.Column():
            banned = gr.Textbox(
                label="Never say", info="Banned phrases, one per line.", lines=3, max_lines=10
            )
            preferred = gr.Textbox(
                label="Say this, not that",
                info="One per line, for example: tea parcel, not package",
                lines=3,
                max_lines=10,
            )
            greeting = gr.Textbox(
                label="Greeting", info='How every reply starts, e.g. "Hi friend,"'
            )
            signoff = gr.Textbox(label="Sign-off", info="How every reply ends.")
            address_term = gr.Textbox(
                label="Call the customer", info='e.g. "friend"; empty: no rule'
            )
            first_name = gr.Checkbox(label="The customer's first name may be used instead")
        with gr.Column():
            emoji_policy = gr.Radio(EMOJI_CHOICES, value="any", label="Emoji")
            emoji_max = gr.Number(label="Most emoji per reply", precision=0, minimum=1)
            emoji_allowed = gr.Textbox(
                label="Only these emoji", info="Leave empty to allow any; separate with spaces."
            )
            exclamations = gr.Number(
                label="Most exclamation marks per reply",
                info="0: none; empty: no limit.",
                precision=0,
                minimum=0,
            )
            max_words = gr.Number(
                label="Most words per reply", info="Empty: no limit.", precision=0, minimum=1
            )
            max_sentences = gr.Number(
                label="Most sentences per reply", info="Empty: no limit.", precision=0, minimum=1
            )
    return _Form(
        banned,
        preferred,
        greeting,
        signoff,
        address_term,
        first_name,
        emoji_policy,
        emoji_max,
        emoji_allowed,
        exclamations,
        max_words,
        max_sentences,
    )


def _rules_tab() -> tuple:
    unsure = gr.Markdown()
    form = _form_fields()
    prompt = gr.Markdown(elem_id="bv-prompt-preview")
    with gr.Row():
        save = gr.Button("Save rules", variant="primary", size="md", scale=0, min_width=160)
        saved = gr.Markdown(elem_id="bv-rules-message")
    with gr.Accordion("Advanced: all settings as text (brand.yaml)", open=False):
        gr.Markdown(
            "Everything the form shows, plus the system prompt written by hand and the privacy "
            "settings. Saving here keeps your text exactly.",
            elem_classes="bv-hint",
        )
        rules = gr.Code(
            label="brand.yaml",
            language="yaml",
            lines=18,
            max_lines=40,
            wrap_lines=True,
            elem_classes="bv-wrap",
        )
        save_yaml = gr.Button("Save text", size="md")
        saved_yaml = gr.Markdown(elem_id="bv-yaml-message")
    return unsure, form, prompt, save, saved, rules, save_yaml, saved_yaml


def _results_column(name: gr.Textbox, heading: gr.Markdown) -> tuple:
    with gr.Column(scale=2):
        empty = gr.Markdown(
            empty_state(
                "No brand prepared yet",
                f"Upload your sample conversations ({RECOMMENDED_CONVERSATIONS} or more are "
                f"recommended; {FIRST_TASTE_CONVERSATIONS} give a first taste) and your style "
                "guide if you have one, then press <b>Check and prepare</b>. The report, the "
                "personal-data summary and the voice rules appear here.",
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
                    unsure, form, prompt, save, saved, rules, save_yaml, saved_yaml = _rules_tab()
    outputs = _Outputs(
        empty,
        results,
        status,
        stats,
        findings,
        pii,
        pii_samples,
        preview,
        rules,
        unsure,
        name,
        heading,
        prompt,
        form,
    )
    return outputs, (save, saved), (save_yaml, saved_yaml)


def _wire_rules(
    services: Services, brand: gr.Dropdown, out: _Outputs, save, saved, save_yaml, saved_yaml
) -> None:  # noqa: ANN001
    fields = out.form.all()

    def preview(slug: str | None, *values: object) -> tuple:
        prompt = rules_form.preview_prompt(services, slug, RulesForm(*values))
        return prompt_html(prompt), ""

    def save_form(slug: str | None, *values: object) -> tuple:
        message, text = rules_form.save_form(services, slug, RulesForm(*values))
        return f'<div class="bv-good" role="status">{html.escape(message)}</div>', text

    def save_text(slug: str | None, text: str) -> tuple:
        message, saved_text = save_rules(services, slug, text)
        view = load_brand(services, slug)
        form = [getattr(view.form, n) for n in RulesForm.names()]
        good = f'<div class="bv-good" role="status">{html.escape(message)}</div>'
        return (good, saved_text, prompt_html(view.prompt), *form)

    quiet: dict = {"show_progress": "hidden"}
    # One listener for every field, and always the last edit: a keystroke made while the
    # preview is being worked out is never dropped.
    gr.on(
        [field_.input for field_ in fields],
        shown_in(preview, outputs=2, at=1),
        [brand, *fields],
        [out.prompt, saved],
        trigger_mode="always_last",
        **quiet,
    )
    save.click(shown_in(save_form, outputs=2, at=0), [brand, *fields], [saved, out.rules])
    save_yaml.click(
        shown_in(save_text, outputs=3 + len(fields), at=0),
        [brand, out.rules],
        [saved_yaml, out.rules, out.prompt, *fields],
    )


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Brand tab inside `tab`; `brand` is the app-wide brand picker."""
    del tab  # nothing on this tab goes stale while another one is open
    with gr.Row(equal_height=False):
        heading, name, files, guide, skip, run, problem = _upload_column()
        out, (save, saved), (save_yaml, saved_yaml) = _results_column(name, heading)

    def on_prepare(
        name: str,
        files: list[str],
        guide: str,
        skip: bool,
        progress=gr.Progress(),  # noqa: B008
    ) -> tuple:
        def report(stage: str, done: int, total: int) -> None:
            progress((done, max(total, 1)), desc=stage.capitalize())

        read = bool(files) and bool((name or "").strip())  # prepare reads (and deletes) them
        try:
            view = prepare_brand(services, name, files, guide, skip, report)
        except BrandVoiceError as exc:
            message = str(exc)
            if read:
                message += (
                    "\n\nThe uploaded files were deleted once read (they may hold personal "
                    "data): add the corrected files again."
                )
            cleared = (None, None) if read else (gr.skip(), gr.skip())
            skipped = [gr.skip() for _ in range(len(out.all()) + 1)]
            return (*skipped, *cleared, problem_html(message))
        choices = brand_choices(services)
        picker = (
            gr.update(choices=choices, value=view.slug) if view.slug else gr.update(choices=choices)
        )
        shown = list(_show(view))
        if not view.slug:  # nothing written: the brand on screen keeps its rules and heading
            for component in (out.rules, out.heading, out.prompt, *out.form.all()):
                shown[out.all().index(component)] = gr.skip()
        # The uploads were read and deleted.
        return (*shown, picker, None, None, "")

    outputs = [*out.all(), brand, files, guide, problem]
    run.click(
        shown_in(on_prepare, outputs=len(outputs), at=len(outputs) - 1),
        [name, files, guide, skip],
        outputs,
        concurrency_id="prepare",
    )
    brand.change(
        shown_in(
            lambda slug: (*_show(load_brand(services, slug)), ""),
            outputs=len(out.all()) + 1,
            at=len(out.all()),
        ),
        brand,
        [*out.all(), problem],
        show_progress="hidden",
    )
    _wire_rules(services, brand, out, save, saved, save_yaml, saved_yaml)
