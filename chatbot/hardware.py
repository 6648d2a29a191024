"""What this machine computes fastest: the CPU's name and flags, and the measured compute dtype.

CPU families differ more than any of our speed-ups: with bf16 matrix units (AMX) bf16 matmuls are
several times faster than fp32, while a CPU with AVX512-BF16 alone ran fp32 about 1.7x faster than
bf16 on the default model's shapes. So on a CPU the compute dtype is measured, not assumed: a
probe times the model's own matmul shapes (forward, and backward to the input as LoRA training
does) in each candidate dtype, once per machine, model shape and PyTorch version, and caches the
figures under the model cache (`brandvoice_home()/machine/`). On CUDA the choice stays bf16 where
the GPU has it, else fp32.

fp16 is timed and reported where the CPU computes it natively (AVX512-FP16, AMX-FP16), but only
used when asked for (`compute_dtype=fp16`): without loss scaling its narrow range can underflow
LoRA gradients, and its activations can overflow in models trained in bf16.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from chatbot.storage import atomic_write_json
from chatbot.workspace import brandvoice_home

__all__ = [
    "CpuInfo",
    "DtypeProbe",
    "cpu_info",
    "probe_compute_dtypes",
    "fastest_compute_dtype",
    "DTYPES",
]

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# Chosen automatically; fp16 is measured and reported but used only on request (module docstring).
_AUTO_CHOICES = ("fp32", "bf16")
_PROBE_VERSION = 1
# Rows in a training probe: about one packed row's worth, where kernels reach their speed.
_TRAIN_TOKENS = 256


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as figures should quote it: model name, cores and the flags that decide speed."""

    model: str
    cores: int
    flags: tuple[str, ...]

    def describe(self) -> str:
        flags = ", ".join(self.flags) or "no AVX2/AVX-512/AMX"
        return f"{self.model} ({self.cores} cores; {flags})"


@dataclass
class DtypeProbe:
    """Measured matmul throughput (TFLOP/s) per compute dtype, and the fastest usable one."""

    tflops: dict[str, float]
    choice: str
    cpu: str
    tokens: int
    seconds: float
    measured_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_info() -> CpuInfo:
    """Model name and the speed-deciding flags (amx*, avx512_bf16, avx512_fp16, avx512f, avx2)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags":
            flags = set(value.split())
            break
    wanted = [f for f in sorted(flags) if f.startswith("amx")]
    wanted += [f for f in ("avx512_bf16", "avx512_fp16", "avx512f", "avx2") if f in flags]
    return CpuInfo(model=model, cores=os.cpu_count() or 1, flags=tuple(wanted))


def _shapes(config: object) -> list[tuple[int, int]]:
    """Distinct (in, out) shapes of a decoder layer's linear layers."""
    h = int(getattr(config, "hidden_size", 576))
    inter = int(getattr(config, "intermediate_size", 4 * h))
    heads = int(getattr(config, "num_attention_heads", 9))
    kv_heads = int(getattr(config, "num_key_value_heads", heads))
    head_dim = int(getattr(config, "head_dim", None) or h // heads)
    return sorted({(h, heads * head_dim), (h, kv_heads * head_dim), (h, inter), (inter, h)})


def _time_dtype(dtype: torch.dtype, shapes: list[tuple[int, int]], tokens: int) -> float:
    """TFLOP/s of forward (x @ W.T) and backward-to-input (g @ W) products on `shapes`."""
    flops, seconds = 0.0, 0.0
    for k, n in shapes:
        x, w, g = (torch.randn(*s).to(dtype) for s in ((tokens, k), (n, k), (tokens, n)))
        for _ in range(2):  # kernel selection and caches
            x @ w.t(), g @ w
        reps = 3
        start = time.perf_counter()
        for _ in range(reps):
            x @ w.t(), g @ w
        seconds += (time.perf_counter() - start) / reps
        flops += 4 * tokens * k * n
    return flops / seconds / 1e12


def probe_compute_dtypes(
    config: object, *, tokens: int = _TRAIN_TOKENS, candidates: tuple[str, ...] | None = None
) -> DtypeProbe:
    """Time each candidate dtype on the model's shapes (alternating, best of two rounds)."""
    info = cpu_info()
    if candidates is None:
        native_fp16 = "avx512_fp16" in info.flags or "amx_fp16" in info.flags
        candidates = ("fp32", "bf16", "fp16") if native_fp16 else ("fp32", "bf16")
    shapes = _shapes(config)
    start = time.perf_counter()
    best: dict[str, float] = {}
    for _ in range(2):  # two rounds, alternating, so a burst of other load hits every dtype
        for name in candidates:
            best[name] = max(best.get(name, 0.0), _time_dtype(DTYPES[name], shapes, tokens))
    usable = {k: v for k, v in best.items() if k in _AUTO_CHOICES}
    return DtypeProbe(
        tflops={k: round(v, 4) for k, v in best.items()},
        choice=max(usable, key=usable.__getitem__),
        cpu=info.describe(),
        tokens=tokens,
        seconds=round(time.perf_counter() - start, 2),
    )


def _cache_path(config: object, threads: int) -> Path:
    info = cpu_info()
    key = json.dumps(
        [_PROBE_VERSION, info.model, info.flags, torch.__version__, threads, _shapes(config)]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return brandvoice_home() / "machine" / f"compute-dtype-{digest}.json"


def fastest_compute_dtype(
    config: object, device: str | torch.device = "cpu"
) -> tuple[torch.dtype, DtypeProbe | None]:
    """The compute dtype to use on `device` for a model with `config`, and the probe behind it.

    CPU: the probe's choice, measured once and cached per machine (a second or two the first
    time). CUDA: bf16 where supported, else fp32 (no probe).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32), None
    if device.type != "cpu":
        return torch.float32, None
    path = _cache_path(config, torch.get_num_threads())
    probe = _read_cached(path) or _UNSETTLED.get(path)
    if probe is None:
        probe = probe_compute_dtypes(config)
        if _machine_is_busy():
            # Measured while other work held the cores: the figures are the load's, not the CPU's
            # (an estimate built on them said 112 minutes for a 12-minute run). Kept for this
            # process only; a quieter moment measures again and is remembered.
            _UNSETTLED[path] = probe
        else:
            with contextlib.suppress(OSError):  # a read-only cache: measure again next time
                atomic_write_json(path, probe.to_dict())
    return DTYPES[probe.choice], probe


_UNSETTLED: dict[Path, DtypeProbe] = {}


def _machine_is_busy() -> bool:
    """More work waiting for the CPU than it has cores (the last minute's load average)."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:  # no load average on this system
        return False


def _read_cached(path: Path) -> DtypeProbe | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        probe = DtypeProbe(**data)
    except (OSError, ValueError, TypeError):
        return None
    return probe if probe.choice in _AUTO_CHOICES else None
