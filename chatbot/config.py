"""Every setting in one place: dataclasses with their defaults, validation and YAML in/out.

`PrepareConfig` says how a brand's data is read and split; `TrainConfig` is the training recipe,
picked by preset (quick, balanced, thorough) and overridable field by field with `key=value`
strings or a YAML file. Each class reports every problem at once in a single `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from chatbot.errors import ConfigError
from chatbot.storage import atomic_write_text
from chatbot.validation import MIN_CONVERSATIONS

__all__ = ["PrepareConfig", "TrainConfig", "PRESETS", "DEFAULT_PRESET"]


# --- prepare ------------------------------------------------------------------------------------
@dataclass
class PrepareConfig:
    """How `brandvoice prepare` reads, cleans and splits a brand's data."""

    eval_fraction: float = 0.1
    """Share of conversations held out for evaluation (the scorecard and eval loss use them)."""
    min_eval: int = 2
    """At least this many held-out conversations, however small the data."""
    seed: int = 0
    """Seed of the fixed train/eval split."""
    min_conversations: int = MIN_CONVERSATIONS
    """Fewer usable conversations than this is an error (`chatbot.validation` holds the figures
    behind the data-size advice)."""
    max_tokens: int = 1024
    """Training length: conversations longer than this get a warning (they are cut in training)."""
    redact_pii: bool | None = None
    """Redact PII (None: as the brand's brand.yaml says, on for a new brand)."""
    skip_invalid: bool = False
    """Leave broken records out with a warning instead of refusing the whole input."""
    column_map: dict[str, str] = field(default_factory=dict)
    """CSV/TSV columns by role, e.g. {"prompt": "Question", "response": "Answer"}."""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.eval_fraction < 0.5:
            problems.append(
                f"eval_fraction: must be at least 0 and under 0.5, got {self.eval_fraction}"
            )
        if self.min_eval < 0:
            problems.append(f"min_eval: must be 0 or more, got {self.min_eval}")
        if self.min_conversations < 1:
            problems.append(f"min_conversations: must be 1 or more, got {self.min_conversations}")
        if self.max_tokens < 16:
            problems.append(f"max_tokens: must be 16 or more, got {self.max_tokens}")
        unknown = set(self.column_map) - {"prompt", "response", "system", "conversation"}
        if unknown:
            problems.append(
                f"column_map: unknown role(s) {sorted(unknown)}; "
                "use prompt, response, system or conversation"
            )
        if problems:
            raise ConfigError(problems)


