"""Benchmark training throughput: our `train()` against the plain TRL + PEFT QLoRA recipe, and both
against this machine's matmul roofline in its fastest dtype, in one run on the same data.

    .venv/bin/python scripts/bench_train.py [--data CONVERSATIONS.jsonl] [--system-prompt FILE]
        [--steps 6] [--rounds 2] [--variants plain,ours,ours-noshare]

- ours: `chatbot.training.train` with the quick preset on the default model, in the environment
  the job worker gives it (TCMalloc preloaded where installed): packed rows under the token
  budget, the shared system block computed once per row, the compute dtype this machine's probe
  picks. Its tokens/s: conversation tokens (each counted whole, as a plain batch computes it)
  over training time, evaluation excluded; also its computed tokens/s (what the model ran);
- ours-noshare: the same with `share_prefix=false` (every conversation computes its prefix);
- ours-noprompt: the same trained without the system prompt (`system_prompt=never`): the
  "shortened prompt" alternative, which changes what is learned (compare held-out NLL);
- ours-gc: the same with `gradient_checkpointing=on`, the memory-saving setting;
- plain: the recipe from TRL's and PEFT's docs: NF4 + double quantisation, bf16 compute, LoRA
  r=16 on all linear layers, SFTTrainer defaults otherwise (gradient checkpointing, bf16 autocast,
  padded batches of 8), real tokens counted from the attention masks;
- roofline: matmul throughput of this machine on the model's own layer shapes (forward and
  backward-to-input products) in fp32, bf16 (and fp16 where native), the fastest divided by
  4 x parameters FLOPs per trained token.

`--system-prompt FILE` starts every conversation with that system message, on both sides (the
demo brand trains with its 187-token style prompt). Each measurement runs in a fresh process (so
its peak memory is its own), and the variants alternate for --rounds rounds, so that changes in
machine load hit all alike; medians are printed, with the CPU model, its flags and the load.
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
    prompt = os.environ.get("BENCH_SYSTEM_PROMPT", "")
    out = []
    for r in rows[len(rows) // 5 :]:  # the 80% train split
        messages = [m for m in r["messages"] if m["role"] != "system"] if prompt else r["messages"]
        if prompt:
            messages = [{"role": "system", "content": prompt}, *messages]
        out.append({"messages": messages})
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- workers (each in its own process) -------------------------------------------------------


def _worker_ours(data: Path, steps: int, *overrides: str) -> dict:
    if "system_prompt=never" in overrides:  # the shortened-prompt variant: no system prompt at all
        os.environ["BENCH_SYSTEM_PROMPT"] = ""
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
            [f"base_model={base}", f"max_steps={steps}", "checkpoint_every=10000", *overrides],
        )
        metrics = train(Path(tmp) / "run", config, brand)
    return {
        "tokens_per_s": metrics["tokens_per_s"],
        "computed_tokens_per_s": round(
            metrics["computed_tokens"] / max(metrics["train_seconds"], 1e-9), 1
        ),
        "steps": metrics["steps"],
        "compute_dtype": metrics["compute_dtype"],
    }


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
    """Matmul FLOP/s on the default model's shapes in each dtype (forward and backward-to-input,
    as LoRA training computes them), and the roofline of the fastest."""
    from transformers import AutoConfig

    from chatbot.hardware import probe_compute_dtypes
    from chatbot.models import fetch_default_model
    from chatbot.training.estimate import _parameters

    cfg = AutoConfig.from_pretrained(fetch_default_model())
    probe = probe_compute_dtypes(cfg, tokens=tokens)
    best = max(probe.tflops, key=probe.tflops.__getitem__)
    params = _parameters(cfg) + cfg.hidden_size * cfg.vocab_size
    return {
        "tflops": probe.tflops,
        "fastest": best,
        "auto_choice": probe.choice,
        "params": params,
        "roofline_tokens_per_s": round(probe.tflops[best] * 1e12 / (4 * params), 1),
    }


# -- driver ----------------------------------------------------------------------------------


_VARIANTS = {
    "ours": (),
    "ours-noshare": ("share_prefix=false",),
    "ours-noprompt": ("system_prompt=never",),
    "ours-gc": ("gradient_checkpointing=on",),
    # Recomputing activations lets rows grow (more conversations share one prefix) in less memory.
    "ours-gc1024": ("gradient_checkpointing=on", "max_batch_tokens=1024"),
    "ours-gc2048": ("gradient_checkpointing=on", "max_batch_tokens=2048"),
}


def _run_worker(kind: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(args.data)]
    cmd += ["--steps", str(args.steps)]
    env = dict(os.environ)
    if args.system_prompt:
        env["BENCH_SYSTEM_PROMPT"] = args.system_prompt.read_text(encoding="utf-8").strip()
    if kind.startswith("ours"):  # the job worker's environment: TCMalloc where installed
        from chatbot.runs.jobs import training_allocator_env

        env |= training_allocator_env(env)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def _worker(kind: str, args: argparse.Namespace) -> dict:
    if kind == "plain":
        return _worker_plain(args.data, args.steps)
    if kind == "roofline":
        return _worker_roofline(512)
    if kind.startswith("ours-no-"):  # no-<setting>=<value>: any one override, e.g. for sweeps
        return _worker_ours(args.data, args.steps, kind.removeprefix("ours-no-"))
    return _worker_ours(args.data, args.steps, *_VARIANTS[kind])


def _line(kind: str, r: dict) -> str:
    computed = r.get("computed_tokens_per_s")
    extra = f" ({computed:.1f} computed, {r['compute_dtype']})" if computed else ""
    return f"{kind:13s} {r['tokens_per_s']:7.1f} real tok/s{extra}, peak RSS {r['peak_rss_mb']} MB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEMO_DATA, help="conversations JSONL")
    p.add_argument("--system-prompt", type=Path, help="a text file: every conversation's system")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", default="plain,ours,ours-noshare")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = _worker(args.worker, args)
        result["peak_rss_mb"] = round(_peak_rss_mb())
        print(json.dumps(result))
        return

    from chatbot.hardware import cpu_info

    if args.system_prompt:
        os.environ["BENCH_SYSTEM_PROMPT"] = args.system_prompt.read_text(encoding="utf-8").strip()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    print(f"CPU: {cpu_info().describe()}")
    print(
        f"data: {args.data} ({len(_rows(args.data))} training conversations"
        f"{', with the system prompt of ' + str(args.system_prompt) if args.system_prompt else ''}"
        f"), {args.steps} steps per measurement, load average {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for kind in variants:
            r = _run_worker(kind, args)
            results[kind].append(r)
            print(f"round {round_ + 1} {_line(kind, r)}", flush=True)
    roof = _run_worker("roofline", args)
    print(
        f"matmul TFLOP/s on the model's shapes: {roof['tflops']}; fastest {roof['fastest']} -> "
        f"roofline {roof['roofline_tokens_per_s']} tok/s (4 x {roof['params'] / 1e6:.0f}M FLOPs "
        f"a token); training picks {roof['auto_choice']}"
    )
    median = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in results.items()}
    for kind, runs in results.items():
        computed = [r["computed_tokens_per_s"] for r in runs if r.get("computed_tokens_per_s")]
        share = (
            f", computed {statistics.median(computed):.1f} tok/s = "
            f"{statistics.median(computed) / roof['roofline_tokens_per_s']:.0%} of roofline"
            if computed
            else ""
        )
        print(
            f"{kind:13s} {median[kind]:7.1f} real tok/s = "
            f"{median[kind] / roof['roofline_tokens_per_s']:.0%} of roofline{share}; "
            f"peak RSS {max(r['peak_rss_mb'] for r in runs)} MB"
        )
    if "plain" in median:
        for kind in (k for k in median if k != "plain"):
            print(f"{kind} / plain = {median[kind] / median['plain']:.2f}x")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
