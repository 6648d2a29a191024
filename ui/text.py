"""Short display texts the tabs share: model names, durations, times."""

from __future__ import annotations

import time
from pathlib import Path

from chatbot.models import default_model_dir
from chatbot.runs.adapters import parent_of
from chatbot.runs.jobs import Run

__all__ = ["base_model_label", "duration_text", "when_text", "run_label"]


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
