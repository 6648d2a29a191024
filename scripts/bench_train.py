"""Benchmark training throughput: our `train()` against the plain TRL + PEFT QLoRA recipe, and both
against this machine's bf16 matmul roofline, in one run on the same data.

    .venv/bin/python scripts/bench_train.py [--data CONVERSATIONS.jsonl] [--steps 6] [--rounds 2]

- ours: `chatbot.training.train` with the quick preset on the default model, in the environment
  the job worker gives it (TCMalloc preloaded where installed); its own tokens/s: real,
  non-padding tokens over training time, evaluation excluded;
- ours-gc: the same with `gradient_checkpointing=on`, the memory-saving setting;
- plain: the recipe from TRL's and PEFT's docs: NF4 + double quantisation, bf16 compute, LoRA
  r=16 on all linear layers, SFTTrainer defaults otherwise (gradient checkpointing, bf16 autocast,
  padded batches of 8), real tokens counted from the attention masks;
- roofline: the bf16 matmul throughput of this machine on the model's own layer shapes (forward
  and backward-to-input products), divided by 4 x parameters FLOPs per trained token.

Each measurement runs in a fresh process (so its peak memory is its own), and the two recipes
alternate for --rounds rounds, so that changes in machine load hit both alike; medians are
printed. Data defaults to the demo brand's conversations. A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_DATA = ROOT / "data" / "kettlebird" / "conversations.jsonl"


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    random.Random(0).shuffle(rows)
    return [{"messages": r["messages"]} for r in rows[len(rows) // 5 :]]  # the 80% train split


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- workers (each in its own process) -------------------------------------------------------


def _worker_ours(data: Path, steps: int, checkpointing: str = "auto") -> dict:
    from chatbot.config import TrainConfig
    from chatbot.models import fetch_default_model
    from chatbot.training import train

    with tempfile.TemporaryDirectory() as tmp:
        brand = Path(tmp) / "brand"
        brand.mkdir()
        (brand / "train.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in _rows(data)), encoding="utf-8"
        )
        base = str(fetch_default_model())
        config = TrainConfig.from_preset(
            "quick",
            {
                "base_model": base,
                "max_steps": steps,
                "checkpoint_every": 10_000,
                "gradient_checkpointing": checkpointing,
            },
        )
        metrics = train(Path(tmp) / "run", config, brand)
    return {"tokens_per_s": metrics["tokens_per_s"], "steps": metrics["steps"]}


def _worker_plain(data: Path, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        TrainerCallback,
    )
    from trl import SFTConfig, SFTTrainer

    from chatbot.models import fetch_default_model

    base = fetch_default_model()

    class Clock(TrainerCallback):
        """Training time only: from the first step's start to the last step's end."""

        def __init__(self) -> None:
            self.seconds, self.tokens, self._t = 0.0, 0, 0.0

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            self.seconds += time.perf_counter() - self._t

    clock = Clock()

    class Counting(SFTTrainer):
        def training_step(self, model, inputs, *args, **kwargs):  # noqa: ANN001
            clock.tokens += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *args, **kwargs)

    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=bnb, device_map="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=8,
            learning_rate=2e-4,
            report_to=[],
            use_cpu=True,
            bf16=True,
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
        )
        lora = LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        trainer = Counting(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(_rows(data)),
            processing_class=AutoTokenizer.from_pretrained(base),
            peft_config=lora,
            callbacks=[clock],
        )
        trainer.train()
    return {"tokens_per_s": round(clock.tokens / clock.seconds, 1), "steps": steps}


def _worker_roofline(tokens: int) -> dict:
    """bf16 matmul FLOP/s on the default model's shapes, forward and backward-to-input."""
    import torch
    from transformers import AutoConfig

    from chatbot.models import fetch_default_model

    base = fetch_default_model()
    cfg = AutoConfig.from_pretrained(base)
    h, inter, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * cfg.head_dim
    per_layer = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]
    shapes = per_layer * cfg.num_hidden_layers + [(h, cfg.vocab_size)]
    params = sum(k * n for k, n in shapes)
    flops, seconds = 0.0, 0.0
    for k, n in set(shapes):
        count = shapes.count((k, n))
        x = torch.randn(tokens, k, dtype=torch.bfloat16)
        w = torch.randn(n, k, dtype=torch.bfloat16)
        g = torch.randn(tokens, n, dtype=torch.bfloat16)
        for _ in range(3):  # warm-up: kernel selection
            x @ w.t(), g @ w
        reps = 10
        start = time.perf_counter()
        for _ in range(reps):
            x @ w.t()  # forward
            g @ w  # backward, to the input (LoRA training never forms the base weight's grad)
        seconds += (time.perf_counter() - start) / reps * count
        flops += 4 * tokens * k * n * count
    flops_per_s = flops / seconds
    return {
        "bf16_tflops": round(flops_per_s / 1e12, 3),
        "params": params,
        "roofline_tokens_per_s": round(flops_per_s / (4 * params), 1),
    }


