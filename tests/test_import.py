"""import-adapter: hostile archives refused before a byte is written; good adapters become runs."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest
from export_support import make_adapter, make_brand

from chatbot.cli.commands import main
from chatbot.errors import BrandVoiceError, ConfigError
from chatbot.export.importing import ImportLimits, import_adapter
from chatbot.runs.adapters import adapter_setup
from chatbot.runs.jobs import list_runs
from chatbot.workspace import Workspace


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "my-adapter")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    make_brand(ws)
    return ws


def _zip(path: Path, entries: dict[str, bytes], **infos: zipfile.ZipInfo) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for info in infos.values():
            zf.writestr(info, b"/etc/passwd")
    return path


def _adapter_entries(adapter_dir: Path, folder: str = "") -> dict[str, bytes]:
    return {folder + p.name: p.read_bytes() for p in sorted(adapter_dir.iterdir())}


def _everything(root: Path) -> set[Path]:
    """Every path under `root` but the database's own files (SQLite manages those)."""
    return {p for p in root.rglob("*") if "sqlite3" not in p.name}


def test_an_adapter_zip_becomes_a_run(ws: Workspace, adapter_dir: Path, tmp_path: Path):
    from chatbot.engine import ChatEngine, GenerationSettings

    entries = _adapter_entries(adapter_dir, "my-adapter/")
    entries["my-adapter/notes/training_log.txt"] = b"step 1"
    archive = _zip(tmp_path / "adapter.zip", entries)
    stages: list[tuple] = []
    result = import_adapter(ws, archive, "Lumen Lamps", progress=lambda *a: stages.append(a))

    run = result.run
    assert run.state == "succeeded" and run.brand == "lumen-lamps" and run.preset == "imported"
    assert [r.id for r in list_runs(ws, "lumen-lamps")] == [run.id]
    assert sorted(p.name for p in (run.run_dir / "adapter").iterdir()) == sorted(
        p.name for p in adapter_dir.iterdir()
    )
    assert result.ignored == ["my-adapter/notes/training_log.txt"]
    assert result.vllm.ok and result.vllm.max_lora_rank == 8
    assert ("extracting", len(entries) - 1, len(entries) - 1) in stages
    origin = json.loads((run.run_dir / "imported.json").read_text())
    assert origin["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert not [p for p in ws.runs_dir().iterdir() if p.name.startswith(".")]

    setup = adapter_setup(ws, run.id)  # what chat, Compare and the scorecard use
    assert setup.base_model == str(Path(origin["base_model"]))
    assert setup.quantization == "none" and setup.tuned_system_prompt == ""
    engine = ChatEngine(setup.base_model, setup.adapter_dir, quantization="none")
    hello = [{"role": "user", "content": "Hello"}]
    assert engine.reply(hello, "tuned", GenerationSettings(temperature=0, max_new_tokens=3))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "'..' in its path"),
        ("my-adapter/../../evil.txt", "'..' in its path"),
        ("/tmp/evil.txt", "an absolute path"),
        ("C:/evil.txt", "an absolute path"),
        ("..\\evil.txt", "backslash"),
    ],
)
def test_entries_that_escape_are_refused(
    ws: Workspace, adapter_dir: Path, tmp_path: Path, name: str, why: str
):
    archive = _zip(tmp_path / "bad.zip", {**_adapter_entries(adapter_dir), name: b"pwned"})
    before = _everything(tmp_path)
    with pytest.raises(BrandVoiceError, match="refused, nothing was imported") as caught:
        import_adapter(ws, archive, "Lumen Lamps")
    assert why in str(caught.value) and name in str(caught.value)
    assert _everything(tmp_path) == before
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert list_runs(ws) == []


def test_a_symlink_entry_is_refused(ws: Workspace, adapter_dir: Path, tmp_path: Path):
    link = zipfile.ZipInfo("tokenizer.json")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    entries = {k: v for k, v in _adapter_entries(adapter_dir).items() if k != "tokenizer.json"}
    archive = _zip(tmp_path / "link.zip", entries, link=link)
    with pytest.raises(BrandVoiceError, match="'tokenizer.json': a symbolic link"):
        import_adapter(ws, archive, "Lumen Lamps")
    assert list_runs(ws) == []


