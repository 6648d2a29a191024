"""Training on several processes: the same recipe, launched by `accelerate launch`.

`train_processes` (called by the job's worker instead of `train`) starts `accelerate launch` with
one process per data-parallel rank; each rank runs `python -m chatbot.training.rank`, which calls
`train()` like a one-process run. Only rank 0 writes the run folder (events, checkpoints' final
rename, adapter, metrics); the other ranks write only their own part of a checkpoint (their RNG
state, their shards under FSDP/DeepSpeed) into the folder rank 0 stages.

Stopping is agreed on, not signalled: a graceful cancel creates `STOP` in the run folder; after
every optimizer step the ranks reduce "stop requested" across the group, so all of them stop after
the same step and rank 0 saves the checkpoint. A rank that dies (crash, `kill -9`) makes
`torchrun` (under `accelerate launch`) end the others; the job then fails with a message and can be
resumed from the newest complete checkpoint. The launcher (`chatbot.training.launcher`) dies with
the worker that started it and each rank with its launcher (a parent-death signal on Linux, a
watch on the parent elsewhere), so a killed worker leaves no rank training.

Supported (per accelerate's, PEFT's and bitsandbytes' documentation): DDP with QLoRA or plain LoRA
on CPU (gloo) and CUDA (NCCL); FSDP and DeepSpeed ZeRO-3 with QLoRA on CUDA only, with the 4-bit
weights stored as bf16 (`bnb_4bit_quant_storage`) so they can be sharded. See docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from chatbot.config import TrainConfig
from chatbot.errors import BrandVoiceError
from chatbot.training.run_files import RunFolder

__all__ = [
    "RankSync",
    "PARENT_ENV",
    "STOP_FILE",
    "CONFIGS_DIR",
    "launch_command",
    "train_processes",
    "check_distributed",
    "cpu_threads",
]

STOP_FILE = RunFolder.STOP_FILE
PARENT_ENV = "BRANDVOICE_PARENT_PID"
RANKS_LOCK_ENV = "BRANDVOICE_RANKS_LOCK"
"""Where the job worker tells the ranks to find the lock they hold while they live."""
"""The process id a launcher or rank must die with (so it can tell if that died before it asked)."""
# Ready accelerate configs shipped with the package (docs/scaling.md shows how to use them).
CONFIGS_DIR = Path(__file__).resolve().parent / "accelerate_configs"
_CONFIG_FOR = {"fsdp": "fsdp-qlora.yaml", "deepspeed": "deepspeed-zero3-qlora.yaml"}


class RankSync:
    """What the ranks of one run agree on each step; trivial (no communication) in one process."""

    def __init__(self) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True once several processes share a process group (the trainer creates it)."""
        import torch.distributed as dist

        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def _device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any rank."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (fp64, so token counts stay exact)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


