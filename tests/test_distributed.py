"""Training on two processes through `accelerate launch` (gloo on this CPU): shards, one adapter,
a killed rank, resume and cancel, exactly as `brandvoice train --processes 2` runs them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import time
from functools import partial
from pathlib import Path

import pytest
import torch
from job_support import (
    complete_checkpoints,
    prepared_workspace,
    tiny_config,
    training_events,
    wait_until,
)
from safetensors.torch import load_file

from chatbot.cli import commands as cli
from chatbot.config import ConfigError, TrainConfig
from chatbot.errors import BrandVoiceError
from chatbot.runs.jobs import (
    RANKS_LOCK,
    cancel_run,
    get_run,
    list_runs,
    read_events,
    resume_run,
    start_run,
    wait_for_run,
)
from chatbot.training.distributed import launch_command
from chatbot.workspace import Workspace

pytestmark = pytest.mark.slow
WAIT = 600  # seconds: a guard against a hung launcher, not a speed target
_wait = partial(wait_until, timeout=WAIT)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return prepared_workspace(tmp_path / "ws")


def _config(model: Path, **overrides: object) -> TrainConfig:
    """Two processes, two conversations each per step."""
    return tiny_config(model, **{"processes": 2, "epochs": 2, "batch_size": 4, **overrides})


def _rank_pids(run_dir: Path) -> dict[int, int]:
    """Live rank processes of this run, by rank (from /proc: command line and environment)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"chatbot.training.rank" not in cmdline or str(run_dir).encode() not in cmdline:
                continue
            env = dict(
                item.split(b"=", 1)
                for item in (proc / "environ").read_bytes().split(b"\0")
                if b"=" in item
            )
            found[int(env[b"RANK"])] = int(proc.name)
        except (OSError, KeyError, ValueError):
            continue
    return found


