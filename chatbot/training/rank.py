"""One rank of a multi-process run: `accelerate launch ... -m chatbot.training.rank RUN BRAND`.

Reads the run's resolved `config.yaml` and trains with `train()`, like a one-process run; a stop
is requested by creating `RUN/STOP` (see `chatbot.training.distributed`). Exit status 0 when the
run succeeded or was cancelled, 1 when it failed (rank 0 has recorded why in `events.jsonl`).

A rank dies with its launcher, and holds the workspace's ranks lock (shared with the other ranks)
for as long as it lives: the next run's worker waits for that lock before it trains.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path
from typing import IO

_held: list[IO] = []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chatbot.training.rank")
    p.add_argument("run_dir", type=Path)
    p.add_argument("brand_dir", type=Path)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)

    from chatbot.training.distributed import die_with_parent

    die_with_parent()
    _hold_ranks_lock()

    from chatbot.training import TrainingError, train
    from chatbot.training.distributed import StopFile, exit_with_parent
    from chatbot.training.run_files import RunFolder

    exit_with_parent()  # where the system has no parent-death signal
    files = RunFolder(args.run_dir)
    config = files.read_config()
    try:
        train(
            args.run_dir,
            config,
            args.brand_dir,
            stop=StopFile(files.stop_file),
            resume=args.resume,
        )
    except TrainingError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        _leave_group(wait=False)
        return 1
    _leave_group(wait=True)
    return 0


def _hold_ranks_lock() -> None:
    """Take the ranks lock named by the worker, held until this process ends (fd kept open)."""
    from chatbot.training.distributed import RANKS_LOCK_ENV

    path = os.environ.get(RANKS_LOCK_ENV)
    if path:
        fh = open(path, "a+")  # noqa: SIM115 - open for the life of the process
        fcntl.flock(fh, fcntl.LOCK_SH)
        _held.append(fh)


def _leave_group(*, wait: bool) -> None:
    """Close the process group before exiting: gloo aborts a process that exits with it open."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()  # rank 0 may still be writing the adapter
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