# --- train --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """How a brand's voice is trained: QLoRA (or plain LoRA) with TRL's SFT trainer."""

    preset: str = "quick"
    """Name of the preset these values started from (informational once resolved)."""

    base_model: str = "default"
    """'default' (SmolLM2-135M-Instruct, fetched on first use), a local model folder or a hub id."""

    quantization: Literal["nf4", "none"] = "nf4"
    """'nf4': QLoRA on a 4-bit NF4 base (double quantisation). 'none': plain LoRA."""

    compute_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """The dtype layers compute in (the 4-bit base stays 4-bit). 'auto': on a CPU, whichever a
    short probe of the model's matmul shapes measures fastest on this machine (fp32 or bf16; see
    chatbot/hardware.py); on CUDA bf16 where supported. The choice and the probe's figures are
    recorded in the run's metrics."""

    epochs: float = 3.0
    """Passes over the training conversations (fractions allowed)."""

    max_steps: int = 0
    """Stop after this many optimizer steps; 0 means run all the epochs."""

    learning_rate: float = 2e-4
    """Peak learning rate of the LoRA weights."""

    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """How the learning rate decays after warm-up."""

    warmup_ratio: float = 0.05
    """Fraction of the steps spent warming the learning rate up from zero."""

    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""

    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm; 0 turns clipping off."""

    batch_size: int = 8
    """Conversations per optimizer step (per gradient-accumulation micro-step)."""

    max_batch_tokens: int = 2048
    """Most tokens computed at once: a step's conversations are packed into rows of at most this
    many tokens (padding included) and run one row after another, so peak memory is bounded
    whatever the conversations' lengths. Must be at least max_length."""

    share_prefix: bool = True
    """Compute the tokens every conversation of a row starts with (the system prompt block) once
    per row instead of once per conversation. Exact: each conversation attends to the same keys
    and values as alone, so the loss and gradients are unchanged."""

    gradient_accumulation: int = 1
    """Micro-steps accumulated into one optimizer step."""

    max_length: int = 1024
    """Tokens kept per conversation; longer ones are cut at the end (their tail is not learned)."""

    lora_r: int = 16
    """LoRA rank: capacity of the adapter."""

    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""

    lora_dropout: float = 0.0
    """Dropout on the LoRA input; 0 is fastest and fine for short runs."""

    lora_target: str = "all-linear"
    """Which layers get adapters: 'all-linear' or a comma-separated list of module names."""

    system_prompt: Literal["brand", "always", "never"] = "brand"
    """Whether conversations start with the brand's system prompt: as brand.yaml says, or forced."""

    pad_to_multiple_of: int = 64
    """Round each packed row's length up to a multiple of this many tokens (never past
    max_batch_tokens); 0 turns it off. Fewer distinct shapes let the CPU reuse its matmul kernels
    and memory: over a quick run on the default model the peak fell from 2.4 to 1.76 GB at the
    same real-token speed, for a few percent of padding tokens."""

    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Recompute activations to save memory (~25% slower); 'auto' turns it on for models above 1B
    parameters, and when less than 3 GB of memory is free for each training process."""

    eval_every: int = 0
    """Evaluate on the eval split every N steps; 0 means only before and after training."""

    early_stopping_patience: int = 0
    """Stop once this many evaluations in a row (every eval_every steps) have not lowered the
    eval loss by at least 0.5%; 0 never stops early."""

    min_steps: int = 0
    """Early stopping never ends a run before this many optimizer steps."""

    checkpoint_every: int = 50
    """Save a resumable checkpoint every N steps (and always when stopped)."""

    seed: int = 0
    """Seed for adapter initialisation and data order: the same seed gives the same run."""

    threads: int = 0
    """CPU threads for training; 0 means one per physical core (shared among the processes)."""

    processes: int = 1
    """Training processes on this machine (data parallel, through `accelerate launch`); 1 trains
    in the job's own process. The global batch stays `batch_size`: each process takes its share."""

    distributed: Literal["ddp", "fsdp", "deepspeed"] = "ddp"
    """How several processes share the work: 'ddp' (CPU or GPU), 'fsdp' or 'deepspeed' (ZeRO-3,
    CUDA GPUs only; the base's 4-bit weights are then stored as bf16 so they can be sharded)."""

    accelerate_config: str = ""
    """An `accelerate` config file (several machines, custom settings); overrides `distributed`."""

    method: Literal["sft", "dpo", "kto"] = "sft"
    """'sft': learn the brand's conversations. 'dpo'/'kto': learn the Compare tab's votes (TRL's
    DPOTrainer/KTOTrainer), starting from `parent_run`'s adapter (`train --from-votes`)."""

    parent_run: str = ""
    """The run whose adapter a run from votes starts from: its parent in the runs' lineage."""

    preference_beta: float = 0.1
    """DPO/KTO beta: how closely a run from votes stays to its parent's replies (higher: closer)."""

    def __post_init__(self) -> None:
        problems = self.validate()
        if problems:
            raise ConfigError(problems)

    def validate(self) -> list[str]:
        """Every problem with these values, one sentence each (empty when valid)."""
        p: list[str] = []
        p += _check_choices(self)
        positive = (
            "epochs",
            "learning_rate",
            "batch_size",
            "gradient_accumulation",
            "max_length",
            "lora_r",
            "lora_alpha",
            "checkpoint_every",
        )
        p += [
            f"{n} must be greater than 0 (got {getattr(self, n)})"
            for n in positive
            if getattr(self, n) <= 0
        ]
        non_negative = (
            "max_steps",
            "min_steps",
            "early_stopping_patience",
            "pad_to_multiple_of",
            "weight_decay",
            "max_grad_norm",
            "eval_every",
            "threads",
            "seed",
        )
        p += [
            f"{n} must be 0 or more (got {getattr(self, n)})"
            for n in non_negative
            if getattr(self, n) < 0
        ]
        if not 0 <= self.warmup_ratio < 1:
            p.append(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if not 0 <= self.lora_dropout < 1:
            p.append(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if 0 < self.max_length < 16:
            p.append(f"max_length must be at least 16 tokens (got {self.max_length})")
        if not self.base_model.strip():
            p.append("base_model must not be empty (use 'default')")
        if not self.lora_target.strip():
            p.append("lora_target must not be empty (use 'all-linear')")
        if self.max_batch_tokens < self.max_length:
            p.append(
                f"max_batch_tokens ({self.max_batch_tokens}) must be at least max_length "
                f"({self.max_length}): a whole conversation must fit in one row"
            )
        if self.early_stopping_patience and not self.eval_every:
            p.append("early_stopping_patience needs eval_every > 0 (evaluations to compare)")
        p += self._preference_problems()
        if self.processes < 1:
            p.append(f"processes must be 1 or more (got {self.processes})")
        elif self.processes > 1 and self.batch_size < self.processes:
            p.append(
                f"batch_size ({self.batch_size}) must be at least processes ({self.processes}): "
                "each process takes a share of every batch"
            )
        return p

    def _preference_problems(self) -> list[str]:
        p = []
        if self.method != "sft" and not self.parent_run.strip():
            p.append(f"parent_run must name the run whose votes method={self.method} learns from")
        if self.method != "sft" and self.processes != 1:
            p.append("a run from votes trains in one process (processes=1)")
        if self.preference_beta <= 0:
            p.append(f"preference_beta must be greater than 0 (got {self.preference_beta})")
        return p

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_preset(
        cls,
        name: str | None = None,
        overrides: dict[str, Any] | list[str] | tuple[str, ...] = (),
        yaml_path: str | Path | None = None,
    ) -> TrainConfig:
        """Resolve a config: preset values, then the YAML file's, then `overrides` (last wins).

        `name` defaults to the YAML file's `preset` key, else DEFAULT_PRESET. `overrides` is a
        dict or a list of "key=value" strings (values parsed as YAML: 3, 2e-4, true, cosine).
        Every problem (unknown preset or key, wrong type, invalid value) is reported at once.
        """
        problems: list[str] = []
        from_file = _read_yaml(yaml_path) if yaml_path else {}
        name = name or from_file.get("preset") or DEFAULT_PRESET
        if name not in PRESETS:
            problems.append(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        values: dict[str, Any] = {**PRESETS.get(name, {}), "preset": name}
        # "preset" chose above; retired settings in configs written by earlier versions are read
        # as the defaults that replaced them.
        file_values = {k: v for k, v in from_file.items() if k != "preset" and k not in _RETIRED}
        values.update(_coerce_all(cls, file_values, problems, f"{yaml_path}: "))
        pairs = _parse_pairs(overrides, problems) if not isinstance(overrides, dict) else overrides
        values.update(_coerce_all(cls, pairs, problems, ""))
        return _build(cls, values, problems, source=str(yaml_path) if yaml_path else None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Load a config file written by `to_yaml` (or any subset of its keys over its preset)."""
        return cls.from_preset(None, yaml_path=path)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Every resolved value as YAML text, also written (atomically) to `path` when given.

        A run folder stores this, so it records exactly what the run trained with.
        """
        text = _YAML_HEADER + yaml.safe_dump(self.to_dict(), sort_keys=False, width=100)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text


DEFAULT_PRESET = "quick"
# Settings earlier versions wrote into run folders' config.yaml: padding_free (rows are now always
# packed, see chatbot/training/packing.py).
_RETIRED = frozenset({"padding_free"})
_YAML_HEADER = "# brandvoice training config (resolved); load with TrainConfig.from_yaml\n"

# Named bundles a non-expert can pick. Values not listed keep the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on a laptop CPU with the default model; enough to hear the brand's voice.
    "quick": {
        "epochs": 3.0,
        "learning_rate": 4e-4,
        # 8 conversations a step, packed into rows of at most 512 tokens: on the default model in
        # fp32 (what CPUs without bf16 matrix units compute fastest) that keeps the peak under
        # 1.5 GB without recomputing activations (scripts/bench_train.py).
        "batch_size": 8,
        "gradient_accumulation": 1,
        "max_batch_tokens": 512,
        "lora_r": 16,
        "lora_alpha": 32,
        "max_length": 512,
        "warmup_ratio": 0.05,
        "checkpoint_every": 25,
        # Ends the run once the held-out loss stops falling (checked every 8 steps).
        "eval_every": 8,
        "early_stopping_patience": 2,
        "min_steps": 24,
    },
    # The usual QLoRA recipe: more passes at a gentler rate.
    "balanced": {
        "epochs": 4.0,
        "learning_rate": 2e-4,
        "batch_size": 8,
        "lora_r": 16,
        "lora_alpha": 32,
        "max_length": 1024,
        "max_batch_tokens": 1024,
        "eval_every": 50,
        "early_stopping_patience": 3,
        "min_steps": 100,
    },
    # Larger adapter and more passes; for bigger data sets or a GPU.
    "thorough": {
        "epochs": 6.0,
        "learning_rate": 1e-4,
        "batch_size": 8,
        "lora_r": 32,
        "lora_alpha": 64,
        "lora_dropout": 0.05,
        "max_length": 2048,
        "max_batch_tokens": 2048,
        "eval_every": 50,
        "weight_decay": 0.01,
    },
}


# --------------------------------------------------------------------------------------------
# Helpers shared by every config class in this module
# --------------------------------------------------------------------------------------------


def _check_choices(obj: object) -> list[str]:
    """Problems for Literal-typed fields whose value is not one of the allowed choices."""
    problems = []
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):  # type: ignore[arg-type]
        hint = hints[f.name]
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        value = getattr(obj, f.name)
        if choices and value not in choices:
            problems.append(f"{f.name} must be {_type_name(hint)} (got {value!r})")
    return problems


def _read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(["the file must hold a mapping of setting: value"], source=str(path))
    return data


def _parse_pairs(pairs: list[str] | tuple[str, ...], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            problems.append(f"override {pair!r} is not of the form key=value")
            continue
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _coerce_all(
    cls: type, values: dict[str, Any], problems: list[str], where: str
) -> dict[str, Any]:
    """Keep known keys with values of the right type; report the rest into `problems`."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "known: " + ", ".join(sorted(known))
            problems.append(f"{where}unknown setting {key!r} ({hint})")
            continue
        try:
            out[key] = _coerce(value, hints[key])
        except (TypeError, ValueError):
            problems.append(f"{where}{key} must be {_type_name(hints[key])} (got {value!r})")
    return out


def _coerce(value: Any, hint: Any) -> Any:
    """Convert a YAML/override value to the field's type, refusing lossy conversions."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, bool) and value not in choices:
            # YAML reads on/off and yes/no as booleans: take the word back for such choices.
            words = ("on", "yes", "true") if value else ("off", "no", "false")
            return next((w for w in words if w in choices), value)
        return value if isinstance(value, bool) else str(value)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    converters = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}
    return converters[hint](value) if hint in converters else value


def _to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TypeError(value)
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as text
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


def _to_str(value: Any) -> str:
    if isinstance(value, dict | list) or value is None:
        raise TypeError(value)
    return str(value)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(
        hint, str(hint)
    )


def _build(cls: type, values: dict[str, Any], problems: list[str], source: str | None) -> Any:
    """Instantiate `cls`, merging its own validation problems with the ones found so far."""
    try:
        obj = cls(**values)
    except ConfigError as exc:
        problems = problems + exc.problems
        obj = None
    if problems:
        raise ConfigError(problems, source=source)
    return obj
