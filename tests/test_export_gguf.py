"""GGUF export: the file round-trips (tensors, metadata); a verified export or nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_support import SYSTEM_PROMPT, make_brand, make_run
from gguf_support import make_micro_model

from chatbot.cli.commands import main
from chatbot.errors import BrandVoiceError
from chatbot.export import ExportCheckError, export_run, gguf_file, verify_export
from chatbot.export.gguf_file import GgufSource, write_gguf
from chatbot.runs.jobs import Run
from chatbot.workspace import Workspace

EXPORT_FILES = [
    "Modelfile",
    "README.md",
    "brand.yaml",
    "lumen-lamps-f16.gguf",
    "manifest.json",
    "system_prompt.txt",
]


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_micro_model(tmp_path_factory.mktemp("micro"))


@pytest.fixture(scope="module")
def micro(micro_dir: Path) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(micro_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(micro_dir)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, micro_dir: Path) -> tuple:
    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    run = make_run(ws, make_brand(ws), micro_dir, tmp_path_factory.mktemp("scratch"))
    return ws, run


def _field(reader, key: str):  # noqa: ANN001, ANN202 - gguf's reader and its values
    return reader.get_field(key).contents()


def test_gguf_round_trip_keeps_every_tensor_and_the_metadata(micro: tuple, tmp_path: Path):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = micro
    source = GgufSource("lumen (run 1)", SYSTEM_PROMPT, "org/base", extra={"run_id": "run-1"})
    written = write_gguf(model, tokenizer, tmp_path / "m.gguf", "f16", source)

    reader = GGUFReader(written.path)
    names = {t.name for t in reader.tensors}
    assert len(names) == 2 * 9 + 2  # 9 per block, token_embd, output_norm; tied: no output
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight"} <= names
    assert written.tensor_types == {"F16": 15, "F32": 5}  # norms stay F32
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == 2
    assert _field(reader, "llama.attention.head_count_kv") == 2
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    vocab = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    assert _field(reader, "tokenizer.ggml.tokens") == vocab
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert _field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    assert _field(reader, "brandvoice.system_prompt") == SYSTEM_PROMPT
    assert _field(reader, "brandvoice.run_id") == "run-1"

    # transformers' own reader undoes the q/k permutation: every weight comes back as written.
    back = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="m.gguf", dtype=torch.float32
    ).state_dict()
    for name, tensor in model.state_dict().items():
        stored = tensor.to(torch.float16).float() if tensor.dim() > 1 else tensor
        assert torch.equal(back[name], stored), name
    again = AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    messages = [{"role": "user", "content": "Where is order #4521? It's late 😟"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert again.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == text
    assert again.encode(text, add_special_tokens=False) == tokenizer.encode(
        text, add_special_tokens=False
    )


def test_q8_0_blocks_stay_within_their_rounding(micro: tuple, tmp_path: Path):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    model, tokenizer = micro
    written = write_gguf(model, tokenizer, tmp_path / "q.gguf", "q8_0", GgufSource("x", "", "b"))
    assert written.tensor_types == {"Q8_0": 15, "F32": 5}
    tensors = {t.name: t for t in GGUFReader(written.path).tensors}
    down = tensors["blk.0.ffn_down.weight"]
    values = dequantize(down.data, down.tensor_type).reshape(64, 128)
    original = model.state_dict()["model.layers.0.mlp.down_proj.weight"].numpy()
    blocks = np.abs(original).reshape(64, 4, 32).max(-1, keepdims=True)
    step = np.repeat(blocks / 127, 32, axis=-1).reshape(64, 128)
    # Half a step of rounding, plus the F16 rounding of each block's scale (127 steps of it).
    assert np.all(np.abs(values - original) <= step * (0.5 + 127 * 2**-11) + 1e-7)
    assert not np.array_equal(values, original)  # it really was quantized


def test_pre_tokenizer_of_the_default_model_is_smollm(default_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    assert gguf_file._pre_tokenizer(tokenizer, backend) == "smollm"


def test_gguf_export_is_verified_with_manifest_and_card(
    workspace: tuple[Workspace, Run], capsys: pytest.CaptureFixture
):
    ws, run = workspace
    argv = ["export", "--workspace", str(ws.root), "--run", run.id, "--format", "gguf"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Verified before it was written" in printed and "3 of 3 replies identical" in printed
    assert "100.0% of 48 check tokens" in printed and "ollama create NAME" in printed
    out = ws.root / "exports" / f"{run.brand}-{run.id}-gguf-f16"
    assert sorted(p.name for p in out.iterdir()) == EXPORT_FILES
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == set(EXPORT_FILES) - {"manifest.json"}
    for name, entry in manifest["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["quantization"] == "f16"
    assert manifest["base_model"] == Path(run.base_model).name  # a local folder: its name
    check = manifest["verification"]["transformers"]
    assert manifest["verification"]["passed"] and check["identical_replies"] == check["prompts"]
    assert check["agreement"] == 1.0 and len(manifest["check"]["prompts"]) == 3
    card = (out / "README.md").read_text()
    assert "library_name: gguf" in card and "ollama create lumen-lamps -f Modelfile" in card
    assert "| transformers" in card  # the verification result
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./lumen-lamps-f16.gguf" in modelfile
    assert f'SYSTEM """{SYSTEM_PROMPT}"""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    verify_export(out)  # checks again later, from the manifest alone

    (out / "Modelfile").write_text(modelfile + "PARAMETER temperature 2\n")
    with pytest.raises(ExportCheckError, match="Modelfile: SHA-256 differs"):
        verify_export(out)


def test_a_gguf_that_misreads_fails_and_leaves_nothing(
    workspace: tuple[Workspace, Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ws, run = workspace
    # The classic conversion bug: q/k rows left in Hugging Face's rotary layout.
    monkeypatch.setattr(gguf_file, "_permute", lambda weights, n_head: weights)
    out = tmp_path / "out" / "model.zip"
    with pytest.raises(ExportCheckError, match="failed its check"):
        export_run(ws, run.id, "gguf", out)
    assert list(out.parent.iterdir()) == []


def test_q4_k_m_is_refused_with_the_command_that_makes_it(
    workspace: tuple[Workspace, Run], capsys: pytest.CaptureFixture
):
    ws, run = workspace
    argv = ["export", "--workspace", str(ws.root), "--run", run.id, "--format", "gguf"]
    assert main([*argv, "--quant", "q4_k_m"]) == 2
    err = capsys.readouterr().err
    assert "llama-quantize" in err and "Traceback" not in err
    with pytest.raises(BrandVoiceError, match="Llama-architecture"):
        gguf_file.check_gguf_support(type("Config", (), {"model_type": "gpt2"})(), "f16")
