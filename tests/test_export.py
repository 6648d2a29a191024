"""Production export: exact file lists and hashes, the fresh-process reload check, merged models."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from export_support import SYSTEM_PROMPT, make_brand, make_run

from chatbot.cli.commands import main
from chatbot.errors import BrandVoiceError
from chatbot.export import ExportCheckError, export_run, verify_export
from chatbot.export import package as export_package
from chatbot.export.base_model import base_model_of
from chatbot.runs.jobs import Run
from chatbot.workspace import Workspace

pytestmark = pytest.mark.slow

TOKENIZER_FILES = ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
COMMON = ["README.md", "brand.yaml", "generation_config.json", "manifest.json", "system_prompt.txt"]
ADAPTER_ZIP = sorted(
    ["adapter_config.json", "adapter_model.safetensors", *TOKENIZER_FILES, *COMMON]
)
MERGED = sorted(["config.json", "model.safetensors", *TOKENIZER_FILES, *COMMON])
SCORECARD = Path(__file__).parent / "assets" / "scorecard" / "scorecard.json"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple:
    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    slug = make_brand(ws)
    run = make_run(ws, slug, tiny_model_dir, tmp_path_factory.mktemp("scratch"))
    shutil.copyfile(SCORECARD, run.run_dir / "scorecard.json")
    return ws, run


@pytest.fixture(scope="module")
def adapter_export(workspace: tuple[Workspace, Run]) -> tuple:
    """One adapter export of the run, with the progress stages it reported."""
    ws, run = workspace
    stages: list[tuple[str, int, int]] = []
    result = export_run(ws, run.id, "adapter", progress=lambda *a: stages.append(a))
    return result, stages


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rewrite_zip(source: Path, target: Path, changes: dict[str, bytes]) -> None:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, changes.get(name, src.read(name)))


def test_adapter_zip_is_exact_and_verified(workspace: tuple[Workspace, Run], adapter_export):
    ws, run = workspace
    result, stages = adapter_export

    assert result.path == ws.root / "exports" / f"{run.brand}-{run.id}-adapter.zip"
    with zipfile.ZipFile(result.path) as zf:
        assert sorted(zf.namelist()) == ADAPTER_ZIP
        contents = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(contents.pop("manifest.json"))
    assert {n: f["sha256"] for n, f in manifest["files"].items()} == {
        n: _sha(data) for n, data in contents.items()
    }
    assert result.files == {n: _sha(data) for n, data in contents.items()}
    adapter = run.run_dir / "adapter"
    assert (
        contents["adapter_model.safetensors"]
        == (adapter / "adapter_model.safetensors").read_bytes()
    )
    assert contents["system_prompt.txt"].decode() == SYSTEM_PROMPT
    assert contents["brand.yaml"] == (ws.brand_dir(run.brand) / "brand.yaml").read_bytes()
    config = json.loads(contents["adapter_config.json"])
    assert config["peft_type"] == "LORA" and "/" not in config["base_model_name_or_path"]
    assert "{% for message in messages %}" in contents["chat_template.jinja"].decode()

    check = manifest["check"]
    assert check["token_ids"] == result.check.token_ids and len(check["token_ids"]) == 16
    assert result.vllm is not None and result.vllm.ok and result.vllm.max_lora_rank == 8
    assert result.warnings == []
    assert [s for s, done, _ in stages if done] == ["loading", "reference", "writing", "verifying"]
    assert sorted(p.name for p in result.path.parent.iterdir()) == [result.path.name]

    card = contents["README.md"].decode()
    for expected in (
        "(licence: not recorded",
        "PII redaction was applied",
        "2 EMAIL, 1 PHONE",
        "| lora_r | 8 |",
        "| held-out loss after | 2.7000 |",
        "| Perplexity | 20.1 | 16.4 | 7.4 | – |",
        "- Replies passing every brand rule: base model 0%",
        "PeftModel.from_pretrained",
        f"--lora-modules {run.brand}=path/to/this/folder --max-lora-rank 8",
        "Intended use and limitations",
        SYSTEM_PROMPT,
    ):
        assert expected in card, expected


def test_reload_check_fails_when_a_file_is_tampered(
    adapter_export, tiny_model_dir: Path, tmp_path: Path
):
    export = adapter_export[0].path

    edited = tmp_path / "edited.zip"
    _rewrite_zip(export, edited, {"system_prompt.txt": b"You are a pirate."})
    with pytest.raises(ExportCheckError, match="system_prompt.txt: SHA-256 differs"):
        verify_export(edited, tiny_model_dir)

    # Changed weights with a manifest made to match: the hashes pass, the reply does not.
    with zipfile.ZipFile(export) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        weights = bytearray(zf.read("adapter_model.safetensors"))
    header = int.from_bytes(weights[:8], "little") + 8
    weights[header:] = bytes(len(weights) - header)  # every LoRA weight zero: the base model
    manifest["files"]["adapter_model.safetensors"]["sha256"] = _sha(bytes(weights))
    forged = tmp_path / "forged.zip"
    changes = {
        "adapter_model.safetensors": bytes(weights),
        "manifest.json": json.dumps(manifest).encode(),
    }
    _rewrite_zip(export, forged, changes)
    with pytest.raises(ExportCheckError, match="does not reproduce the tuned model"):
        verify_export(forged, tiny_model_dir)


def test_a_failed_check_leaves_nothing_behind(
    workspace: tuple[Workspace, Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ws, run = workspace
    real = export_package._greedy

    def off_by_one(*args: object) -> export_package.ReloadCheck:
        reply = real(*args)
        return export_package.ReloadCheck(reply.prompt, [t + 1 for t in reply.token_ids], "x")

    monkeypatch.setattr(export_package, "_greedy", off_by_one)
    out = tmp_path / "out" / "adapter.zip"
    with pytest.raises(ExportCheckError, match="does not reproduce"):
        export_run(ws, run.id, "adapter", out)
    assert list(out.parent.iterdir()) == []


def test_merged_model_from_the_cli(workspace: tuple[Workspace, Run], tmp_path: Path, capsys):
    from safetensors import safe_open

    ws, run = workspace
    out = tmp_path / "merged"
    argv = ["export", "--workspace", str(ws.root), "--run", run.id, "--format", "merged"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "Verified in a fresh process" in capsys.readouterr().out

    assert sorted(p.name for p in out.iterdir()) == MERGED
    assert not list(tmp_path.glob(".merged*"))  # the build folder was renamed, not copied
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "merged" and set(manifest["files"]) == set(MERGED) - {
        "manifest.json"
    }
    with safe_open(out / "model.safetensors", "pt") as weights:
        names = list(weights.keys())
        dtypes = {weights.get_slice(name).get_dtype() for name in names}
    assert names and not any("lora" in name for name in names)
    assert dtypes == {"BF16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert "vllm serve path/to/this/folder" in (out / "README.md").read_text()
    verify_export(out)  # a folder export checks again without a base model


def test_export_refuses_what_it_cannot_do(workspace: tuple[Workspace, Run], capsys):
    ws, run = workspace
    with pytest.raises(BrandVoiceError, match="Unknown export format"):
        export_run(ws, run.id, "onnx")
    assert main(["export", "--workspace", str(ws.root), "--run", "nope"]) == 2
    assert "No run 'nope'" in capsys.readouterr().err


def test_the_default_base_is_named_with_its_licence(default_model_dir: Path):
    base = base_model_of(str(default_model_dir))
    assert (base.name, base.license, base.source) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "Apache-2.0",
        "default",
    )
