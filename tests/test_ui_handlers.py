"""The browser app's handlers, driven directly with a fake chat engine and fake job starter."""

from __future__ import annotations

import json
import random
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chatbot.config import TrainConfig
from chatbot.engine import GenerationSettings
from chatbot.engine.reply_length import reply_lengths
from chatbot.engine.streaming import StopFlag
from chatbot.errors import BrandVoiceError, ConfigError
from chatbot.feedback.votes import list_votes
from chatbot.runs.jobs import Run, get_run
from chatbot.workspace import Workspace
from ui import brand_tab, compare_tab, export_tab, train_tab
from ui.services import EngineSpec, Services

ASSETS = Path(__file__).parent / "assets" / "brand"


# --- fakes --------------------------------------------------------------------------------------


class FakeEngine:
    """Streams "[mode] reply N to <prompt>" word by word; the two sides have different lengths.

    `words` adds that many more words to every reply; a side whose `stop` row is set gets no more.
    """

    def __init__(self, spec: EngineSpec, words: int = 0) -> None:
        self.spec = spec
        self.prompts = (spec.system_prompt, spec.tuned_system_prompt)
        self.adapter_dir: Path | None = None
        self.calls: list[tuple] = []
        self.warm_ups = 0
        self.words = words

    def load_adapter(self, adapter_dir: Path) -> None:
        self.adapter_dir = adapter_dir
        self.warm_up()

    def set_system_prompts(self, system_prompt: str, tuned_system_prompt: str) -> None:
        self.prompts = (system_prompt, tuned_system_prompt)

    def warm_up(self) -> None:
        self.warm_ups += 1

    def reply(self, mode: str, messages: list[dict]) -> str:
        turn = sum(m["role"] == "user" for m in messages)
        extra = " and a few more words" if mode == "tuned" else ""
        return f"[{mode}] reply {turn} to {messages[-1]['content']}{extra}" + " more" * self.words

    def stream_pair(
        self,
        left: list[dict],
        mode_left: str,
        right: list[dict],
        mode_right: str,
        settings: GenerationSettings,
        *,
        stop: StopFlag | None = None,
    ) -> Iterator[tuple[str, str]]:
        self.calls.append((list(left), mode_left, list(right), mode_right, settings))
        stop = stop or StopFlag()
        a = self.reply(mode_left, left).split(" ")
        b = self.reply(mode_right, right).split(" ")
        for i in range(max(len(a), len(b))):
            if stop.is_set(0) and stop.is_set(1):
                return
            yield (
                (" " if i else "") + a[i] if i < len(a) and not stop.is_set(0) else "",
                (" " if i else "") + b[i] if i < len(b) and not stop.is_set(1) else "",
            )


def _insert_run(
    ws: Workspace, slug: str, state: str, *, events: list[dict] = (), adapter: bool = False
) -> str:
    """A run row as the jobs module writes it, with its events file and (optionally) adapter."""
    run_id = time.strftime("%Y%m%d-%H%M%S-") + f"{random.randrange(16**6):06x}"
    run_dir = ws.runs_dir() / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    TrainConfig.from_preset("quick").to_yaml(run_dir / "config.yaml")
    if adapter:
        (run_dir / "adapter").mkdir()
        (run_dir / "adapter" / "adapter_config.json").write_text('{"r": 8}')
        (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    now = time.time()
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, started, run_dir)"
            " VALUES (?, ?, ?, 'quick', 'default', ?, ?, ?)",
            (run_id, slug, state, now, now, str(run_dir)),
        )
    return run_id


class FakeJobs:
    """start_run/cancel_run stand-ins: they record the run in the database like the real ones."""

    def __init__(self) -> None:
        self.started: list[tuple] = []

    def start_run(self, ws: Workspace, brand: str, config: TrainConfig, *, preset: str = "") -> Run:
        self.started.append((brand, config, preset))
        return get_run(ws, _insert_run(ws, brand, "running"))

    def cancel_run(self, ws: Workspace, run_id: str) -> Run:
        with ws.db() as con:
            con.execute(
                "UPDATE runs SET state='cancelled', finished=? WHERE id=?", (time.time(), run_id)
            )
        return get_run(ws, run_id)


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def engines() -> list[FakeEngine]:
    """Every engine the app built, newest last."""
    return []


