"""The Compare tab: one message, two assistants answering side by side, and a vote.

Each pane keeps its own history in its own gr.State and both stream at once (the engine steps the
two generations in turn). The modes pit the base model, or the base model with the brand's style
prompt, against the tuned adapter; the blind mode shuffles the sides and reveals them only after
the vote. The panes are A (left) and B (right), and so are the Stop and vote buttons. Every vote
is stored with what a later reader needs (see `chatbot.feedback.votes`).

Replies are bounded as the brand writes: the length cap starts at the brand's own (see
`chatbot.engine.reply_length`) and every side stops after the brand's sign-off. Either pane can be
stopped; votes open once both have finished or been stopped.

While a run trains, the run picker also offers "Preview: step N", the run's newest complete
checkpoint (`chatbot.runs.preview`), refreshed every few seconds. A preview loads and generates in
one thread at the lowest CPU priority (`chatbot.engine.priority`), so training keeps its speed.

`compare_stream`, `cast_vote` and `compare_setup` are plain functions over `Services`, tested with a
fake engine; `build` wires them to the tab.
"""

from __future__ import annotations

import copy
import html
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import gradio as gr

from chatbot.engine import GenerationSettings, ReplyBounds, StopFlag, in_background
from chatbot.service import (
    MIN_VOTES,
    BrandVoiceError,
    Run,
    Verdict,
    Vote,
    brand_previews,
    brand_profile,
    brand_reply_bounds,
    get_run,
    list_votes,
    pin_newest_preview,
    preference_rows,
    record_vote,
    start_from_votes,
    tally,
    usable_runs,
    usable_votes,
)
from ui.errors import shown_in
from ui.services import ChatBackend, EngineSpec, Services, WarmUp
from ui.text import is_preview_sized, preview_note_html, run_label
from ui.theme import empty_state

__all__ = [
    "MODES",
    "SYSTEM_NAMES",
    "Matchup",
    "CompareFrame",
    "CompareSetup",
    "PaneStops",
    "VoteOutcome",
    "compare_setup",
    "compare_stream",
    "cast_vote",
    "pane_labels",
    "reply_bounds",
    "vote_summary",
    "warm_up_note",
    "build",
]

MODES = {
    "base_vs_tuned": "Base vs tuned",
    "prompted_vs_tuned": "Base + style prompt vs tuned",
    "fewshot_vs_tuned": "Base + prompt + examples vs tuned",
    "blind": "Blind test",
}
_PAIRS = {
    "base_vs_tuned": ("base", "tuned"),
    "prompted_vs_tuned": ("prompted", "tuned"),
    "fewshot_vs_tuned": ("fewshot", "tuned"),
}
_BLIND_PAIR = ("prompted", "tuned")  # the fair test: the tuned model against the prompted base
SYSTEM_NAMES = {
    "base": "Base model",
    "prompted": "Base + style prompt",
    "fewshot": "Base + prompt + examples",
    "tuned": "Tuned",
}
SIDES = ("left", "right")
PANE_LETTERS = {"left": "A", "right": "B"}
"""How the panes are named wherever a person sees them: titles, Stop and vote buttons."""
VERDICT_BUTTONS: dict[str, str] = {
    "left": "A is better",
    "right": "B is better",
    "tie": "It's a tie",
    "both_bad": "Both are bad",
}
STOP_BUTTONS = {side: f"Stop {letter}" for side, letter in PANE_LETTERS.items()}
_MAX_NEW_TOKENS_SLIDER = 1024

Messages = list[dict[str, str]]
PREVIEW = "preview:"
"""Run picker values that start with this chat with the run's newest checkpoint."""
PREVIEW_REFRESH_S = 10


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
    stopped: tuple[str, ...] = ()
    """The sides ("left", "right") whose Stop button was pressed during this turn."""


class PaneStops:
    """The Stop buttons of one streamed turn: the engine's flag, and which sides were stopped."""

    def __init__(self) -> None:
        self.flag = StopFlag()
        self._sides: set[str] = set()

    def stop(self, side: str) -> None:
        """End `side`'s reply ("left" or "right"); the other side goes on."""
        if side not in SIDES:
            raise BrandVoiceError(f"Unknown pane {side!r}; use 'left' or 'right'.")
        self._sides.add(side)
        self.flag.set(SIDES.index(side))

    @property
    def sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if side in self._sides)


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
    return usable_runs(services.workspace, slug)


