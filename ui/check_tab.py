"""The Check tab: paste a draft (or upload texts to audit) and see how on-brand it is.

A draft gets the brand score with its three parts, every sentence highlighted by how on-brand it
reads with the rules it breaks named, the fixes the brand's rules make, and, given the customer
message it answers, the tuned model's own reply. Uploaded files (.txt/.md, or a CSV of texts) are
checked in one go into a report sorted worst-first, downloadable as HTML.

The check runs on the Compare tab's model (one model in memory; the two take turns), through
`chatbot.check.DraftChecker`, kept per run while the tab is open. The first check of a run
calibrates its scale, which takes minutes on a CPU; later checks take seconds.

`check_setup`, `run_check` and `run_batch` are plain functions over `Services` and a
`CheckerCache` (tests pass a stand-in loader); `build` wires them to the tab.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from chatbot.service import (
    BrandVoiceError,
    Draft,
    DraftCheck,
    DraftChecker,
    check_drafts,
    get_run,
    read_drafts,
    run_setup,
    usable_runs,
    write_check_report,
)
from ui.errors import shown_in
from ui.services import EngineSpec, Services
from ui.text import run_label
from ui.theme import empty_state

__all__ = [
    "CheckSetup",
    "CheckView",
    "BatchView",
    "CheckerCache",
    "check_setup",
    "run_check",
    "run_batch",
    "highlights",
    "build",
]

Progress = Callable[[str, int, int], None]
LoadChecker = Callable[..., DraftChecker]
"""`DraftChecker.load` or a stand-in with its signature."""

_SCORE_CSS = (
    ".bv-check-score{font-size:18px;color:#334155}"
    ".bv-check-score span{font-size:44px;font-weight:700;color:#0f172a}"
)
COLORS = {"on-brand": "#bfe6c8", "in between": "#fbe7a8", "off-brand": "#f5c2bc"}
BROKEN_COLOR = "#ee8f86"


@dataclass
class CheckSetup:
    run_choices: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    notice: str = ""


@dataclass
class CheckView:
    """What the tab shows of one checked draft."""

    score: str = ""
    parts: str = ""
    highlights: list[tuple[str, str | None]] = field(default_factory=list)
    color_map: dict[str, str] = field(default_factory=dict)
    rules: str = ""
    fixed: str = ""
    changes: str = ""
    suggestion: str = ""
    scale: str = ""


@dataclass
class BatchView:
    rows: list[list[str]] = field(default_factory=list)
    report: Path | None = None
    status: str = ""


class CheckerCache:
    """The checker of the run last checked; another run, or another loaded model, replaces it."""

    def __init__(self, load: LoadChecker = DraftChecker.load) -> None:
        self._load = load
        self._checker: DraftChecker | None = None
        self._lock = threading.Lock()

    def get(
        self, services: Services, run_id: str, progress: Progress | None = None
    ) -> DraftChecker:
        run = get_run(services.workspace, run_id)
        setup = run_setup(services.workspace, run.id)
        engine = services.engine(EngineSpec.of(setup), setup.adapter_dir)
        with self._lock:
            checker = self._checker
            if checker is None or checker.run.id != run.id or checker.engine is not engine:
                checker = self._load(
                    services.workspace, run_id=run.id, engine=engine, progress=progress
                )
                self._checker = checker
            return checker


# --- handlers -----------------------------------------------------------------------------------


def check_setup(services: Services, slug: str | None) -> CheckSetup:
    """The brand's finished runs, newest first: any of them can check a draft."""
    if not slug:
        return CheckSetup(notice=empty_state("Nothing to check against yet", "Prepare a brand."))
    runs = usable_runs(services.workspace, slug)
    if not runs:
        return CheckSetup(
            notice=empty_state(
                "No tuned model yet",
                "When a training run finishes on the <b>Train</b> tab, its model can check any "
                "draft against the brand's voice here.",
            )
        )
    return CheckSetup([(run_label(r), r.id) for r in runs], runs[0].id)


def highlights(check: DraftCheck) -> tuple[list[tuple[str, str | None]], dict[str, str]]:
    """The text as (piece, label) pairs for gr.HighlightedText, and the colour of each label.

    Each sentence is labelled with its verdict and score, and with the rules it breaks; the
    spaces between sentences carry no label. The pieces join to exactly the checked text.
    """
    pieces: list[tuple[str, str | None]] = []
    colors: dict[str, str] = {}
    at = 0
    for sentence in check.sentences:
        if sentence.start > at:
            pieces.append((check.text[at : sentence.start], None))
        score = "–" if sentence.score is None else str(sentence.score)
        label = f"{sentence.verdict} {score}"
        if sentence.breaks:
            label += " · breaks: " + "; ".join(dict.fromkeys(b.detail for b in sentence.breaks))
        colors[label] = BROKEN_COLOR if sentence.breaks else COLORS[sentence.verdict]
        pieces.append((sentence.text, label))
        at = sentence.end
    if at < len(check.text):
        pieces.append((check.text[at:], None))
    return pieces, colors