@pytest.fixture
def services(tmp_path: Path, jobs: FakeJobs, engines: list[FakeEngine]) -> Services:
    def factory(spec: EngineSpec) -> FakeEngine:
        engines.append(FakeEngine(spec))
        return engines[-1]

    return Services(
        workspace=Workspace.open(tmp_path / "ws"),
        engine_factory=factory,
        start_run=jobs.start_run,
        cancel_run=jobs.cancel_run,
        rng=random.Random(1),
    )


@pytest.fixture
def brand(services: Services) -> str:
    """The test brand, prepared for real from the fixture files."""
    view = brand_tab.prepare_brand(
        services,
        "Lumen Lamps",
        [ASSETS / "conversations.jsonl"],
        ASSETS / "style_guide.md",
    )
    assert view.slug == "lumen-lamps", view.status
    return view.slug


def _settings() -> GenerationSettings:
    return GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3)


# --- Brand tab ----------------------------------------------------------------------------------


def test_prepare_shows_report_pii_preview_and_rules(services: Services, brand: str):
    view = brand_tab.load_brand(services, brand)
    assert "ready to train" in view.status
    stats = dict((row[0], row[1]) for row in view.stats)
    assert stats["Conversations"] == str(len(view.preview))
    assert "Train / held out" in stats
    assert view.preview[0][1] and view.preview[0][2]  # customer message and brand reply
    assert "Shine on, Lumen Lamps" in view.rules_yaml
    assert view.pii  # a summary line, even when nothing was found
    assert brand_tab.brand_choices(services) == [("Lumen Lamps", "lumen-lamps")]


def test_prepare_reports_errors_with_file_and_line(services: Services, tmp_path: Path):
    bad = tmp_path / "chats.jsonl"
    good = (ASSETS / "conversations.jsonl").read_text().splitlines()
    bad.write_text("\n".join([*good[:3], "{not json", *good[3:]]) + "\n")
    view = brand_tab.prepare_brand(services, "Lumen Lamps", [bad], ASSETS / "style_guide.md")
    assert view.slug is None and "not saved" in view.status
    assert any(r[0] == "error" and r[1] == "chats.jsonl" and "4" in r[2] for r in view.findings)
    assert services.workspace.brands() == []


def _uploaded(services: Services, source: Path, name: str | None = None) -> Path:
    """`source` as an upload of the app: in a hash-named folder of the app's upload folder."""
    folder = services.workspace.root / "uploads" / "app-1" / f"{abs(hash(source)):x}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    target.write_bytes(source.read_bytes())
    return target


def test_uploads_are_deleted_once_prepare_has_read_them(services: Services, tmp_path: Path):
    guide_source = ASSETS / "style_guide.md"
    files = [_uploaded(services, ASSETS / "conversations.jsonl")]
    guide = _uploaded(services, guide_source)
    view = brand_tab.prepare_brand(services, "Lumen Lamps", files, guide)
    assert view.slug == "lumen-lamps"
    assert not list((services.workspace.root / "uploads").rglob("*.*"))
    assert (ASSETS / "conversations.jsonl").exists()  # files outside the upload folder stay

    # Prepare that finds errors (nothing written) has read the files too: they go as well.
    bad = tmp_path / "chats.jsonl"
    good = (ASSETS / "conversations.jsonl").read_text().splitlines()
    bad.write_text("\n".join([*good[:3], "{not json", *good[3:]]) + "\n")
    files = [_uploaded(services, bad)]
    view = brand_tab.prepare_brand(services, "Lumen", files, _uploaded(services, guide_source))
    assert view.slug is None and "Add the files again" in view.status
    assert not list((services.workspace.root / "uploads").rglob("*.*"))
    assert guide_source.exists() and bad.exists()


