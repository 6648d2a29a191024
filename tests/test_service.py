"""The application layer (`chatbot.service`) and the commands over it: `train`, `resume`, `chat`
and `serve` run end to end on the tiny model through `chatbot.cli.main`."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
import torch
from check_support import BRAND, SLUG, prepared_brand, record_run
from safetensors.torch import load_file

from chatbot import service
from chatbot.cli.commands import main
from chatbot.errors import BrandVoiceError
from chatbot.training.run_files import RunFolder
from chatbot.workspace import Workspace

# tiny_config's settings, as `--set` gives them
_TINY = [
    "epochs=1",
    "batch_size=2",
    "gradient_accumulation=1",
    "max_length=256",
    "learning_rate=3e-3",
    "warmup_ratio=0.0",
    "checkpoint_every=100",
    "early_stopping_patience=0",
]


def _adapter(run_dir: Path, config: bool = True) -> None:
    (run_dir / "adapter").mkdir()
    if config:
        (run_dir / "adapter" / "adapter_config.json").write_text('{"r": 8}')


def test_a_run_folder_names_each_file_once(tmp_path: Path):
    files = RunFolder(tmp_path)
    assert files.adapter == tmp_path / "adapter"
    assert files.config == tmp_path / "config.yaml"
    assert files.events == tmp_path / "events.jsonl"
    assert files.metrics == tmp_path / "metrics.json"
    assert files.system_prompt == tmp_path / "system_prompt.txt"
    assert files.checkpoints == tmp_path / "checkpoints"
    assert files.preview == tmp_path / "preview"
    assert files.read_system_prompt() is None and not files.has_adapter()
    files.system_prompt.write_text("Be brief.")
    _adapter(tmp_path)
    assert files.read_system_prompt() == "Be brief." and files.has_adapter()


def test_usable_runs_have_one_definition(tmp_path: Path):
    ws = prepared_brand(tmp_path / "ws")
    model = tmp_path / "model"
    _adapter(record_run(ws, model, "20250101-000001-aaaaaa", adapter=False))
    _adapter(record_run(ws, model, "20250101-000002-bbbbbb", adapter=False), config=False)
    _adapter(record_run(ws, model, "20250101-000003-cccccc", "failed", adapter=False))
    record_run(ws, model, "20250101-000004-dddddd", adapter=False)

    usable = service.usable_runs(ws, BRAND)
    assert [r.id for r in usable] == ["20250101-000001-aaaaaa"]
    assert service.latest_usable_run(ws, BRAND).id == usable[0].id
    assert [r.id for r in service.list_runs(ws, SLUG) if r.has_adapter] == [usable[0].id]
    setup = service.run_setup(ws, brand=BRAND)
    assert setup.run_id == usable[0].id and setup.adapter_dir == usable[0].folder.adapter
    for unusable in ("20250101-000002", "20250101-000003", "20250101-000004"):
        with pytest.raises(BrandVoiceError, match="no finished adapter"):
            service.run_setup(ws, unusable)


def test_no_finished_run_is_said_without_flags_and_the_cli_adds_them(tmp_path: Path, capsys):
    ws = prepared_brand(tmp_path)
    with pytest.raises(BrandVoiceError, match="no finished training run yet") as refused:
        service.latest_usable_run(ws, BRAND)
    assert "--" not in str(refused.value) and refused.value.option == "train"

    assert main(["chat", "--workspace", str(tmp_path), "--brand", BRAND]) == 2
    err = capsys.readouterr().err
    assert "train one first" in err and "brandvoice train --brand NAME" in err
    assert "Traceback" not in err


# -- the commands, end to end on the tiny model ----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workspace with one run trained by `brandvoice train` (followed to its end)."""
    root = tmp_path_factory.mktemp("service")
    prepared_brand(root)
    argv = ["train", "--workspace", str(root), "--brand", BRAND]
    argv += ["--base-model", str(tiny_model_dir)]
    for item in _TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    (run,) = service.list_runs(Workspace.open(root))
    return root, run.id


