"""Export a finished run for production: a LoRA adapter zip or a merged model, verified.

`export_run` reads top to bottom: set up (run, brand, base), load the tuned model in float32,
compute its greedy reply to a fixed prompt, write the files (adapter or merged weights, tokenizer
with chat template, generation config, system prompt, brand.yaml, model card, manifest), and then
have a fresh Python process load the result with plain transformers/PEFT and reproduce that reply
token for token. Only a verified export is renamed into place; a failed one leaves nothing behind.

The merged model is made from the base loaded unquantised (never from 4-bit weights), merged in
float32 and saved in bfloat16 safetensors. Both checks run on CPU in float32, so they compare the
same arithmetic; for the merged model the reference is the bf16-rounded merged weights.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import tempfile
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from chatbot.brand.profile import BrandProfile
from chatbot.errors import BrandVoiceError
from chatbot.export import reload_check
from chatbot.export.archive import atomic_zip_path, zip_folder
from chatbot.export.base_model import BaseModel, base_model_of
from chatbot.export.card import CardFacts, model_card
from chatbot.export.verify import ReloadCheck, check_in_fresh_process
from chatbot.export.vllm_compat import VllmCheck, architecture_of, check_adapter
from chatbot.models import (
    load_base_model,
)
from chatbot.runs.adapters import AdapterSetup, adapter_setup
from chatbot.runs.jobs import Run, get_run
from chatbot.storage import atomic_dir, atomic_write_json, atomic_write_text
from chatbot.types import ExportFormat
from chatbot.workspace import Workspace

__all__ = [
    "ExportFormat",
    "FORMATS",
    "CHECK_PROMPT",
    "CHECK_TOKENS",
    "ExportResult",
    "export_run",
    "default_export_path",
]

FORMATS: tuple[str, ...] = typing.get_args(ExportFormat)
CHECK_PROMPT = "Hello! Can you help me with my order?"
CHECK_TOKENS = 16
"""Greedy tokens the reload check compares; all must match exactly (float32 on CPU)."""
Progress = Callable[[str, int, int], None]  # (stage, done, total)

_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    run_id: str
    files: dict[str, str]
    """Every file of the export (manifest.json aside) and its SHA-256."""
    check: ReloadCheck
    vllm: VllmCheck | None
    """The adapter checked against vLLM's LoRA constraints (adapter exports only)."""
    warnings: list[str] = field(default_factory=list)
    quant: str = ""
    """The GGUF's type (f16, q8_0, q4_k_m); "" for other formats."""
    verification: dict[str, Any] = field(default_factory=dict)
    """GGUF exports: what each independent reader reproduced (see gguf_export.judge)."""


@dataclass(frozen=True)
class _Job:
    run: Run
    setup: AdapterSetup
    brand_yaml: Path
    profile: BrandProfile
    base: BaseModel
    format: str
    out: Path
    n_tokens: int


def default_export_path(ws: Workspace, run: Run, fmt: str, quant: str = "f16") -> Path:
    """exports/<brand>-<run>-adapter.zip, or the folder exports/<brand>-<run>-merged (or
    -gguf-<quant>)."""
    suffix = {"adapter": "adapter.zip", "merged": "merged"}.get(fmt, f"gguf-{quant}")
    return ws.root / "exports" / f"{run.brand}-{run.id}-{suffix}"


def export_run(
    ws: Workspace,
    run_id: str,
    fmt: str = "adapter",
    out: Path | None = None,
    *,
    progress: Progress | None = None,
    check_tokens: int = CHECK_TOKENS,
    timeout: float = 1800.0,
    quant: str = "f16",
) -> ExportResult:
    """Export run `run_id` as `fmt` ("adapter", "merged" or "gguf") to `out`, verified.

    `out` ending in ".zip" gives a zip, anything else a folder (default: `default_export_path`).
    "gguf" is one GGUF file of type `quant` with an Ollama Modelfile (`gguf_export`).
    Raises BrandVoiceError for a run without adapter, and ExportCheckError when the written export
    does not reproduce the tuned reply in a fresh process (then no file of it is left, and an
    earlier export at `out` stays as it was).
    """
    if fmt == "gguf":
        from chatbot.export.gguf_export import export_gguf

        return export_gguf(
            ws, run_id, out, quant, progress=progress, check_tokens=check_tokens, timeout=timeout
        )
    say = progress or _no_progress
    job = _setup(ws, run_id, fmt, out, check_tokens)
    with _stage(say, "loading"):
        model, tokenizer = _load_tuned(job)
    with _stage(say, "reference"):
        expected = _greedy(model, tokenizer, job)
    warnings: list[str] = []
    vllm = None
    with _staged(job.out) as folder:
        with _stage(say, "writing"):
            if fmt == "merged":
                tuned, expected = expected, _write_merged(model, tokenizer, job, folder)
                warnings += _rounding_warning(tuned, expected)
            else:
                _write_adapter(job, folder)
                vllm = check_adapter(folder, architecture_of(job.base.folder))
                warnings += [f"vLLM {vllm.vllm_version}: {p}" for p in vllm.problems]
            del model
            gc.collect()
            _write_common(job, tokenizer, folder)
            _write_card(job, folder, expected, vllm)
            files = _write_manifest(job, folder, expected)
        with _stage(say, "verifying"):
            check = _publish(job, folder, expected, timeout)
    return ExportResult(job.out, fmt, job.run.id, files, check, vllm, warnings)


