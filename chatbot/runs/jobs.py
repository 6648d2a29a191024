"""Training jobs: each run trains in its own process; the database holds its state.

States: queued -> running -> succeeded | failed | cancelled. One run trains per workspace at a time:
workers take an OS file lock on the workspace, so a second start waits its turn as `queued` (at
most `MAX_QUEUED` wait; a waiting worker has not imported the training libraries yet), and a
crashed or killed worker releases the lock by dying. Cancel is a SIGTERM the worker turns into a
graceful stop (it saves a checkpoint); a worker that does not stop in time is killed. A run with
several processes trains in ranks started by `accelerate launch` under the worker (see
`chatbot.training.distributed`); the worker supervises them and records the outcome. The launcher
and the ranks die with the worker, and the ranks hold a lock of their own that the next worker
waits for, so a resumed run never trains beside the ranks of its killed predecessor.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chatbot.config import TrainConfig
from chatbot.errors import BrandVoiceError
from chatbot.storage import atomic_write_text
from chatbot.training.run_files import Event, RunFolder, read_events
from chatbot.workspace import PRIVATE_UMASK, Workspace

__all__ = [
    "Run",
    "start_run",
    "cancel_run",
    "resume_run",
    "get_run",
    "list_runs",
    "follow_events",
    "read_events",
    "wait_for_run",
    "record_imported_run",
    "training_allocator_env",
]

FINAL_STATES = ("succeeded", "failed", "cancelled")
MAX_QUEUED = 4
"""Runs that may wait for the workspace at once; a further start is refused."""
RANKS_LOCK = "training.ranks.lock"
"""The workspace file every rank of a multi-process run holds a shared lock on while it lives."""


@dataclass
class Run:
    id: str
    brand: str
    state: str
    preset: str
    base_model: str
    created: float
    started: float | None
    finished: float | None
    error: str | None
    pid: int | None
    run_dir: Path

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def folder(self) -> RunFolder:
        """The run folder's files (`chatbot.training.run_files.RunFolder`)."""
        return RunFolder(self.run_dir)

    @property
    def has_adapter(self) -> bool:
        """Finished with an adapter to chat with, score, check or export: the one definition.

        The run succeeded and its `adapter/` holds `adapter_config.json` (a folder without it is
        not an adapter PEFT can load).
        """
        return self.state == "succeeded" and self.folder.has_adapter()


def _row_to_run(row) -> Run:  # noqa: ANN001 - sqlite3.Row
    d = dict(row)
    d["run_dir"] = Path(d["run_dir"])
    return Run(**d)


def _set_state(ws: Workspace, run_id: str, state: str, **fields: object) -> None:
    cols = ", ".join(f"{k} = ?" for k in ("state", *fields))
    with ws.db() as con:
        con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (state, *fields.values(), run_id))


