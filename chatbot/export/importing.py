"""Import a LoRA adapter trained elsewhere, from a zip, as a finished run of a brand.

An archive from outside is untrusted, so everything about it is checked before a byte is written:

- entries: at most `max_entries`; no absolute paths, drive letters, `..`, backslashes, symlinks or
  other special files, encrypted or duplicate entries;
- sizes: each file's and the total uncompressed size, and the compression ratio of large entries
  (a zip bomb claims little and inflates to much); extraction counts bytes again as it writes;
- weights: safetensors only. A pickle (`.bin`, `.pt`, `.pkl`, ...) anywhere in the archive refuses
  it, decided from the name alone: loading a pickle can run code, so it is never opened;
- `adapter_config.json`: PEFT LoRA (`peft_type` LORA) with a rank, and the base model recorded,
  which must be the default model or a model folder on this machine unless `base_model` names one
  (so chat never starts an unexpected download); JSON files are objects, nested at most
  `MAX_JSON_DEPTH` levels; `system_prompt.txt` at most `MAX_PROMPT_BYTES`.

Only known files are taken (adapter weights and config, tokenizer files, and what a brandvoice
export adds: system_prompt.txt, brand.yaml, manifest.json); they land flat in a fresh folder in the
workspace, so no entry name ever becomes a path. An archive with a `manifest.json` (a brandvoice
export) must also match its hashes. The result is recorded as a succeeded run, usable by chat,
Compare and the scorecard like any trained one.
"""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from chatbot.brand.profile import BrandProfile
from chatbot.config import TrainConfig
from chatbot.errors import BrandVoiceError, ConfigError
from chatbot.export.archive import TOKENIZER_FILES
from chatbot.export.reload_check import MANIFEST, SYSTEM_PROMPT_FILE, sha256_file
from chatbot.export.vllm_compat import VllmCheck, architecture_of, check_adapter, lora_module_names
from chatbot.ingest.jsonsafe import JsonProblem, json_type, load_json
from chatbot.models import default_model_dir
from chatbot.runs.jobs import Run, record_imported_run
from chatbot.workspace import Workspace, slugify

