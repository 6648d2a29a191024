"""The Compare tab: one message, two assistants answering side by side, and a vote.

Each pane keeps its own history in its own gr.State and both stream at once (the engine steps the
two generations in turn). The modes pit the base model, or the base model with the brand's style
prompt, against the tuned adapter; the blind mode shuffles the sides and reveals them only after
the vote. Every vote is stored with what a later reader needs (see `chatbot.votes`).

`compare_stream`, `cast_vote` and `compare_setup` are plain functions over `Services`, tested with a
fake engine; `build` wires them to the tab.
"""

from __future__ import annotations

import copy
import html
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import gradio as gr

from chatbot.adapters import adapter_setup
from chatbot.engine import GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.jobs import Run, get_run, list_runs
from chatbot.preferences import preference_rows
from chatbot.training.from_votes import MIN_VOTES, start_from_votes, usable_votes
from chatbot.votes import Verdict, Vote, list_votes, record_vote, tally
from ui.errors import user_errors
from ui.services import EngineSpec, Services
from ui.text import run_label
from ui.theme import empty_state

__all__ = [
    "MODES",
    "SYSTEM_NAMES",
    "Matchup",
    "CompareFrame",
    "CompareSetup",
    "VoteOutcome",
    "compare_setup",
    "compare_stream",
    "cast_vote",
    "pane_labels",
    "vote_summary",
    "build",
]

MODES = {
    "base_vs_tuned": "Base vs tuned",
    "prompted_vs_tuned": "Base + style prompt vs tuned",
    "blind": "Blind test",
}
_PAIRS = {"base_vs_tuned": ("base", "tuned"), "prompted_vs_tuned": ("prompted", "tuned")}
_BLIND_PAIR = ("prompted", "tuned")  # the fair test: the tuned model against the prompted base
SYSTEM_NAMES = {"base": "Base model", "prompted": "Base + style prompt", "tuned": "Tuned"}
VERDICT_BUTTONS: dict[str, str] = {
    "left": "← Left is better",
    "right": "Right is better →",
    "tie": "It's a tie",
    "both_bad": "Both are bad",
}

Messages = list[dict[str, str]]


@dataclass
class Matchup:
    """Who speaks on which side of the current conversation, and the turn awaiting a vote."""

    mode: str
    left: str
    right: str
    run_id: str
    adapter: str
    settings: dict = field(default_factory=dict)
    prompt: str = ""
    before: dict = field(default_factory=dict)
    """Both panes' histories before `prompt`, as stored with a vote."""
    awaiting_vote: bool = False
    revealed: bool = False

    @property
    def blind(self) -> bool:
        return self.mode == "blind"


@dataclass
class CompareFrame:
    """One step of a streamed comparison: both panes as they stand."""

    left: Messages
    right: Messages
    matchup: Matchup
    done: bool = False


@dataclass
class CompareSetup:
    """The Compare tab's state for a brand: which runs can be chatted with."""

    run_choices: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    notice: str = ""
    summary: str = ""


@dataclass
class VoteOutcome:
    vote: Vote
    matchup: Matchup
    message: str
    reveal: str


# --- handlers -----------------------------------------------------------------------------------


def _chat_runs(services: Services, slug: str) -> list[Run]:
    return [
        r
        for r in list_runs(services.workspace, slug)
        if r.state == "succeeded" and (r.run_dir / "adapter").is_dir()
    ]


def _no_brand_notice() -> str:
    return empty_state("Nothing to compare yet", "Prepare and train a brand first.")


def compare_setup(services: Services, slug: str | None) -> CompareSetup:
    """The runs whose adapters can be compared, newest first, and the votes so far."""
    if not slug:
        return CompareSetup(notice=_no_brand_notice())
    runs = _chat_runs(services, slug)
    if not runs:
        return CompareSetup(
            notice=empty_state(
                "No tuned model yet",
                "When a training run finishes on the <b>Train</b> tab, chat with it here, side "
                "by side with the base model.",
            )
        )
    choices = [(run_label(r), r.id) for r in runs]
    return CompareSetup(choices, runs[0].id, summary=vote_summary(services, slug, runs[0].id))


