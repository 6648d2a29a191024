"""The Scorecard tab's handlers with a stand-in for `evaluate`, and the tab's place in the app."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import gradio as gr
import pytest

from chatbot.errors import BrandVoiceError
from chatbot.scorecard import Scorecard
from chatbot.workspace import Workspace
from ui import Services, build_app
from ui.scorecard_tab import run_scorecard, saved_scorecard, scorecard_setup

ASSETS = Path(__file__).parent / "assets" / "scorecard"
RUN_ID = "20260102-090000-0a1b2c"


def _no_engine(*_args: object) -> object:
    raise AssertionError("the scorecard tab loads no chat engine")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    ws = Workspace.open(tmp_path / "ws")
    ws.brand_dir("kettlebird").mkdir(parents=True)
    (ws.brand_dir("kettlebird") / "conversations.jsonl").write_text("")
    return Services(workspace=ws, engine_factory=_no_engine)


def _add_run(ws: Workspace, run_id: str = RUN_ID, state: str = "succeeded") -> Path:
    run_dir = ws.runs_dir() / run_id
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, run_dir) "
            "VALUES (?, 'kettlebird', ?, 'quick', 'default', ?, ?)",
            (run_id, state, time.time(), str(run_dir)),
        )
    return run_dir


def _fake_evaluate(calls: list) -> object:
    def evaluate(ws: Workspace, run_id: str, **kwargs: object) -> Scorecard:
        calls.append((run_id, kwargs))
        progress = kwargs["progress"]
        progress("replies", 1, 2)  # type: ignore[operator]
        data = json.loads((ASSETS / "scorecard.json").read_text(encoding="utf-8"))
        return dataclasses.replace(Scorecard.from_dict(data), run_id=run_id)

    return evaluate


def test_setup_explains_what_is_missing(services: Services) -> None:
    assert "Prepare and train a brand first" in scorecard_setup(services, None).notice
    assert "No tuned model yet" in scorecard_setup(services, "kettlebird").notice
    _add_run(services.workspace, "20260101-000000-aaaaaa", state="failed")
    assert scorecard_setup(services, "kettlebird").run_choices == []
    _add_run(services.workspace)
    setup = scorecard_setup(services, "kettlebird")
    assert setup.run_id == RUN_ID and [r for _, r in setup.run_choices] == [RUN_ID]


def test_running_a_scorecard_writes_the_report_and_shows_it(services: Services) -> None:
    run_dir = _add_run(services.workspace)
    assert "no scorecard yet" in saved_scorecard(services, RUN_ID).status
    calls: list = []
    steps: list = []
    view = run_scorecard(
        services,
        RUN_ID,
        12,
        64,
        lambda *step: steps.append(step),
        evaluate_fn=_fake_evaluate(calls),  # type: ignore[arg-type]
    )
    ((run_id, kwargs),) = calls
    assert run_id == RUN_ID and (kwargs["max_prompts"], kwargs["max_new_tokens"]) == (12, 64)
    assert steps == [("replies", 1, 2)]
    assert (run_dir / "scorecard.json").is_file() and (run_dir / "scorecard.html").is_file()
    # The download is a copy in exports/, the only folder the app serves.
    assert view.download == services.exports_dir / f"kettlebird-{RUN_ID}-scorecard.html"
    assert view.download.read_bytes() == (run_dir / "scorecard.html").read_bytes()
    assert view.header[0] == "Measure" and view.rows[0][0].startswith("NLL")
    assert "<svg" in view.charts and "&lt;script&gt;" in view.examples
    assert "<script>" not in view.examples and "&lt;script&gt;" not in view.headlines
    assert "2 customer messages" in view.status

    # Coming back shows the saved scorecard, and the run is marked as scored.
    again = saved_scorecard(services, RUN_ID)
    assert again.rows == view.rows and again.download == view.download
    assert scorecard_setup(services, "kettlebird").run_choices[0][0].endswith("· scored")


def test_a_run_must_be_chosen(services: Services) -> None:
    with pytest.raises(BrandVoiceError, match="Choose a finished run"):
        run_scorecard(services, None, 4, 16)


def test_the_app_has_a_scorecard_tab(services: Services) -> None:
    app = build_app(services)
    tabs = [b.label for b in app.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs.index("Scorecard") == tabs.index("Compare") + 1
