"""One rank of a multi-process run: `accelerate launch ... -m chatbot.training.rank RUN BRAND`.

Reads the run's resolved `config.yaml` and trains with `train()`, like a one-process run; a stop
is requested by creating `RUN/STOP` (see `chatbot.training.distributed`). Exit status 0 when the
run succeeded or was cancelled, 1 when it failed (rank 0 has recorded why in `events.jsonl`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chatbot.training.rank")
    p.add_argument("run_dir", type=Path)
    p.add_argument("brand_dir", type=Path)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)

    from chatbot.config import TrainConfig
    from chatbot.training import TrainingError, train
    from chatbot.training.distributed import STOP_FILE, StopFile, exit_with_parent

    exit_with_parent()
    config = TrainConfig.from_yaml(args.run_dir / "config.yaml")
    try:
        train(
            args.run_dir,
            config,
            args.brand_dir,
            stop=StopFile(args.run_dir / STOP_FILE),
            resume=args.resume,
        )
    except TrainingError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        _leave_group(wait=False)
        return 1
    _leave_group(wait=True)
    return 0


def _leave_group(*, wait: bool) -> None:
    """Close the process group before exiting: gloo aborts a process that exits with it open."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()  # rank 0 may still be writing the adapter
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