def _engine_spec(services: Services, slug: str, run: Run) -> EngineSpec:
    """The model a run's adapter belongs on, and the prompts each side gets."""
    setup = adapter_setup(services.workspace, run.id)
    return EngineSpec(
        base_model=setup.base_model,
        quantization=setup.quantization,
        system_prompt=setup.system_prompt,
        tuned_system_prompt=setup.tuned_system_prompt,
    )


def _new_matchup(run: Run, mode: str, rng: random.Random) -> Matchup:
    if mode == "blind":
        left, right = rng.sample(_BLIND_PAIR, 2)
    else:
        left, right = _PAIRS[mode]
    return Matchup(
        mode=mode,
        left=left,
        right=right,
        run_id=run.id,
        adapter=str(run.run_dir / "adapter"),
    )


def _continues(matchup: Matchup | None, mode: str, run_id: str) -> bool:
    """Whether a new message continues the current conversation (else a fresh one starts).

    A blind conversation ends with its vote: once the sides are revealed they are no longer blind.
    """
    return (
        matchup is not None
        and matchup.mode == mode
        and matchup.run_id == run_id
        and not (matchup.blind and matchup.revealed)
    )


def compare_stream(
    services: Services,
    slug: str | None,
    run_id: str | None,
    mode: str,
    message: str,
    left: Messages | None,
    right: Messages | None,
    matchup: Matchup | None,
    settings: GenerationSettings,
) -> Iterator[CompareFrame]:
    """Send `message` to both sides and yield both panes as the replies stream in."""
    message = (message or "").strip()
    if not slug:
        raise BrandVoiceError("Prepare and train a brand first.")
    if not run_id:
        raise BrandVoiceError("No trained run to chat with yet: train the brand on the Train tab.")
    if mode not in MODES:
        raise BrandVoiceError(f"Unknown comparison mode {mode!r}.")
    if not message:
        raise BrandVoiceError("Type a message for both assistants first.")
    run = get_run(services.workspace, run_id)
    if not _continues(matchup, mode, run.id):
        matchup, left, right = _new_matchup(run, mode, services.rng), [], []
    assert matchup is not None  # set above when there was none
    left, right = list(left or []), list(right or [])
    matchup = replace(
        matchup,
        prompt=message,
        settings=asdict(settings),
        before={"left": copy.deepcopy(left), "right": copy.deepcopy(right)},
        awaiting_vote=False,
        revealed=False,
    )

    user = {"role": "user", "content": message}
    left, right = [*left, user], [*right, user]
    yield CompareFrame(left, right, matchup)  # the message shows at once; loading may take a while
    engine = services.engine(_engine_spec(services, slug, run), run.run_dir / "adapter")
    left_reply = right_reply = ""
    stream = engine.stream_pair(left, matchup.left, right, matchup.right, settings)
    for left_delta, right_delta in stream:
        left_reply += left_delta or ""
        right_reply += right_delta or ""
        yield CompareFrame(_with(left, left_reply), _with(right, right_reply), matchup)
    finished = replace(matchup, awaiting_vote=True)
    yield CompareFrame(_with(left, left_reply), _with(right, right_reply), finished, done=True)


def _with(history: Messages, reply: str) -> Messages:
    return [*history, {"role": "assistant", "content": reply}]


def _last_reply(history: Messages) -> str:
    if not history or history[-1].get("role") != "assistant":
        raise BrandVoiceError("Both sides need to answer before you vote.")
    return history[-1]["content"]