def test_prepare_needs_name_and_files(services: Services):
    with pytest.raises(BrandVoiceError, match="name"):
        brand_tab.prepare_brand(services, " ", [ASSETS / "conversations.jsonl"], None)
    with pytest.raises(BrandVoiceError, match="conversations"):
        brand_tab.prepare_brand(services, "Lumen", [], ASSETS / "style_guide.md")


def test_rules_are_validated_and_saved(services: Services, brand: str):
    view = brand_tab.load_brand(services, brand)
    edited = view.rules_yaml.replace("max_exclamations:", "max_exclamations: 0 #", 1)
    status, saved = brand_tab.save_rules(services, brand, edited)
    assert "Saved" in status and "max_exclamations: 0" in saved
    with pytest.raises(ConfigError, match=r"brand\.yaml[\s\S]*max_exclamations"):
        brand_tab.save_rules(
            services, brand, saved.replace("max_exclamations: 0", "max_exclamations: lots")
        )
    with pytest.raises(ConfigError, match="line"):
        brand_tab.save_rules(services, brand, "name: [unclosed")
    assert "max_exclamations: 0" in (services.workspace.brand_dir(brand) / "brand.yaml").read_text()


# --- Train tab ----------------------------------------------------------------------------------


def test_start_then_cancel(services: Services, brand: str, jobs: FakeJobs):
    view = train_tab.start_training(services, brand, "quick", "")
    [(slug, config, preset)] = jobs.started
    assert (slug, preset) == (brand, "quick")
    assert view.active and not view.can_start and view.run_id
    with pytest.raises(BrandVoiceError, match="still running"):
        train_tab.start_training(services, brand, "quick", "")
    view = train_tab.cancel_training(services, brand, view.run_id)
    assert not view.active and view.can_start
    assert "cancelled" in view.status_html


def test_reload_reattaches_to_the_running_job(services: Services, brand: str):
    _insert_run(services.workspace, brand, "succeeded", adapter=True)
    events = [
        {"state": "training", "step": 2, "total_steps": 10, "loss": 2.5, "eta_s": 80},
        {"state": "evaluating", "step": 4, "total_steps": 10, "eval_loss": 2.2},
        {"state": "training", "step": 5, "total_steps": 10, "loss": 2.0, "epoch": 0.5, "eta_s": 50},
    ]
    running = _insert_run(services.workspace, brand, "running", events=events)
    # A fresh Services over the same folder: nothing carried over from a session.
    fresh = Services(workspace=Workspace.open(services.workspace.root), engine_factory=FakeEngine)
    view = train_tab.train_view(fresh, brand)
    assert view.run_id == running and view.active and not view.can_start
    assert "step 5 of 10" in view.status_html and "50%" in view.status_html
    assert "50s left" in view.status_html
    points = view.loss.dropna()
    assert list(points[points.series == "train"]["step"]) == [2, 5]
    # One held-out point is no curve: not drawn (it would only draw a misleading line).
    assert list(points[points.series == "eval"]["loss"]) == []
    assert sorted(set(view.loss["series"])) == ["eval", "train"]  # the series stays declared
    assert [row[1] for row in view.runs_table] == ["running", "succeeded"]
    assert "Eval loss 2.200" in view.details and "lower is better" in view.details.lower()
    assert "eval loss" not in view.status_html.lower()  # technical figures only in Details


def test_eval_curve_is_drawn_from_three_points():
    events = [{"step": s, "eval_loss": v} for s, v in ((2, 2.4), (4, 2.1))]
    frame = train_tab.loss_frame(events).dropna()
    assert frame[frame.series == "eval"].empty
    frame = train_tab.loss_frame([*events, {"step": 6, "eval_loss": 1.9}]).dropna()
    assert list(frame[frame.series == "eval"]["loss"]) == [2.4, 2.1, 1.9]


def test_train_view_empty_states(services: Services, brand: str):
    assert "Prepare a brand" in train_tab.train_view(services, None).status_html
    view = train_tab.train_view(services, brand)
    assert view.run_id is None and view.can_start and "No training runs" in view.status_html


# --- Compare tab --------------------------------------------------------------------------------


