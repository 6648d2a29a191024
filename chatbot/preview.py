"""Chatting with a run while it trains: its newest complete checkpoint, as the voice forms.

Training writes `checkpoints/checkpoint-<step>/` into a staging folder and renames it into place
with its `COMPLETE` marker last (`chatbot.training.run_files.CheckpointStore`); a preview only ever
uses a checkpoint with that marker and an adapter in it, so it never reads a half-written one. Each
request asks again for the newest, so the preview moves on when a newer checkpoint lands.

A preview shares the machine with the training run. `chatbot.engine.priority` keeps it from slowing
training: the preview loads and generates in one thread at the lowest CPU priority, and only when
someone sends a message (nothing is generated when a checkpoint lands).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from chatbot.jobs import Run, get_run, list_runs, read_events
from chatbot.training.run_files import CheckpointStore
from chatbot.workspace import Workspace

__all__ = ["Preview", "newest_preview", "brand_previews"]

_STEP = re.compile(r"checkpoint-(\d+)$")


@dataclass(frozen=True)
class Preview:
    """The newest complete checkpoint of a run in progress."""

    run_id: str
    step: int
    total_steps: int | None
    adapter_dir: Path

    @property
    def label(self) -> str:
        total = f" of {self.total_steps}" if self.total_steps else ""
        return f"Preview: step {self.step}{total} (training now)"


def newest_preview(ws: Workspace, run: Run | str) -> Preview | None:
    """The newest complete checkpoint with an adapter of a running run; None if there is none."""
    run = get_run(ws, run) if isinstance(run, str) else run
    if run.state != "running":
        return None
    for checkpoint in reversed(CheckpointStore(run.run_dir / "checkpoints").complete()):
        match = _STEP.search(checkpoint.name)
        if match and (checkpoint / "adapter_config.json").is_file():
            return Preview(run.id, int(match.group(1)), _total_steps(run), checkpoint)
    return None


def brand_previews(ws: Workspace, brand: str) -> list[Preview]:
    """A preview for each of the brand's runs in progress that has a complete checkpoint."""
    runs = [r for r in list_runs(ws, brand) if r.state == "running"]
    return [p for r in runs if (p := newest_preview(ws, r)) is not None]


def _total_steps(run: Run) -> int | None:
    for event in reversed(read_events(run.run_dir)):
        if event.get("total_steps"):
            return int(event["total_steps"])
    return None