def _no_brand_notice() -> str:
    return empty_state("Nothing to compare yet", "Prepare and train a brand first.")


def compare_setup(services: Services, slug: str | None) -> CompareSetup:
    """The runs whose adapters can be compared, newest first, and the votes so far."""
    if not slug:
        return CompareSetup(notice=_no_brand_notice())
    runs = _chat_runs(services, slug)
    previews = [(p.label, PREVIEW + p.run_id) for p in brand_previews(services.workspace, slug)]
    if not runs and previews:
        return CompareSetup(previews, previews[0][1], summary=vote_summary(services, slug, None))
    if not runs:
        return CompareSetup(
            notice=empty_state(
                "No tuned model yet",
                "When a training run finishes on the <b>Train</b> tab, chat with it here, side "
                "by side with the base model.",
            )
        )
    choices = [*previews, *((run_label(r), r.id) for r in runs)]
    return CompareSetup(choices, runs[0].id, summary=vote_summary(services, slug, runs[0].id))


def reply_bounds(services: Services, slug: str, run_id: str) -> ReplyBounds:
    """The brand's reply-length cap, in the tokens of `run_id`'s base model, and its sign-off."""
    tokenizer = services.tokenizer(EngineSpec.for_run(services.workspace, run_id).base_model)
    if tokenizer is None:
        signoff = brand_profile(services.workspace, slug).rules.required_signoff
        return ReplyBounds(None, signoff or "")
    return brand_reply_bounds(services.workspace, slug, tokenizer)


def _preview_engine(services: Services, run: Run) -> tuple[ChatBackend, str]:
    """The engine with the run's newest complete checkpoint loaded, and that checkpoint's folder.

    Loaded in a low-priority thread, from a pinned copy that checkpoint rotation cannot remove.
    """
    found = pin_newest_preview(services.workspace, run)
    spec = EngineSpec.for_checkpoint(services.workspace, run.id, found.adapter_dir)
    engine = in_background(partial(services.engine, spec, found.adapter_dir))
    return engine, str(found.adapter_dir)


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
        adapter=str(run.folder.adapter),
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
    stops: PaneStops | None = None,
) -> Iterator[CompareFrame]:
    """Send `message` to both sides and yield both panes as the replies stream in.

    Both sides end after the brand's sign-off line; `stops` ends either side early, from another
    thread. The last frame is `done` (votes open) once both sides have finished or been stopped.
    """
    message = (message or "").strip()
    if not slug:
        raise BrandVoiceError("Prepare and train a brand first.")
    if not run_id:
        raise BrandVoiceError("No trained run to chat with yet: train the brand on the Train tab.")
    if mode not in MODES:
        raise BrandVoiceError(f"Unknown comparison mode {mode!r}.")
    if not message:
        raise BrandVoiceError("Type a message for both assistants first.")
    preview = run_id.startswith(PREVIEW)
    run = get_run(services.workspace, run_id.removeprefix(PREVIEW))
    stops = stops or PaneStops()
    rules = brand_profile(services.workspace, slug).rules
    settings = replace(settings, signoff=rules.required_signoff or "")
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
    if preview:  # gently, beside the training run: one thread, lowest priority
        engine, adapter = _preview_engine(services, run)
        matchup = replace(matchup, adapter=adapter)
        pair = partial(engine.stream_pair, background=True)
    else:
        engine = services.engine(EngineSpec.for_run(services.workspace, run.id), run.folder.adapter)
        pair = engine.stream_pair
    left_reply = right_reply = ""
    stream = pair(left, matchup.left, right, matchup.right, settings, stop=stops.flag)
    for left_delta, right_delta in stream:
        left_reply += left_delta or ""
        right_reply += right_delta or ""
        frame = CompareFrame(_with(left, left_reply), _with(right, right_reply), matchup)
        yield replace(frame, stopped=stops.sides)
    if stops.sides:  # a stopped reply is cut short: whoever reads the vote later should know
        matchup = replace(matchup, settings={**matchup.settings, "stopped": list(stops.sides)})
    finished = replace(matchup, awaiting_vote=True)
    last = CompareFrame(_with(left, left_reply), _with(right, right_reply), finished, done=True)
    yield replace(last, stopped=stops.sides)


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
            f"**Revealed:** A was **{SYSTEM_NAMES[matchup.left]}**, B was "
            f"**{SYSTEM_NAMES[matchup.right]}**. Your next message starts a new blind round."
        )
    return VoteOutcome(vote, matchup, f"Vote saved: *{VERDICT_BUTTONS[verdict]}*.", reveal)


