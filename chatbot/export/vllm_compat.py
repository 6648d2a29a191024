"""Will vLLM serve this LoRA adapter? Its constraints, checked without vLLM installed.

The rules follow vLLM 0.11 (`vllm/lora/peft_helper.py`, `vllm/config/lora.py` and the models'
`packed_modules_mapping`), the version the serving guide's command was written for:

- `--max-lora-rank` takes one of 1, 8, 16, 32, 64, 128, 256, 320, 512, and an adapter's rank `r`
  must not exceed it (smaller ranks are padded), so `r` may be at most 512;
- no DoRA (`use_dora`), no `modules_to_save` (fully trained extra layers), no LoRA bias;
- rsLoRA is served (vLLM scales by alpha / sqrt(r) as PEFT does);
- per-module ranks or alphas (`rank_pattern`, `alpha_pattern`), `layer_replication` and LoRA on raw
  parameters (`target_parameters`) are not read by vLLM, so such an adapter would be served wrong;
- every LoRA module must be one vLLM implements LoRA for in that architecture: the attention and MLP
  projections of the decoder models listed in `SUPPORTED_MODULES`. vLLM matches the last part of
  each module name in the weights file (`...self_attn.q_proj` -> `q_proj`); LoRA on embeddings or
  the LM head is left out here, as support for it differs between vLLM versions.

An architecture outside the table is reported as not checked rather than as unsupported. This module
only reads `adapter_config.json` and the safetensors header (names, never tensors).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.errors import BrandVoiceError
from chatbot.ingest.jsonsafe import JsonProblem, json_type, load_json

__all__ = [
    "VLLM_VERSION",
    "MAX_LORA_RANKS",
    "SUPPORTED_MODULES",
    "VllmCheck",
    "check_adapter",
    "architecture_of",
    "lora_module_names",
    "max_lora_rank_for",
    "vllm_command",
]

VLLM_VERSION = "0.11"
MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)

_PROJECTIONS = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)
# Phi-3 keeps q/k/v and gate/up fused in single layers.
_FUSED = frozenset({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"})
SUPPORTED_MODULES: dict[str, frozenset[str]] = {
    "LlamaForCausalLM": _PROJECTIONS,
    "MistralForCausalLM": _PROJECTIONS,
    "Qwen2ForCausalLM": _PROJECTIONS,
    "Qwen3ForCausalLM": _PROJECTIONS,
    "GemmaForCausalLM": _PROJECTIONS,
    "Gemma2ForCausalLM": _PROJECTIONS,
    "GraniteForCausalLM": _PROJECTIONS,
    "Olmo2ForCausalLM": _PROJECTIONS,
    "Phi3ForCausalLM": _FUSED,
}
"""Module names vLLM applies LoRA to, per architecture (`config.json`'s `architectures[0]`)."""

_LORA_MARKERS = (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B")
_MAX_HEADER = 100 << 20  # the safetensors format caps its header at 100 MB


@dataclass(frozen=True)
class VllmCheck:
    """What stands between an adapter and `vllm serve --enable-lora`."""

    problems: list[str]
    """Reasons vLLM would refuse the adapter or serve it wrong; empty when it should serve it."""
    max_lora_rank: int | None
    """The smallest `--max-lora-rank` that fits the adapter (None when its rank is too large)."""
    architecture: str | None
    notes: list[str] = field(default_factory=list)
    """What was not checked, and why."""
    vllm_version: str = VLLM_VERSION

    @property
    def ok(self) -> bool:
        return not self.problems


def max_lora_rank_for(rank: int) -> int | None:
    """The smallest value `--max-lora-rank` accepts that is at least `rank`, or None."""
    return next((allowed for allowed in MAX_LORA_RANKS if allowed >= rank), None)


def lora_module_names(weights: Path) -> set[str]:
    """The modules a safetensors adapter holds LoRA weights for, from its header alone."""
    try:
        with open(weights, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > _MAX_HEADER:
                raise ValueError(f"header of {size} bytes")
            header = load_json(fh.read(size).decode("utf-8"))
    except (OSError, struct.error, ValueError, JsonProblem) as exc:
        raise BrandVoiceError(f"{weights} is not a readable safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise BrandVoiceError(
            f"{weights} is not a readable safetensors file: its header is {json_type(header)}, "
            "not an object of tensor names."
        )
    names = set()
    for key in header:
        for marker in _LORA_MARKERS:
            if marker in key:
                names.add(key.split(marker)[0])
                break
    return names


def _config_problems(config: dict) -> list[str]:
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}; vLLM serves LoRA adapters only")
    if config.get("use_dora"):
        problems.append("DoRA (use_dora) is not supported by vLLM")
    if config.get("modules_to_save"):
        problems.append(
            f"modules_to_save {config['modules_to_save']} (fully trained layers) is not supported "
            "by vLLM; export the merged model instead"
        )
    if config.get("bias", "none") != "none":
        problems.append(f"LoRA bias ({config['bias']!r}) is not supported by vLLM")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            problems.append(f"{key} (per-module values) is ignored by vLLM, which would mis-scale")
    for key in ("layer_replication", "target_parameters"):
        if config.get(key):
            problems.append(f"{key} is not supported by vLLM")
    return problems


def _module_problems(modules: set[str], architecture: str | None, notes: list[str]) -> list[str]:
    supported = SUPPORTED_MODULES.get(architecture or "")
    if supported is None:
        notes.append(
            f"target modules not checked: architecture {architecture or 'unknown'} is not in the "
            f"table of vLLM {VLLM_VERSION} constraints here"
        )
        return []
    unsupported = sorted({name.rsplit(".", 1)[-1] for name in modules} - supported)
    if not unsupported:
        return []
    return [
        f"LoRA on {', '.join(unsupported)} is not supported by vLLM for {architecture} "
        f"(supported: {', '.join(sorted(supported))})"
    ]


def check_adapter(adapter_dir: Path, architecture: str | None = None) -> VllmCheck:
    """Check the adapter in `adapter_dir` against vLLM's LoRA constraints (see the module doc).

    `architecture` is the base model's `architectures[0]` (e.g. "LlamaForCausalLM"); without it
    target modules are not checked.
    """
    adapter_dir = Path(adapter_dir)
    path = adapter_dir / "adapter_config.json"
    try:
        config = load_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, JsonProblem) as exc:
        raise BrandVoiceError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise BrandVoiceError(f"Cannot read {path}: it holds {json_type(config)}, not an object.")
    problems = _config_problems(config)
    rank = config.get("r")
    max_rank = max_lora_rank_for(rank) if isinstance(rank, int) and rank > 0 else None
    if max_rank is None:
        problems.append(f"rank r={rank!r} is above vLLM's largest --max-lora-rank, 512")
    notes: list[str] = []
    modules = lora_module_names(adapter_dir / "adapter_model.safetensors")
    problems += _module_problems(modules, architecture, notes)
    return VllmCheck(problems, max_rank, architecture, notes)


def architecture_of(model_dir: Path) -> str | None:
    """`architectures[0]` from a model folder's config.json, or None."""
    try:
        config = load_json((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, JsonProblem):
        return None
    archs = config.get("architectures") if isinstance(config, dict) else None
    return archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None


def vllm_command(base_model: str, adapter_path: str, name: str, max_lora_rank: int) -> str:
    """The `vllm serve` command that serves the adapter as model `name` over `base_model`."""
    return (
        f"vllm serve {base_model} --enable-lora --lora-modules {name}={adapter_path} "
        f"--max-lora-rank {max_lora_rank}"
    )
