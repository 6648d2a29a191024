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
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import gradio as gr
import pandas as pd

from chatbot.errors import BrandVoiceError
from chatbot.runs.jobs import Run, get_run, list_runs
from chatbot.scorecard import (
    REFERENCE,
    SYSTEMS,
    Progress,
    Scorecard,
    ScorecardSettings,
    charts_html,
    evaluate,
    examples_html,
    headlines,
    load_scorecard,
    summary_rows,
    write_report,
)
from chatbot.scorecard.report import SYSTEM_NAMES
from ui.errors import user_errors
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


# --- handlers -----------------------------------------------------------------------------------


def _scorable(run: Run) -> bool:
    return run.state == "succeeded" and (run.run_dir / "adapter" / "adapter_config.json").exists()


def _no_brand_notice() -> str:
    return empty_state("Nothing to score yet", "Prepare and train a brand first.")


def scorecard_setup(services: Services, slug: str | None) -> ScorecardSetup:
    """The brand's runs with an adapter, newest first; those already scored say so."""
    if not slug:
        return ScorecardSetup(notice=_no_brand_notice())
    runs = [r for r in list_runs(services.workspace, slug) if _scorable(r)]
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
    """The run's last scorecard, or an invitation to make one."""
    if not run_id:
        return ScorecardView()
    run = get_run(services.workspace, run_id)
    card = load_scorecard(run.run_dir)
    if card is None:
        return ScorecardView(
            status="This run has no scorecard yet: press **Run scorecard** (a few minutes on a "
            "laptop CPU with the built-in model)."
        )
    return _view(card, _publish(services, card, run.run_dir / "scorecard.html"))


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
    files = write_report(card, run.run_dir)
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


def _view(card: Scorecard, download: Path | None) -> ScorecardView:
    header, rows = summary_rows(card)
    shown = min(EXAMPLES_SHOWN, len(card.examples))
    lines = "\n".join(f"- {escape(line)}" for line in headlines(card))
    status = (
        f"Scored run `{card.run_id}` on {len(card.examples)} held-out customer turns in "
        f"{duration_text(card.duration_s) or 'under a second'}. Showing {shown} of "
        f"{len(card.examples)} replies; the HTML report has them all."
    )
    return ScorecardView(
        header=header,
        rows=rows,
        headlines=lines,
        charts=charts_html(card),
        examples=examples_html(card, limit=EXAMPLES_SHOWN),
        download=download,
        status=status,
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
    headlines: gr.Markdown
    summary: gr.Dataframe
    charts: gr.HTML
    examples: gr.HTML
    download: gr.File

    def results(self) -> list:
        return [
            self.status,
            self.headlines,
            self.summary,
            self.charts,
            self.examples,
            self.download,
        ]


def _show(view: ScorecardView) -> tuple:
    has = bool(view.rows)
    frame = pd.DataFrame(view.rows, columns=view.header) if has else None
    return (
        view.status,
        view.headlines,
        gr.update(value=frame, visible=has),
        gr.update(value=view.charts, visible=has),
        gr.update(value=view.examples, visible=has),
        gr.update(value=str(view.download) if view.download else None, visible=bool(view.download)),
    )


def _layout() -> _Widgets:
    defaults = ScorecardSettings()
    notice = gr.HTML(_no_brand_notice())
    with gr.Column(visible=False) as panel:
        with gr.Row(equal_height=True):
            run = gr.Dropdown(label="Tuned model from run", choices=[], scale=3)
            start = gr.Button("Run scorecard", variant="primary", scale=1)
        with gr.Accordion("Scorecard settings", open=False), gr.Row():
            max_prompts = gr.Slider(
                1, 200, value=defaults.max_prompts, step=1, label="Held-out turns answered"
            )
            max_new_tokens = gr.Slider(
                8, 512, value=defaults.max_new_tokens, step=8, label="Max new tokens per reply"
            )
        status = gr.Markdown()
        headlines_md = gr.Markdown()
        summary = table(SUMMARY_HEADER, visible=False, label="Summary", show_label=True)
        charts = gr.HTML(visible=False, css_template=_CHARTS_CSS)
        examples = gr.HTML(visible=False, css_template=_EXAMPLES_CSS, max_height=640)
        download = gr.File(label="Full report (HTML)", interactive=False, visible=False)
    return _Widgets(
        notice,
        panel,
        run,
        max_prompts,
        max_new_tokens,
        start,
        status,
        headlines_md,
        summary,
        charts,
        examples,
        download,
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

        view = run_scorecard(services, run_id, int(prompts), int(tokens), report)
        return _show(view)

    quiet: dict = {"show_progress": "hidden"}
    setup_outputs = [w.notice, w.panel, w.run, *w.results()]
    brand.change(user_errors(refresh), brand, setup_outputs, **quiet)
    tab.select(user_errors(refresh), [brand, w.run], setup_outputs, **quiet)
    w.run.input(
        user_errors(lambda run_id: _show(saved_scorecard(services, run_id))),
        w.run,
        w.results(),
        **quiet,
    )
    w.start.click(
        user_errors(on_run),
        [w.run, w.max_prompts, w.max_new_tokens],
        w.results(),
        # One scorecard at a time: each loads a model and uses every core it can get.
        concurrency_id="scorecard",
        concurrency_limit=1,
    )