def pane_labels(matchup: Matchup | None, mode: str) -> tuple[str, str]:
    """The two panes' titles: "A — Base model", or "Assistant A/B" while a blind round is hidden."""
    blind = matchup.blind if matchup else mode == "blind"
    if blind and not (matchup and matchup.revealed):
        return f"Assistant {PANE_LETTERS['left']}", f"Assistant {PANE_LETTERS['right']}"
    if matchup is not None:
        systems = {"left": matchup.left, "right": matchup.right}
    else:
        systems = dict(zip(SIDES, _PAIRS.get(mode, _BLIND_PAIR), strict=True))
    a, b = (f"{PANE_LETTERS[side]} — {SYSTEM_NAMES[systems[side]]}" for side in SIDES)
    return a, b


def vote_summary(services: Services, slug: str | None, run_id: str | None) -> str:
    """One line on how the tuned model has fared in this run's votes."""
    if not slug or not run_id:
        return ""
    run_id = run_id.removeprefix(PREVIEW)
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


class _RunningTurns:
    """The way from a pane's Stop button to the turn streaming in the same browser session."""

    def __init__(self) -> None:
        self._turns: dict[str, PaneStops] = {}
        self._lock = threading.Lock()

    def begin(self, session: str) -> PaneStops:
        with self._lock:
            self._turns[session] = PaneStops()
            return self._turns[session]

    def stop(self, session: str, side: str) -> None:
        with self._lock:
            stops = self._turns.get(session)
        if stops is not None:
            stops.stop(side)

    def end(self, session: str, stops: PaneStops) -> None:
        with self._lock:
            if self._turns.get(session) is stops:
                del self._turns[session]


@dataclass
class _Widgets:
    """The tab's components; each wiring helper below takes the ones it needs from here."""

    notice: gr.HTML
    model_note: gr.HTML
    """The honest note on the built-in preview model, when the chosen run is trained on it."""
    warm_note: gr.Markdown
    warm_timer: gr.Timer
    panel: gr.Column
    mode: gr.Radio
    run: gr.Dropdown
    settings: list[gr.components.Component]
    left_title: gr.HTML
    right_title: gr.HTML
    left_chat: gr.Chatbot
    right_chat: gr.Chatbot
    stops: list[gr.Button]
    """Stop A, Stop B: one under each pane."""
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

    @property
    def max_new_tokens(self) -> gr.components.Component:
        return self.settings[2]

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
            *self.stops,
        ]


def _settings_inputs() -> list[gr.components.Component]:
    d = GenerationSettings()
    with gr.Accordion("Details: reply settings", open=False), gr.Row():
        temperature = gr.Slider(
            0.0,
            1.5,
            value=d.temperature,
            step=0.05,
            label="Variety (temperature)",
            info="0: the same reply every time; about 0.7: natural; above 1: erratic.",
        )
        top_p = gr.Slider(
            0.1,
            1.0,
            value=d.top_p,
            step=0.05,
            label="Word choice (top-p)",
            info="Lower keeps to the most likely words.",
        )
        max_new = gr.Slider(
            16,
            _MAX_NEW_TOKENS_SLIDER,
            value=d.max_new_tokens,
            step=1,
            label="Longest reply (tokens)",
            info="A token is about ¾ of a word. Starts at this brand's usual longest reply; "
            "every reply also ends after the brand's sign-off.",
        )
        seed = gr.Number(
            value=d.seed, precision=0, label="Seed", info="The same seed gives the same replies."
        )
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


def _stop_buttons(frame: CompareFrame | None) -> list:
    """Each Stop button works while its side may still be writing."""
    if frame is None or frame.done:
        return [gr.update(interactive=False)] * len(SIDES)
    return [gr.update(interactive=side not in frame.stopped) for side in SIDES]


def _stopped_note(frame: CompareFrame | None) -> str:
    if frame is None or not frame.stopped:
        return ""
    panes = " and ".join(PANE_LETTERS[side] for side in frame.stopped)
    return f"You stopped {panes}; the reply stays as far as it got."


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
        _stopped_note(frame),
        "",
        *_vote_buttons(bool(frame and frame.done)),
        *_stop_buttons(frame),
    )


def _pane_title(label: str) -> str:
    return f'<div class="bv-pane-title">{html.escape(label)}</div>'