def test_a_pickle_is_refused_without_being_read(
    ws: Workspace, adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    entries = {
        "adapter_config.json": (adapter_dir / "adapter_config.json").read_bytes(),
        "adapter_model.bin": b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.",
    }
    archive = _zip(tmp_path / "pickle.zip", entries)
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        opened.append(name if isinstance(name, str) else name.filename)  # type: ignore[union-attr]
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(BrandVoiceError, match="'adapter_model.bin': a pickle file") as caught:
        import_adapter(ws, archive, "Lumen Lamps")
    assert "safetensors only" in str(caught.value)
    assert opened == []
    assert list_runs(ws) == []


def test_size_limits(ws: Workspace, adapter_dir: Path, tmp_path: Path):
    archive = _zip(tmp_path / "ok.zip", _adapter_entries(adapter_dir))
    cases = [
        (ImportLimits(max_entries=3), "entries, over the limit of 3"),
        (ImportLimits(max_file_bytes=100_000), "uncompressed, over the limit of 100,000"),
        (ImportLimits(max_total_bytes=1_000_000), "in all, over 1,000,000"),
    ]
    for limits, message in cases:
        with pytest.raises(BrandVoiceError, match=message):
            import_adapter(ws, archive, "Lumen Lamps", limits=limits)
    bomb = _zip(
        tmp_path / "bomb.zip", {**_adapter_entries(adapter_dir), "zeros.txt": bytes(8 << 20)}
    )
    with pytest.raises(BrandVoiceError, match="'zeros.txt': compressed .* it reads as a zip bomb"):
        import_adapter(ws, bomb, "Lumen Lamps")
    assert list_runs(ws) == []


def test_the_adapter_config_is_validated(ws: Workspace, adapter_dir: Path, tmp_path: Path):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    bad = config | {"peft_type": "PREFIX_TUNING", "base_model_name_or_path": None, "r": 0}
    entries = _adapter_entries(adapter_dir) | {"adapter_config.json": json.dumps(bad).encode()}
    with pytest.raises(ConfigError) as caught:
        import_adapter(ws, _zip(tmp_path / "bad.zip", entries), "Lumen Lamps")
    text = str(caught.value)
    assert "peft_type" in text and "base_model_name_or_path is missing" in text and "r (the" in text
    no_weights = {"adapter_config.json": json.dumps(config).encode()}
    with pytest.raises(BrandVoiceError, match="holds no adapter_model.safetensors"):
        import_adapter(ws, _zip(tmp_path / "none.zip", no_weights), "Lumen Lamps")
    fake = _adapter_entries(adapter_dir) | {"adapter_model.safetensors": b"not weights at all"}
    with pytest.raises(BrandVoiceError, match="not a readable safetensors file"):
        import_adapter(ws, _zip(tmp_path / "fake.zip", fake), "Lumen Lamps")
    assert list_runs(ws) == [] and not list(ws.runs_dir().iterdir())


def _export_like(adapter_dir: Path, brand_yaml: bytes) -> dict[str, bytes]:
    """The files of a brandvoice adapter export, with a manifest of their hashes."""
    entries = _adapter_entries(adapter_dir) | {
        "brand.yaml": brand_yaml,
        "system_prompt.txt": b"Be brief.",
    }
    files = {n: {"sha256": hashlib.sha256(d).hexdigest()} for n, d in entries.items()}
    return entries | {"manifest.json": json.dumps({"files": files}).encode()}


def test_an_export_names_its_brand_and_must_match_its_manifest(
    adapter_dir: Path, tmp_path: Path, capsys
):
    source = Workspace.open(tmp_path / "source")
    make_brand(source, "Kettlebird Tea")
    brand_yaml = (source.brand_dir("kettlebird-tea") / "brand.yaml").read_bytes()
    entries = _export_like(adapter_dir, brand_yaml)
    ws = Workspace.open(tmp_path / "ws")

    tampered = _zip(tmp_path / "t.zip", entries | {"system_prompt.txt": b"Be rude."})
    argv = ["import-adapter", "--workspace", str(ws.root)]
    assert main([*argv, str(tampered)]) == 2
    assert "system_prompt.txt changed or unlisted" in " ".join(capsys.readouterr().err.split())
    assert list_runs(ws) == []

    assert main([*argv, str(_zip(tmp_path / "e.zip", entries))]) == 0
    assert "brandvoice chat --run" in capsys.readouterr().out
    [run] = list_runs(ws)
    assert run.brand == "kettlebird-tea"
    assert (ws.brand_dir("kettlebird-tea") / "brand.yaml").read_bytes() == brand_yaml
    assert adapter_setup(ws, run.id).tuned_system_prompt == "Be brief."
    assert not (run.run_dir / "adapter" / "manifest.json").exists()


def test_without_brand_or_brand_yaml_it_asks_for_one(
    ws: Workspace, adapter_dir: Path, tmp_path: Path
):
    archive = _zip(tmp_path / "a.zip", _adapter_entries(adapter_dir))
    with pytest.raises(BrandVoiceError, match="name a prepared brand") as refused:
        import_adapter(ws, archive)
    assert refused.value.option == "brand"
    with pytest.raises(BrandVoiceError, match="not a readable zip"):
        import_adapter(ws, Path(__file__), "Lumen Lamps")


def _header_file(header: bytes) -> bytes:
    """A safetensors file made of a length and a header, and nothing else."""
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "adapter_config.json",
            b"[" * 100_000,
            "adapter_config.json is not valid JSON: JSON nested",
        ),
        ("adapter_config.json", b"[1, 2]", "must hold a JSON object, not an array"),
        ("adapter_model.safetensors", _header_file(b"[" * 100_000), "not a readable safetensors"),
        ("adapter_model.safetensors", _header_file(b'"x"'), "its header is a string"),
        ("manifest.json", b'{"files": ["adapter_config.json"]}', "not a table of files"),
        ("manifest.json", b"{" * 50_000, "manifest.json is not valid JSON"),
    ],
)
def test_nested_or_misshapen_json_is_refused_in_plain_words(
    ws: Workspace, adapter_dir: Path, tmp_path: Path, name: str, data: bytes, message: str
):
    archive = _zip(tmp_path / "odd.zip", _adapter_entries(adapter_dir) | {name: data})
    with pytest.raises(BrandVoiceError, match=message):
        import_adapter(ws, archive, "Lumen Lamps")
    assert list_runs(ws) == []