# ----------------------------------------------------------------------------------------------
# Setup and the tuned model
# ----------------------------------------------------------------------------------------------


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    pass


@contextlib.contextmanager
def _stage(say: Progress, name: str) -> Iterator[None]:
    say(name, 0, 1)
    yield
    say(name, 1, 1)


def _setup(
    ws: Workspace, run_id: str, fmt: str, out: Path | None, n_tokens: int, quant: str = "f16"
) -> _Job:
    if fmt not in FORMATS:
        raise BrandVoiceError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if not 1 <= n_tokens <= 256:
        raise BrandVoiceError(f"check_tokens must be between 1 and 256, got {n_tokens}.")
    setup = adapter_setup(ws, run_id)
    run = get_run(ws, setup.run_id)
    brand_yaml = ws.brand_dir(run.brand) / "brand.yaml"
    out = Path(out) if out is not None else default_export_path(ws, run, fmt, quant)
    base = base_model_of(setup.base_model)
    return _Job(run, setup, brand_yaml, BrandProfile.load(brand_yaml), base, fmt, out, n_tokens)


def _load_tuned(job: _Job) -> tuple[Any, Any]:
    """The base model unquantised in float32 on CPU, with the run's adapter, and the tokenizer."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    model, _ = load_base_model(
        job.base.folder, quantization="none", compute_dtype=torch.float32, device="cpu"
    )
    adapter = job.setup.adapter_dir
    try:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise BrandVoiceError(
            f"Cannot load the adapter of run {job.run.id} on {job.base.name}: {exc}"
        ) from exc
    # The tokenizer (and chat template) the adapter was trained with, else the base model's.
    source = adapter if (adapter / "tokenizer_config.json").is_file() else job.base.folder
    return model.eval(), AutoTokenizer.from_pretrained(source)


def _greedy(model: Any, tokenizer: Any, job: _Job) -> ReloadCheck:
    messages = reload_check.check_messages(job.setup.tuned_system_prompt, CHECK_PROMPT)
    ids = reload_check.prompt_ids(tokenizer, messages)
    tokens = reload_check.greedy_ids(model, ids, job.n_tokens)
    return ReloadCheck(CHECK_PROMPT, tokens, tokenizer.decode(tokens, skip_special_tokens=True))


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """An empty folder to build the export in: `out` itself (atomically) or a zip's contents."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
            yield Path(tmp)
    else:
        with atomic_dir(out) as tmp:
            yield tmp


def _write_adapter(job: _Job, folder: Path) -> None:
    """The adapter's weights as trained, and its config naming the public base model."""
    shutil.copyfile(job.setup.adapter_dir / _ADAPTER_FILES[0], folder / _ADAPTER_FILES[0])
    config = json.loads((job.setup.adapter_dir / _ADAPTER_FILES[1]).read_text(encoding="utf-8"))
    # A local path here would leak a folder name of this machine and mean nothing elsewhere.
    config["base_model_name_or_path"] = job.base.name
    config["inference_mode"] = True
    atomic_write_json(folder / _ADAPTER_FILES[1], config)


def _write_merged(model: Any, tokenizer: Any, job: _Job, folder: Path) -> ReloadCheck:
    """Merge in float32, save bf16 safetensors; returns the greedy reply of the saved weights."""
    merged = model.merge_and_unload()
    merged.to(torch.bfloat16)
    merged.save_pretrained(folder)
    merged.to(torch.float32)  # exactly the saved values, computed as the reload check will
    reply = _greedy(merged, tokenizer, job)
    del merged
    return reply


def _rounding_warning(tuned: ReloadCheck, merged: ReloadCheck) -> list[str]:
    if tuned.token_ids == merged.token_ids:
        return []
    same = next(
        (
            i
            for i, (a, b) in enumerate(zip(tuned.token_ids, merged.token_ids, strict=True))
            if a != b
        ),
        len(tuned.token_ids),
    )
    return [
        f"bf16 rounding of the merged weights changed the greedy check reply after {same} of "
        f"{len(tuned.token_ids)} tokens ({tuned.text!r} became {merged.text!r}); the export "
        "itself was verified against the merged weights."
    ]


def _write_common(job: _Job, tokenizer: Any, folder: Path) -> None:
    """Tokenizer with chat template, generation config, the trained system prompt, brand.yaml."""
    tokenizer.save_pretrained(folder)
    _generation_config(job, tokenizer).save_pretrained(folder)
    atomic_write_text(folder / reload_check.SYSTEM_PROMPT_FILE, job.setup.tuned_system_prompt)
    shutil.copyfile(job.brand_yaml, folder / "brand.yaml")


