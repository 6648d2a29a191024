"""The Train tab: start and cancel a brand's training run and watch it live.

Everything shown is read back from the workspace database and the run's events file on every poll,
never kept in the browser session: a page reload, a second tab or a restarted server attach to the
same running job. `train_view`, `start_training` and `cancel_training` are plain functions over
`Services`; `build` wires them to the tab, with a gr.Timer polling while a run is active.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from chatbot.service import (
    DEFAULT_PRESET,
    PRESETS,
    BrandVoiceError,
    Run,
    TrainConfig,
    estimate_training,
    get_run,
    list_runs,
    parent_of,
    read_events,
    run_voice_match,
)
from ui.errors import problem_html, shown_in
from ui.services import Services
from ui.text import BASE_MODEL_HELP, base_model_label, duration_text, run_label, when_text
from ui.theme import empty_state, table

__all__ = [
    "TrainView",
    "PRESET_LABELS",
    "train_view",
    "start_training",
    "cancel_training",
    "run_estimate",
    "loss_frame",
    "build",
]

# What each of the engine's presets means to a person choosing one (the presets themselves, and
# which exist, live in chatbot.config).
PRESET_LABELS = {
    "quick": "Quick — a first taste of the voice; the time it takes here is shown below",
    "balanced": "Balanced — a better voice; plan for longer",
    "thorough": "Thorough — the most faithful voice; best on a GPU",
}
RUN_HEADERS = ["Run", "State", "Preset", "Base model", "Started", "Took", "Note"]
ACTIVE_STATES = ("queued", "running")
POLL_SECONDS = 1.5
LOSS_COLUMNS = ["step", "loss", "series"]


@dataclass
class TrainView:
    """What the tab shows for one brand and the run being watched."""

    run_id: str | None = None
    run_choices: list[tuple[str, str]] = field(default_factory=list)
    status_html: str = ""
    loss: pd.DataFrame = field(default_factory=lambda: loss_frame([]))
    runs_table: list[list] = field(default_factory=list)
    details: str = ""
    """Markdown for the Details accordion: the technical figures, each with its meaning."""
    active: bool = False
    """The watched run is queued or running: poll, offer Cancel, hold back Start."""
    can_start: bool = False
    """A prepared brand is selected and nothing of it is training."""
    signature: str = ""
    """Changes whenever anything shown changes: polls that find the same one redraw nothing."""


# --- handlers -----------------------------------------------------------------------------------


def train_view(services: Services, slug: str | None, run_id: str | None = None) -> TrainView:
    """The tab's state, derived from the database: `run_id`, else the brand's active run, else
    its newest run."""
    if not slug:
        return TrainView(status_html=_no_brand())
    runs = list_runs(services.workspace, slug)
    run = _pick(runs, run_id)
    busy = any(r.state in ACTIVE_STATES for r in runs)
    if run is None:
        return TrainView(status_html=_no_runs(), can_start=True)
    if run.has_adapter:
        services.start_quick_scorecard(run.id, run.run_dir)  # so the Scorecard tab is not empty
    events = read_events(run.run_dir)
    return TrainView(
        run_id=run.id,
        run_choices=[(run_label(r, state=True), r.id) for r in runs],
        status_html=_status_html(run, events),
        loss=loss_frame(events),
        runs_table=[_run_row(r) for r in runs],
        details=_details(run, events),
        active=run.state in ACTIVE_STATES,
        can_start=not busy,
        signature=f"{slug}/{run.id}/{run.state}/{len(events)}/{[r.state for r in runs]}",
    )


def start_training(services: Services, slug: str | None, preset: str, base_model: str) -> TrainView:
    """Start a run for the brand with a preset (and base model); returns the view watching it."""
    if not slug:
        raise BrandVoiceError("Prepare a brand on the Brand tab first; then train it here.")
    active = [r for r in list_runs(services.workspace, slug) if r.state in ACTIVE_STATES]
    if active:
        raise BrandVoiceError(
            f"Run {active[0].id} is still {active[0].state}; wait for it or cancel it first."
        )
    base = (base_model or "").strip() or services.default_base_model
    overrides = [] if base == "default" else [f"base_model={base}"]
    config = TrainConfig.from_preset(preset, overrides)
    run = services.start_run(services.workspace, slug, config, preset=preset)
    return train_view(services, slug, run.id)


def run_estimate(services: Services, slug: str | None, preset: str, base_model: str) -> str:
    """How long the chosen preset will take for this brand on this machine, before it starts."""
    if not slug or preset not in PRESETS:
        return ""
    base = (base_model or "").strip() or services.default_base_model
    config = TrainConfig.from_preset(preset, [] if base == "default" else [f"base_model={base}"])
    try:
        estimate = estimate_training(services.workspace, slug, config)
    except BrandVoiceError as exc:
        return f'<div class="bv-hint">No time estimate: {html.escape(str(exc))}</div>'
    return (
        f'<div class="bv-hint">This preset takes {html.escape(estimate.describe())}. '
        f"Measured on: {html.escape(estimate.cpu)}.</div>"
    )


def cancel_training(services: Services, slug: str | None, run_id: str | None) -> TrainView:
    """Stop the watched run gracefully (it keeps its last checkpoint)."""
    if not run_id:
        raise BrandVoiceError("There is no run to cancel.")
    run = get_run(services.workspace, run_id)
    if run.state in ACTIVE_STATES:
        services.cancel_run(services.workspace, run.id)
    return train_view(services, slug, run.id)


EVAL_POINTS_DRAWN = 3
"""The held-out curve is drawn from this many points on: two points only draw a straight line,
which says nothing about the curve's shape."""