def cast_vote(
    services: Services,
    slug: str | None,
    verdict: Verdict,
    matchup: Matchup | None,
    left: Messages | None,
    right: Messages | None,
) -> VoteOutcome:
    """Store a verdict on the latest pair of replies; in blind mode, reveal the sides."""
    if not slug or matchup is None or not matchup.awaiting_vote:
        raise BrandVoiceError("Send a message first; vote once both replies are in.")
    vote = record_vote(
        services.workspace,
        Vote(
            brand=slug,
            mode=matchup.mode,
            prompt=matchup.prompt,
            left_system=matchup.left,
            right_system=matchup.right,
            left_reply=_last_reply(left or []),
            right_reply=_last_reply(right or []),
            verdict=verdict,
            run_id=matchup.run_id,
            adapter=matchup.adapter,
            settings=matchup.settings,
            history=matchup.before,
        ),
    )
    matchup = replace(matchup, awaiting_vote=False, revealed=True)
    reveal = ""
    if matchup.blind:
        reveal = (
            f"**Revealed:** left was **{SYSTEM_NAMES[matchup.left]}**, right was "
            f"**{SYSTEM_NAMES[matchup.right]}**. Your next message starts a new blind round."
        )
    choice = VERDICT_BUTTONS[verdict].strip(" ←→")
    return VoteOutcome(vote, matchup, f"Vote saved: *{choice}*.", reveal)


def pane_labels(matchup: Matchup | None, mode: str) -> tuple[str, str]:
    """The two panes' titles: system names, or "Assistant A/B" while a blind round is unrevealed."""
    blind = matchup.blind if matchup else mode == "blind"
    if blind and not (matchup and matchup.revealed):
        return "Assistant A", "Assistant B"
    if matchup is not None:
        left, right = matchup.left, matchup.right
    else:
        left, right = _PAIRS.get(mode, _BLIND_PAIR)
    names = [SYSTEM_NAMES[left], SYSTEM_NAMES[right]]
    if blind:
        names = [f"Assistant A — {names[0]}", f"Assistant B — {names[1]}"]
    return names[0], names[1]


def vote_summary(services: Services, slug: str | None, run_id: str | None) -> str:
    """One line on how the tuned model has fared in this run's votes."""
    if not slug or not run_id:
        return ""
    votes = list_votes(services.workspace, slug, run_id)
    if not votes:
        return "No votes for this run yet. Your votes are saved in the workspace."
    tuned = tally(votes).get("tuned")
    if tuned is None or not tuned.total:
        return f"{len(votes)} vote(s) for this run."
    return (
        f"{len(votes)} vote(s) for this run: the tuned model won **{tuned.wins}**, lost "
        f"{tuned.losses}, tied {tuned.ties}; both were bad {tuned.both_bad} time(s)."
    )


def next_version_ready(services: Services, slug: str | None, run_id: str | None) -> bool:
    """Whether this run has the votes a next version needs (`brandvoice train --from-votes`)."""
    if not slug or not run_id:
        return False
    data = preference_rows(services.workspace, slug, "dpo", run_id=run_id)
    return usable_votes(data) >= MIN_VOTES


def train_next_version(services: Services, slug: str | None, run_id: str | None) -> str:
    """Start a run that learns this run's votes (DPO, through the job system); a message."""
    if not slug or not run_id:
        raise BrandVoiceError("Choose the run you voted on first.")
    run = start_from_votes(
        services.workspace, slug, "dpo", parent_run=run_id, start=services.start_run
    )
    return (
        f"Run `{run.id}` is learning from your votes on this run. Follow it on the **Train** "
        "tab; once it finishes, pick it here to compare it."
    )


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Widgets:
    """The tab's components; each wiring helper below takes the ones it needs from here."""

    notice: gr.HTML
    panel: gr.Column
    mode: gr.Radio
    run: gr.Dropdown
    settings: list[gr.components.Component]
    left_title: gr.HTML
    right_title: gr.HTML
    left_chat: gr.Chatbot
    right_chat: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    clear: gr.Button
    votes: list[gr.Button]
    vote_note: gr.Markdown
    reveal: gr.Markdown
    summary: gr.Markdown
    left: gr.State = field(default_factory=lambda: gr.State([]))
    """Each pane's conversation, kept apart (the two sides never see each other's replies)."""
    right: gr.State = field(default_factory=lambda: gr.State([]))
    matchup: gr.State = field(default_factory=lambda: gr.State(None))

    def conversation(self) -> list:
        """What a streamed turn or a reset updates, in `_frame_outputs` order."""
        return [
            self.left_title,
            self.right_title,
            self.left_chat,
            self.right_chat,
            self.left,
            self.right,
            self.matchup,
            self.vote_note,
            self.reveal,
            *self.votes,
        ]