def _stream(
    services: Services,
    brand: str,
    run_id: str | None,
    mode: str,
    text: str,
    left: list[dict] | None = None,
    right: list[dict] | None = None,
    matchup: compare_tab.Matchup | None = None,
) -> list[compare_tab.CompareFrame]:
    return list(
        compare_tab.compare_stream(
            services, brand, run_id, mode, text, left, right, matchup, _settings()
        )
    )


def test_compare_streams_both_panes_at_once(services: Services, brand: str, engines: list):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    frames = _stream(services, brand, run_id, "base_vs_tuned", "My shade is dented")
    last = frames[-1]
    assert last.done and last.matchup.awaiting_vote
    assert last.left[-1]["content"] == "[base] reply 1 to My shade is dented"
    assert last.right[-1]["content"].startswith("[tuned] reply 1")
    # Both panes grow in the same frames: they stream together, not one after the other.
    partial = [f for f in frames[1:-1] if f.left[-1]["content"] and f.right[-1]["content"]]
    assert len(partial) >= 3
    assert len(partial[0].left[-1]["content"]) < len(last.left[-1]["content"])
    # The engine got the brand's system prompt and the run's adapter.
    [engine] = engines
    assert engine.adapter_dir == services.workspace.runs_dir() / run_id / "adapter"
    assert "Lumen Lamps" in engine.spec.system_prompt and engine.spec.base_model == "default"
    assert engine.spec.quantization == "nf4"
    # A follow-up continues each pane's own history.
    more = _stream(
        services, brand, run_id, "base_vs_tuned", "Thanks", last.left, last.right, last.matchup
    )
    assert more[-1].left[-1]["content"] == "[base] reply 2 to Thanks"
    assert len(more[-1].right) == 4
    assert len(engines) == 1  # the model stays loaded between messages


def test_blind_reveal_matches_what_was_shown(services: Services, brand: str):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    sides = set()
    for _ in range(6):
        last = _stream(services, brand, run_id, "blind", "Which bulb?")[-1]
        assert compare_tab.pane_labels(last.matchup, "blind") == ("Assistant A", "Assistant B")
        outcome = compare_tab.cast_vote(
            services, brand, "left", last.matchup, last.left, last.right
        )
        shown_left = last.left[-1]["content"].split("]")[0].strip("[")
        assert outcome.matchup.left == shown_left == outcome.vote.left_system
        expected = compare_tab.SYSTEM_NAMES[shown_left]
        assert f"A was **{expected}**" in outcome.reveal
        assert expected in compare_tab.pane_labels(outcome.matchup, "blind")[0]
        sides.add(shown_left)
    assert sides == {"prompted", "tuned"}  # the sides really are shuffled


