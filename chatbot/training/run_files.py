"""A run folder's layout (`RunFolder`), and what training writes there: events and checkpoints.

`RunFolder` names every file of a run folder once (adapter, config.yaml, events, metrics, system
prompt, checkpoints, preview, ...); everything that reads or writes a run's files asks it for the
path instead of spelling the name.

`events.jsonl` gets one JSON object a line (an `Event`), flushed as training goes, so another
process can follow it; `read_events` reads them back, here beside the writer, so the job runner, the
app and the scorecard read what training writes without knowing the file.
`checkpoints/checkpoint-<step>/` folders are built in a temporary sibling and renamed into place
with a `COMPLETE` marker written last, once every file is on the disk; only complete ones count, the
newest few are kept.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import shutil
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from chatbot.config import TrainConfig
from chatbot.storage import atomic_dir, atomic_write_text, fsync_path, fsync_tree

__all__ = [
    "ADAPTER_CONFIG",
    "COMPLETE_MARKER",
    "CheckpointStore",
    "EVENTS_FILE",
    "EVENT_FIELDS",
    "Event",
    "EventLog",
    "RunFolder",
    "is_disk_full",
    "read_events",
]

EVENTS_FILE = "events.jsonl"

EVENT_FIELDS = (
    "time",
    "state",
    "step",
    "total_steps",
    "epoch",
    "loss",
    "eval_loss",
    "learning_rate",
    "tokens_per_s",
    "eta_s",
)


class Event(TypedDict, total=False):
    """One line of `events.jsonl`. Every `EVENT_FIELDS` name is present (null when not known)."""

    time: float
    state: str
    """running, evaluating, checkpoint, succeeded, failed or cancelled."""
    step: int | None
    total_steps: int | None
    epoch: float | None
    loss: float | None
    eval_loss: float | None
    learning_rate: float | None
    tokens_per_s: float | None
    eta_s: float | None
    error: str
    """Why a run failed (state "failed" only)."""
    known: bool
    """The failure is one the user can act on (bad data, NaN loss, a full disk)."""


COMPLETE_MARKER = "COMPLETE"
ADAPTER_CONFIG = "adapter_config.json"
"""The file PEFT writes into every adapter folder: without it there is no adapter to load."""


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder, each named once here."""

    root: Path

    STOP_FILE: typing.ClassVar[str] = "STOP"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def adapter(self) -> Path:
        """`adapter/`: the final adapter (safetensors, its config) and the tokenizer."""
        return self.root / "adapter"

    @property
    def config(self) -> Path:
        """`config.yaml`: the resolved `TrainConfig` the run trained with."""
        return self.root / "config.yaml"

    @property
    def events(self) -> Path:
        """`events.jsonl`: one `Event` a line (`read_events`)."""
        return self.root / EVENTS_FILE

    @property
    def metrics(self) -> Path:
        """`metrics.json`: losses before/after, tokens/s, duration, steps."""
        return self.root / "metrics.json"

    @property
    def system_prompt(self) -> Path:
        """`system_prompt.txt`: the system prompt the training conversations carried ("" none)."""
        return self.root / "system_prompt.txt"

    @property
    def checkpoints(self) -> Path:
        """`checkpoints/`: resumable checkpoints (`CheckpointStore`)."""
        return self.root / "checkpoints"

    @property
    def preview(self) -> Path:
        """`preview/`: checkpoints' adapters pinned while they are chatted with."""
        return self.root / "preview"

    @property
    def imported(self) -> Path:
        """`imported.json`: where an adapter trained elsewhere came from (imported runs only)."""
        return self.root / "imported.json"

    @property
    def worker_log(self) -> Path:
        """`worker.log`: the training process's own output, for a failure's details."""
        return self.root / "worker.log"

    @property
    def stop_file(self) -> Path:
        """`STOP`: asks the ranks of a multi-process run to stop at the next step."""
        return self.root / self.STOP_FILE

    def has_adapter(self) -> bool:
        """The final adapter is on disk (its `adapter_config.json` is there)."""
        return (self.adapter / ADAPTER_CONFIG).is_file()

    def read_config(self) -> TrainConfig:
        """The settings the run trained with."""
        return TrainConfig.from_yaml(self.config)

    def read_system_prompt(self) -> str | None:
        """The system prompt training recorded; None for a run that recorded none."""
        try:
            return self.system_prompt.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def checkpoint_store(self, keep: int = 2) -> CheckpointStore:
        return CheckpointStore(self.checkpoints, keep)


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class EventLog:
    """Appends events to the run's `events.jsonl` (flushed per line), hands each to `on_event`."""

    def __init__(
        self,
        run_dir: Path,
        on_event: Callable[[Event], None] | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.on_event = on_event
        self.enabled = enabled
        """False in the other ranks of a multi-process run: only rank 0 writes events."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, state: str, **values: object) -> Event:
        """Record one event; fields not given are null, extra fields (e.g. `error`) are kept."""
        event: Event = {name: None for name in EVENT_FIELDS}  # type: ignore[assignment]
        event.update(values, time=round(time.time(), 3), state=state)
        if not self.enabled:
            return event
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            fh.flush()
        if self.on_event is not None:
            self.on_event(event)
        return event


def read_events(run_dir: Path) -> list[Event]:
    """Every complete event line so far (a line being written is skipped, not an error)."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events: list[Event] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
    return events


class CheckpointStore:
    """The run's `checkpoints/` folder: atomic writes, a completeness marker, rotation."""

    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first (by step)."""
        if not self.root.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.root.iterdir()
            if (m := _CHECKPOINT.match(p.name)) and (p / COMPLETE_MARKER).is_file()
        ]
        return [p for _, p in sorted(found)]

    def newest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    @contextmanager
    def writing(self, step: int) -> Iterator[Path]:
        """Yield an empty folder to fill; on success it becomes `checkpoint-<step>`, complete.

        If the body raises (disk full, ...), nothing of the new checkpoint remains and the
        previous checkpoints are untouched.
        """
        with atomic_dir(self.root / f"checkpoint-{step}") as staging:
            yield staging
            # The marker vouches for the files: they reach the disk before it is written, so a
            # power cut cannot leave a COMPLETE checkpoint with empty or torn files.
            fsync_tree(staging)
            atomic_write_text(
                staging / COMPLETE_MARKER, json.dumps({"step": step, "time": time.time()}) + "\n"
            )
            fsync_path(staging)
        self._rotate()

    def _rotate(self) -> None:
        """Drop all but the newest `keep` complete checkpoints, and any incomplete leftovers."""
        done = self.complete()
        kept = set(done[-self.keep :])
        for path in self.root.iterdir():
            if path.is_dir() and path not in kept and _CHECKPOINT.match(path.name):
                shutil.rmtree(path, ignore_errors=True)


def is_disk_full(exc: BaseException) -> bool:
    """True for a write that failed for lack of space (torch wraps it in a RuntimeError)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc)
