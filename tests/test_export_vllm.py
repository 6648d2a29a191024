"""vLLM's LoRA constraints, checked from adapter_config.json and the safetensors header alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from chatbot.errors import BrandVoiceError
from chatbot.export.vllm_compat import (
    check_adapter,
    lora_module_names,
    max_lora_rank_for,
    vllm_command,
)

LLAMA = "LlamaForCausalLM"


def _adapter(folder: Path, modules: list[str], rank: int = 16, **config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module in modules:
        prefix = f"base_model.model.model.layers.0.{module}"
        tensors[f"{prefix}.lora_A.weight"] = torch.zeros(rank, 4)
        tensors[f"{prefix}.lora_B.weight"] = torch.zeros(4, rank)
    save_file(tensors, folder / "adapter_model.safetensors")
    settings = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "bias": "none"} | config
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    return folder


def test_a_plain_llama_adapter_passes(tmp_path: Path):
    adapter = _adapter(tmp_path, ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"], 12)
    check = check_adapter(adapter, LLAMA)
    assert check.ok and check.problems == [] and check.max_lora_rank == 16
    assert check.vllm_version == "0.11"
    assert lora_module_names(adapter / "adapter_model.safetensors") == {
        "base_model.model.model.layers.0.self_attn.q_proj",
        "base_model.model.model.layers.0.self_attn.v_proj",
        "base_model.model.model.layers.0.mlp.down_proj",
    }


@pytest.mark.parametrize(
    ("config", "modules", "rank", "problem"),
    [
        ({"use_dora": True}, ["self_attn.q_proj"], 8, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, ["self_attn.q_proj"], 8, "modules_to_save"),
        ({"bias": "lora_only"}, ["self_attn.q_proj"], 8, "bias"),
        ({"rank_pattern": {"q_proj": 4}}, ["self_attn.q_proj"], 8, "rank_pattern"),
        ({}, ["self_attn.q_proj"], 1024, "above vLLM's largest --max-lora-rank, 512"),
        ({}, ["lm_head"], 8, "LoRA on lm_head is not supported"),
        ({"peft_type": "IA3"}, ["self_attn.q_proj"], 8, "LoRA adapters only"),
    ],
)
def test_what_vllm_refuses(tmp_path: Path, config: dict, modules: list, rank: int, problem: str):
    check = check_adapter(_adapter(tmp_path, modules, rank, **config), LLAMA)
    assert not check.ok
    assert any(problem in p for p in check.problems), check.problems


def test_rslora_is_served_and_unknown_architectures_are_noted(tmp_path: Path):
    adapter = _adapter(tmp_path, ["mixer.in_proj"], 8, use_rslora=True)
    check = check_adapter(adapter, "MambaForCausalLM")
    assert check.ok and "not checked" in check.notes[0]
    phi = check_adapter(_adapter(tmp_path / "phi", ["self_attn.qkv_proj"]), "Phi3ForCausalLM")
    assert phi.ok


def test_rank_to_max_lora_rank_and_the_command():
    assert [max_lora_rank_for(r) for r in (1, 2, 8, 12, 64, 300, 512, 513)] == [
        1,
        8,
        8,
        16,
        64,
        320,
        512,
        None,
    ]
    assert vllm_command("org/base", "/srv/a", "kettlebird", 16) == (
        "vllm serve org/base --enable-lora --lora-modules kettlebird=/srv/a --max-lora-rank 16"
    )


def test_a_file_that_is_not_safetensors_is_refused(tmp_path: Path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x80\x04pickle")
    with pytest.raises(BrandVoiceError, match="not a readable safetensors file"):
        lora_module_names(tmp_path / "adapter_model.safetensors")
