"""Chatting with a run while it trains: its newest complete checkpoint, as the voice forms.

Training writes `checkpoints/checkpoint-<step>/` into a staging folder and renames it into place
with its `COMPLETE` marker last (`chatbot.training.run_files.CheckpointStore`); a preview only ever
uses a checkpoint with that marker and an adapter in it, so it never reads a half-written one. Each
request asks again for the newest, so the preview moves on when a newer checkpoint lands.

Training keeps only its newest checkpoints and deletes older ones as new ones land, which can be
while a preview is loading one. `pin_newest_preview` therefore hard-links the adapter's files into
the run's `preview/checkpoint-<n>/` first (free: no bytes are copied, and a deleted checkpoint
does not take the linked files with it) and the preview loads from there.

A preview shares the machine with the training run. `chatbot.engine.priority` keeps it from slowing
training: the preview loads and generates in one thread at the lowest CPU priority, and only when
someone sends a message (nothing is generated when a checkpoint lands).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from chatbot.errors import BrandVoiceError
from chatbot.runs.jobs import Run, get_run, list_runs
from chatbot.storage import atomic_dir
from chatbot.training.run_files import ADAPTER_CONFIG, COMPLETE_MARKER, read_events
from chatbot.workspace import Workspace

__all__ = ["Preview", "newest_preview", "brand_previews", "pin_newest_preview"]

_KEEP_PINNED = 2  # the one being chatted with and the one replacing it
# What a checkpoint holds only to resume training; a preview needs none of it.
_TRAINING_STATE = re.compile(r"^(optimizer|scheduler|rng_state.*|training_args|trainer_state)\.")

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
    for checkpoint in reversed(run.folder.checkpoint_store().complete()):
        match = _STEP.search(checkpoint.name)
        if match and (checkpoint / ADAPTER_CONFIG).is_file():
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


def pin_newest_preview(ws: Workspace, run: Run | str, attempts: int = 3) -> Preview:
    """`newest_preview`, its adapter linked into the run's `preview/` so rotation cannot remove it.

    Raises BrandVoiceError when the run has nothing to preview (not running, or no complete
    checkpoint yet), or when training replaced its checkpoints faster than they could be pinned.
    """
    run = get_run(ws, run) if isinstance(run, str) else run
    for _ in range(attempts):
        found = newest_preview(ws, run)
        if found is None:
            raise BrandVoiceError(
                "This run has no complete checkpoint to preview yet (or it has just finished: "
                "pick it from the list of runs)."
            )
        try:
            return replace(found, adapter_dir=_pin(found, run.folder.preview))
        except FileNotFoundError:
            continue  # rotated away between finding and linking it: take the next newest
    raise BrandVoiceError("Training replaced its checkpoint as it loaded; send the message again.")


def _pin(preview: Preview, folder: Path) -> Path:
    target = folder / preview.adapter_dir.name
    if (target / COMPLETE_MARKER).is_file():
        return target
    with atomic_dir(target) as staging:
        for item in preview.adapter_dir.iterdir():
            if item.is_file() and not _TRAINING_STATE.match(item.name):
                _link_or_copy(item, staging / item.name)
        (staging / COMPLETE_MARKER).write_text(f"{preview.step}\n", encoding="utf-8")
    pinned = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.search(p.name)))
    for _, old in pinned[:-_KEEP_PINNED]:
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(exc.errno, exc.strerror, str(source)) from exc
        shutil.copy2(source, target)  # a file system without hard links