def _view(check: DraftCheck) -> CheckView:
    pieces, colors = highlights(check)
    parts = "\n".join(
        f"| {p.name} | **{p.points}** / {p.max_points} | {html.escape(p.detail)} |"
        for p in check.score.parts
    )
    broken = "\n".join(
        f"- **{html.escape(r.rule)}**: {html.escape(r.detail)}" for r in check.broken
    )
    changes = "\n".join(
        f"- {html.escape(f.rule)}: {_change(f.before, f.after)}" for f in check.fixed.fixes
    )
    if check.fixed.unfixed:
        changes += "\n\nStill to fix by hand: " + ", ".join(check.fixed.unfixed)
    return CheckView(
        score=_score_html(check.score.total),
        parts="| Part | Points | Measure |\n| --- | --- | --- |\n" + parts,
        highlights=pieces,
        color_map=colors,
        rules="**Brand rules broken**\n\n" + broken if broken else "Every brand rule is kept.",
        fixed=check.fixed.text if check.fixed.fixes else "",
        changes="**What the rules fix**\n\n" + changes if changes else "Nothing to fix by rule.",
        suggestion=check.suggestion or "",
        scale=f"{html.escape(check.calibration)} Checked in {check.duration_s:.1f} s.",
    )


def _change(before: str, after: str) -> str:
    if not before:
        return f"added “{html.escape(after)}”"
    return f"“{html.escape(before)}” → " + (f"“{html.escape(after)}”" if after else "removed")


def _score_html(total: int) -> str:
    verdict = "on-brand" if total >= 60 else "off-brand" if total < 40 else "in between"
    return (
        f'<div class="bv-check-score" data-score="{total}"><span>{total}</span>/100 · {verdict}'
        '<div class="bv-hint">About 80 reads like the brand\'s own replies, about 20 like the '
        "untuned base model.</div></div>"
    )


def run_check(
    services: Services,
    checkers: CheckerCache,
    run_id: str | None,
    draft: str,
    customer: str,
    progress: Progress | None = None,
) -> CheckView:
    """Check one draft with the run's model; `customer` (may be empty) is what it answers."""
    if not run_id:
        raise BrandVoiceError("Choose a finished run to check against.")
    if not (draft or "").strip():
        raise BrandVoiceError("Paste a draft to check first.")
    checker = checkers.get(services, run_id, progress)
    return _view(checker.check(draft, (customer or "").strip() or None))


def run_batch(
    services: Services,
    checkers: CheckerCache,
    run_id: str | None,
    files: list[str] | None,
    progress: Progress | None = None,
) -> BatchView:
    """Check every uploaded text and write the worst-first report into the exports folder."""
    if not run_id:
        raise BrandVoiceError("Choose a finished run to check against.")
    if not files:
        raise BrandVoiceError("Upload .txt or .md files, or a CSV of texts, first.")
    drafts: list[Draft] = []
    for name in files:
        drafts += read_drafts(Path(name))
    checker = checkers.get(services, run_id, progress)
    results = check_drafts(checker, drafts, progress)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = write_check_report(
        results, services.exports_dir / f"check-{checker.run.brand}-{stamp}.html"
    )
    rows = [
        [d.name, str(c.score.total), ", ".join(r.rule for r in c.broken) or "none"]
        for d, c in results
    ]
    status = f"Checked {len(results)} texts, worst first. {html.escape(results[0][1].calibration)}"
    return BatchView(rows, report, status)


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Widgets:
    notice: gr.HTML
    panel: gr.Column
    run: gr.Dropdown
    draft: gr.Textbox
    customer: gr.Textbox
    check: gr.Button
    score: gr.HTML
    parts: gr.Markdown
    sentences: gr.HighlightedText
    rules: gr.Markdown
    fixed: gr.Textbox
    changes: gr.Markdown
    suggestion: gr.Textbox
    scale: gr.Markdown
    files: gr.File
    audit: gr.Button
    batch_status: gr.Markdown
    batch_table: gr.Dataframe
    report: gr.File

    def results(self) -> list:
        return [
            self.score,
            self.parts,
            self.sentences,
            self.rules,
            self.fixed,
            self.changes,
            self.suggestion,
            self.scale,
        ]


def _show(view: CheckView) -> tuple:
    return (
        view.score,
        view.parts,
        gr.update(value=view.highlights, color_map=view.color_map, visible=bool(view.highlights)),
        view.rules,
        gr.update(value=view.fixed, visible=bool(view.fixed)),
        view.changes,
        gr.update(value=view.suggestion, visible=bool(view.suggestion)),
        view.scale,
    )