def loss_frame(events: list[dict]) -> pd.DataFrame:
    """Long-form (step, loss, series) rows for the loss plot: one series each for train and eval.

    The browser's plot fixes its axis kinds and its list of series from the first data it draws
    and keeps them through later updates. So the columns stay numeric even when empty, and both
    series are always present, from the start, as one empty (NaN) point each, which the plot
    leaves out. Held-out points are drawn once there are `EVAL_POINTS_DRAWN` of them.
    """
    rows = [(0, math.nan, "train"), (0, math.nan, "eval")]
    evals = []
    for e in events:
        step = e.get("step")
        if step is None:
            continue
        if e.get("loss") is not None:
            rows.append((int(step), float(e["loss"]), "train"))
        if e.get("eval_loss") is not None:
            evals.append((int(step), float(e["eval_loss"]), "eval"))
    if len(evals) >= EVAL_POINTS_DRAWN:
        rows += evals
    frame = pd.DataFrame(rows, columns=LOSS_COLUMNS)
    return frame.astype({"step": "int64", "loss": "float64", "series": "string"})


# --- rendering ----------------------------------------------------------------------------------


def _pick(runs: list[Run], run_id: str | None) -> Run | None:
    if run_id:
        for r in runs:
            if r.id == run_id:
                return r
    active = [r for r in runs if r.state in ACTIVE_STATES]
    return (active or runs or [None])[0]


def _run_row(run: Run) -> list:
    took = None
    if run.started:
        took = (run.finished or time.time()) - run.started
    parent = parent_of(run)
    return [
        run.id,
        run.state,
        f"{run.preset}, from run {parent}" if parent else run.preset,
        base_model_label(run.base_model),
        when_text(run.started or run.created),
        duration_text(took),
        run.error or "",
    ]


def _latest(events: list[dict]) -> dict:
    """The newest event that carries progress (step counts), else the newest event."""
    for e in reversed(events):
        if e.get("total_steps"):
            return e
    return events[-1] if events else {}


def _progress_meta(run: Run, last: dict) -> list[str]:
    """The figures a person reads at a glance: time left or taken."""
    meta = []
    if run.state in ACTIVE_STATES and last.get("eta_s") is not None:
        meta.append(f"about {duration_text(last['eta_s'])} left")
    if run.state not in ACTIVE_STATES and run.started and run.finished:
        meta.append(f"took {duration_text(run.finished - run.started)}")
    return meta


def _evals(events: list[dict]) -> list[float]:
    return [float(e["eval_loss"]) for e in events if e.get("eval_loss") is not None]


