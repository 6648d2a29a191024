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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial

import gradio as gr

from chatbot.brand import BrandProfile
from chatbot.engine import GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.jobs import Run, get_run, list_runs
from chatbot.votes import Verdict, Vote, list_votes, record_vote, tally
from ui.errors import user_errors
from ui.services import Services
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
    "left": "👈  Left is better",
    "right": "Right is better  👉",
    "tie": "🤝  Tie",
    "both_bad": "👎  Both are bad",
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
    base_model: str
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


def compare_setup(services: Services, slug: str | None) -> CompareSetup:
    """The runs whose adapters can be compared, newest first, and the votes so far."""
    if not slug:
        return CompareSetup(
            notice=empty_state("Nothing to compare yet", "Prepare and train a brand first.")
        )
    runs = _chat_runs(services, slug)
    if not runs:
        return CompareSetup(
            notice=empty_state(
                "No tuned model yet",
                "When a training run finishes on the <b>Train</b> tab, chat with it here, side "
                "by side with the base model.",
            )
        )
    choices = [(f"{r.id} · {r.preset or 'custom'} preset", r.id) for r in runs]
    return CompareSetup(choices, runs[0].id, summary=vote_summary(services, slug, runs[0].id))


def _new_matchup(services: Services, run: Run, mode: str, settings: GenerationSettings) -> Matchup:
    if mode == "blind":
        left, right = services.rng.sample(_BLIND_PAIR, 2)
    else:
        left, right = _PAIRS[mode]
    return Matchup(
        mode=mode,
        left=left,
        right=right,
        run_id=run.id,
        adapter=str(run.run_dir / "adapter"),
        base_model=run.base_model or "default",
        settings=asdict(settings),
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
        matchup, left, right = _new_matchup(services, run, mode, settings), [], []
    assert matchup is not None  # set above when there was none
    left, right = list(left or []), list(right or [])
    matchup = copy.copy(matchup)
    matchup.prompt, matchup.settings = message, asdict(settings)
    matchup.before = {"left": copy.deepcopy(left), "right": copy.deepcopy(right)}
    matchup.awaiting_vote = matchup.revealed = False

    profile = BrandProfile.load(services.workspace.brand_dir(slug) / "brand.yaml")
    engine = services.engine(matchup.base_model, run.run_dir / "adapter", profile.system_prompt)
    user = {"role": "user", "content": message}
    left, right = [*left, user], [*right, user]
    left_reply = right_reply = ""
    yield CompareFrame(left, right, matchup)
    stream = engine.stream_pair(left, matchup.left, right, matchup.right, settings)
    for left_delta, right_delta in stream:
        left_reply += left_delta or ""
        right_reply += right_delta or ""
        yield CompareFrame(_with(left, left_reply), _with(right, right_reply), matchup)
    matchup.awaiting_vote = True
    yield CompareFrame(_with(left, left_reply), _with(right, right_reply), matchup, done=True)


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
    matchup = copy.copy(matchup)
    matchup.awaiting_vote, matchup.revealed = False, True
    reveal = ""
    if matchup.blind:
        reveal = (
            f"**Revealed:** left was **{SYSTEM_NAMES[matchup.left]}**, right was "
            f"**{SYSTEM_NAMES[matchup.right]}**. Your next message starts a new blind round."
        )
    choice = VERDICT_BUTTONS[verdict].replace("👈", "").replace("👉", "").strip(" 🤝👎")
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


# --- layout -------------------------------------------------------------------------------------


@dataclass
class _Panes:
    left_chat: gr.Chatbot
    right_chat: gr.Chatbot
    left: gr.State
    right: gr.State
    matchup: gr.State

    def all(self) -> list:
        return list(vars(self).values())


def _settings_inputs() -> list[gr.components.Component]:
    d = GenerationSettings()
    with gr.Accordion("Generation settings", open=False):
        with gr.Row():
            temperature = gr.Slider(0.0, 1.5, value=d.temperature, step=0.05, label="Temperature")
            top_p = gr.Slider(0.1, 1.0, value=d.top_p, step=0.05, label="Top-p")
            max_new = gr.Slider(16, 1024, value=d.max_new_tokens, step=16, label="Max new tokens")
            seed = gr.Number(value=d.seed, precision=0, label="Seed")
    return [temperature, top_p, max_new, seed]


def _settings(temperature: float, top_p: float, max_new: float, seed: float | None) -> GenerationSettings:
    return GenerationSettings(
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(max_new),
        seed=int(seed) if seed is not None else GenerationSettings().seed,
    )


def _vote_buttons(active: bool) -> list:
    return [gr.update(interactive=active)] * len(VERDICT_BUTTONS)


def _stream_outputs(frame: CompareFrame) -> tuple:
    a, b = pane_labels(frame.matchup, frame.matchup.mode)
    return (
        gr.update(value=frame.left, label=a),
        gr.update(value=frame.right, label=b),
        frame.left,
        frame.right,
        frame.matchup,
        "",
        "",
        *_vote_buttons(frame.done),
    )


def _reset(mode: str) -> tuple:
    a, b = pane_labels(None, mode)
    return (
        gr.update(value=[], label=a),
        gr.update(value=[], label=b),
        [],
        [],
        None,
        "",
        "",
        *_vote_buttons(False),
    )


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Compare tab inside `tab`; `brand` is the app-wide brand picker."""
    notice = gr.HTML(compare_setup(services, None).notice)
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
        with gr.Row(equal_height=True):
            a, b = pane_labels(None, "base_vs_tuned")
            left_chat = gr.Chatbot(label=a, height=420, feedback_options=None, buttons=["copy"])
            right_chat = gr.Chatbot(label=b, height=420, feedback_options=None, buttons=["copy"])
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
    panes = _Panes(left_chat, right_chat, gr.State([]), gr.State([]), gr.State(None))
    stream_outputs = [*panes.all(), message, vote_note, *votes]

    def on_send(slug, run_id, mode_key, text, left, right, matchup, *knobs) -> Iterator[tuple]:  # noqa: ANN001
        frames = compare_stream(
            services, slug, run_id, mode_key, text, left, right, matchup, _settings(*knobs)
        )
        for frame in frames:
            yield (*_stream_outputs(frame), "")

    send_inputs = [brand, run, mode, message, panes.left, panes.right, panes.matchup, *settings]
    for trigger in (send.click, message.submit):
        trigger(
            user_errors(on_send),
            send_inputs,
            [*stream_outputs, reveal],
            concurrency_id="chat-engine",
            concurrency_limit=1,
            show_progress="minimal",
        )

    def on_vote(verdict: str, slug, run_id, left, right, matchup) -> tuple:  # noqa: ANN001
        outcome = cast_vote(services, slug, verdict, matchup, left, right)  # type: ignore[arg-type]
        a, b = pane_labels(outcome.matchup, outcome.matchup.mode)
        return (
            gr.update(label=a),
            gr.update(label=b),
            outcome.matchup,
            outcome.message,
            outcome.reveal,
            vote_summary(services, slug, run_id),
            *_vote_buttons(False),
        )

    vote_outputs = [left_chat, right_chat, panes.matchup, vote_note, reveal, summary, *votes]
    for verdict, button in zip(VERDICT_BUTTONS, votes, strict=True):
        button.click(
            user_errors(partial(on_vote, verdict)),
            [brand, run, panes.left, panes.right, panes.matchup],
            vote_outputs,
        )

    reset_outputs = [*stream_outputs, reveal]
    for trigger in (clear.click, mode.change, run.change):
        trigger(lambda m: (*_reset(m), ""), mode, reset_outputs, show_progress="hidden")

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

    setup_outputs = [notice, panel, run, summary]
    brand.change(user_errors(refresh), brand, setup_outputs, show_progress="hidden")
    tab.select(user_errors(refresh), [brand, run], setup_outputs, show_progress="hidden")
    run.change(
        lambda slug, run_id: vote_summary(services, slug, run_id),
        [brand, run],
        summary,
        show_progress="hidden",
    )
