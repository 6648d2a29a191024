"""Export: a finished run's LoRA adapter packaged for use elsewhere.

`zip_adapter` packs the run's `adapter/` folder into one zip, flat, so that unzipping it into a
folder gives a directory PEFT loads with `PeftModel.from_pretrained(base, folder)`. Only weights
(safetensors), JSON configs and tokenizer files go in: never checkpoints, optimizer state, logs or
pickles.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from chatbot.errors import BrandVoiceError

__all__ = ["zip_adapter", "ADAPTER_FILE_SUFFIXES", "TOKENIZER_FILES"]

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
# A fixed timestamp: the same adapter always gives byte-identical zips.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _exportable(path: Path) -> bool:
    return path.is_file() and (path.suffix in ADAPTER_FILE_SUFFIXES or path.name in TOKENIZER_FILES)


def zip_adapter(run_dir: Path, out: Path | None = None) -> Path:
    """Zip `run_dir/adapter/` to `out` (default `run_dir/adapter.zip`), atomically.

    Raises BrandVoiceError when the run has no adapter (not finished, or failed before saving).
    """
    run_dir = Path(run_dir)
    adapter = run_dir / "adapter"
    files = sorted(p for p in adapter.iterdir() if _exportable(p)) if adapter.is_dir() else []
    if not any(p.name == "adapter_config.json" for p in files):
        raise BrandVoiceError(
            f"Run {run_dir.name} has no adapter to export ({adapter} holds no "
            "adapter_config.json): only a run that finished training has one."
        )
    out = Path(out) if out is not None else run_dir / "adapter.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in files:
                    info = zipfile.ZipInfo(path.name, date_time=_ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    with open(path, "rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