def _chat_pane(label: str, side: str) -> tuple[gr.HTML, gr.Chatbot, gr.Button]:
    """One side: its title (A/B and the system's name) above its chat, and its Stop button."""
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
        stop = gr.Button(STOP_BUTTONS[side], size="sm", variant="stop", interactive=False)
    return title, chat, stop


def _layout() -> _Widgets:
    notice = gr.HTML(_no_brand_notice())
    model_note = gr.HTML("", elem_id="bv-compare-model-note")
    warm_note = gr.Markdown(visible=False, elem_classes="bv-hint")
    warm_timer = gr.Timer(1.0)
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
            left_title, left_chat, stop_a = _chat_pane(a, "left")
            right_title, right_chat, stop_b = _chat_pane(b, "right")
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
        model_note,
        warm_note,
        warm_timer,
        panel,
        mode,
        run,
        settings,
        left_title,
        right_title,
        left_chat,
        right_chat,
        [stop_a, stop_b],
        message,
        send,
        clear,
        votes,
        vote_note,
        reveal,
        summary,
    )


FRAME_INTERVAL = 0.1
"""Seconds between the frames sent to the browser while replies stream."""


def paced(
    frames: Iterable[CompareFrame], interval: float = FRAME_INTERVAL
) -> Iterator[CompareFrame]:
    """The frames worth sending: the first, the last, one whose Stop state changed, and the
    newest one at most every `interval` seconds in between.

    Each frame holds both replies in full, so a skipped frame loses nothing. A fast model (the
    built-in one writes dozens of tokens a second per pane) would otherwise have the browser
    re-render both chats for every token; on a small machine that left it too busy to take a click
    on Stop.
    """
    last_sent, shown_stops = 0.0, None
    pending: CompareFrame | None = None
    for frame in frames:
        now = time.monotonic()
        if frame.done or frame.stopped != shown_stops or now - last_sent >= interval:
            yield frame
            last_sent, shown_stops, pending = now, frame.stopped, None
        else:
            pending = frame
    if pending is not None:  # a stream that ends without a done frame (it failed) keeps its text
        yield pending


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or ""