def _details(run: Run, events: list[dict]) -> str:
    """The technical figures, each with a line that says what it means and what good looks like."""
    last = _latest(events)
    rows = []
    if last.get("epoch") is not None:
        rows.append(
            f"- **Epoch {last['epoch']:.2f}**: how many times training has read all your "
            "conversations (1.00 = once)."
        )
    if last.get("loss") is not None:
        rows.append(
            f"- **Training loss {last['loss']:.3f}**: how far the model's guesses are from your "
            "training replies. Lower is better; it should fall, then level off."
        )
    evals = _evals(events)
    if evals:
        trend = ""
        if len(evals) >= 2:
            change = (evals[0] - evals[-1]) / evals[0] if evals[0] else 0.0
            trend = (
                f" It went from {evals[0]:.3f} to {evals[-1]:.3f} ({change:+.0%} better)."
                if change >= 0
                else f" It went from {evals[0]:.3f} to {evals[-1]:.3f}: worse, a sign of "
                "too little or too varied data."
            )
        rows.append(
            f"- **Eval loss {evals[-1]:.3f}**: the same, on held-out replies training never "
            "saw, which is the honest measure. Good: it falls by 10% or more and stays near "
            "the training loss; if it rises while training loss falls, the model is "
            f"memorising.{trend}"
        )
    if last.get("tokens_per_s"):
        rows.append(
            f"- **{last['tokens_per_s']:,.0f} tokens/s**: training speed (a token is about "
            "three quarters of a word)."
        )
    rows.append(
        f"- Run `{run.id}`; base model {base_model_label(run.base_model)}; state {run.state}."
    )
    return "\n".join(rows)


def _status_html(run: Run, events: list[dict]) -> str:
    last = _latest(events)
    step, total = last.get("step") or 0, last.get("total_steps") or 0
    if run.state == "succeeded":
        step = total = max(total, step, 1)
    pct = 100.0 * step / total if total else 0.0
    phase = last.get("state", "") if run.state == "running" else ""
    steps = f"step {step} of {total}" if total else _waiting_text(run)
    meta = "".join(f"<span>{html.escape(m)}</span>" for m in _progress_meta(run, last))
    note = _note(run)
    return (
        f'<div class="bv-run-head"><span class="bv-state {run.state}">{run.state}</span>'
        f"<span>Run <code>{html.escape(run.id)}</code> · {html.escape(run.preset or 'custom')}"
        f" preset · {html.escape(base_model_label(run.base_model))} base model</span></div>"
        f'<div class="bv-progress" data-run="{html.escape(run.id)}" data-state="{run.state}"'
        f' data-step="{step}"'
        f' data-total="{total}"><div class="bar"><div class="fill" style="width:{pct:.1f}%">'
        f'</div></div><div class="meta"><span><b>{pct:.0f}%</b> · {steps}'
        f"{' · ' + html.escape(phase) if phase else ''}</span>{meta}</div></div>{note}"
    )


def _waiting_text(run: Run) -> str:
    if run.state == "queued":
        return "waiting for the previous run to finish"
    if run.state == "running":
        return "loading the model and data"
    return "no steps recorded"


def _note(run: Run) -> str:
    if run.state == "failed":
        return f'<div class="bv-run-error">{html.escape(run.error or "The run failed.")}</div>'
    if run.state == "succeeded":
        return _voice_match_html(run) + (
            '<div class="bv-hint">Finished. A quick scorecard appears on the <b>Scorecard</b> '
            "tab by itself; chat with the tuned model on <b>Compare</b>, or hand it over on "
            "<b>Export</b>.</div>"
        )
    if run.state == "cancelled":
        return '<div class="bv-hint">Cancelled; its last checkpoint is kept.</div>'
    return ""


def _voice_match_html(run: Run) -> str:
    """The finished run's voice match: one figure and what it means ("" when not measured)."""
    match = run_voice_match(run)
    if match is None:
        return ""
    style = "bv-good" if match.level == "picked_up" else "bv-note"
    return (
        f'<div class="{style} bv-voice-match" data-level="{match.level}">'
        f"<b>Voice match: {html.escape(match.figure)}</b>. {html.escape(match.meaning)} "
        "(Good: 2× or more.)</div>"
    )


def _no_brand() -> str:
    return empty_state(
        "Nothing to train yet",
        "Prepare a brand on the <b>Brand</b> tab; its training runs show up here.",
    )


def _no_runs() -> str:
    return empty_state(
        "No training runs yet",
        "Pick a preset and press <b>Start training</b>. <i>Quick</i> gives a first taste of the "
        "voice (the estimate beside it says how long on this machine); progress appears here "
        "as it trains.",
    )


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Outputs:
    runs: gr.Dropdown
    status: gr.HTML
    loss: gr.LinePlot
    table: gr.Dataframe
    details: gr.Markdown
    start: gr.Button
    cancel: gr.Button
    timer: gr.Timer

    def all(self) -> list:
        return list(vars(self).values())