def test_vote_row_holds_every_field(services: Services, brand: str):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    first = _stream(services, brand, run_id, "prompted_vs_tuned", "Hello")[-1]
    last = _stream(
        services,
        brand,
        run_id,
        "prompted_vs_tuned",
        "Which bulb?",
        first.left,
        first.right,
        first.matchup,
    )[-1]
    outcome = compare_tab.cast_vote(services, brand, "right", last.matchup, last.left, last.right)
    [vote] = list_votes(services.workspace, brand)
    assert vote == outcome.vote
    assert vote.prompt == "Which bulb?"
    assert vote.left_reply == last.left[-1]["content"] and vote.left_reply.startswith("[prompted]")
    assert vote.right_reply == last.right[-1]["content"]
    assert (vote.left_system, vote.right_system, vote.verdict) == ("prompted", "tuned", "right")
    assert vote.mode == "prompted_vs_tuned" and vote.run_id == run_id
    assert vote.adapter == str(services.workspace.runs_dir() / run_id / "adapter")
    assert vote.settings == {**vote.settings, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    assert vote.history["left"][0]["content"] == "Hello" and len(vote.history["right"]) == 2
    with pytest.raises(BrandVoiceError, match="Send a message"):
        compare_tab.cast_vote(services, brand, "tie", outcome.matchup, last.left, last.right)
    assert "won **1**" in compare_tab.vote_summary(services, brand, run_id)


def test_stop_ends_a_reply_and_opens_voting(services: Services, brand: str, engines: list):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    services.warm_up(brand)
    engines[-1].words = 50  # long replies: the base side rambles on
    stops = compare_tab.PaneStops()
    stream = compare_tab.compare_stream(
        services, brand, run_id, "base_vs_tuned", "Hi", None, None, None, _settings(), stops
    )
    frames = [next(stream) for _ in range(4)]
    assert not frames[-1].done and not frames[-1].matchup.awaiting_vote  # no vote mid-reply
    stops.stop("left")  # the Stop button under pane A
    cut = frames[-1].left[-1]["content"]
    frames += list(stream)
    last = frames[-1]
    assert last.done and last.matchup.awaiting_vote and last.stopped == ("left",)
    assert cut and last.left[-1]["content"] == cut  # A wrote nothing after its Stop
    assert last.right[-1]["content"] == engines[-1].reply("tuned", last.right[:-1])  # B finished
    outcome = compare_tab.cast_vote(services, brand, "right", last.matchup, last.left, last.right)
    assert outcome.vote.left_reply == cut and outcome.vote.settings["stopped"] == ["left"]
    # Stopping both sides ends the turn at once, and voting opens too.
    stops = compare_tab.PaneStops()
    stream = compare_tab.compare_stream(
        services, brand, run_id, "base_vs_tuned", "Again", None, None, None, _settings(), stops
    )
    next(stream), next(stream)
    stops.stop("left")
    stops.stop("right")
    rest = list(stream)
    assert len(rest) <= 2 and rest[-1].done and rest[-1].stopped == ("left", "right")
    with pytest.raises(BrandVoiceError, match="Unknown pane"):
        stops.stop("middle")


def test_warm_up_loads_the_newest_adapter_before_the_first_message(
    services: Services, brand: str, engines: list
):
    _insert_run(services.workspace, brand, "succeeded", adapter=True)
    newest = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    state = services.warm_up()  # as `brandvoice ui` does at start-up, for the first brand
    assert state.state == "ready" and newest in state.what
    [engine] = engines
    assert engine.adapter_dir == services.workspace.runs_dir() / newest / "adapter"
    assert engine.warm_ups == 1 and not engine.calls
    assert services.start_warm_up(brand, newest) is None  # already loaded: nothing to do
    _stream(services, brand, newest, "base_vs_tuned", "Hi")
    assert engines == [engine] and engine.warm_ups == 1  # the message found it loaded and warm


def test_a_message_sent_while_warming_up_waits_for_it(
    services: Services, brand: str, engines: list
):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    loading = threading.Event()
    release = threading.Event()
    plain_factory = services.engine_factory

    def slow_factory(spec: EngineSpec) -> FakeEngine:
        loading.set()
        assert release.wait(timeout=30)
        return plain_factory(spec)

    services.engine_factory = slow_factory
    warming = services.start_warm_up()
    assert warming is not None and loading.wait(timeout=30)
    assert services.warm_up_state.state == "warming"
    assert "Getting the chat models ready" in compare_tab.warm_up_note(services.warm_up_state)
    assert services.start_warm_up() is None  # the same model is already on its way
    frames: list = []
    sender = threading.Thread(
        target=lambda: frames.extend(_stream(services, brand, run_id, "base_vs_tuned", "Hi"))
    )
    sender.start()
    time.sleep(0.2)
    assert len(frames) <= 1 and not engines  # the message waits; it does not load again
    release.set()
    warming.join(timeout=30)
    sender.join(timeout=30)
    assert len(engines) == 1 and frames[-1].done
    assert services.warm_up_state.state == "ready"
    assert compare_tab.warm_up_note(services.warm_up_state) == ""


def test_a_failed_warm_up_says_so(services: Services, brand: str):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)

    def broken(spec: EngineSpec) -> FakeEngine:
        raise BrandVoiceError("the model folder is empty")

    services.engine_factory = broken
    state = services.warm_up(brand, run_id)
    assert state.state == "failed"
    assert "could not be loaded: the model folder is empty" in compare_tab.warm_up_note(state)
    # A brand.yaml broken by hand does not keep the app from starting; the note names the file.
    (services.workspace.brand_dir(brand) / "brand.yaml").write_text("name: [unclosed\n")
    assert services.start_warm_up() is None
    assert services.warm_up_state.state == "failed"
    assert "brand.yaml" in compare_tab.warm_up_note(services.warm_up_state)


