"""Training throughput with 1 and with N processes on this machine: same data, same global batch.

    .venv/bin/python scripts/bench_scale.py [--data CONVERSATIONS.jsonl] [--steps 8] [--processes 2]

Both runs use the quick preset on the default model through the code paths of `brandvoice train`
(one process: `train()` in this process's child; N: `accelerate launch` with N ranks), and report
real (non-padding) tokens per second of training time, summed over the ranks, from each run's
metrics, plus the final training loss (the same data and global batch should give a similar loss).
On a CPU the processes share the same cores: a speed-up is not expected there; the figures say
what the multi-process path costs. Data defaults to the demo brand's conversations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_DATA = ROOT / "data" / "kettlebird" / "conversations.jsonl"


def _brand(data: Path, folder: Path) -> Path:
    """A minimal prepared brand: the 80% training split of `data` (no eval, no system prompt)."""
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    random.Random(0).shuffle(rows)
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows[len(rows) // 5 :]),
        encoding="utf-8",
    )
    return folder


def _measure(processes: int, brand: Path, run_dir: Path, steps: int) -> dict:
    from chatbot.config import TrainConfig
    from chatbot.models import fetch_default_model

    config = TrainConfig.from_preset(
        "quick",
        {
            "base_model": str(fetch_default_model()),
            "max_steps": steps,
            "checkpoint_every": 10_000,
            "processes": processes,
        },
    )
    run_dir.mkdir(parents=True)
    config.to_yaml(run_dir / "config.yaml")
    start = time.perf_counter()
    if processes == 1:  # a child process, like the job worker, so both pay the same start-up
        cmd = [sys.executable, "-m", "chatbot.training.rank", str(run_dir), str(brand)]
        subprocess.run(cmd, check=True, cwd=ROOT)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    else:
        from chatbot.training.distributed import train_processes

        metrics = train_processes(run_dir, config, brand)
    return {
        "tokens_per_s": metrics["tokens_per_s"],
        "train_seconds": metrics["train_seconds"],
        "wall_s": round(time.perf_counter() - start, 1),
        "final_loss": metrics["final_train_loss"],
        "steps": metrics["steps"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEMO_DATA, help="conversations JSONL")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    p.add_argument("--processes", type=int, default=2, help="processes of the second run")
    args = p.parse_args()
    from chatbot.runs.jobs import training_allocator_env

    os.environ.update(training_allocator_env(dict(os.environ)))  # as the job worker does
    print(
        f"data: {args.data}, {args.steps} steps of the quick preset's global batch, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        brand = _brand(args.data, Path(tmp) / "brand")
        for n in (1, args.processes):
            r = _measure(n, brand, Path(tmp) / f"run-{n}", args.steps)
            results[n] = r
            print(
                f"{n} process{'es' if n > 1 else '  '}: {r['tokens_per_s']:7.1f} real tok/s "
                f"(training {r['train_seconds']} s, wall {r['wall_s']} s with start-up), "
                f"final loss {r['final_loss']:.4f}",
                flush=True,
            )
    one, many = results[1], results[args.processes]
    speed = many["tokens_per_s"] / one["tokens_per_s"]
    print(
        f"{args.processes} / 1 processes: throughput {speed:.2f}x, "
        f"wall {many['wall_s'] / one['wall_s']:.2f}x; final loss difference "
        f"{abs(many['final_loss'] - one['final_loss']):.4f}; load average now "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
