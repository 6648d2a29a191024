"""Training jobs in their own processes: states, queueing, cancel, kill -9 + resume, failures."""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest
from job_support import (
    complete_checkpoints,
    prepared_workspace,
    tiny_config,
    training_events,
    wait_until,
)

from chatbot.errors import BrandVoiceError
from chatbot.jobs import cancel_run, get_run, list_runs, read_events, resume_run, start_run
from chatbot.workspace import Workspace

pytestmark = pytest.mark.slow
WAIT = 300  # seconds: a guard against a hung worker, not a speed target


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return prepared_workspace(tmp_path / "ws")


_wait = partial(wait_until, timeout=WAIT)


def _trained_steps(run_dir: Path) -> list[int]:
    return [e["step"] for e in training_events(run_dir)]


def test_run_succeeds_in_its_own_process(ws, tiny_model_dir):
    run = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir), preset="quick")
    assert run.state in ("queued", "running") and run.pid != os.getpid()
    _wait(lambda: get_run(ws, run.id).done, "the run to finish")
    run = get_run(ws, run.id)
    assert run.state == "succeeded", run.error
    assert run.started and run.finished and run.finished >= run.started
    assert (run.run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert (run.run_dir / "config.yaml").exists() and (run.run_dir / "metrics.json").exists()
    assert read_events(run.run_dir)[-1]["state"] == "succeeded"
    assert [r.id for r in list_runs(ws)] == [run.id]


def test_queue_and_cancel(ws, tiny_model_dir):
    """A second start waits as queued; cancelling it is immediate; cancelling the running one
    stops it gracefully with a checkpoint; then a queued run takes the workspace and succeeds."""
    first = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir, epochs=500))
    _wait(lambda: len(_trained_steps(first.run_dir)) >= 2, "the first run to train")
    second = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir))
    third = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir))
    time.sleep(2)
    assert get_run(ws, second.id).state == get_run(ws, third.id).state == "queued"
    assert cancel_run(ws, second.id).state == "cancelled"

    first = cancel_run(ws, first.id, timeout=120)
    assert first.state == "cancelled" and first.error is None
    assert read_events(first.run_dir)[-1]["state"] == "cancelled"
    assert complete_checkpoints(first.run_dir), "a graceful stop saves a checkpoint"

    _wait(lambda: get_run(ws, third.id).done, "the queued run to run and finish")
    assert get_run(ws, third.id).state == "succeeded"
    assert get_run(ws, second.id).state == "cancelled" and not _trained_steps(second.run_dir)


def test_kill_9_then_resume_continues_from_the_last_checkpoint(ws, tiny_model_dir):
    config = tiny_config(tiny_model_dir, max_steps=40, epochs=1000, checkpoint_every=5)
    run = start_run(ws, "Lumen Lamps", config)
    _wait(lambda: complete_checkpoints(run.run_dir), "a complete checkpoint")
    pid = get_run(ws, run.id).pid
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: get_run(ws, run.id).done, "the killed run to be noticed")
    killed = get_run(ws, run.id)
    assert killed.state == "failed" and "stopped unexpectedly" in killed.error
    last_checkpoint = complete_checkpoints(run.run_dir)[-1]

    resume_run(ws, run.id)
    _wait(lambda: get_run(ws, run.id).done, "the resumed run to finish")
    assert get_run(ws, run.id).state == "succeeded", get_run(ws, run.id).error
    steps = _trained_steps(run.run_dir)
    # The killed process may have logged a step or two past its last checkpoint; the resumed
    # process starts again right after that checkpoint, so its run is the last occurrence.
    restart = len(steps) - 1 - steps[::-1].index(last_checkpoint + 1)
    assert steps[:restart] == list(range(1, len(steps[:restart]) + 1))
    assert steps[restart:] == list(range(last_checkpoint + 1, 41))
    assert (run.run_dir / "adapter" / "adapter_model.safetensors").exists()
    with pytest.raises(BrandVoiceError, match="already finished"):
        resume_run(ws, run.id)


def test_nan_loss_fails_the_run_with_its_reason(ws, tiny_model_dir):
    run = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir, learning_rate=1e30))
    _wait(lambda: get_run(ws, run.id).done, "the run to fail")
    run = get_run(ws, run.id)
    assert run.state == "failed" and "try a lower learning rate" in run.error
