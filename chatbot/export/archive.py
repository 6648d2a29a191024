"""Zips of flat folders: deterministic (sorted names, fixed timestamps) and written atomically.

`zip_adapter` packs a run's raw `adapter/` folder (weights, JSON configs and tokenizer files only)
so that unzipping it gives a folder PEFT loads with `PeftModel.from_pretrained(base, folder)`.
`zip_folder` packs a finished export folder as is. Neither ever adds checkpoints, optimizer state,
logs or pickles: they take only the files they are given, never subfolders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chatbot.errors import BrandVoiceError
from chatbot.training.run_files import RunFolder

__all__ = [
    "zip_adapter",
    "zip_folder",
    "atomic_zip_path",
    "ADAPTER_FILE_SUFFIXES",
    "TOKENIZER_FILES",
]

ADAPTER_FILE_SUFFIXES = (".safetensors", ".json")
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.model",
        "tokenizer.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "spiece.model",
    }
)
# A fixed timestamp: the same files always give byte-identical zips.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Weights barely compress; storing them keeps a multi-gigabyte merged model quick to zip and read.
_STORED_SUFFIXES = (".safetensors", ".gguf")


def _exportable(path: Path) -> bool:
    return path.is_file() and (path.suffix in ADAPTER_FILE_SUFFIXES or path.name in TOKENIZER_FILES)


@contextmanager
def atomic_zip_path(out: Path) -> Iterator[Path]:
    """A temporary path next to `out` to write a zip to; renamed to `out` when the block succeeds.

    If the block raises, the temporary file is removed and an existing `out` is left untouched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_zip(files: Sequence[Path], target: Path) -> None:
    with open(target, "wb") as fh:
        with zipfile.ZipFile(fh, "w") as zf:
            for path in sorted(files, key=lambda p: p.name):
                info = zipfile.ZipInfo(path.name, date_time=_ZIP_TIME)
                stored = path.suffix in _STORED_SUFFIXES and path.stat().st_size > 1 << 20
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        fh.flush()
        os.fsync(fh.fileno())


def zip_folder(folder: Path, target: Path) -> Path:
    """Write every file directly in `folder` (no subfolders) into the zip `target`; returns it."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and not p.is_symlink()]
    _write_zip(files, Path(target))
    return Path(target)


def zip_adapter(run_dir: Path, out: Path | None = None) -> Path:
    """Zip `run_dir/adapter/` to `out` (default `run_dir/adapter.zip`), atomically.

    The raw adapter files only, unchecked; `chatbot.export.export_run` makes the complete, verified
    package. Raises BrandVoiceError when the run has no adapter (not finished, or failed early).
    """
    run_dir = Path(run_dir)
    adapter = RunFolder(run_dir).adapter
    files = sorted(p for p in adapter.iterdir() if _exportable(p)) if adapter.is_dir() else []
    if not any(p.name == "adapter_config.json" for p in files):
        raise BrandVoiceError(
            f"Run {run_dir.name} has no adapter to export ({adapter} holds no "
            "adapter_config.json): only a run that finished training has one."
        )
    out = Path(out) if out is not None else run_dir / "adapter.zip"
    with atomic_zip_path(out) as tmp:
        _write_zip(files, tmp)
    return out