def _settings_inputs() -> list[gr.components.Component]:
    d = GenerationSettings()
    with gr.Accordion("Generation settings", open=False), gr.Row():
        temperature = gr.Slider(0.0, 1.5, value=d.temperature, step=0.05, label="Temperature")
        top_p = gr.Slider(0.1, 1.0, value=d.top_p, step=0.05, label="Top-p")
        max_new = gr.Slider(16, 1024, value=d.max_new_tokens, step=8, label="Max new tokens")
        seed = gr.Number(value=d.seed, precision=0, label="Seed")
    return [temperature, top_p, max_new, seed]


def _settings(
    temperature: float, top_p: float, max_new: float, seed: float | None
) -> GenerationSettings:
    return GenerationSettings(
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(max_new),
        seed=int(seed) if seed is not None else GenerationSettings().seed,
    )


def _vote_buttons(active: bool) -> list:
    return [gr.update(interactive=active)] * len(VERDICT_BUTTONS)


def _frame_outputs(frame: CompareFrame | None, mode: str) -> tuple:
    """Values for `_Widgets.conversation()`: a streamed frame, or a fresh conversation."""
    a, b = pane_labels(frame.matchup if frame else None, mode)
    left, right = (frame.left, frame.right) if frame else ([], [])
    return (
        _pane_title(a),
        _pane_title(b),
        gr.update(value=left, label=a),
        gr.update(value=right, label=b),
        left,
        right,
        frame.matchup if frame else None,
        "",
        "",
        *_vote_buttons(bool(frame and frame.done)),
    )


def _pane_title(label: str) -> str:
    return f'<div class="bv-pane-title">{html.escape(label)}</div>'


def _chat_pane(label: str) -> tuple[gr.HTML, gr.Chatbot]:
    """One side: its title (the system's name, or A/B while blind) above its chat."""
    with gr.Column():
        title = gr.HTML(_pane_title(label))
        chat = gr.Chatbot(
            label=label,
            show_label=False,
            height=420,
            feedback_options=None,
            buttons=["copy"],
            placeholder="Send a message below: this side's reply appears here.",
        )
    return title, chat


def _layout() -> _Widgets:
    notice = gr.HTML(_no_brand_notice())
    with gr.Column(visible=False) as panel:
        with gr.Row(equal_height=True):
            mode = gr.Radio(
                [(label, key) for key, label in MODES.items()],
                value="base_vs_tuned",
                label="Compare",
                scale=3,
            )
            run = gr.Dropdown(label="Tuned model from run", choices=[], scale=2)
        settings = _settings_inputs()
        with gr.Row(equal_height=True, elem_classes="bv-panes"):
            a, b = pane_labels(None, "base_vs_tuned")
            left_title, left_chat = _chat_pane(a)
            right_title, right_chat = _chat_pane(b)
        with gr.Row(equal_height=True):
            message = gr.Textbox(
                placeholder="Write as a customer would, e.g. “My order arrived damaged.”",
                show_label=False,
                scale=5,
                autofocus=True,
            )
            send = gr.Button("Send to both", variant="primary", scale=1)
            clear = gr.Button("New conversation", scale=1)
        with gr.Row(elem_classes="bv-votes"):
            votes = [gr.Button(label, interactive=False) for label in VERDICT_BUTTONS.values()]
        vote_note = gr.Markdown()
        reveal = gr.Markdown(elem_classes="bv-reveal")
        summary = gr.Markdown(elem_classes="bv-hint")
    return _Widgets(
        notice,
        panel,
        mode,
        run,
        settings,
        left_title,
        right_title,
        left_chat,
        right_chat,
        message,
        send,
        clear,
        votes,
        vote_note,
        reveal,
        summary,
    )