def _pid_is_worker(pid: int | None, run_id: str) -> bool:
    """True if `pid` is alive and is this run's worker (guards against pid reuse)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return run_id.encode() in cmdline


def _reap_dead(ws: Workspace, run: Run) -> Run:
    """A run marked running/queued whose worker is gone crashed or was killed: say so."""
    if run.state in ("running", "queued") and run.pid and not _pid_is_worker(run.pid, run.id):
        msg = (
            "the training process stopped unexpectedly (crash or kill); "
            f"resume it with `brandvoice resume {run.id}`"
        )
        _set_state(ws, run.id, "failed", error=msg, finished=time.time())
        return _get_row(ws, run.id)
    return run


def get_run(ws: Workspace, run_id: str) -> Run:
    """The run with this id (or unique id prefix); a run whose worker died is marked failed."""
    return _reap_dead(ws, _get_row(ws, run_id))


def _get_row(ws: Workspace, run_id: str) -> Run:
    """The run with this id, or the one run whose id starts with it."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise BrandVoiceError("No run was chosen: pick a run (its id) first.")
    with ws.db() as con:
        row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            # The prefix is matched literally: "%" and "_" mean themselves, not "anything".
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = con.execute(
                "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created DESC LIMIT 6",
                (escaped + "%",),
            ).fetchall()
            if len(rows) > 1:
                shown = ", ".join(r["id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
                raise BrandVoiceError(
                    f"'{run_id}' is the start of several runs ({shown}); give more of the id."
                )
            row = rows[0] if rows else None
    if row is None:
        raise BrandVoiceError(
            f"No run '{run_id}' in workspace {ws.root}; `brandvoice runs` lists them."
        )
    return _row_to_run(row)


def list_runs(ws: Workspace, brand: str | None = None) -> list[Run]:
    with ws.db() as con:
        rows = con.execute(
            "SELECT * FROM runs WHERE (? IS NULL OR brand = ?) ORDER BY created DESC",
            (brand, brand),
        ).fetchall()
    return [_reap_dead(ws, _row_to_run(r)) for r in rows]


def _spawn_worker(ws: Workspace, run: Run, resume: bool) -> int:
    fd = os.open(run.folder.worker_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log = os.fdopen(fd, "ab")  # handed to the child process
    cmd = [sys.executable, "-m", "chatbot.runs.jobs", "--workspace", str(ws.root), run.id]
    if resume:
        cmd.append("--resume")
    # The log is for diagnosis: no download or loading progress bars in it.
    env = os.environ | {
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    env |= training_allocator_env(env)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        env=env,
        umask=PRIVATE_UMASK,  # the run's files (checkpoints, adapter, logs) are 0600
    )
    log.close()
    # Collect the child's exit status when it ends so a long-lived parent (the app) keeps no
    # zombies; the worker itself outlives a parent that exits (it has its own session).
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{run.id}").start()
    with ws.db() as con:
        con.execute("UPDATE runs SET pid = ? WHERE id = ?", (proc.pid, run.id))
    return proc.pid


# TCMalloc, where installed (scripts/_env.sh installs it with apt): PyTorch's CPU tuning guide
# recommends it, and on this product's CPU training it measured ~20% faster with a peak ~0.4 GB
# lower than glibc's malloc, which keeps freed activation memory in fragmented arenas.
_TCMALLOC = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)


def training_allocator_env(env: dict[str, str]) -> dict[str, str]:
    """`LD_PRELOAD` for a training process: TCMalloc when present (and nothing else preloaded).

    Set BRANDVOICE_MALLOC=system to keep the C library's allocator.
    """
    if env.get("LD_PRELOAD") or env.get("BRANDVOICE_MALLOC") == "system":
        return {}
    found = next((p for p in _TCMALLOC if Path(p).is_file()), None)
    return {"LD_PRELOAD": found} if found else {}


def start_run(ws: Workspace, brand: str, config: TrainConfig, *, preset: str = "") -> Run:
    """Record a queued run, write its resolved config, and start its worker process."""
    from chatbot.training.distributed import check_distributed

    slug = ws.find_brand(brand)
    check_distributed(config)
    _check_queue(ws)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir = ws.runs_dir() / run_id
    run_dir.mkdir(mode=0o700, parents=True)
    atomic_write_text(RunFolder(run_dir).config, config.to_yaml())
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, run_dir) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
            (run_id, slug, preset, str(config.base_model or "default"), time.time(), str(run_dir)),
        )
    run = get_run(ws, run_id)
    _spawn_worker(ws, run, resume=False)
    return get_run(ws, run_id)


def _check_queue(ws: Workspace) -> None:
    """Refuse a start when `MAX_QUEUED` runs already wait (each waits in a process of its own)."""
    waiting = [run.id for run in list_runs(ws) if run.state == "queued"]
    if len(waiting) >= MAX_QUEUED:
        raise BrandVoiceError(
            f"{len(waiting)} runs already wait for their turn in this workspace "
            f"({', '.join(waiting)}); cancel one with `brandvoice cancel RUN`, or start this one "
            "when they have run."
        )


def record_imported_run(
    ws: Workspace,
    brand: str,
    config: TrainConfig,
    adapter_dir: Path,
    *,
    system_prompt: str = "",
    preset: str = "imported",
    origin: dict | None = None,
) -> Run:
    """Record an adapter trained elsewhere as a succeeded run, so chat, compare and eval can use it.

    `brand` is the slug of a brand that has a brand.yaml. `adapter_dir` (checked by the caller) is
    moved into the new run folder as its `adapter/`, so it must be on the workspace's file system.
    `system_prompt` is what the tuned side is chatted with ("" for none); `origin` (where the
    adapter came from), when given, is kept as `imported.json`.
    """
    if not (ws.brand_dir(brand) / "brand.yaml").is_file():
        raise BrandVoiceError(f"No brand '{brand}' in workspace {ws.root} (no brand.yaml).")
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir = ws.runs_dir() / run_id
    run_dir.mkdir(mode=0o700, parents=True)
    files = RunFolder(run_dir)
    atomic_write_text(files.config, config.to_yaml())
    atomic_write_text(files.system_prompt, system_prompt)
    if origin is not None:
        atomic_write_text(files.imported, json.dumps(origin, indent=2) + "\n")
    os.replace(adapter_dir, files.adapter)
    now = time.time()
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, started, finished, "
            "run_dir) VALUES (?, ?, 'succeeded', ?, ?, ?, ?, ?, ?)",
            (run_id, brand, preset, str(config.base_model), now, now, now, str(run_dir)),
        )
    return get_run(ws, run_id)