def test_another_brand_on_the_same_model_switches_prompts_not_models(
    services: Services, brand: str, engines: list
):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    services.warm_up()
    spec = EngineSpec.for_run(services.workspace, run_id)
    other = replace(spec, system_prompt="You are Kettlebird.", tuned_system_prompt="")
    engine = services.engine(other, None)
    assert engines == [engine] and engine.prompts == ("You are Kettlebird.", "")
    assert engine.warm_ups == 2  # the new prompts' prefixes are computed now, not on a message
    assert services.engine(replace(spec, quantization="none"), None) is not engine


def test_every_side_ends_after_the_brand_signoff(services: Services, brand: str, engines: list):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    _stream(services, brand, run_id, "prompted_vs_tuned", "Hi")
    settings = engines[-1].calls[-1][4]
    assert settings.signoff == "Shine on, Lumen Lamps"  # from the style guide, via brand.yaml
    assert settings.max_new_tokens == _settings().max_new_tokens  # the slider's value is kept


def test_the_length_cap_comes_from_the_brand_replies(
    services: Services, brand: str, tiny_model_dir: Path
):
    from transformers import AutoTokenizer

    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    assert compare_tab.reply_bounds(services, brand, run_id).max_new_tokens is None  # no tokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    asked: list[str] = []
    services.tokenizer = lambda base: asked.append(base) or tokenizer
    bounds = compare_tab.reply_bounds(services, brand, run_id)
    expected = reply_lengths(services.workspace.brand_dir(brand), tokenizer)
    assert expected is not None and bounds.max_new_tokens == expected.max_new_tokens
    assert asked == ["default"]  # the run's base model counts the tokens
    assert bounds.signoff == "Shine on, Lumen Lamps"


def test_panes_stop_and_vote_buttons_share_their_letters(services: Services, brand: str):
    a, b = compare_tab.pane_labels(None, "base_vs_tuned")
    assert (a, b) == ("A — Base model", "B — Tuned")
    assert compare_tab.STOP_BUTTONS == {"left": "Stop A", "right": "Stop B"}
    assert (compare_tab.VERDICT_BUTTONS["left"], compare_tab.VERDICT_BUTTONS["right"]) == (
        "A is better",
        "B is better",
    )
    assert compare_tab.pane_labels(None, "blind") == ("Assistant A", "Assistant B")


def test_compare_needs_a_trained_run(services: Services, brand: str):
    setup = compare_tab.compare_setup(services, brand)
    assert setup.run_id is None and "No tuned model" in setup.notice
    with pytest.raises(BrandVoiceError, match="Train"):
        _stream(services, brand, None, "base_vs_tuned", "hi")


# --- Export tab ---------------------------------------------------------------------------------


def test_export_zip_holds_only_adapter_files(services: Services, brand: str):
    run_id = _insert_run(services.workspace, brand, "succeeded", adapter=True)
    adapter = services.workspace.runs_dir() / run_id / "adapter"
    (adapter / "tokenizer.json").write_text("{}")
    (adapter / "optimizer.pt").write_bytes(b"x")
    (adapter / "README.md").write_text("card")
    (adapter / "checkpoint-5").mkdir()
    view = export_tab.export_choices(services, brand)
    assert view.run_id == run_id
    path, info = export_tab.export_adapter(services, run_id)
    assert path.parent == services.exports_dir and run_id in info
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
            "tokenizer.json",
        ]
        assert zf.read("adapter_config.json") == b'{"r": 8}'
    assert not list(services.exports_dir.glob(".*.tmp"))


def test_export_refuses_a_run_without_adapter(services: Services, brand: str):
    run_id = _insert_run(services.workspace, brand, "failed")
    assert export_tab.export_choices(services, brand).run_id is None
    with pytest.raises(BrandVoiceError, match="no adapter"):
        export_tab.export_adapter(services, run_id)