def _wire_chat(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    outputs = [*w.conversation(), w.message]

    def on_send(
        slug: str | None,
        run_id: str | None,
        mode: str,
        text: str,
        left: Messages,
        right: Messages,
        matchup: Matchup | None,
        *knobs: float,
    ) -> Iterator[tuple]:
        if not (text or "").strip():  # an empty box is not worth an error
            gr.Warning("Type a message for both assistants first.")
            yield tuple(gr.skip() for _ in outputs)
            return
        frames = compare_stream(
            services, slug, run_id, mode, text, left, right, matchup, _settings(*knobs)
        )
        for frame in frames:
            yield (*_frame_outputs(frame, mode), "")  # the box empties once the message is sent

    inputs = [brand, w.run, w.mode, w.message, w.left, w.right, w.matchup, *w.settings]
    for trigger in (w.send.click, w.message.submit):
        trigger(
            user_errors(on_send),
            inputs,
            outputs,
            # One model answers at a time; a second chat waits its turn in the queue.
            concurrency_id="chat-engine",
            concurrency_limit=1,
            show_progress="minimal",
        )
    resets = (w.clear.click, w.mode.change, w.run.change, w.left_chat.clear, w.right_chat.clear)
    for trigger in resets:
        trigger(partial(_frame_outputs, None), w.mode, w.conversation(), show_progress="hidden")


def _wire_votes(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    def on_vote(
        verdict: Verdict,
        slug: str | None,
        run_id: str | None,
        left: Messages,
        right: Messages,
        matchup: Matchup | None,
    ) -> tuple:
        outcome = cast_vote(services, slug, verdict, matchup, left, right)
        a, b = pane_labels(outcome.matchup, outcome.matchup.mode)
        return (
            _pane_title(a),
            _pane_title(b),
            outcome.matchup,
            outcome.message,
            outcome.reveal,
            vote_summary(services, slug, run_id),
            *_vote_buttons(False),
        )

    inputs = [brand, w.run, w.left, w.right, w.matchup]
    outputs = [w.left_title, w.right_title, w.matchup, w.vote_note, w.reveal, w.summary, *w.votes]
    for verdict, button in zip(VERDICT_BUTTONS, w.votes, strict=True):
        button.click(user_errors(partial(on_vote, verdict)), inputs, outputs)


def _wire_setup(services: Services, w: _Widgets, brand: gr.Dropdown, tab: gr.Tab) -> None:
    def refresh(slug: str | None, current: str | None = None) -> tuple:
        setup = compare_setup(services, slug)
        has = bool(setup.run_choices)
        # Keep the run being chatted with, so coming back to the tab does not end the chat.
        keep = current if current in [r for _, r in setup.run_choices] else setup.run_id
        return (
            gr.update(value=setup.notice, visible=not has),
            gr.update(visible=has),
            gr.update(choices=setup.run_choices, value=keep),
            vote_summary(services, slug, keep),
        )

    outputs = [w.notice, w.panel, w.run, w.summary]
    quiet: dict = {"show_progress": "hidden"}
    brand.change(user_errors(refresh), brand, outputs, **quiet)
    tab.select(user_errors(refresh), [brand, w.run], outputs, **quiet)
    w.run.change(partial(vote_summary, services), [brand, w.run], w.summary, **quiet)


def _wire_next_version(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    """A button that appears once the run has enough votes to train its next version from."""
    with w.panel:
        train = gr.Button("Train the next version from these votes", visible=False)
        started = gr.Markdown()

    def show(slug: str | None, run_id: str | None) -> dict:
        return gr.update(visible=next_version_ready(services, slug, run_id))

    # The summary line changes after every vote and with the run chosen.
    w.summary.change(user_errors(show), [brand, w.run], train, show_progress="hidden")
    on_train = partial(train_next_version, services)
    train.click(user_errors(on_train), [brand, w.run], started)


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Compare tab inside `tab`; `brand` is the app-wide brand picker."""
    widgets = _layout()
    _wire_chat(services, widgets, brand)
    _wire_votes(services, widgets, brand)
    _wire_setup(services, widgets, brand, tab)
    _wire_next_version(services, widgets, brand)