def _run_processes(run_dir: Path) -> list[int]:
    """The launcher and ranks of this run still alive (their command lines name the run)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if (
                str(run_dir).encode() in cmdline
                and b"chatbot.runs.jobs" not in cmdline
                and state != "Z"
            ):
                found.append(int(proc.name))
    return found


def _lock_is_free(path: Path) -> bool:
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def _guide_command() -> list[str]:
    """The one-machine command of docs/scaling.md, as a user would copy it."""
    guide = (Path(__file__).parents[1] / "docs" / "scaling.md").read_text(encoding="utf-8")
    line = next(
        ln
        for ln in guide.splitlines()
        if ln.startswith("brandvoice train") and "--processes 2" in ln
    )
    return shlex.split(line)


def test_two_processes_train_different_shards_into_one_adapter(ws, tiny_model_dir, capsys):
    args = _guide_command()[1:]
    args[args.index("--brand") + 1] = "Lumen Lamps"
    overrides = [
        "epochs=2",
        "batch_size=4",
        "max_length=256",
        "learning_rate=3e-3",
        "warmup_ratio=0",
    ]
    extra = ["--workspace", str(ws.root), "--base-model", str(tiny_model_dir), "--detach"]
    assert cli.main(args + extra + [f"--set={o}" for o in overrides]) == 0
    (run,) = list_runs(ws)
    run = wait_for_run(ws, run.id, timeout=WAIT)
    assert run.state == "succeeded", run.error
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    steps = training_events(run.run_dir)
    # Rank 0 alone wrote the events: one line per optimizer step.
    assert [e["step"] for e in steps] == list(range(1, metrics["steps"] + 1))
    for event in steps:
        first, second = event["rank_samples"]
        assert first and second and not set(first) & set(second), event
    seen = {s for e in steps for rank in e["rank_samples"] for s in rank}
    assert len(seen) == metrics["train_conversations"]  # together, every conversation
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]

    adapter = load_file(run.run_dir / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(torch.count_nonzero(t) > 0 for t in lora_b)  # B starts at zero
    assert not list((run.run_dir / "adapter").glob("*.bin"))
    assert not (run.run_dir / "STOP").exists() and not _rank_pids(run.run_dir)


def test_two_processes_report_the_loss_one_process_would(ws, tiny_model_dir):
    """Per-token loss over the same conversations: the ranks' token counts and gradients are
    combined, not averaged twice (a learning rate near zero keeps the model as it was)."""
    means = {}
    for processes in (1, 2):
        config = _config(tiny_model_dir, processes=processes, epochs=1, learning_rate=1e-9)
        run = wait_for_run(ws, start_run(ws, "Lumen Lamps", config).id, timeout=WAIT)
        assert run.state == "succeeded", run.error
        losses = [e["loss"] for e in training_events(run.run_dir)]
        means[processes] = sum(losses) / len(losses)
    assert means[2] == pytest.approx(means[1], rel=0.15)


def test_a_killed_rank_fails_the_run_and_resume_finishes_it(ws, tiny_model_dir):
    config = _config(tiny_model_dir, max_steps=40, epochs=1000, checkpoint_every=4)
    run = start_run(ws, "Lumen Lamps", config)
    _wait(lambda: complete_checkpoints(run.run_dir), "a complete checkpoint")
    _wait(lambda: 1 in _rank_pids(run.run_dir), "rank 1")
    os.kill(_rank_pids(run.run_dir)[1], signal.SIGKILL)
    run = wait_for_run(ws, run.id, timeout=WAIT)
    assert run.state == "failed"
    assert "stopped unexpectedly" in run.error and f"brandvoice resume {run.id}" in run.error
    assert read_events(run.run_dir)[-1]["state"] == "failed"
    _wait(lambda: not _rank_pids(run.run_dir), "the other rank to exit")

    resume_run(ws, run.id)
    run = wait_for_run(ws, run.id, timeout=WAIT)
    assert run.state == "succeeded", run.error
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 40
    assert (run.run_dir / "adapter" / "adapter_model.safetensors").exists()


def test_a_killed_worker_leaves_no_rank_running(ws, tiny_model_dir):
    """kill -9 of the job's worker takes the launcher and every rank with it; until they are gone
    the ranks hold the lock the next worker waits for."""
    # Long enough to outlast the test by far (no early stop): left alone, the ranks would train on.
    config = _config(tiny_model_dir, epochs=1000, early_stopping_patience=0)
    run = start_run(ws, "Lumen Lamps", config)
    try:
        _wait(lambda: set(_rank_pids(run.run_dir)) == {0, 1}, "both ranks")
        _wait(lambda: len(training_events(run.run_dir)) >= 1, "training to start")
        with open(ws.root / RANKS_LOCK, "a+") as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the live ranks hold it
        os.kill(get_run(ws, run.id).pid, signal.SIGKILL)
        # A guard against a hung test, far shorter than the run would train on its own. The lock
        # is freed last: a killed rank closes its files after its memory is released.
        wait_until(
            lambda: not _run_processes(run.run_dir) and _lock_is_free(ws.root / RANKS_LOCK),
            "the launcher and ranks to exit",
            60,
        )
        assert get_run(ws, run.id).state == "failed"
    finally:  # only ever needed when the test fails: leave nothing of the run behind
        if not get_run(ws, run.id).done:
            cancel_run(ws, run.id, timeout=5)
        for pid in _run_processes(run.run_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def test_cancel_stops_every_rank_after_the_same_step(ws, tiny_model_dir):
    run = start_run(ws, "Lumen Lamps", _config(tiny_model_dir, epochs=500))
    _wait(lambda: len(training_events(run.run_dir)) >= 2, "training to start")
    run = cancel_run(ws, run.id, timeout=180)
    assert run.state == "cancelled" and run.error is None
    assert read_events(run.run_dir)[-1]["state"] == "cancelled"
    assert complete_checkpoints(run.run_dir), "a graceful stop saves a checkpoint"
    # Each rank saved its own RNG state into the one checkpoint rank 0 staged.
    newest = run.run_dir / "checkpoints" / f"checkpoint-{complete_checkpoints(run.run_dir)[-1]}"
    assert {p.name for p in newest.glob("rng_state_*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }
    assert not _rank_pids(run.run_dir)


def test_launch_command_is_accelerate_launch(tmp_path, tiny_model_dir):
    config = _config(tiny_model_dir, processes=3, batch_size=6)
    cmd = launch_command(tmp_path / "run", tmp_path / "brand", config, resume=True, port=29555)
    assert cmd[1:3] == ["-m", "chatbot.training.launcher"]  # accelerate launch, bound to the job
    assert cmd[cmd.index("--num_processes") + 1] == "3"
    assert cmd[cmd.index("--main_process_port") + 1] == "29555"
    assert cmd[-5:] == [
        "-m",
        "chatbot.training.rank",
        str(tmp_path / "run"),
        str(tmp_path / "brand"),
        "--resume",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA these are supported")
@pytest.mark.parametrize("how", ["fsdp", "deepspeed"])
def test_sharded_training_without_gpus_is_refused_before_starting(ws, tiny_model_dir, how):
    with pytest.raises(BrandVoiceError, match=f"distributed={how} needs CUDA GPUs"):
        start_run(ws, "Lumen Lamps", _config(tiny_model_dir, distributed=how))
    assert not ws.runs_dir().exists() or not list(ws.runs_dir().iterdir())


def test_bad_process_counts_are_refused(tiny_model_dir):
    with pytest.raises(ConfigError, match="processes must be 1 or more"):
        _config(tiny_model_dir, processes=0)
    with pytest.raises(ConfigError, match=r"batch_size \(2\) must be at least processes \(4\)"):
        _config(tiny_model_dir, processes=4, batch_size=2)
