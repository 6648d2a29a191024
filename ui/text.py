"""Short display texts the tabs share: model names, durations, times."""

from __future__ import annotations

import re
import time
from pathlib import Path

from chatbot.service import Run, default_model_dir, parent_of

__all__ = [
    "base_model_label",
    "duration_text",
    "when_text",
    "run_label",
    "BASE_MODEL_HELP",
    "PREVIEW_MODEL_NOTE",
    "preview_note_html",
    "is_builtin",
    "is_preview_sized",
    "hardware_text",
]

# Stronger base models the product supports, with what they need (docs/scaling.md's memory
# table: the 4-bit base for training, the bf16 base for serving).
_STRONGER = (
    ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "a GPU with 4 GB of memory to train and to serve"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "a GPU with 8 GB to train, 16 GB to serve"),
    ("meta-llama/Llama-3.1-8B-Instruct", "a GPU with 12 GB to train, 24 GB to serve"),
)
_HARDWARE = {
    "SmolLM2-135M": "any computer: about 0.3 GB of memory, no GPU needed",
    "SmolLM2-1.7B": "a GPU with 4 GB of memory (or a fast CPU server, slowly)",
    "Mistral-7B": "a GPU with 16 GB of memory (for example an NVIDIA L4 or A10)",
    "Llama-3.1-8B": "a GPU with 16–24 GB of memory (for example an NVIDIA L4 or A10)",
    "Llama-2-13B": "a GPU with 32 GB of memory or more",
    "Llama-3.1-70B": "several large GPUs (about 140 GB of GPU memory in all)",
}

BASE_MODEL_HELP = (
    "The built-in model is a small **preview**: it learns the tone quickly, even on a laptop, "
    "but it can invent facts and policies. For a chatbot that faces customers, train on a "
    "stronger base model on a machine with a GPU, by giving its name here:\n\n"
    + "\n".join(f"- `{hub}`: {need}" for hub, need in _STRONGER)
    + "\n\nFrom the command line: `brandvoice train --brand NAME --set base_model=NAME`. "
    "The first run downloads the model once."
)
PREVIEW_MODEL_NOTE = (
    "**About the built-in model.** It is a small preview model (135 million parameters), and "
    "so is any base model under about a billion: it "
    "picks up your tone, but it can make up facts, prices and policies. Use it to judge the "
    "voice, not the answers. For customers, train on a stronger base model on a GPU machine "
    "(Train tab, *Details: base model*), for example Llama-3.1-8B-Instruct or "
    "Mistral-7B-Instruct, which need a GPU with 8–12 GB to train and 16–24 GB to serve."
)


def preview_note_html() -> str:
    """PREVIEW_MODEL_NOTE as a note block (an HTML block is not read as Markdown)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", PREVIEW_MODEL_NOTE)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return f'<div class="bv-note" role="note">{text}</div>'


_SMALL_BYTES = 2_000_000_000
"""Weights under this (about a billion parameters in 16 bits) make a preview-sized model."""


def is_builtin(base: str) -> bool:
    """Whether `base` is the built-in preview model."""
    return base in ("", "default") or Path(base) == default_model_dir() or "SmolLM2-135M" in base


def is_preview_sized(base: str) -> bool:
    """Whether `base` is the built-in model, or a local model as small (the model note's case)."""
    if is_builtin(base):
        return True
    folder = Path(base)
    if not folder.is_absolute() or not folder.is_dir():
        return False  # a hub id: the hardware table below speaks for it
    weights = [p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    return bool(weights) and sum(weights) < _SMALL_BYTES


def hardware_text(base: str) -> str:
    """What a machine needs to serve `base`, in words (empty when not known)."""
    name = "SmolLM2-135M" if is_preview_sized(base) else base
    for key, need in _HARDWARE.items():
        if key.lower() in name.lower():
            return need
    return ""


def base_model_label(base: str) -> str:
    """'built-in' for the default model, a folder's name for a local folder, else the hub id."""
    if base in ("", "default") or Path(base) == default_model_dir():
        return "built-in"
    return Path(base).name if Path(base).is_absolute() else base


def duration_text(seconds: float | None) -> str:
    """42s, 3m 05s, 1h 20m; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def when_text(timestamp: float | None) -> str:
    """'26 Nov 14:05' in local time; empty when unknown."""
    return time.strftime("%d %b %H:%M", time.localtime(timestamp)) if timestamp else ""


def run_label(run: Run, *, state: bool = False) -> str:
    """How a run is named in pickers: when it was started, its preset and base model."""
    parent = parent_of(run)
    preset = f"{run.preset}, from run {parent}" if parent else f"{run.preset or 'custom'} preset"
    parts = [when_text(run.created), preset]
    parts.append(base_model_label(run.base_model) + " base")
    if state:
        parts.append(run.state)
    return " · ".join(parts)