def _show_batch(view: BatchView) -> tuple:
    return (
        view.status,
        gr.update(value=view.rows, visible=bool(view.rows)),
        gr.update(value=str(view.report) if view.report else None, visible=bool(view.report)),
    )


def _layout() -> _Widgets:
    notice = gr.HTML(empty_state("Nothing to check against yet", "Prepare a brand."))
    with gr.Column(visible=False) as panel:
        run = gr.Dropdown(label="Check against the tuned model from run", choices=[])
        with gr.Row():
            with gr.Column(scale=3):
                draft = gr.Textbox(
                    label="Draft",
                    placeholder="Paste a reply, e-mail or help article to check.",
                    lines=8,
                    max_lines=30,
                    elem_id="bv-check-draft",
                )
                customer = gr.Textbox(
                    label="Customer message it answers (optional)",
                    placeholder="Adds the tuned model's own reply as a suggestion.",
                    lines=2,
                )
                check = gr.Button("Check draft", variant="primary")
            with gr.Column(scale=2):
                score = gr.HTML(elem_id="bv-check-result", css_template=_SCORE_CSS)
                parts = gr.Markdown()
                scale = gr.Markdown(elem_classes="bv-hint")
        sentences = gr.HighlightedText(
            label="Sentence by sentence",
            show_legend=False,
            show_inline_category=True,
            visible=False,
            elem_id="bv-check-sentences",
        )
        with gr.Row():
            rules = gr.Markdown(elem_id="bv-check-rules")
            changes = gr.Markdown()
        fixed = gr.Textbox(
            label="Fixed by the brand's rules",
            visible=False,
            buttons=["copy"],
            elem_id="bv-check-fixed",
        )
        suggestion = gr.Textbox(
            label="The tuned model's own reply",
            visible=False,
            buttons=["copy"],
            elem_id="bv-check-suggestion",
        )
        with gr.Accordion("Audit many texts", open=False):
            files = gr.File(
                label="Texts to audit: .txt or .md files, or a CSV with a text column",
                file_count="multiple",
                file_types=[".txt", ".md", ".csv"],
                elem_id="bv-check-files",
            )
            audit = gr.Button("Check all, worst first")
            batch_status = gr.Markdown()
            batch_table = gr.Dataframe(
                headers=["Text", "Score", "Rules broken"],
                visible=False,
                interactive=False,
                elem_id="bv-check-batch",
            )
            report = gr.File(label="Report (HTML)", interactive=False, visible=False)
    return _Widgets(
        notice,
        panel,
        run,
        draft,
        customer,
        check,
        score,
        parts,
        sentences,
        rules,
        fixed,
        changes,
        suggestion,
        scale,
        files,
        audit,
        batch_status,
        batch_table,
        report,
    )


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Check tab inside `tab`; `brand` is the app-wide brand picker."""
    w = _layout()
    checkers = CheckerCache()

    def refresh(slug: str | None, current: str | None = None) -> tuple:
        setup = check_setup(services, slug)
        has = bool(setup.run_choices)
        keep = current if current in [r for _, r in setup.run_choices] else setup.run_id
        return (
            gr.update(value=setup.notice, visible=not has),
            gr.update(visible=has),
            gr.update(choices=setup.run_choices, value=keep),
        )

    def on_check(run_id: str | None, draft: str, customer: str, progress=gr.Progress()) -> tuple:  # noqa: ANN001, B008 - Gradio injects the tracker
        def report(stage: str, done: int, total: int) -> None:
            progress((done, max(total, 1)), desc=stage)

        return _show(run_check(services, checkers, run_id, draft, customer, report))

    def on_audit(run_id: str | None, files: list[str] | None, progress=gr.Progress()) -> tuple:  # noqa: ANN001, B008
        def report(stage: str, done: int, total: int) -> None:
            progress((done, max(total, 1)), desc=stage)

        return _show_batch(run_batch(services, checkers, run_id, files, report))

    quiet: dict = {"show_progress": "hidden"}
    outputs = [w.notice, w.panel, w.run]
    shown = shown_in(refresh, outputs=len(outputs), at=0)
    brand.change(shown, brand, outputs, **quiet)
    tab.select(shown, [brand, w.run], outputs, **quiet)
    # The check shares the chat model with the Compare tab: they take turns.
    engine = {"concurrency_id": "chat-engine", "concurrency_limit": 1}
    results = w.results()
    checked = shown_in(on_check, outputs=len(results), at=0)  # said where the score goes
    w.check.click(checked, [w.run, w.draft, w.customer], results, **engine)
    w.audit.click(
        shown_in(on_audit, outputs=3, at=0),
        [w.run, w.files],
        [w.batch_status, w.batch_table, w.report],
        **engine,
    )
