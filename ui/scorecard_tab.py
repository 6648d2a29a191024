"""The Scorecard tab: score a finished run against the base model and read the result here.

Pick a run, press "Run scorecard": the same `chatbot.scorecard.evaluate` the CLI's `brandvoice
eval` calls runs with a progress bar, writes scorecard.json and scorecard.html into the run folder,
and the tab shows the summary table, the charts and the replies side by side. A copy of the HTML
goes to the workspace's exports folder, the only one the app serves, for download. Opening a run
that was scored before shows its saved scorecard without evaluating again.

The evaluation loads its own copy of the run's model, so a chat in the Compare tab is never
switched to another adapter under its feet (the default model is small enough for two copies).

`scorecard_setup`, `saved_scorecard` and `run_scorecard` are plain functions over `Services`
(tests pass a stand-in for `evaluate`); `build` wires them to the tab.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from html import escape
from pathlib import Path

import gradio as gr
import pandas as pd

from chatbot.service import (
    REFERENCE,
    SYSTEM_NAMES,
    SYSTEMS,
    BrandVoiceError,
    Progress,
    Scorecard,
    ScorecardSettings,
    charts_html,
    evaluate,
    examples_html,
    get_run,
    headlines,
    load_scorecard,
    scorecard_html,
    summary_rows,
    usable_runs,
    verdict,
    write_scorecard_report,
)
from ui.errors import shown_in
from ui.services import Services
from ui.text import duration_text, run_label
from ui.theme import empty_state, table

__all__ = [
    "ScorecardSetup",
    "ScorecardView",
    "Evaluate",
    "scorecard_setup",
    "saved_scorecard",
    "run_scorecard",
    "build",
]

Evaluate = Callable[..., Scorecard]
"""`chatbot.scorecard.evaluate` or a stand-in with its signature."""
FULL_TIME_GUESS = "a few minutes on a laptop with the built-in model, longer for larger models"
EXAMPLES_SHOWN = 12
"""Replies side by side in the tab; the HTML report has all of them."""

# The report's example table uses these classes; gr.HTML scopes the CSS to its own element.
_EXAMPLES_CSS = """
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
.reply,.ctx{white-space:pre-wrap;overflow-wrap:anywhere;max-width:280px}.p{color:#666;font-size:12px}
.bad{color:#b3261e;font-size:12px}
"""


_CHARTS_CSS = ".charts{display:flex;flex-wrap:wrap;gap:16px}"
SUMMARY_HEADER = ["Measure", *(SYSTEM_NAMES[s] for s in (*SYSTEMS, REFERENCE))]


@dataclass
class ScorecardSetup:
    """The runs of a brand that can be scored, newest first."""

    run_choices: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    notice: str = ""


@dataclass
class ScorecardView:
    """What the tab shows of one scorecard."""

    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    headlines: str = ""
    charts: str = ""
    examples: str = ""
    download: Path | None = None
    status: str = ""
    plain: str = ""
    """Markdown: what the scorecard says, in plain words, each figure with what good looks like."""
    waiting: bool = False
    """A quick scorecard is being made in the background: the tab polls until it is there."""


# --- handlers -----------------------------------------------------------------------------------


def _no_brand_notice() -> str:
    return empty_state("Nothing to score yet", "Prepare and train a brand first.")


def scorecard_setup(services: Services, slug: str | None) -> ScorecardSetup:
    """The brand's runs with an adapter, newest first; those already scored say so."""
    if not slug:
        return ScorecardSetup(notice=_no_brand_notice())
    runs = usable_runs(services.workspace, slug)
    if not runs:
        return ScorecardSetup(
            notice=empty_state(
                "No tuned model yet",
                "When a training run finishes on the <b>Train</b> tab, score it here against "
                "the base model.",
            )
        )
    choices = [
        (run_label(r) + (" · scored" if load_scorecard(r.run_dir) else ""), r.id) for r in runs
    ]
    return ScorecardSetup(choices, runs[0].id)


def saved_scorecard(services: Services, run_id: str | None) -> ScorecardView:
    """The run's last scorecard; else the quick one being made, started if need be."""
    if not run_id:
        return ScorecardView()
    run = get_run(services.workspace, run_id)
    card = load_scorecard(run.run_dir)
    if card is not None:
        return _view(card, _publish(services, card, scorecard_html(run.run_dir)))
    if run.has_adapter:
        services.start_quick_scorecard(run.id, run.run_dir)
    quick = services.quick_scorecard(run.id)
    if quick is not None and quick.state == "running":
        since = duration_text(time.time() - quick.started) or "a moment"
        return ScorecardView(
            status=f"A quick scorecard of this run is being made ({since} so far; usually a "
            "minute or two with the built-in model). It appears here by itself.",
            waiting=True,
        )
    failed = (
        f"The quick scorecard could not be made ({quick.error}). "
        if quick is not None and quick.state == "failed"
        else ""
    )
    return ScorecardView(
        status=f"{failed}This run has no scorecard yet: press **Run full scorecard** "
        f"({FULL_TIME_GUESS})."
    )


def run_scorecard(
    services: Services,
    run_id: str | None,
    max_prompts: int,
    max_new_tokens: int,
    progress: Progress | None = None,
    evaluate_fn: Evaluate = evaluate,
) -> ScorecardView:
    """Evaluate the run, write its report files and return what the tab shows."""
    if not run_id:
        raise BrandVoiceError("Choose a finished run to score.")
    run = get_run(services.workspace, run_id)
    card = evaluate_fn(
        services.workspace,
        run.id,
        max_prompts=int(max_prompts),
        max_new_tokens=int(max_new_tokens),
        progress=progress,
    )
    files = write_scorecard_report(card, run.run_dir)
    return _view(card, _publish(services, card, files.html))


def _publish(services: Services, card: Scorecard, html_file: Path) -> Path | None:
    """Copy the report into the exports folder, the only place the browser may download from."""
    if not html_file.is_file():
        return None
    out = services.exports_dir / f"{card.brand}-{card.run_id}-scorecard.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".partial")
    shutil.copyfile(html_file, staging)
    staging.replace(out)  # a download never sees half a file
    return out


def _quick(card: Scorecard) -> bool:
    return card.settings.max_prompts < ScorecardSettings().max_prompts


def full_estimate(card: Scorecard) -> str:
    """How long the full scorecard will take, estimated from `card`'s own time (words)."""
    full = ScorecardSettings()
    work = (full.max_prompts * full.max_new_tokens) / max(
        card.settings.max_prompts * card.settings.max_new_tokens, 1
    )
    seconds = card.duration_s * max(work, 1.0)
    return f"about {duration_text(seconds)} (an estimate from this scorecard's own time)"


def plain_summary(card: Scorecard) -> str:
    """The scorecard in plain words: a verdict, then each figure with what good looks like."""
    found = verdict(card)
    if found is None:  # too little measured to call it: the figures speak alone
        lead = ""
    elif found.ship:
        lead = (
            '<div class="bv-good"><b>Worth using.</b> The tuned model sounds more like your '
            "brand than the untuned model given your instructions.</div>"
        )
    else:
        lead = (
            '<div class="bv-note"><b>Not better yet.</b> The tuned model does not clearly '
            "beat the untuned model given your instructions. More conversations usually help; "
            "train again and compare.</div>"
        )
    lines = [lead, ""]
    style = card.style
    lines.append(
        f"- **Sounds like your brand: {style.tuned_beats_base:.0%}** of customer messages got "
        "a reply that sounds more like your real replies than the untuned model's. "
        "Good: 70% or more."
    )
    rates = {s: card.all_rules[s].rate for s in ("tuned", "base") if s in card.all_rules}
    if "tuned" in rates:
        base = f" (untuned: {rates['base']:.0%})" if "base" in rates else ""
        lines.append(
            f"- **Follows every voice rule: {rates['tuned']:.0%}** of its replies{base}. "
            "Good: close to 100%."
        )
    nll = {s: card.likelihood[s].nll for s in card.systems}
    if nll.get("base"):
        closer = 1 - nll["tuned"] / nll["base"]
        lines.append(
            f"- **Closer to your real replies: {closer:+.0%}** compared with the untuned "
            "model, measured on replies it never saw in training. Good: +20% or more."
        )
    return "\n".join(lines)


def _view(card: Scorecard, download: Path | None) -> ScorecardView:
    header, rows = summary_rows(card)
    shown = min(EXAMPLES_SHOWN, len(card.examples))
    lines = "\n".join(f"- {escape(line)}" for line in headlines(card))
    took = duration_text(card.duration_s) or "under a second"
    if _quick(card):
        status = (
            f"**Quick scorecard**: {len(card.examples)} customer messages, short replies "
            f"(made in {took}). For a surer result press **Run full scorecard** "
            f"({ScorecardSettings().max_prompts} messages): {full_estimate(card)}."
        )
    else:
        status = (
            f"Scored on {len(card.examples)} customer messages from conversations kept out of "
            f"training, in {took}. Showing {shown} replies; the downloadable report has them all."
        )
    return ScorecardView(
        header=header,
        rows=rows,
        headlines=lines,
        charts=charts_html(card),
        # The shared report says P(brand); on this page it reads as a plain label.
        examples=examples_html(card, limit=EXAMPLES_SHOWN).replace("P(brand)", "brand-likeness"),
        download=download,
        status=status,
        plain=plain_summary(card),
    )


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Widgets:
    notice: gr.HTML
    panel: gr.Column
    run: gr.Dropdown
    max_prompts: gr.Slider
    max_new_tokens: gr.Slider
    start: gr.Button
    status: gr.Markdown
    plain: gr.Markdown
    headlines: gr.Markdown
    summary: gr.Dataframe
    charts: gr.HTML
    examples: gr.HTML
    download: gr.File
    timer: gr.Timer
    problem: gr.Markdown

    def results(self) -> list:
        return [
            self.status,
            self.plain,
            self.headlines,
            self.summary,
            self.charts,
            self.examples,
            self.download,
            self.timer,
            self.problem,
        ]


def _show(view: ScorecardView) -> tuple:
    has = bool(view.rows)
    frame = pd.DataFrame(view.rows, columns=view.header) if has else None
    return (
        view.status,
        view.plain,
        view.headlines,
        gr.update(value=frame, visible=has),
        gr.update(value=view.charts, visible=has),
        gr.update(value=view.examples, visible=has),
        gr.update(value=str(view.download) if view.download else None, visible=bool(view.download)),
        gr.Timer(active=view.waiting),
        "",
    )


def _layout() -> _Widgets:
    defaults = ScorecardSettings()
    notice = gr.HTML(_no_brand_notice())
    with gr.Column(visible=False) as panel:
        with gr.Row(equal_height=True):
            run = gr.Dropdown(label="Tuned model from run", choices=[], scale=3)
            start = gr.Button("Run full scorecard", variant="primary", scale=1)
        problem = gr.Markdown(elem_id="bv-scorecard-problem")
        status = gr.Markdown(elem_id="bv-scorecard-status")
        plain = gr.Markdown(elem_id="bv-scorecard-summary")
        examples = gr.HTML(visible=False, css_template=_EXAMPLES_CSS, max_height=640)
        download = gr.File(label="Full report (HTML)", interactive=False, visible=False)
        with gr.Accordion("Details: all measures and settings", open=False):
            headlines_md = gr.Markdown()
            summary = table(SUMMARY_HEADER, visible=False, label="Summary", show_label=True)
            charts = gr.HTML(visible=False, css_template=_CHARTS_CSS)
            with gr.Row():
                max_prompts = gr.Slider(
                    1,
                    200,
                    value=defaults.max_prompts,
                    step=1,
                    label="Customer messages answered",
                    info="More gives a surer result and takes longer.",
                )
                max_new_tokens = gr.Slider(
                    8,
                    512,
                    value=defaults.max_new_tokens,
                    step=8,
                    label="Longest reply (in tokens; a token is about ¾ of a word)",
                )
    timer = gr.Timer(3, active=False)
    return _Widgets(
        notice,
        panel,
        run,
        max_prompts,
        max_new_tokens,
        start,
        status,
        plain,
        headlines_md,
        summary,
        charts,
        examples,
        download,
        timer,
        problem,
    )


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Scorecard tab inside `tab`; `brand` is the app-wide brand picker."""
    w = _layout()

    def refresh(slug: str | None, current: str | None = None) -> tuple:
        setup = scorecard_setup(services, slug)
        has = bool(setup.run_choices)
        keep = current if current in [r for _, r in setup.run_choices] else setup.run_id
        return (
            gr.update(value=setup.notice, visible=not has),
            gr.update(visible=has),
            gr.update(choices=setup.run_choices, value=keep),
            *_show(saved_scorecard(services, keep)),
        )

    def on_run(run_id: str | None, prompts: float, tokens: float, progress=gr.Progress()) -> tuple:  # noqa: ANN001, B008 - Gradio injects the tracker
        def report(stage: str, done: int, total: int) -> None:
            progress((done, max(total, 1)), desc=stage)

        # After a quick scorecard still being made; its model load waits for the chat's.
        with services.scorecard_lock, services.one_model_load(report) as guarded:
            view = run_scorecard(services, run_id, int(prompts), int(tokens), guarded)
        return _show(view)

    def poll(run_id: str | None) -> tuple:
        view = saved_scorecard(services, run_id)
        if view.waiting:  # still being made: leave the page alone
            return (*(gr.skip() for _ in w.results()[:-2]), gr.Timer(active=True), gr.skip())
        return _show(view)

    quiet: dict = {"show_progress": "hidden"}
    results = w.results()
    setup_outputs = [w.notice, w.panel, w.run, *results]
    at = len(setup_outputs) - 1
    brand.change(
        shown_in(refresh, outputs=len(setup_outputs), at=at), brand, setup_outputs, **quiet
    )
    tab.select(
        shown_in(refresh, outputs=len(setup_outputs), at=at), [brand, w.run], setup_outputs, **quiet
    )
    shown = partial(shown_in, outputs=len(results), at=len(results) - 1)
    w.run.input(
        shown(lambda run_id: _show(saved_scorecard(services, run_id))), w.run, results, **quiet
    )
    w.timer.tick(shown(poll), w.run, results, **quiet)
    w.start.click(
        shown(on_run),
        [w.run, w.max_prompts, w.max_new_tokens],
        results,
        # One scorecard at a time: each loads a model and uses every core it can get.
        concurrency_id="scorecard",
        concurrency_limit=1,
    )