def test_train_leaves_a_finished_run_folder_with_trained_lora(trained: tuple[Path, str]):
    root, run_id = trained
    ws = service.open_workspace(root)
    run = service.get_run(ws, run_id)
    assert run.state == "succeeded" and run.has_adapter
    assert [r.id for r in service.usable_runs(ws, BRAND)] == [run_id]
    files = run.folder
    for path in (files.config, files.events, files.metrics, files.system_prompt):
        assert path.is_file(), path
    assert files.read_config().epochs == 1
    assert service.run_events(run)[-1]["state"] == "succeeded"
    weights = load_file(str(files.adapter / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    # LoRA's B matrices start at zero: training moved them.
    assert lora_b and any(torch.count_nonzero(t) > 0 for t in lora_b)


def test_resume_trains_a_failed_run_to_the_end(trained: tuple[Path, str], capsys):
    root, run_id = trained
    ws = service.open_workspace(root)
    done = service.get_run(ws, run_id)
    failed_id = "20250101-000000-f00000"
    run_dir = ws.runs_dir() / failed_id
    run_dir.mkdir()
    shutil.copy(done.folder.config, RunFolder(run_dir).config)
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, finished, error, "
            "run_dir) VALUES (?, ?, 'failed', 'quick', ?, ?, ?, 'stopped', ?)",
            (failed_id, SLUG, done.base_model, time.time(), time.time(), str(run_dir)),
        )
    capsys.readouterr()
    assert main(["resume", "--workspace", str(root), failed_id]) == 0
    assert f"Run {failed_id} resumed" in capsys.readouterr().out
    resumed = service.get_run(ws, failed_id)
    assert resumed.state == "succeeded" and resumed.has_adapter and resumed.error is None


def test_chat_answers_in_the_terminal(trained: tuple[Path, str], monkeypatch, capsys):
    root, run_id = trained
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\n/quit\n"))
    argv = ["chat", "--workspace", str(root), "--run", run_id, "--max-new-tokens", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"with the adapter of run {run_id}" in out
    assert "Chatting with the tuned model" in out and out.count("you> ") == 2


def test_serve_answers_an_openai_request(trained: tuple[Path, str], monkeypatch, capsys):
    from starlette.testclient import TestClient

    root, _ = trained
    newest = service.latest_usable_run(service.open_workspace(root), BRAND).id
    answers: list[dict] = []

    def fake_run(app, host: str, port: int) -> None:  # noqa: ANN001 - instead of uvicorn.run
        with TestClient(app, base_url=f"http://{host}:{port}") as client:
            body = {"model": SLUG, "messages": [{"role": "user", "content": "Hi"}]}
            response = client.post("/v1/chat/completions", json={**body, "max_tokens": 4})
            assert response.status_code == 200, response.text
            answers.append(response.json())

    monkeypatch.setattr("uvicorn.run", fake_run)
    assert main(["serve", "--workspace", str(root), "--brand", BRAND, "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert f"adapter of run {newest}" in out and f"(model '{SLUG}')" in out
    (answer,) = answers
    assert answer["model"] == SLUG
    assert isinstance(answer["choices"][0]["message"]["content"], str)


def test_a_brand_folder_is_read_and_its_rules_saved_through_the_layer(tmp_path: Path):
    from chatbot.errors import ConfigError

    ws = prepared_brand(tmp_path)
    saved = service.brand_yaml(ws, SLUG)
    assert service.brand_profile(ws, BRAND).name == BRAND
    assert service.brand_report(ws, SLUG)["brand"] == BRAND
    rows = service.brand_conversations(ws, SLUG, limit=3)
    assert len(rows) == 3 and all(r["messages"] for r in rows)
    with pytest.raises(ConfigError, match="brand.yaml"):
        service.save_brand_yaml(ws, SLUG, "name: [unclosed")
    assert service.brand_yaml(ws, SLUG) == saved  # a refused edit leaves the file as it was
    edited = saved.replace(f"name: {BRAND}", "name: Lumen Lamps Ltd")
    assert service.save_brand_yaml(ws, SLUG, edited).name == "Lumen Lamps Ltd"
    assert service.brand_profile(ws, SLUG).name == "Lumen Lamps Ltd"


def test_library_names_are_reexported_on_first_use():
    from chatbot.scorecard import Scorecard, write_report

    assert service.Scorecard is Scorecard and service.write_scorecard_report is write_report
    with pytest.raises(AttributeError):
        service.no_such_name  # noqa: B018


def test_a_profile_edit_and_the_style_guide_go_through_the_layer(tmp_path: Path):
    from dataclasses import replace

    ws = prepared_brand(tmp_path)
    guide = service.brand_style_guide(ws, SLUG)
    assert guide.text.strip() and guide.source == "style_guide.md"
    profile = service.brand_profile(ws, SLUG)
    saved = service.save_brand_profile(ws, SLUG, replace(profile, system_prompt="Be warm."))
    assert saved == service.brand_yaml(ws, SLUG) and "Be warm." in saved
    assert service.brand_profile(ws, SLUG).system_prompt == "Be warm."
    with pytest.raises(BrandVoiceError, match="not in this workspace"):
        service.save_brand_profile(ws, "gone", profile)


def test_a_run_s_adapter_config_and_scorecard_files(tmp_path: Path):
    ws = prepared_brand(tmp_path / "ws")
    run_dir = record_run(ws, tmp_path / "model", "20250101-000001-aaaaaa", adapter=False)
    _adapter(run_dir)
    run = service.get_run(ws, "20250101-000001")
    assert service.adapter_config(run) == {"r": 8}
    assert not service.has_scorecard(run.run_dir)
    assert service.scorecard_html(run.run_dir) == run_dir / "scorecard.html"
    (run_dir / "scorecard.json").write_text("{}")
    assert service.has_scorecard(run.run_dir)


def test_a_run_from_votes_is_queued_by_the_starter_given(tmp_path: Path):
    from dataclasses import replace

    from chatbot.feedback.votes import Vote, record_vote

    ws = prepared_brand(tmp_path / "ws")
    run_dir = record_run(ws, tmp_path / "model", "20250101-000001-aaaaaa", adapter=False)
    _adapter(run_dir)
    for i in range(service.MIN_VOTES + 1):
        vote = Vote(
            SLUG, "base_vs_tuned", f"Question {i}", "base", "tuned", "no.", "Happy!", "right"
        )
        record_vote(ws, replace(vote, run_id="20250101-000001-aaaaaa"))
    started: list[tuple[str, str]] = []

    def start(_ws: Workspace, brand: str, config: object, *, preset: str = "") -> object:
        started.append((brand, preset))
        return service.get_run(ws, "20250101-000001")

    service.start_from_votes(ws, BRAND, "dpo", start=start)
    assert started == [(SLUG, "from votes (DPO)")]