def test_a_system_prompt_over_the_cap_is_refused(ws: Workspace, adapter_dir: Path, tmp_path: Path):
    from chatbot.export.importing import MAX_PROMPT_BYTES

    huge = b"Be brief. " * (MAX_PROMPT_BYTES // 10 + 1)
    archive = _zip(tmp_path / "p.zip", _adapter_entries(adapter_dir) | {"system_prompt.txt": huge})
    with pytest.raises(BrandVoiceError, match="system_prompt.txt is .* bytes, over the 65,536"):
        import_adapter(ws, archive, "Lumen Lamps")
    assert list_runs(ws) == []


def test_a_base_model_not_on_this_machine_must_be_named(
    ws: Workspace, adapter_dir: Path, tmp_path: Path
):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    hub = config | {"base_model_name_or_path": "some-org/some-model"}
    entries = _adapter_entries(adapter_dir) | {"adapter_config.json": json.dumps(hub).encode()}
    archive = _zip(tmp_path / "hub.zip", entries)
    with pytest.raises(BrandVoiceError, match="not a folder on this machine.*base model") as asked:
        import_adapter(ws, archive, "Lumen Lamps")
    assert asked.value.option == "base_model" and "--" not in str(asked.value)
    assert list_runs(ws) == []
    # Named on purpose (a download the user chose), it is accepted as given.
    run = import_adapter(ws, archive, "Lumen Lamps", base_model="some-org/some-model").run
    assert run.base_model == "some-org/some-model"
    # The built-in model, by its hub id, is the local default.
    builtin = config | {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    entries["adapter_config.json"] = json.dumps(builtin).encode()
    run = import_adapter(ws, _zip(tmp_path / "builtin.zip", entries), "Lumen Lamps").run
    assert run.base_model == "default"
