"""How long a run will take on this machine, said before it starts.

The work is counted exactly: the brand's conversations are tokenized as training will see them
and packed as the collator packs them, so the tokens a run computes (shared prefixes once per row)
are known in advance. The speed is this machine's own: the computed tokens per second of earlier
runs here with the same base model, compute dtype and quantization (recorded after each run in
`brandvoice_home()/machine/throughput.json`), else a first guess from the compute-dtype probe's
matmul figures. A first guess says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from chatbot.config import TrainConfig
from chatbot.hardware import cpu_info
from chatbot.storage import atomic_write_json
from chatbot.workspace import brandvoice_home

__all__ = ["RunEstimate", "estimate_run", "record_throughput"]

# Share of the probe's matmul throughput a training step reaches (attention, norms, LoRA,
# dequantising the 4-bit weights); measured on the default model, 2-core Xeon without AMX.
_PROBE_EFFICIENCY = 0.45
# Loading the model and tokenizing, and saving the adapter: seconds, measured on the default model.
_FIXED_SECONDS = 20.0
# An evaluation row is a forward pass only: about a third of a training step's work per token.
_EVAL_SHARE = 1 / 3
_KEEP = 5


@dataclass(frozen=True)
class RunEstimate:
    """A run's expected duration and what it is based on."""

    seconds: float
    steps: int
    train_tokens: int
    """Conversation tokens trained on, all epochs (each conversation counted whole)."""
    computed_tokens: int
    """Tokens the model computes for them: shared prefixes once per row, padding included."""
    tokens_per_s: float
    """Computed tokens per second this estimate assumes."""
    measured: bool
    """True: the speed comes from earlier runs on this machine; False: from the dtype probe."""
    cpu: str

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.seconds / 60))

    def describe(self) -> str:
        """One sentence for a person: 'about 4 minutes on this machine (...)'."""
        basis = (
            "measured on earlier runs here"
            if self.measured
            else "a first guess; later runs use this machine's measured speed"
        )
        unit = "minute" if self.minutes == 1 else "minutes"
        return (
            f"about {self.minutes} {unit} on this machine ({self.steps} steps, "
            f"{self.train_tokens:,} tokens; {basis}), less if it stops early"
        )


def estimate_run(brand_dir: Path, config: TrainConfig, *, device: str = "cpu") -> RunEstimate:
    """Estimate a run of `config` on the prepared brand in `brand_dir`."""
    from transformers import AutoConfig, AutoTokenizer

    from chatbot.hardware import fastest_compute_dtype
    from chatbot.models import resolve_base_model
    from chatbot.training.data import (
        read_brand,
        tokenize_conversations,
        training_chat_template,
        with_system_prompt,
    )
    from chatbot.training.packing import plan_rows, shared_prefix_length

    base = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    brand = read_brand(Path(brand_dir))
    include = config.system_prompt == "always" or (
        config.system_prompt == "brand" and brand.system_prompt_mode == "always"
    )
    template = training_chat_template(tokenizer)

    def encode(conversations: list) -> list[dict]:
        rows = [with_system_prompt(m, brand.system_prompt, include) for m in conversations]
        return tokenize_conversations(rows, tokenizer, template, config.max_length)[0]

    def computed(examples: list[dict], batch: int) -> int:
        total = 0
        for start in range(0, len(examples), batch):
            group = examples[start : start + batch]
            prefix = shared_prefix_length(group) if config.share_prefix else 0
            suffixes = [len(e["input_ids"]) - prefix for e in group]
            rows = plan_rows(suffixes, prefix, config.max_batch_tokens)
            total += prefix * len(rows) + sum(suffixes)
        return total

    train, evals = encode(brand.train), encode(brand.eval)
    per_epoch = math.ceil(len(train) / config.batch_size / config.gradient_accumulation)
    steps = config.max_steps or math.ceil(per_epoch * config.epochs)
    epochs = steps / max(per_epoch, 1)
    model_config = AutoConfig.from_pretrained(base)
    dtype = config.compute_dtype
    speed, measured = _measured_speed(config, dtype)
    if speed is None:
        torch_dtype, probe = fastest_compute_dtype(model_config, device)
        dtype = dtype if dtype != "auto" else str(torch_dtype).removeprefix("torch.")
        tflops = max(probe.tflops.values()) if probe else 1.0
        speed = tflops * 1e12 * _PROBE_EFFICIENCY / (4 * _parameters(model_config))
    train_computed = int(computed(train, config.batch_size) * epochs)
    evaluations = 1 + (steps // config.eval_every if config.eval_every else 0)
    eval_computed = computed(evals, 32) * evaluations
    seconds = _FIXED_SECONDS + (train_computed + eval_computed * _EVAL_SHARE) / speed
    return RunEstimate(
        seconds=round(seconds, 1),
        steps=steps,
        train_tokens=int(sum(len(e["input_ids"]) for e in train) * epochs),
        computed_tokens=train_computed,
        tokens_per_s=round(speed, 1),
        measured=measured,
        cpu=cpu_info().describe(),
    )


def _parameters(model_config: object) -> int:
    """Weights a token passes through: every decoder layer's linear layers and the LM head."""
    h = int(getattr(model_config, "hidden_size", 576))
    inter = int(getattr(model_config, "intermediate_size", 4 * h))
    heads = int(getattr(model_config, "num_attention_heads", 9))
    kv = int(getattr(model_config, "num_key_value_heads", heads))
    head_dim = int(getattr(model_config, "head_dim", None) or h // heads)
    layers = int(getattr(model_config, "num_hidden_layers", 30))
    per_layer = 2 * h * heads * head_dim + 2 * h * kv * head_dim + 3 * h * inter
    return layers * per_layer


def _key(config: TrainConfig, dtype: str) -> str:
    return f"{cpu_info().describe()}|{config.base_model}|{config.quantization}|{dtype}"


def _path() -> Path:
    return brandvoice_home() / "machine" / "throughput.json"


def _read() -> dict[str, list[float]]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _measured_speed(config: TrainConfig, dtype: str) -> tuple[float | None, bool]:
    if dtype == "auto":  # the dtype a run would pick: the one earlier runs recorded
        keys = [k for k in _read() if k.startswith(_key(config, ""))]
        seen = [v for k in keys for v in _read()[k]]
    else:
        seen = _read().get(_key(config, dtype), [])
    seen = [v for v in seen if isinstance(v, int | float) and v > 0]
    return (statistics.median(seen), True) if seen else (None, False)


def record_throughput(config: TrainConfig, computed_tokens: int, seconds: float) -> None:
    """Remember a run's computed tokens per second for later estimates (last few per setting)."""
    if computed_tokens <= 0 or seconds <= 0:
        return
    data = _read()
    key = _key(config, config.compute_dtype)
    data[key] = [*data.get(key, []), round(computed_tokens / seconds, 1)][-_KEEP:]
    with contextlib.suppress(OSError):  # a read-only cache: estimates stay first guesses
        atomic_write_json(_path(), data)