__all__ = ["ImportLimits", "ImportResult", "import_adapter", "PICKLE_SUFFIXES", "MAX_PROMPT_BYTES"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
_WEIGHTS = "adapter_model.safetensors"
_CONFIG = "adapter_config.json"
_ADAPTER_FILES = frozenset(
    {_WEIGHTS, _CONFIG, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
    | {"generation_config.json"}
    | TOKENIZER_FILES
)
_RUN_FILES = frozenset({SYSTEM_PROMPT_FILE, "brand.yaml", MANIFEST, "README.md"})
"""Taken from a brandvoice export, but kept out of the run's adapter folder."""
_MAX_CONFIG_BYTES = 1 << 20
MAX_PROMPT_BYTES = 64 << 10
"""Largest system_prompt.txt imported: a prompt far past any model's context is no prompt."""
_RATIO_FLOOR = 1 << 20
"""Entries below this size are never refused for their compression ratio (JSON compresses well)."""
_DRIVE = re.compile(r"^[A-Za-z]:")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class ImportLimits:
    """How large an archive may be. The defaults fit a rank-64 adapter of a 70B model."""

    max_entries: int = 100
    max_file_bytes: int = 4 << 30
    max_total_bytes: int = 8 << 30
    max_ratio: float = 100.0
    """Uncompressed / compressed size of one entry of 1 MiB or more."""


@dataclass(frozen=True)
class ImportResult:
    run: Run
    ignored: list[str]
    """Archive entries that were not needed and not extracted."""
    vllm: VllmCheck
    warnings: list[str] = field(default_factory=list)


def import_adapter(
    ws: Workspace,
    archive: Path,
    brand: str | None = None,
    *,
    base_model: str | None = None,
    quantization: str = "none",
    limits: ImportLimits | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import the adapter zip `archive` as a succeeded run of `brand`; see the module doc.

    `brand` is a prepared brand; without it the archive's brand.yaml names the brand (created from
    that file if the workspace lacks it). `base_model` overrides the base recorded in the adapter's
    config. `quantization` is how chat loads the base for this adapter ("none" or "nf4").
    """
    archive = Path(archive)
    limits = limits or ImportLimits()
    say = progress or (lambda _stage, _done, _total: None)
    say("checking", 0, 1)
    with _open_zip(archive) as zf:
        wanted, ignored = _plan(zf, archive.name, limits)
        ws.runs_dir().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=ws.runs_dir()))
        try:
            say("extracting", 0, len(wanted))
            _extract(zf, wanted, staging, limits, say)
            return _record(ws, archive, staging, brand, base_model, quantization, ignored)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _record(
    ws: Workspace,
    archive: Path,
    staging: Path,
    brand: str | None,
    base_model: str | None,
    quantization: str,
    ignored: list[str],
) -> ImportResult:
    """Validate the extracted files and record them as a run."""
    manifest = _check_manifest(staging, archive.name)
    config = _adapter_config(staging / _CONFIG, archive.name)
    if base_model is None and manifest.get("base_model_source") == "default":
        base_model = "default"  # a brandvoice export of the built-in model
    _check_weights(staging / _WEIGHTS, archive.name)
    if base_model is None:
        base_model = _local_base(config["base"], archive.name)
    slug = _brand(ws, brand, staging, archive.name)
    train_config = _train_config(config, base_model, quantization)
    system_prompt = _system_prompt(staging / SYSTEM_PROMPT_FILE, archive.name)
    adapter = staging / "adapter"
    adapter.mkdir()
    for path in staging.iterdir():
        if path.name in _ADAPTER_FILES:
            path.rename(adapter / path.name)
    vllm = check_adapter(adapter, _architecture(train_config.base_model))
    origin = {"archive": archive.name, "sha256": sha256_file(archive), "base_model": config["base"]}
    run = record_imported_run(
        ws, slug, train_config, adapter, system_prompt=system_prompt, origin=origin
    )
    warnings = [f"vLLM {vllm.vllm_version}: {p}" for p in vllm.problems]
    return ImportResult(run, ignored, vllm, warnings)


# ----------------------------------------------------------------------------------------------
# The archive
# ----------------------------------------------------------------------------------------------


def _open_zip(archive: Path) -> zipfile.ZipFile:
    if not archive.is_file():
        raise BrandVoiceError(f"No file at {archive}.")
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BrandVoiceError(f"{archive.name} is not a readable zip archive: {exc}") from exc


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is refused whatever it holds, or None."""
    name = info.filename
    mode = info.external_attr >> 16
    if "\\" in name or name.startswith("/") or _DRIVE.match(name):
        return "an absolute path or a backslash: it could be written outside the target folder"
    if ".." in PurePosixPath(name).parts:
        return "'..' in its path: it could be written outside the target folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted"
    if name.lower().endswith(PICKLE_SUFFIXES):
        return (
            "a pickle file, which can run code when loaded: brandvoice imports safetensors only "
            "(save the adapter with PEFT's save_pretrained(..., safe_serialization=True))"
        )
    return None


def _size_problem(info: zipfile.ZipInfo, limits: ImportLimits) -> str | None:
    if info.file_size > limits.max_file_bytes:
        return f"{info.file_size:,} bytes uncompressed, over the limit of {limits.max_file_bytes:,}"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= _RATIO_FLOOR and ratio > limits.max_ratio:
        return f"compressed {ratio:,.0f} to 1 (over {limits.max_ratio:g}): it reads as a zip bomb"
    return None


def _plan(
    zf: zipfile.ZipFile, label: str, limits: ImportLimits
) -> tuple[dict[str, zipfile.ZipInfo], list[str]]:
    """The entries to extract, by file name, and the names of the others; refuses a bad archive."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise BrandVoiceError(
            f"{label} holds {len(infos)} entries, over the limit of {limits.max_entries}: "
            "an adapter archive needs about a dozen."
        )
    problems = [
        f"'{info.filename}': {why}"
        for info in infos
        if (why := _entry_problem(info) or _size_problem(info, limits))
    ]
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        problems.append(f"{total:,} bytes uncompressed in all, over {limits.max_total_bytes:,}")
    if problems:
        raise BrandVoiceError(f"{label} was refused, nothing was imported: " + "; ".join(problems))
    files = [info for info in infos if not info.is_dir()]
    root = _common_folder([info.filename for info in files])
    wanted: dict[str, zipfile.ZipInfo] = {}
    ignored = []
    for info in files:
        relative = PurePosixPath(info.filename).relative_to(root)
        if len(relative.parts) == 1 and relative.name in _ADAPTER_FILES | _RUN_FILES:
            if relative.name in wanted:
                raise BrandVoiceError(f"{label} holds {relative.name} twice; which one is meant?")
            wanted[relative.name] = info
        else:
            ignored.append(info.filename)
    for required in (_CONFIG, _WEIGHTS):
        if required not in wanted:
            raise BrandVoiceError(
                f"{label} holds no {required} (at its top level or in one folder): it is not a "
                "PEFT adapter saved with save_pretrained(..., safe_serialization=True)."
            )
    return wanted, ignored


def _common_folder(names: list[str]) -> PurePosixPath:
    """The one folder every file is in ("my-adapter/..."), or the archive's top level."""
    tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
    flat = any(len(PurePosixPath(n).parts) == 1 for n in names)
    return PurePosixPath(tops.pop()) if len(tops) == 1 and not flat else PurePosixPath()


def _extract(
    zf: zipfile.ZipFile,
    wanted: dict[str, zipfile.ZipInfo],
    target: Path,
    limits: ImportLimits,
    say: Progress,
) -> None:
    """Copy each wanted entry to `target/<known name>`, stopping at its declared size."""
    written = 0
    for done, (name, info) in enumerate(sorted(wanted.items()), start=1):
        with zf.open(info) as src, open(target / name, "xb") as dst:
            size = 0
            while chunk := src.read(1 << 20):
                size += len(chunk)
                written += len(chunk)
                if size > info.file_size or written > limits.max_total_bytes:
                    raise BrandVoiceError(
                        f"'{info.filename}' inflates beyond its declared size: refused."
                    )
                dst.write(chunk)
        say("extracting", done, len(wanted))


# ----------------------------------------------------------------------------------------------
# What the archive holds
# ----------------------------------------------------------------------------------------------


def _check_manifest(folder: Path, label: str) -> dict[str, Any]:
    """A brandvoice export's manifest ({} if none); the files taken must match its hashes."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    manifest = _json_object(path, label)
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not all(isinstance(v, dict) for v in listed.values()):
        raise BrandVoiceError(
            f"{label}: {MANIFEST} is unreadable: 'files' is not a table of files."
        )
    changed = [
        p.name
        for p in folder.iterdir()
        if p.name != MANIFEST
        and (p.name not in listed or sha256_file(p) != listed[p.name].get("sha256"))
    ]
    if changed:
        raise BrandVoiceError(
            f"{label} does not match its {MANIFEST} ({', '.join(sorted(changed))} changed or "
            "unlisted): the export was altered after it was made, so it was not imported."
        )
    return manifest


def _adapter_config(path: Path, label: str) -> dict[str, Any]:
    """The adapter's config, validated; adds "base" (the base model it records)."""
    config = _json_object(path, label)
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}; only LORA adapters import")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        problems.append(f"r (the LoRA rank) must be a whole number of 1 or more, got {rank!r}")
    if not isinstance(config.get("lora_alpha"), (int, float)):
        problems.append(f"lora_alpha must be a number, got {config.get('lora_alpha')!r}")
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        problems.append("base_model_name_or_path is missing: which base model was it trained on?")
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        problems.append(f"task_type is {config.get('task_type')!r}; a chat adapter is CAUSAL_LM")
    if problems:
        raise ConfigError(problems, source=f"{_CONFIG} in {label}")
    return config | {"base": base}


def _json_object(path: Path, label: str) -> dict[str, Any]:
    """A JSON file of the archive that must hold an object: size, nesting and type checked."""
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise BrandVoiceError(f"{label}: {path.name} is over 1 MB; that is no adapter file.")
    try:
        value = load_json(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, JsonProblem) as exc:
        raise BrandVoiceError(f"{label}: {path.name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BrandVoiceError(
            f"{label}: {path.name} must hold a JSON object, not {json_type(value)}."
        )
    return value


def _system_prompt(path: Path, label: str) -> str:
    if not path.is_file():
        return ""
    if path.stat().st_size > MAX_PROMPT_BYTES:
        raise BrandVoiceError(
            f"{label}: {SYSTEM_PROMPT_FILE} is {path.stat().st_size:,} bytes, over the "
            f"{MAX_PROMPT_BYTES:,} a system prompt may have."
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BrandVoiceError(f"{label}: {SYSTEM_PROMPT_FILE} is not UTF-8 text.") from exc


def _local_base(base: str, label: str) -> str:
    """The adapter's recorded base when it is on this machine ("default" for the built-in model,
    named by its hub id or by the model cache of another brandvoice); otherwise refused."""
    from chatbot.models import DEFAULT_MODEL_NAME

    if Path(base).expanduser().is_dir():
        return base
    if base in (f"HuggingFaceTB/{DEFAULT_MODEL_NAME}", "default") or base.replace(
        "\\", "/"
    ).endswith(f"/models/{DEFAULT_MODEL_NAME}"):
        return "default"
    raise BrandVoiceError(
        f"{label}: {_CONFIG} names the base model {base!r}, which is not a folder on this "
        "machine, so chatting with the adapter would download it. Give the base model: the "
        "folder of that model (or its hub id, to allow the download).",
        option="base_model",
    )


def _check_weights(path: Path, label: str) -> None:
    """The weights file is safetensors (header readable) and holds LoRA weights."""
    try:
        modules = lora_module_names(path)
    except BrandVoiceError as exc:
        raise BrandVoiceError(f"{label}: {exc}") from exc
    if not modules:
        raise BrandVoiceError(f"{label}: {_WEIGHTS} holds no LoRA weights (lora_A / lora_B).")


def _brand(ws: Workspace, brand: str | None, staging: Path, label: str) -> str:
    """The brand the run belongs to: the one named, else the one the archive's brand.yaml names."""
    if brand:
        return ws.find_brand(brand)
    profile_file = staging / "brand.yaml"
    if not profile_file.is_file():
        raise BrandVoiceError(
            f"{label} has no brand.yaml to say whose voice it is; name a prepared brand.",
            option="brand",
        )
    profile = BrandProfile.load(profile_file)
    slug = slugify(profile.name)
    target = ws.brand_dir(slug) / "brand.yaml"
    if not target.is_file():
        profile.save(target)
        ws.record_brand(slug, profile.name, 0, 0, 0)
    return slug


def _train_config(config: dict[str, Any], base_model: str | None, quantization: str) -> TrainConfig:
    """A config that records the adapter's shape; the training settings themselves are unknown."""
    targets = config.get("target_modules") or []
    names = sorted({t.rsplit(".", 1)[-1] for t in targets}) if isinstance(targets, list) else []
    return TrainConfig.from_preset(
        "quick",
        {
            "base_model": base_model or config["base"],
            "quantization": quantization,
            "lora_r": config["r"],
            "lora_alpha": max(1, round(config["lora_alpha"])),
            "lora_dropout": float(config.get("lora_dropout") or 0.0),
            "lora_target": ",".join(names) or str(targets or "all-linear"),
            "system_prompt": "never",
        },
    )


def _architecture(base_model: str) -> str | None:
    """The base's architecture when it is on this machine (no download just for this check)."""
    is_default = base_model in ("", "default")
    folder = default_model_dir() if is_default else Path(base_model).expanduser()
    return architecture_of(folder) if folder.is_dir() else None