class StopFile:
    """A stop request other processes can make: the file exists (same interface as an Event)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.touch()


def check_distributed(config: TrainConfig) -> None:
    """Refuse, in one sentence, combinations the libraries do not support on this machine."""
    if config.processes == 1 and not config.accelerate_config:
        return
    if config.accelerate_config and not Path(config.accelerate_config).is_file():
        raise BrandVoiceError(f"accelerate_config: no such file {config.accelerate_config}")
    on_cuda = torch.cuda.is_available()
    if config.distributed != "ddp" and not config.accelerate_config and not on_cuda:
        raise BrandVoiceError(
            f"distributed={config.distributed} needs CUDA GPUs; on CPU use distributed=ddp."
        )
    if on_cuda and config.processes > torch.cuda.device_count() and not config.accelerate_config:
        raise BrandVoiceError(
            f"processes={config.processes} but this machine has {torch.cuda.device_count()} "
            "GPU(s); use one process per GPU."
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(
    run_dir: Path, brand_dir: Path, config: TrainConfig, *, resume: bool, port: int | None = None
) -> list[str]:
    """The `accelerate launch` command line that trains `run_dir` on `config.processes` ranks."""
    cmd = [sys.executable, "-m", "chatbot.training.launcher"]  # accelerate launch, bound to us
    if config.accelerate_config:
        cmd += ["--config_file", str(config.accelerate_config)]
    else:
        if config.distributed == "ddp":
            # --multi_gpu selects torchrun, which also runs CPU ranks (gloo): the ranks pick
            # their device and backend themselves (TrainingArguments(use_cpu=...)).
            cmd += ["--multi_gpu"]
        else:
            cmd += ["--config_file", str(CONFIGS_DIR / _CONFIG_FOR[config.distributed])]
        cmd += [
            "--num_machines", "1",
            "--num_processes", str(config.processes),
            "--main_process_port", str(port or _free_port()),
            "--mixed_precision", "no",  # the recipe computes in bf16 itself (no autocast)
            "--dynamo_backend", "no",
        ]  # fmt: skip
    if not torch.cuda.is_available():
        threads = cpu_threads(config.threads, config.processes)
        cmd += ["--num_cpu_threads_per_process", str(threads)]
    cmd += ["-m", "chatbot.training.rank", str(run_dir), str(brand_dir)]
    if resume:
        cmd.append("--resume")
    return cmd


def cpu_threads(requested: int, processes: int = 1) -> int:
    """One intra-op thread per physical core we may run on: hyper-threads only add contention.

    Several processes on one machine share the cores (and `requested`) evenly.
    """
    if requested:
        return max(1, requested // processes)
    import psutil

    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else physical
    return max(1, min(physical, usable) // processes)


def train_processes(
    run_dir: Path,
    config: TrainConfig,
    brand_dir: Path,
    *,
    stop: threading.Event | None = None,
    resume: bool = False,
) -> dict:
    """Train on `config.processes` ranks and wait for them; return rank 0's metrics.

    `stop` set: the ranks are asked to stop after their current step (they save a checkpoint).
    Raises `TrainingError` with the reason when a rank fails or dies.
    """
    from chatbot.training.recipe import TrainingError
    from chatbot.training.run_files import EventLog, read_events

    check_distributed(config)
    run_dir = Path(run_dir)
    files = RunFolder(run_dir)
    files.stop_file.unlink(missing_ok=True)
    files.metrics.unlink(missing_ok=True)
    cmd = launch_command(run_dir, brand_dir, config, resume=resume)
    with _launched(cmd) as proc:
        while proc.poll() is None:
            if stop is not None and stop.is_set():
                StopFile(files.stop_file).set()
            time.sleep(0.2)
    files.stop_file.unlink(missing_ok=True)
    metrics = _read_metrics(files)
    if proc.returncode == 0 and metrics is not None:
        return metrics
    failed = [e for e in read_events(run_dir) if e.get("state") == "failed"]
    if failed and failed[-1].get("known"):  # a reason the user can act on (NaN, data, disk)
        raise TrainingError(failed[-1]["error"])
    # Otherwise a rank died and the others failed in a collective: say that, not their error.
    reason = (
        f"a training process stopped unexpectedly (the launcher exited with code "
        f"{proc.returncode}: a rank crashed or was killed; see worker.log); resume it with "
        f"`brandvoice resume {run_dir.name}`"
    )
    EventLog(run_dir).emit("failed", error=reason)
    raise TrainingError(reason)


def _read_metrics(files: RunFolder) -> dict | None:
    try:
        return json.loads(files.metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _launched(cmd: list[str]) -> Iterator[subprocess.Popen]:
    """Run the launcher (its output goes where ours does: the run's worker.log); if we leave
    early (an exception), stop it and its ranks."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, env=os.environ | {PARENT_ENV: str(os.getpid())}
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            # torchrun forwards SIGTERM to the ranks and waits for them.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def die_with_parent() -> None:
    """Have the kernel kill this process (SIGKILL) when the process that started it ends.

    Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`); elsewhere nothing happens here and
    `exit_with_parent` watches instead. A parent that died before the request leaves this process
    with another parent id than $BRANDVOICE_PARENT_PID: it exits at once.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    expected = os.environ.get(PARENT_ENV)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def exit_with_parent(poll: float = 1.0) -> None:
    """In a rank: exit when the launcher that started us is gone (killed with SIGKILL, say).

    torchrun starts each rank in its own session, so killing the job's process group does not
    reach the ranks; without this they would wait in a collective until its timeout.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()
