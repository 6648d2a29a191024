"""What a marketer meets in the app, driven through the handlers with fakes: problems shown next
to their cause (never as "Error" badges), the rules form, the quick scorecard after a run, the
export estimate and the going-live steps."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest

from chatbot.brand import BrandProfile
from chatbot.errors import BrandVoiceError, ConfigError
from chatbot.scorecard import Scorecard, ScorecardSettings
from chatbot.service import remember_export_time
from chatbot.workspace import Workspace
from ui import brand_tab, build_app, export_tab, rules_form, scorecard_tab, train_tab
from ui.errors import GENERIC_MESSAGE, plain_words, shown_in
from ui.rules_form import RulesForm
from ui.services import QUICK_SCORECARD, Services

ASSETS = Path(__file__).parent / "assets"
SKIP = gr.skip()


def _no_engine(*_args: object) -> object:
    raise AssertionError("no chat engine is needed here")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services(workspace=Workspace.open(tmp_path / "ws"), engine_factory=_no_engine)


@pytest.fixture
def brand(services: Services) -> str:
    """The test brand prepared for real, without a style guide."""
    files = [ASSETS / "brand" / "conversations.jsonl", ASSETS / "brand" / "tickets.csv"]
    view = brand_tab.prepare_brand(services, "Lumen Lamps", files, None)
    assert view.slug == "lumen-lamps", view.status
    return view.slug


def _run(ws: Workspace, slug: str, state: str = "succeeded", base: str = "default") -> str:
    run_id = time.strftime("%Y%m%d-%H%M%S-") + f"{random.randrange(16**6):06x}"
    run_dir = ws.runs_dir() / run_id
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    (run_dir / "events.jsonl").write_text("")
    now = time.time()
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, started, finished,"
            " run_dir) VALUES (?, ?, ?, 'quick', ?, ?, ?, ?, ?)",
            (run_id, slug, state, base, now, now, now, str(run_dir)),
        )
    return run_id


# --- problems next to their cause ---------------------------------------------------------------


def test_a_problem_becomes_a_message_in_one_output_and_the_rest_stay(caplog):
    def bad(*_args: object) -> tuple:
        raise BrandVoiceError("chats.jsonl: looks like a binary file (NUL characters), not text")

    values = shown_in(bad, outputs=4, at=2)()
    assert [v for i, v in enumerate(values) if i != 2] == [SKIP] * 3
    assert "isn't text" in values[2] and "NUL" not in values[2] and "chats.jsonl" in values[2]
    assert 'role="alert"' in values[2]

    def bug() -> str:
        raise KeyError("internal detail")

    message = shown_in(bug, outputs=1, at=0)()
    assert GENERIC_MESSAGE in message and "internal detail" not in message
    assert "internal detail" in caplog.text

    def stream() -> Iterator[tuple]:
        yield ("first", "shown")
        raise BrandVoiceError("stopped <here>")

    frames = list(shown_in(stream, outputs=2, at=1)())
    assert frames[0] == ("first", "shown")
    assert frames[1][0] == SKIP and "stopped &lt;here&gt;" in frames[1][1]


def test_developer_words_are_translated():
    docx = (
        "guide.docx: is not a valid .docx: the zip archive is damaged (BadZipFile: File is not a "
        "zip file); open it in Word and save it again"
    )
    assert "BadZipFile" not in plain_words(docx) and "Word" in plain_words(docx)
    yaml_problem = "line 4, column 10: mapping values are not allowed here"
    assert "quotes" in plain_words(yaml_problem) and "line 4" in plain_words(yaml_problem)


def test_a_binary_upload_is_named_with_its_fix(services: Services, tmp_path: Path):
    broken = tmp_path / "chats.jsonl"
    broken.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(BrandVoiceError) as err:
        brand_tab.prepare_brand(services, "Lumen", [broken], None)
    said = plain_words(str(err.value))
    assert "chats.jsonl" in said and "isn't text" in said and "CSV or JSON Lines" in said


def test_skip_broken_records_says_what_still_blocks(services: Services, tmp_path: Path):
    good = (ASSETS / "brand" / "conversations.jsonl").read_text().splitlines()[:8]
    chats = tmp_path / "chats.jsonl"
    chats.write_text("\n".join([*good[:4], "{broken", *good[4:], "{broken too"]) + "\n")
    plain = brand_tab.prepare_brand(services, "Lumen", [chats], None)
    assert "tick *Skip broken records*" in plain.status
    skipped = brand_tab.prepare_brand(services, "Lumen", [chats], None, skip_invalid=True)
    assert skipped.slug is None
    assert "tick" not in skipped.status and "Skip broken records* is on" in skipped.status
    assert "at least 10" in skipped.status
    assert {row[0] for row in skipped.findings if row[1] == "chats.jsonl"} == {"left out"}


def test_a_trained_brand_does_not_say_ready_to_train(services: Services, brand: str):
    view = brand_tab.load_brand(services, brand)
    assert "ready to train" in view.status and brand_tab.upload_heading(view).startswith(
        "#### Update Lumen Lamps"
    )
    assert brand_tab.upload_heading(brand_tab.BrandView()) == "#### New brand"
    _run(services.workspace, brand)
    view = brand_tab.load_brand(services, brand)
    assert "ready to train" not in view.status and "has a tuned voice" in view.status


def test_a_bad_yaml_save_leaves_the_editor_and_says_where(services: Services, brand: str):
    app = build_app(services)
    [save] = [f for f in app.fns.values() if getattr(f.fn, "__name__", "") == "save_text"]
    before = (services.workspace.brand_dir(brand) / "brand.yaml").read_text()
    values = save.fn(brand, "name: Lumen\nrules:\n  banned_phrases: []\n  bad: a: b\n")
    assert "line 4" in values[0] and "quotes" in values[0]
    assert list(values[1:]) == [SKIP] * (len(values) - 1)  # the editor keeps the user's text
    assert (services.workspace.brand_dir(brand) / "brand.yaml").read_text() == before


# --- the rules form -----------------------------------------------------------------------------


def test_the_form_round_trips_the_rules(services: Services, brand: str):
    profile = BrandProfile.load(services.workspace.brand_dir(brand) / "brand.yaml")
    form = rules_form.form_of(profile.rules)
    again = rules_form.rules_of(form, profile.rules)
    assert again == profile.rules


def test_the_preview_follows_every_field(services: Services, brand: str):
    form = RulesForm(
        banned="no worries\nASAP",
        preferred="lamp shade, not lampshade",
        greeting="Hi friend,",
        signoff="Shine on!",
        emoji_policy="limit",
        emoji_max=1,
        emoji_allowed="💡",
        exclamations=0,
        max_words=80,
    )
    prompt = rules_form.preview_prompt(services, brand, form)
    for said in (
        'Never say "no worries" or "ASAP".',
        'Say "lamp shade", not "lampshade".',
        'Start every reply with "Hi friend,"',
        'End every reply with "Shine on!"',
        "only 💡",
        "Use no exclamation marks.",
        "under 80 words",
    ):
        assert said in prompt
    none = dataclasses.replace(form, emoji_policy="none")
    assert "Use no emoji." in rules_form.preview_prompt(services, brand, none)


def test_saving_the_form_checks_every_field_and_keeps_the_file(services: Services, brand: str):
    path = services.workspace.brand_dir(brand) / "brand.yaml"
    before = path.read_text()
    bad = RulesForm(preferred="lamp shade", emoji_policy="limit", max_words=2.5)
    with pytest.raises(ConfigError) as err:
        rules_form.save_form(services, brand, bad)
    said = str(err.value)
    assert "Say this, not that, line 1" in said and "Most words per reply" in said
    assert "Most emoji per reply" in said
    assert path.read_text() == before
    message, saved = rules_form.save_form(
        services, brand, RulesForm(banned="no worries", preferred="lamp shade, not lampshade")
    )
    assert "Saved" in message and "no worries" in saved
    profile = BrandProfile.load(path)
    assert profile.rules.banned_phrases == ["no worries"]
    assert 'Never say "no worries"' in profile.system_prompt  # the prompt follows the rules


# --- no empty tabs ------------------------------------------------------------------------------


def _fake_evaluate(calls: list) -> object:
    def evaluate(ws: Workspace, run_id: str, **kwargs: object) -> Scorecard:
        calls.append((run_id, kwargs))
        data = json.loads((ASSETS / "scorecard" / "scorecard.json").read_text(encoding="utf-8"))
        card = Scorecard.from_dict(data)
        settings = ScorecardSettings(
            max_prompts=int(kwargs["max_prompts"]), max_new_tokens=int(kwargs["max_new_tokens"])
        )
        return dataclasses.replace(card, run_id=run_id, settings=settings, duration_s=30.0)

    return evaluate


def test_a_finished_run_gets_a_quick_scorecard_by_itself(services: Services, brand: str):
    calls: list = []
    services.evaluate = _fake_evaluate(calls)
    run_id = _run(services.workspace, brand)
    view = train_tab.train_view(services, brand, run_id)
    assert "Scorecard" in view.status_html
    worker = services.start_quick_scorecard(run_id, services.workspace.runs_dir() / run_id)
    assert worker is None  # already started by the Train tab, once
    deadline = time.time() + 20
    while services.quick_scorecard(run_id).state == "running" and time.time() < deadline:
        time.sleep(0.05)
    assert services.quick_scorecard(run_id).state == "done"
    [(scored, kwargs)] = calls
    assert scored == run_id and {k: kwargs[k] for k in QUICK_SCORECARD} == QUICK_SCORECARD
    card = scorecard_tab.saved_scorecard(services, run_id)
    assert "Quick scorecard" in card.status and "estimate" in card.status
    assert "Sounds like your brand" in card.plain and "Good:" in card.plain
    assert "NLL" not in card.plain  # technical measures only under Details


def test_the_scorecard_tab_says_a_quick_scorecard_is_coming(services: Services, brand: str):
    services.evaluate = lambda *a, **k: (
        time.sleep(1) or (_ for _ in ()).throw(BrandVoiceError("no model"))
    )
    run_id = _run(services.workspace, brand)
    view = scorecard_tab.saved_scorecard(services, run_id)
    assert view.waiting and "being made" in view.status
    deadline = time.time() + 20
    while services.quick_scorecard(run_id).state == "running" and time.time() < deadline:
        time.sleep(0.05)
    view = scorecard_tab.saved_scorecard(services, run_id)
    assert not view.waiting and "no model" in view.status and "Run full scorecard" in view.status


# --- export -------------------------------------------------------------------------------------


def test_export_says_how_long_before_it_starts(services: Services, brand: str):
    run_id = _run(services.workspace, brand)
    guess = export_tab.export_estimate(services, run_id, "adapter")
    assert "Estimated time" in guess and "about" in guess
    remember_export_time(services.exports_dir, "adapter", 42.0, None)
    guess = export_tab.export_estimate(services, run_id, "adapter")
    assert "42s" in guess and "last export of this kind on this machine" in guess


def test_going_live_names_the_files_the_command_and_the_hardware(services: Services, brand: str):
    run_id = _run(services.workspace, brand)
    steps, command = export_tab.going_live(services, run_id, "adapter")
    assert f"lumen-lamps-{run_id}-adapter.zip" in steps and "system_prompt.txt" in steps
    assert "no GPU needed" in steps  # the built-in model
    assert (
        command.startswith("unzip ") and "vllm serve HuggingFaceTB/SmolLM2-135M-Instruct" in command
    )
    assert "--max-lora-rank 8" in command
    steps, command = export_tab.going_live(services, run_id, "gguf-f16")
    assert "ollama create lumen-lamps -f Modelfile" in command
    assert "preview" in export_tab.model_note(services, run_id)
    strong = _run(services.workspace, brand, base="meta-llama/Llama-3.1-8B-Instruct")
    assert export_tab.model_note(services, strong) == ""
    assert "16–24 GB" in export_tab.going_live(services, strong)[0]


def test_a_finished_run_shows_its_voice_match_not_its_loss(services: Services, brand: str):
    run_id = _run(services.workspace, brand)
    run_dir = services.workspace.runs_dir() / run_id
    (run_dir / "metrics.json").write_text(
        json.dumps({"eval_loss_before": 2.0, "eval_loss_after": 1.0})
    )
    view = train_tab.train_view(services, brand, run_id)
    assert "Voice match: 2.7×" in view.status_html and "picked up the voice" in view.status_html
    assert "loss" not in view.status_html.lower()


def test_the_plain_summary_leads_with_the_verdict(monkeypatch: pytest.MonkeyPatch):
    from chatbot.scorecard import Verdict

    data = json.loads((ASSETS / "scorecard" / "scorecard.json").read_text(encoding="utf-8"))
    card = Scorecard.from_dict(data)
    assert "Worth using" not in scorecard_tab.plain_summary(card)  # no verdict: figures only
    monkeypatch.setattr(scorecard_tab, "verdict", lambda _card: Verdict(True, True, "", []))
    assert "Worth using" in scorecard_tab.plain_summary(card)
    monkeypatch.setattr(scorecard_tab, "verdict", lambda _card: Verdict(False, False, "", []))
    assert "Not better yet" in scorecard_tab.plain_summary(card)


def test_a_scorecard_model_load_takes_turns_with_the_chat_model(services: Services):
    """Two model loads at once can leave one with empty weights: a scorecard's load holds the
    chat engine's lock from its first 'loading model' report to its last, and no longer."""
    seen = []
    with services.one_model_load(lambda *step: seen.append(step)) as report:
        report("loading model", 0, 1)
        assert services._engine_lock.locked()
        report("loading model", 1, 1)
        assert not services._engine_lock.locked()
        report("replies", 1, 2)
    assert seen == [("loading model", 0, 1), ("loading model", 1, 1), ("replies", 1, 2)]
    with pytest.raises(RuntimeError), services.one_model_load() as report:
        report("loading model", 0, 1)
        raise RuntimeError("the load failed")
    assert not services._engine_lock.locked()
