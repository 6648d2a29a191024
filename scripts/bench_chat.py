"""Benchmark side-by-side chat: our batched `stream_pair` against plain PEFT `generate`, one pane
after the other, on the same loaded model in the same run.

    .venv/bin/python scripts/bench_chat.py [--adapter RUN/adapter] [--base-model DIR] [--tokens 64]

Without --adapter it makes a stand-in: a LoRA adapter on the base model with random A and perturbed
B matrices, so the tuned pane costs what a trained one does. Prints, per pane (left = base,
right = tuned), first-token latency measured from the moment both replies were asked for (what the
person at the compare tab waits) and decode speed in tokens/s after the first token, then the
ratios. Replies are greedy so both paths produce the same tokens; token counts are the replies
re-encoded. Takes about two minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.engine import ChatEngine, GenerationSettings  # noqa: E402

SYSTEM_PROMPT = (
    "You are the customer assistant of Northwind Coffee. Be warm, brief and concrete. Address the "
    "customer by first name when you know it, never promise refunds, and sign off with '— Northwind'."
)
QUESTION = "Hi, my order #4411 arrived with a broken grinder. What can you do for me?"
LEFT, RIGHT = "base", "tuned"


@dataclass
class PaneTiming:
    first_token_s: float
    """From the request to the pane's first visible text."""
    tokens: int
    decode_s: float
    """From the first to the last text of the pane."""

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


def main() -> int:
    args = _parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        adapter = args.adapter or _stand_in_adapter(args.base_model, Path(tmp) / "adapter")
        started = time.perf_counter()
        engine = ChatEngine(args.base_model, adapter, SYSTEM_PROMPT, quantization=args.quantization)
        print(f"loaded in {time.perf_counter() - started:.1f}s: {_describe(engine)}")
        settings = GenerationSettings(temperature=0.0, max_new_tokens=args.tokens)
        messages = [{"role": "user", "content": QUESTION}]
        # Warm-up: the first 4-bit forward repacks weights for the CPU kernel; time it apart.
        _ours(engine, messages, settings)
        _plain(engine, messages, settings)
        ours, plain = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            ours.append(_ours(engine, messages, settings))
            plain.append(_plain(engine, messages, settings))
    _report(ours, plain, args)
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default=None, help="model folder (default: built-in)")
    parser.add_argument("--adapter", type=Path, default=None, help="a run's adapter/ folder")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per reply")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path")
    parser.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    return parser.parse_args()


def _stand_in_adapter(base_model: str | None, out: Path) -> Path:
    """A LoRA adapter with perturbed B (a fresh LoRA's B is zero and would change nothing)."""
    from peft import LoraConfig, get_peft_model

    from chatbot.models import load_base_model

    model, tokenizer = load_base_model(base_model, quantization="none", compute_dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.01)
    peft_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del peft_model, model
    return out


def _describe(engine: ChatEngine) -> str:
    param = next(engine.model.parameters())
    return f"device {param.device}, torch threads {torch.get_num_threads()}"


def _ours(engine: ChatEngine, messages: list, settings: GenerationSettings) -> list[PaneTiming]:
    started = time.perf_counter()
    stamps: list[list[float]] = [[], []]
    texts = ["", ""]
    for deltas in engine.stream_pair(messages, LEFT, messages, RIGHT, settings):
        now = time.perf_counter()
        for pane, delta in enumerate(deltas):
            if delta:
                stamps[pane].append(now)
                texts[pane] += delta
    return [_timing(engine, started, stamps[p], texts[p]) for p in (0, 1)]


def _plain(engine: ChatEngine, messages: list, settings: GenerationSettings) -> list[PaneTiming]:
    """The textbook path: `generate` + TextIteratorStreamer in a thread, left pane then right."""
    from transformers import TextIteratorStreamer

    model, tokenizer = engine.model, engine.tokenizer
    started = time.perf_counter()
    timings = []
    for mode in (LEFT, RIGHT):
        system = [{"role": "system", "content": SYSTEM_PROMPT}] if mode != "base" else []
        text = tokenizer.apply_chat_template(
            system + messages, add_generation_prompt=True, tokenize=False
        )
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        context: Callable[[], object] = model.disable_adapter if mode == "base" else nullcontext
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,
            repetition_penalty=settings.repetition_penalty,
            pad_token_id=tokenizer.pad_token_id,
        )

        def run(context: Callable[[], object] = context, kwargs: dict = kwargs) -> None:
            with context():  # type: ignore[attr-defined]
                model.generate(**kwargs)

        worker = threading.Thread(target=run)
        worker.start()
        stamps, reply = _collect(streamer)
        worker.join()
        timings.append(_timing(engine, started, stamps, reply))
    return timings


def _collect(stream: Iterator[str]) -> tuple[list[float], str]:
    stamps, reply = [], ""
    for delta in stream:
        if delta:
            stamps.append(time.perf_counter())
            reply += delta
    return stamps, reply


def _timing(engine: ChatEngine, started: float, stamps: list[float], text: str) -> PaneTiming:
    if not stamps:
        return PaneTiming(float("nan"), 0, 0.0)
    tokens = len(engine.tokenizer.encode(text, add_special_tokens=False))
    return PaneTiming(stamps[0] - started, tokens, stamps[-1] - stamps[0])


def _report(ours: list[list[PaneTiming]], plain: list[list[PaneTiming]], args: argparse.Namespace) -> None:
    def med(runs: list[list[PaneTiming]], pane: int, attr: str) -> float:
        return statistics.median(getattr(run[pane], attr) for run in runs)

    print(f"\nmedian of {args.repeats} rounds, greedy, up to {args.tokens} new tokens per pane")
    print(f"{'':28}{'left (base)':>14}{'right (tuned)':>15}")
    for label, runs in (("stream_pair", ours), ("plain generate", plain)):
        ttft = [med(runs, p, "first_token_s") * 1000 for p in (0, 1)]
        rate = [med(runs, p, "tokens_per_s") for p in (0, 1)]
        tokens = [med(runs, p, "tokens") for p in (0, 1)]
        print(f"{label + ' first token ms':28}{ttft[0]:>14.0f}{ttft[1]:>15.0f}")
        print(f"{label + ' decode tok/s':28}{rate[0]:>14.1f}{rate[1]:>15.1f}")
        print(f"{label + ' tokens':28}{tokens[0]:>14.0f}{tokens[1]:>15.0f}")
    for pane, name in ((0, "left"), (1, "right")):
        speed = med(ours, pane, "tokens_per_s") / med(plain, pane, "tokens_per_s")
        latency = med(plain, pane, "first_token_s") / med(ours, pane, "first_token_s")
        print(f"{name}: decode speed-up x{speed:.2f}, first token sooner x{latency:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
