"""The Export tab's handlers: verified export, import, preference data, serving commands."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from export_support import make_adapter, make_brand

from chatbot.errors import BrandVoiceError
from chatbot.export import ExportResult, ReloadCheck
from chatbot.feedback.votes import Vote, record_vote
from chatbot.workspace import Workspace
from ui import build_app, export_tab
from ui.services import Services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    ws = Workspace.open(tmp_path / "ws")
    make_brand(ws)
    return Services(workspace=ws, engine_factory=lambda spec: None)  # type: ignore[arg-type,return-value]


@pytest.fixture(scope="module")
def adapter_zip(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_adapter(tiny_model_dir, tmp_path_factory.mktemp("a") / "adapter")
    archive = folder.parent / "adapter.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, path.name)
    return archive


def test_import_then_export_offers_the_run(
    services: Services, adapter_zip: Path, monkeypatch: pytest.MonkeyPatch
):
    assert export_tab.export_choices(services, "lumen-lamps").run_id is None
    stages: list[tuple] = []
    brand, text = export_tab.import_archive(
        services, "lumen-lamps", str(adapter_zip), lambda *a: stages.append(a)
    )
    view = export_tab.export_choices(services, "lumen-lamps")
    assert brand == "lumen-lamps" and view.run_id and f"`{view.run_id}`" in text
    assert stages[0][0] == "checking" and stages[-1][0] == "extracting"
    serving = export_tab.serving_text(services, view.run_id)
    assert f"brandvoice serve --run {view.run_id}" in serving
    assert "--lora-modules lumen-lamps=ADAPTER_FOLDER --max-lora-rank 8" in serving

    calls = []

    def fake_export(ws, run_id, fmt, out, progress=None):  # noqa: ANN001, ANN202
        calls.append((run_id, fmt, out))
        progress("verifying", 1, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"PK")
        check = ReloadCheck("Hello", [1, 2, 3], "Hi there")
        return ExportResult(out, fmt, run_id, {}, check, None, ["vLLM 0.11: rank too big"])

    monkeypatch.setattr(export_tab, "export_run", fake_export)
    path, info = export_tab.export_package(services, view.run_id, "merged", lambda *a: None)
    assert calls == [(view.run_id, "merged", path)]
    assert path.parent == services.exports_dir and path.name.endswith("-merged.zip")
    assert "checked by loading it" in info and "3 greedy tokens" in info and "⚠ vLLM 0.11" in info
    with pytest.raises(BrandVoiceError, match="Choose a finished run"):
        export_tab.export_package(services, None, "adapter")


def test_a_refused_archive_is_a_readable_error(services: Services, tmp_path: Path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../adapter_config.json", "{}")
    with pytest.raises(BrandVoiceError, match="refused"):
        export_tab.import_archive(services, "lumen-lamps", str(bad))
    with pytest.raises(BrandVoiceError, match="Choose an adapter zip"):
        export_tab.import_archive(services, "lumen-lamps", None)


def test_preference_file_in_the_exports_folder(services: Services):
    record_vote(
        services.workspace,
        Vote("lumen-lamps", "blind", "Hi", "base", "tuned", "Yo.", "Hello!", "right"),
    )
    path, info = export_tab.export_preferences(services, "lumen-lamps", "kto")
    assert path == services.exports_dir / "lumen-lamps-votes-kto.jsonl"
    assert [json.loads(line)["label"] for line in path.read_text().splitlines()] == [False, True]
    assert "2 rows from 1 votes" in info and "KTOTrainer" in info


def test_the_tab_builds(services: Services):
    app = build_app(services)
    assert isinstance(app, gr.Blocks)
    labels = {b.value for b in app.blocks.values() if isinstance(b, gr.Button)}
    assert {"Create adapter zip", "Import adapter", "Create votes file"} <= labels


def test_a_gguf_export_is_offered_with_how_to_run_it(
    services: Services, adapter_zip: Path, monkeypatch: pytest.MonkeyPatch
):
    owner, _ = export_tab.import_archive(services, "lumen-lamps", str(adapter_zip))
    view = export_tab.export_choices(services, owner)
    assert "gguf-q8_0" in dict((v, k) for k, v in export_tab.FORMAT_CHOICES)
    calls = []

    def fake_export(ws, run_id, fmt, out, progress=None, quant="f16"):  # noqa: ANN001, ANN202
        calls.append((fmt, quant))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"PK")
        check = ReloadCheck("Hello", [1, 2, 3], "Hi there")
        verified = {
            "tolerance": "90% of positions",
            "transformers": {"reader": "transformers 5 (GGUF loader)", "agreement": 0.95},
        }
        return ExportResult(out, fmt, run_id, {}, check, None, quant=quant, verification=verified)

    monkeypatch.setattr(export_tab, "export_run", fake_export)
    path, info = export_tab.export_package(services, view.run_id, "gguf-q8_0", lambda *a: None)
    assert calls == [("gguf", "q8_0")] and path.name.endswith("-gguf-q8_0.zip")
    assert "ollama create lumen-lamps -f Modelfile" in info and "(Q8_0)" in info
    assert "transformers 5 (GGUF loader)" in info and "95%" in info