def _generation_config(job: _Job, tokenizer: Any) -> Any:
    """The base model's generation config with the sampling settings brandvoice chats with."""
    from transformers import GenerationConfig

    from chatbot.engine import GenerationSettings

    try:
        config = GenerationConfig.from_pretrained(job.base.folder)
    except OSError:
        config = GenerationConfig()
    chat = GenerationSettings()
    eos = config.eos_token_id
    stops = {eos} if isinstance(eos, int) else set(eos or [])
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    config.update(
        do_sample=True,
        temperature=chat.temperature,
        top_p=chat.top_p,
        repetition_penalty=chat.repetition_penalty,
        eos_token_id=sorted(stops) if len(stops) > 1 else next(iter(stops), None),
        pad_token_id=tokenizer.pad_token_id,
    )
    return config


def _write_card(
    job: _Job,
    folder: Path,
    reply: ReloadCheck,
    vllm: VllmCheck | None,
    *,
    quant: str = "",
    verified: dict[str, Any] | None = None,
) -> None:
    run_dir, files = job.run.run_dir, job.run.folder
    config = files.read_config().to_dict()
    adapter_config = json.loads((job.setup.adapter_dir / _ADAPTER_FILES[1]).read_text("utf-8"))
    facts = CardFacts(
        brand_name=job.profile.name,
        run_id=job.run.id,
        format=job.format,
        model_name=job.run.brand,
        base_model=job.base.name,
        base_license=job.base.license,
        base_note=job.base.note,
        system_prompt=job.setup.tuned_system_prompt,
        check_prompt=reply.prompt,
        check_tokens=len(reply.token_ids),
        check_reply=reply.text,
        config=config,
        metrics=_read_json(files.metrics),
        report=_read_json(job.brand_yaml.parent / "report.json"),
        **_scorecard_summary(run_dir),
        imported=_read_json(files.imported) if files.imported.exists() else None,
        lora_rank=adapter_config.get("r"),
        max_lora_rank=vllm.max_lora_rank if vllm else None,
        vllm_problems=list(vllm.problems) if vllm else [],
        vllm_version=vllm.vllm_version if vllm else "",
        quantization=quant,
        gguf_file=f"{job.run.brand}-{quant}.gguf" if quant else "",
        verification=verified or {},
        parent_run=config.get("parent_run", ""),
    )
    atomic_write_text(folder / "README.md", model_card(facts))


def _scorecard_summary(run_dir: Path) -> dict[str, Any]:
    """The scorecard's summary table and headlines, as the scorecard module words them."""
    from chatbot.scorecard import headlines, load_scorecard, summary_rows

    card = load_scorecard(run_dir)
    if card is None:
        return {}
    return {"scorecard_table": summary_rows(card), "scorecard_headlines": headlines(card)}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _manifest_base(job: _Job, folder: Path) -> dict[str, Any]:
    """What every manifest holds: format, run, base model, and every file's SHA-256 and size."""
    pickles = [p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    assert not pickles, f"an export must hold no pickle files: {pickles}"
    files = {
        p.name: reload_check.sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.name != reload_check.MANIFEST
    }
    return {
        "format": job.format,
        "brand": job.run.brand,
        "run_id": job.run.id,
        "base_model": job.base.name,
        "base_model_source": job.base.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {
            name: {"sha256": digest, "bytes": (folder / name).stat().st_size}
            for name, digest in files.items()
        },
    }


def _write_manifest(job: _Job, folder: Path, reply: ReloadCheck) -> dict[str, str]:
    """manifest.json: the SHA-256 of every file and the reply the reload check must reproduce."""
    manifest = _manifest_base(job, folder)
    manifest |= {
        "check": {
            "prompt": reply.prompt,
            "system_prompt_file": reload_check.SYSTEM_PROMPT_FILE,
            "max_new_tokens": len(reply.token_ids),
            "decoding": "greedy argmax, float32, CPU",
            "token_ids": reply.token_ids,
            "text": reply.text,
        },
    }
    atomic_write_json(folder / reload_check.MANIFEST, manifest)
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


# ----------------------------------------------------------------------------------------------
# Verifying and publishing
# ----------------------------------------------------------------------------------------------


def _publish(job: _Job, folder: Path, expected: ReloadCheck, timeout: float) -> ReloadCheck:
    """Verify the export in a fresh process; a zip is renamed into place only once it passes.

    A folder export is `folder` itself, swapped into place by `_staged` when this returns.
    """
    base = job.base.folder if job.format == "adapter" else None
    if job.out.suffix != ".zip":
        return check_in_fresh_process(folder, base, expected, timeout)
    with atomic_zip_path(job.out) as tmp:
        zip_folder(folder, tmp)
        return check_in_fresh_process(tmp, base, expected, timeout)