def _wire_chat(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    outputs = [*w.conversation(), w.message]
    note_at = outputs.index(w.vote_note)
    running = _RunningTurns()

    def on_send(
        slug: str | None,
        run_id: str | None,
        mode: str,
        text: str,
        left: Messages,
        right: Messages,
        matchup: Matchup | None,
        request: gr.Request,
        *knobs: float,
    ) -> Iterator[tuple]:
        if not (text or "").strip():  # said under the panes; nothing else changes
            skipped = [gr.skip() for _ in outputs]
            skipped[note_at] = "Type a message for both assistants first."
            yield tuple(skipped)
            return
        session = _session(request)
        stops = running.begin(session)
        try:
            frames = compare_stream(
                services, slug, run_id, mode, text, left, right, matchup, _settings(*knobs), stops
            )
            for frame in paced(frames):
                yield (*_frame_outputs(frame, mode), "")  # the box empties once the message is sent
        finally:
            running.end(session, stops)

    inputs = [brand, w.run, w.mode, w.message, w.left, w.right, w.matchup, *w.settings]
    for trigger in (w.send.click, w.message.submit):
        trigger(
            shown_in(on_send, outputs=len(outputs), at=note_at),
            inputs,
            outputs,
            # One model answers at a time; a second chat waits its turn in the queue.
            concurrency_id="chat-engine",
            concurrency_limit=1,
            show_progress="minimal",
        )
    for side, button in zip(SIDES, w.stops, strict=True):
        # Not in the chat's queue: a Stop must get through while the reply streams.
        button.click(_stop_handler(running, side), None, button, concurrency_limit=None)
    resets = (w.clear.click, w.mode.change, w.run.change, w.left_chat.clear, w.right_chat.clear)
    for trigger in resets:
        trigger(partial(_frame_outputs, None), w.mode, w.conversation(), show_progress="hidden")


def _stop_handler(running: _RunningTurns, side: str) -> Callable[..., dict]:
    def on_stop(request: gr.Request) -> dict:
        running.stop(_session(request), side)
        return gr.update(interactive=False)

    return on_stop


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
        button.click(
            shown_in(partial(on_vote, verdict), outputs=len(outputs), at=3), inputs, outputs
        )


def model_note(services: Services, run_id: str | None) -> str:
    """The note on the built-in preview model for a run trained on it ("" otherwise)."""
    if not run_id:
        return ""
    run = get_run(services.workspace, run_id.removeprefix(PREVIEW))
    if not is_preview_sized(run.base_model):
        return ""
    return preview_note_html()


def warm_up_note(state: WarmUp) -> str:
    """What the tab says while the chat model loads, or after loading failed ("" otherwise)."""
    if state.state == "warming":
        return (
            f"⏳ Getting the chat models ready for {state.what}. Your first message is answered "
            "as soon as they are."
        )
    if state.state == "failed":
        return f"The chat model for {state.what} could not be loaded: {state.error}"
    return ""


def _wire_warm_up(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    def on_tick() -> tuple:
        state = services.warm_up_state
        note = warm_up_note(state)
        return gr.update(value=note, visible=bool(note)), gr.Timer(active=state.state == "warming")

    def on_run(slug: str | None, run_id: str | None) -> tuple:
        """A run chosen (or the brand's newest, on a brand change): its length cap, warmed."""
        if not slug or not run_id or run_id.startswith(PREVIEW):  # a preview loads on request
            return gr.skip(), gr.skip(), model_note(services, run_id), gr.skip()
        cap = reply_bounds(services, slug, run_id).max_new_tokens
        services.start_warm_up(slug, run_id)
        length = gr.update(value=min(cap, _MAX_NEW_TOKENS_SLIDER)) if cap else gr.skip()
        return length, gr.Timer(active=True), model_note(services, run_id), gr.skip()

    quiet: dict = {"show_progress": "hidden"}
    w.warm_timer.tick(on_tick, None, [w.warm_note, w.warm_timer], **quiet)
    w.run.change(
        shown_in(on_run, outputs=4, at=3),
        [brand, w.run],
        [w.max_new_tokens, w.warm_timer, w.model_note, w.warm_note],
        **quiet,
    )


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
    shown = shown_in(refresh, outputs=len(outputs), at=3)
    brand.change(shown, brand, outputs, **quiet)
    tab.select(shown, [brand, w.run], outputs, **quiet)
    w.run.change(partial(vote_summary, services), [brand, w.run], w.summary, **quiet)
    _wire_preview_refresh(services, w, brand)


def preview_refresh(services: Services, slug: str | None, current: str | None) -> dict | None:
    """The run picker's new choices while a run trains (a newer checkpoint, a finished run), or
    None when nothing changed that a preview shows."""
    if not slug:
        return None
    setup = compare_setup(services, slug)
    values = [v for _, v in setup.run_choices]
    previewing = bool(current and current.startswith(PREVIEW))
    if not previewing and not any(v.startswith(PREVIEW) for v in values):
        return None
    keep = current if current in values else None
    if keep is None and previewing and current.removeprefix(PREVIEW) in values:
        keep = current.removeprefix(PREVIEW)  # training finished: its final adapter takes over
    return {"choices": setup.run_choices, "value": keep or setup.run_id}


def _wire_preview_refresh(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    def tick(slug: str | None, current: str | None) -> object:
        try:
            found = preview_refresh(services, slug, current)
        except BrandVoiceError:  # a run removed meanwhile: the next tick or a click says more
            return gr.skip()
        return gr.skip() if found is None else gr.update(**found)

    timer = gr.Timer(PREVIEW_REFRESH_S)
    timer.tick(tick, [brand, w.run], w.run, show_progress="hidden")


def _wire_next_version(services: Services, w: _Widgets, brand: gr.Dropdown) -> None:
    """A button that appears once the run has enough votes to train its next version from."""
    with w.panel:
        train = gr.Button("Train the next version from these votes", visible=False)
        started = gr.Markdown()

    def show(slug: str | None, run_id: str | None) -> dict:
        try:
            return gr.update(visible=next_version_ready(services, slug, run_id))
        except BrandVoiceError:  # nothing to offer; the summary line says what is wrong
            return gr.update(visible=False)

    # The summary line changes after every vote and with the run chosen.
    w.summary.change(show, [brand, w.run], train, show_progress="hidden")
    on_train = partial(train_next_version, services)
    train.click(shown_in(on_train, outputs=1, at=0), [brand, w.run], started)


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Compare tab inside `tab`; `brand` is the app-wide brand picker."""
    widgets = _layout()
    _wire_chat(services, widgets, brand)
    _wire_votes(services, widgets, brand)
    _wire_setup(services, widgets, brand, tab)
    _wire_warm_up(services, widgets, brand)
    _wire_next_version(services, widgets, brand)
