"""Shared by the training-job tests (one process and several): a prepared workspace, a small
run config on the tiny model, and ways to watch a run from outside."""

from __future__ import annotations

import time
from pathlib import Path

from chatbot.config import TrainConfig
from chatbot.prepare.pipeline import prepare
from chatbot.runs.jobs import read_events
from chatbot.workspace import Workspace

ASSETS = Path(__file__).parent / "assets" / "brand"
BRAND = "Lumen Lamps"


def prepared_workspace(root: Path) -> Workspace:
    """A workspace with the Lumen Lamps test brand prepared (12 train / 2 eval conversations)."""
    ws = Workspace.open(root)
    assert prepare(ws, BRAND, [ASSETS / "conversations.jsonl"], ASSETS / "style_guide.md").ok
    return ws


def tiny_config(model: Path, **overrides: object) -> TrainConfig:
    """A few fast steps on the tiny model: one epoch, batches of 2, no warm-up, a high rate.

    No early stopping: these runs go on until their step count or a cancel (the tiny model's
    held-out loss stalls within a few evaluations, which would end a long run on its own).
    Early stopping has its own tests in test_training.py.
    """
    values = {
        "base_model": str(model),
        "epochs": 1,
        "batch_size": 2,
        "gradient_accumulation": 1,
        "max_length": 256,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "checkpoint_every": 100,
        "early_stopping_patience": 0,
    }
    return TrainConfig.from_preset("quick", {**values, **overrides})


def wait_until(predicate, what: str, timeout: float) -> None:  # noqa: ANN001
    """Poll `predicate`; `timeout` guards against a hung run, it is not a speed target."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def complete_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the run's complete checkpoints, in order."""
    folder = run_dir / "checkpoints"
    if not folder.exists():
        return []
    return sorted(
        int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*") if (p / "COMPLETE").exists()
    )


def training_events(run_dir: Path) -> list[dict]:
    """The run's events for trained steps (with a loss), in order."""
    return [
        e for e in read_events(run_dir) if e["state"] == "running" and e.get("loss") is not None
    ]