# -- driver ----------------------------------------------------------------------------------


def _run_worker(kind: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--data",
        str(args.data),
        "--steps",
        str(args.steps),
    ]
    env = dict(os.environ)
    if kind.startswith("ours"):  # the job worker's environment: TCMalloc where installed
        from chatbot.jobs import training_allocator_env

        env |= training_allocator_env(env)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEMO_DATA, help="conversations JSONL")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--worker", choices=["ours", "ours-gc", "plain", "roofline"], help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.worker:
        work = {
            "ours": lambda: _worker_ours(args.data, args.steps),
            "ours-gc": lambda: _worker_ours(args.data, args.steps, "on"),
            "plain": lambda: _worker_plain(args.data, args.steps),
            "roofline": lambda: _worker_roofline(1024),
        }[args.worker]
        result = work()
        result["peak_rss_mb"] = round(_peak_rss_mb())
        print(json.dumps(result))
        return

    print(
        f"data: {args.data} ({len(_rows(args.data))} training conversations), "
        f"{args.steps} steps per measurement, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[dict]] = {"plain": [], "ours": [], "ours-gc": []}
    for round_ in range(args.rounds):
        for kind in ("plain", "ours", "ours-gc"):
            r = _run_worker(kind, args)
            results[kind].append(r)
            print(
                f"round {round_ + 1} {kind:5s}: {r['tokens_per_s']:7.1f} real tok/s, "
                f"peak RSS {r['peak_rss_mb']} MB",
                flush=True,
            )
    roof = _run_worker("roofline", args)
    ours = statistics.median(r["tokens_per_s"] for r in results["ours"])
    ours_gc = statistics.median(r["tokens_per_s"] for r in results["ours-gc"])
    plain = statistics.median(r["tokens_per_s"] for r in results["plain"])
    print(
        f"bf16 matmul: {roof['bf16_tflops']} TFLOP/s on the model's shapes -> roofline "
        f"{roof['roofline_tokens_per_s']} tok/s (4 x {roof['params'] / 1e6:.0f}M FLOPs a token)"
    )
    print(f"ours  {ours:7.1f} tok/s  peak RSS {max(r['peak_rss_mb'] for r in results['ours'])} MB")
    print(
        f"ours with gradient_checkpointing=on  {ours_gc:7.1f} tok/s  peak RSS "
        f"{max(r['peak_rss_mb'] for r in results['ours-gc'])} MB  ({ours_gc / ours:.0%} of ours)"
    )
    print(
        f"plain {plain:7.1f} tok/s  peak RSS {max(r['peak_rss_mb'] for r in results['plain'])} MB"
    )
    print(
        f"ours / plain = {ours / plain:.2f}x (with checkpointing {ours_gc / plain:.2f}x); "
        f"ours / roofline = "
        f"{ours / roof['roofline_tokens_per_s']:.1%}; plain / roofline = "
        f"{plain / roof['roofline_tokens_per_s']:.1%}; load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
