"""Benchmark the GGUF export of a finished run: size, verification, load time, tokens/s.

    .venv/bin/python scripts/bench_gguf.py --workspace WS --run RUN [--quant f16 q8_0] [--tokens 64]

For each type it exports the run (verified, as `brandvoice export --format gguf` does) and prints
the file's size, the export's time and what the independent reader (transformers' GGUF loader, in
a fresh process) reproduced and how long it took to load. Then, in this process, greedy decoding
speed (KV cache, `generate`, `--tokens` new tokens, median of 3) of:

- the PyTorch tuned model as `brandvoice chat` runs it (the run's base and quantization + adapter);
- the merged model in float32 (what the GGUF holds, before F16 rounding or Q8_0);
- each GGUF as transformers loads it. Note: transformers dequantizes a GGUF to float32 when it
  loads it, so this measures PyTorch on the dequantized weights, not llama.cpp's kernels.

Figures are ratios to the first line, measured in one run; the CPU and its load are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.export import export_run  # noqa: E402
from chatbot.export.reload_check import check_messages, prompt_ids  # noqa: E402
from chatbot.models import load_base_model  # noqa: E402
from chatbot.runs.adapters import adapter_setup  # noqa: E402
from chatbot.workspace import Workspace  # noqa: E402

QUESTION = "Hi, my kettle arrived with a dent in the lid. What can you do for me?"


def _machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "?")
    flags = subprocess.run(
        "grep -o 'amx[a-z_0-9]*\\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\\n' ' '",
        shell=True, capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return f"{cpu} [{flags or 'no AMX/AVX512-BF16'}], {os.cpu_count()} CPUs, load {os.getloadavg()}"


def _tokens_per_s(model: object, ids: list[int], tokens: int) -> float:
    runs = []
    with torch.inference_mode():
        for _ in range(3):
            start = time.perf_counter()
            out = model.generate(  # type: ignore[attr-defined]
                torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens,
                do_sample=False, pad_token_id=0,
            )  # fmt: skip
            runs.append((out.shape[1] - len(ids)) / (time.perf_counter() - start))
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--quant", nargs="+", default=["f16", "q8_0"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--out", default=None, help="folder for the exports (default: workspace)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    ws = Workspace.open(args.workspace)
    setup = adapter_setup(ws, args.run)
    print(f"machine: {_machine()}")

    exports = {}
    for quant in args.quant:
        out = Path(args.out) / f"gguf-{quant}" if args.out else None
        start = time.perf_counter()
        result = export_run(ws, setup.run_id, "gguf", out, quant=quant)
        took = time.perf_counter() - start
        gguf = next(result.path.glob("*.gguf"))
        check = result.verification["transformers"]
        exports[quant] = gguf
        print(
            f"{quant}: {gguf.stat().st_size / 1e6:.1f} MB, export {took:.0f} s, verified: "
            f"{check['identical_replies']}/{check['prompts']} replies identical, agreement "
            f"{check['agreement']:.1%} of {check['tokens']} tokens, reader load {check['load_s']} s"
        )
        print(f"  load average after: {os.getloadavg()}")

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(setup.adapter_dir)
    ids = prompt_ids(tokenizer, check_messages(setup.tuned_system_prompt, QUESTION))
    base, _ = load_base_model(setup.base_model, quantization=setup.quantization)
    tuned = PeftModel.from_pretrained(base, str(setup.adapter_dir)).eval()
    speeds = {f"PyTorch tuned ({setup.quantization} base + LoRA)": _tokens_per_s(tuned, ids, 64)}
    del tuned, base
    merged_base, _ = load_base_model(
        setup.base_model, quantization="none", compute_dtype=torch.float32, device="cpu"
    )
    merged = PeftModel.from_pretrained(merged_base, str(setup.adapter_dir)).merge_and_unload()
    speeds["PyTorch merged, float32"] = _tokens_per_s(merged.eval(), ids, args.tokens)
    del merged, merged_base
    for quant, gguf in exports.items():
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
        speeds[f"GGUF {quant} in transformers (dequantized)"] = _tokens_per_s(
            model, ids, args.tokens
        )
        del model
    first = next(iter(speeds.values()))
    for name, speed in speeds.items():
        print(f"{name}: {speed:.1f} tok/s ({speed / first:.2f}x)")
    print(f"machine after: {_machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