def resume_run(ws: Workspace, run_id: str) -> Run:
    """Continue a failed, cancelled or crashed run from its newest complete checkpoint."""
    run = get_run(ws, run_id)
    if run.state in ("running", "queued"):
        raise BrandVoiceError(f"Run {run.id} is still {run.state}; nothing to resume.")
    if run.state == "succeeded":
        raise BrandVoiceError(f"Run {run.id} already finished; start a new run to train again.")
    _check_queue(ws)
    _set_state(ws, run.id, "queued", error=None, finished=None)
    _spawn_worker(ws, run, resume=True)
    return get_run(ws, run.id)


def cancel_run(ws: Workspace, run_id: str, *, timeout: float = 60.0) -> Run:
    """Stop a run gracefully (it keeps its last checkpoint); kill it if it does not stop in time."""
    run = get_run(ws, run_id)
    if run.done:
        return run
    if run.state == "queued":
        # Not training yet (waiting for the workspace lock): nothing to save, stop it at once.
        _set_state(ws, run.id, "cancelled", finished=time.time())
        if run.pid and _pid_is_worker(run.pid, run.id):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
        return get_run(ws, run.id)
    if run.pid and _pid_is_worker(run.pid, run.id):
        os.kill(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_is_worker(run.pid, run.id):
            time.sleep(0.2)
        if _pid_is_worker(run.pid, run.id):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            _set_state(
                ws,
                run.id,
                "cancelled",
                finished=time.time(),
                error=f"did not stop within {timeout:g}s and was killed; "
                "its last complete checkpoint is kept",
            )
    run = get_run(ws, run.id)
    if not run.done:
        _set_state(ws, run.id, "cancelled", finished=time.time())
    return get_run(ws, run.id)


def wait_for_run(ws: Workspace, run_id: str, timeout: float | None = None) -> Run:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = get_run(ws, run_id)
        if run.done or (deadline is not None and time.monotonic() > deadline):
            return run
        time.sleep(0.25)


def follow_events(ws: Workspace, run_id: str, poll: float = 0.5) -> Iterator[Event]:
    """Yield a run's events as they are written, until the run ends."""
    seen = 0
    while True:
        run = get_run(ws, run_id)
        events = read_events(run.run_dir)
        yield from events[seen:]
        seen = len(events)
        if run.done:
            return
        time.sleep(poll)


# --- the worker process -------------------------------------------------------------------------


@contextlib.contextmanager
def _workspace_lock(ws: Workspace) -> Iterator[None]:
    """Hold the workspace's training lock; also wait until no rank of an earlier run lives.

    The ranks of a multi-process run hold `RANKS_LOCK` (shared) for as long as they live. They
    die with their worker, but a killed worker frees the training lock at once while its ranks
    take a moment to go; the next worker waits for them here before it trains.
    """
    with open(ws.root / "training.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # waits while another run trains: this run stays queued
        try:
            with open(ws.root / RANKS_LOCK, "a+") as ranks:
                fcntl.flock(ranks, fcntl.LOCK_EX)  # waits for ranks that outlived their worker
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_worker(ws: Workspace, run_id: str, resume: bool) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with _workspace_lock(ws):
        run = get_run(ws, run_id)
        if run.state != "queued" or stop.is_set():
            _set_state(ws, run_id, "cancelled", finished=time.time())
            return 0
        _set_state(ws, run_id, "running", started=time.time(), pid=os.getpid())
        # Imported only now: a queued worker waits without torch's time and memory.
        from chatbot.training import TrainingError, train
        from chatbot.training.distributed import RANKS_LOCK_ENV, train_processes

        os.environ[RANKS_LOCK_ENV] = str(ws.root / RANKS_LOCK)  # for the ranks, if any
        config = run.folder.read_config()
        several = config.processes > 1 or bool(config.accelerate_config)
        fit = train_processes if several else train
        if config.method != "sft":  # a run from votes (chatbot.training.from_votes)
            from chatbot.training.from_votes import train_from_votes

            fit = functools.partial(train_from_votes, workspace=ws)
        try:
            metrics = fit(run.run_dir, config, ws.brand_dir(run.brand), stop=stop, resume=resume)
        except (TrainingError, BrandVoiceError) as exc:
            _set_state(ws, run_id, "failed", error=str(exc), finished=time.time())
            return 1
        except Exception as exc:  # noqa: BLE001 - the run must end as failed, with the reason
            traceback.print_exc()
            _set_state(
                ws,
                run_id,
                "failed",
                finished=time.time(),
                error=f"internal error: {type(exc).__name__}: {exc} (see worker.log)",
            )
            return 1
        state = "cancelled" if stop.is_set() or metrics.get("state") == "cancelled" else "succeeded"
        _set_state(ws, run_id, state, finished=time.time())
        return 0


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m chatbot.runs.jobs", description="training worker")
    p.add_argument("--workspace", required=True)
    p.add_argument("run_id")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    return _run_worker(Workspace.open(args.workspace), args.run_id, args.resume)


if __name__ == "__main__":
    sys.exit(_main())