def _show(view: TrainView) -> tuple:
    return (
        gr.update(choices=view.run_choices, value=view.run_id, visible=bool(view.run_choices)),
        view.status_html,
        # Shown from its first point on: the plot sizes its axes from the first data it gets.
        gr.update(value=view.loss, visible=bool(view.loss["loss"].notna().any())),
        gr.update(value=view.runs_table, visible=bool(view.runs_table)),
        view.details,
        gr.update(interactive=view.can_start),
        gr.update(interactive=view.active, visible=view.active),
        gr.Timer(active=view.active),
    )


def _controls(default_base: str) -> tuple:
    with gr.Column(scale=1, min_width=280, elem_classes="bv-card"):
        gr.Markdown("#### Training")
        preset = gr.Radio(
            [(PRESET_LABELS.get(name, name), name) for name in PRESETS],
            value=DEFAULT_PRESET,
            label="How long to train",
        )
        estimate = gr.HTML("")
        start = gr.Button("Start training", variant="primary", interactive=False)
        cancel = gr.Button("Cancel run", variant="stop", visible=False)
        problem = gr.Markdown(elem_id="bv-train-problem")
        with gr.Accordion("Details: base model", open=False):
            base = gr.Textbox(
                value="" if default_base == "default" else default_base,
                label="Base model",
                placeholder="built-in preview model (SmolLM2-135M)",
                info="Leave empty for the built-in preview model.",
            )
            gr.Markdown(BASE_MODEL_HELP, elem_classes="bv-hint")
    return preset, base, estimate, start, cancel, problem


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Train tab inside `tab`; `brand` is the app-wide brand picker."""
    with gr.Row(equal_height=False):
        preset, base, estimate, start, cancel, problem = _controls(services.default_base_model)
        with gr.Column(scale=3):
            runs = gr.Dropdown(label="Run", choices=[], visible=False, interactive=True)
            status = gr.HTML(_no_brand(), elem_id="bv-train-status")
            with gr.Accordion("Details: learning curve and figures", open=False):
                gr.Markdown(
                    "The curve shows how far the model's guesses are from your replies "
                    "(*loss*): lower is better. Training (green) should fall and level off; "
                    "held-out replies (orange, from 3 checks on) should fall too and stay close.",
                    elem_classes="bv-hint",
                )
                loss = gr.LinePlot(
                    x="step",
                    y="loss",
                    color="series",
                    color_map={"train": "#0f766e", "eval": "#d97706"},
                    x_title="training step",
                    y_title="loss (lower is better)",
                    title="Learning curve",
                    height=280,
                    visible=False,
                )
                details = gr.Markdown()
            runs_table = table(
                RUN_HEADERS, visible=False, label="All runs of this brand", show_label=True
            )
    timer = gr.Timer(POLL_SECONDS, active=False)
    out = _Outputs(runs, status, loss, runs_table, details, start, cancel, timer)

    shown = gr.State("")  # the signature of what the page shows, so polls can skip redraws
    outputs = [*out.all(), shown, problem]
    n = len(outputs)

    def wire(handler: Callable[..., TrainView]) -> Callable[..., tuple]:
        def show(*args: object) -> tuple:
            view = handler(services, *args)
            return (*_show(view), view.signature, "")

        return shown_in(show, outputs=n, at=n - 1)

    def poll(slug: str | None, run_id: str | None, last: str) -> tuple:
        view = train_view(services, slug, run_id)
        if view.signature == last:  # nothing new: redrawing the plot would only make it flicker
            skipped = (gr.skip() for _ in out.all()[:-1])
            return (*skipped, gr.Timer(active=view.active), last, gr.skip())
        return (*_show(view), view.signature, gr.skip())

    quiet: dict = {"show_progress": "hidden"}
    brand.change(wire(train_view), brand, outputs, **quiet)
    runs.input(wire(train_view), [brand, runs], outputs, **quiet)
    tab.select(wire(train_view), [brand, runs], outputs, **quiet)
    # Polls are cheap reads of the database and the events file: never queue them behind a chat.
    timer.tick(
        shown_in(poll, outputs=n, at=n - 1),
        [brand, runs, shown],
        outputs,
        **quiet,
        concurrency_limit=None,
    )
    start.click(wire(start_training), [brand, preset, base], outputs)

    def guess(*args: object) -> str:
        try:
            return run_estimate(services, *args)
        except BrandVoiceError as exc:  # a base model that is not there: said under the field
            return problem_html(str(exc))

    for trigger in (brand.change, preset.change, base.blur, tab.select):
        trigger(shown_in(guess, outputs=1, at=0), [brand, preset, base], estimate, **quiet)
    cancel.click(wire(cancel_training), [brand, runs], outputs)
