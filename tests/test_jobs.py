"""Training jobs in their own processes: states, queueing, cancel, kill -9 + resume, failures."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import threading
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
from chatbot.runs import jobs
from chatbot.runs.jobs import cancel_run, get_run, list_runs, read_events, resume_run, start_run
from chatbot.workspace import Workspace

pytestmark = pytest.mark.slow
WAIT = 300  # seconds: a guard against a hung worker, not a speed target


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return prepared_workspace(tmp_path / "ws")


_wait = partial(wait_until, timeout=WAIT)


def _trained_steps(run_dir: Path) -> list[int]:
    return [e["step"] for e in training_events(run_dir)]


def _waiting_for_a_lock(pid: int | None) -> bool:
    """True while process `pid` is blocked on a file lock (a "->" line of /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[fields.index("->") + 4] == str(pid):
            return True
    return False


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
    # Private to the workspace's owner: folders 0700, files 0600 (checkpoints and adapter too).
    for path in [run.run_dir, *run.run_dir.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_queue_and_cancel(ws, tiny_model_dir):
    """A second start waits as queued; cancelling it is immediate; cancelling the running one
    stops it gracefully with a checkpoint; then a queued run takes the workspace and succeeds."""
    first = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir, epochs=500))
    _wait(lambda: len(_trained_steps(first.run_dir)) >= 2, "the first run to train")
    second = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir))
    third = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir))
    # Both workers have reached the workspace lock and wait there, still queued.
    _wait(
        lambda: _waiting_for_a_lock(second.pid) and _waiting_for_a_lock(third.pid),
        "the queued runs' workers to wait for the workspace",
    )
    assert get_run(ws, second.id).state == get_run(ws, third.id).state == "queued"
    assert get_run(ws, first.id).state == "running"
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


# --- lookups, the queue and the locks (no training) ------------------------------------------


def _insert(ws: Workspace, run_id: str, created: float) -> None:
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, created, run_dir) VALUES (?, 'b', 'failed', ?, ?)",
            (run_id, created, str(ws.runs_dir() / run_id)),
        )


def test_run_ids_match_by_exact_id_or_a_unique_literal_prefix(tmp_path: Path):
    ws = Workspace.open(tmp_path / "ws")
    for i, run_id in enumerate(["20240101-aaa111", "20240101-aaa222", "20240102-bbb333", "x_1"]):
        _insert(ws, run_id, created=float(i))
    assert get_run(ws, "20240102").id == "20240102-bbb333"
    assert get_run(ws, "20240101-aaa2").id == "20240101-aaa222"
    with pytest.raises(BrandVoiceError, match="start of several runs") as err:
        get_run(ws, "20240101-aaa")
    assert "20240101-aaa111" in str(err.value) and "20240101-aaa222" in str(err.value)
    for pattern in ("%", "_", "2024010_", "x%", ""):  # wildcards are letters, not "anything"
        with pytest.raises(BrandVoiceError, match="No run"):
            get_run(ws, pattern)
    assert get_run(ws, "x_").id == "x_1"


def _waits_for_a_lock(pid: int) -> bool:
    """True while process `pid` waits for a file lock (a '->' line of /proc/locks)."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and line.split()[5] == str(pid) for line in lines)


def test_a_queued_worker_waits_without_torch_and_the_line_is_bounded(
    ws, tiny_model_dir, monkeypatch
):
    monkeypatch.setattr(jobs, "MAX_QUEUED", 1)
    with open(ws.root / "training.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a run that trains would
        queued = start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir))
        try:
            _wait(lambda: _waits_for_a_lock(queued.pid), "the worker to wait for the workspace")
            maps = Path(f"/proc/{queued.pid}/maps").read_text()
            assert "libtorch" not in maps  # no torch (seconds, half a gigabyte) while it waits
            with pytest.raises(BrandVoiceError, match="1 runs already wait"):
                start_run(ws, "Lumen Lamps", tiny_config(tiny_model_dir))
            assert [r.id for r in list_runs(ws)] == [queued.id]
        finally:
            cancel_run(ws, queued.id)
    assert get_run(ws, queued.id).state == "cancelled"


def test_the_next_worker_waits_for_ranks_that_outlived_theirs(tmp_path: Path):
    ws = Workspace.open(tmp_path / "ws")
    entered = threading.Event()

    def next_worker() -> None:
        with jobs._workspace_lock(ws):
            entered.set()

    with open(ws.root / jobs.RANKS_LOCK, "a+") as rank:
        fcntl.flock(rank, fcntl.LOCK_SH)  # as a live rank of a killed worker's run holds it
        thread = threading.Thread(target=next_worker, daemon=True)
        thread.start()
        _wait(lambda: _waits_for_a_lock(os.getpid()), "the next worker to wait")
        assert not entered.is_set()
    thread.join(timeout=WAIT)
    assert entered.is_set()


@pytest.mark.parametrize("run_id", [None, "", "   "])
def test_no_run_chosen_is_said_in_words(ws, run_id) -> None:  # noqa: ANN001
    with pytest.raises(BrandVoiceError, match="No run was chosen"):
        get_run(ws, run_id)
