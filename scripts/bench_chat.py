"""Benchmark side-by-side chat: our `stream_pair` against plain PEFT `generate`, one pane after the
other, on the same loaded model in the same run.

    .venv/bin/python scripts/bench_chat.py [--adapter RUN/adapter] [--base-model DIR] [--tokens 64]

Without --adapter it makes a stand-in: a LoRA adapter (all linear layers, r=16) on the base model
with perturbed B matrices, so the tuned pane costs what a trained one does. Two comparisons as the
Compare tab makes them, "base vs tuned" and "prompted vs tuned", with a system prompt as long as the
demo brand's. Per pane it prints:

- first token: from the moment both replies were asked for to the pane's first text, which is what
  the person at the Compare tab waits (plain generate's right pane waits for the whole left reply);
- decode tok/s: tokens after the first, over the time from the pane's first to its last text;
- both done: until both replies are complete.

Replies are greedy; token counts are the replies re-encoded. Rounds are interleaved so that changes
in machine load hit both paths alike; medians are printed. About two minutes on a 2-core CPU.
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

# As long as the demo brand's (about 190 tokens): prompted and tuned prompts carry it.
SYSTEM_PROMPT = (
    "You are the customer-care voice of Northwind, a small coffee roaster. Every reply should feel "
    "like a note from a friend who knows a lot about coffee: warm, brief, a little playful and "
    'always useful. Start every reply with "Hi friend," (or their first name). Never say '
    '"Unfortunately", "valued customer", "per our policy", "Dear customer" or "We apologize for '
    'any inconvenience". Say "coffee parcel", not "package"; "sorry", not "apologize"; "swap", '
    'not "exchange"; "right away", not "ASAP". Use at most one emoji (only ☕). Use at most one '
    "exclamation mark. Keep replies under 60 words, two to four sentences. Never promise a refund "
    'before the team has checked the order. End every reply with "Brew well, the Northwind crew".'
)
QUESTION = "Hi, my order #4411 arrived with a broken grinder. What can you do for me?"
SCENARIOS = (("base", "tuned"), ("prompted", "tuned"))


@dataclass
class Pane:
    first_token_s: float
    """From the request to the pane's first visible text."""
    tokens: int
    decode_s: float
    """From the pane's first to its last text."""
    done_s: float
    """From the request to the pane's last text."""

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


Round = tuple[Pane, Pane]


def main() -> int:
    args = _parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        adapter = args.adapter or _stand_in_adapter(args.base_model, Path(tmp) / "adapter")
        started = time.perf_counter()
        engine = ChatEngine(args.base_model, adapter, SYSTEM_PROMPT, quantization=args.quantization)
        print(f"engine loaded in {time.perf_counter() - started:.1f}s; {_describe(engine)}")
        settings = GenerationSettings(temperature=0.0, max_new_tokens=args.tokens)
        messages = [{"role": "user", "content": QUESTION}]
        for left, right in SCENARIOS:
            # Warm-up of both paths' code (weights were repacked and system prefixes computed
            # when the engine loaded, as in the app); only the first, shorter, round is dropped.
            short = GenerationSettings(temperature=0.0, max_new_tokens=4)
            _ours(engine, messages, left, right, short)
            _plain(engine, messages, left, right, short)
            ours, plain = [], []
            for _ in range(args.repeats):
                ours.append(_ours(engine, messages, left, right, settings))
                plain.append(_plain(engine, messages, left, right, settings))
            _report(f"{left} vs {right}", ours, plain)
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default=None, help="model folder (default: built-in)")
    parser.add_argument("--adapter", type=Path, default=None, help="a run's adapter/ folder")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per reply")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path")
    parser.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's, the cores)"
    )
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
    return out


def _describe(engine: ChatEngine) -> str:
    param = next(engine.model.parameters())
    return f"device {param.device}, torch threads {torch.get_num_threads()}"


def _ours(
    engine: ChatEngine, messages: list, left: str, right: str, settings: GenerationSettings
) -> Round:
    started = time.perf_counter()
    stamps: list[list[float]] = [[], []]
    texts = ["", ""]
    for deltas in engine.stream_pair(messages, left, messages, right, settings):
        now = time.perf_counter()
        for pane, delta in enumerate(deltas):
            if delta:
                stamps[pane].append(now)
                texts[pane] += delta
    return _pane(engine, started, stamps[0], texts[0]), _pane(engine, started, stamps[1], texts[1])


def _plain(
    engine: ChatEngine, messages: list, left: str, right: str, settings: GenerationSettings
) -> Round:
    """The textbook path: `generate` + TextIteratorStreamer in a thread, left pane then right."""
    started = time.perf_counter()
    panes = []
    for mode in (left, right):
        stream, worker = _plain_stream(engine, messages, mode, settings)
        stamps, reply = _collect(stream)
        worker.join()
        panes.append(_pane(engine, started, stamps, reply))
    return panes[0], panes[1]


def _plain_stream(
    engine: ChatEngine, messages: list, mode: str, settings: GenerationSettings
) -> tuple[Iterator[str], threading.Thread]:
    from transformers import TextIteratorStreamer

    model, tokenizer = engine.model, engine.tokenizer
    system = [{"role": "system", "content": SYSTEM_PROMPT}] if mode != "base" else []
    text = tokenizer.apply_chat_template(
        system + messages, add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    adapter: Callable[[], object] = model.disable_adapter if mode != "tuned" else nullcontext

    def run() -> None:
        with adapter():  # type: ignore[attr-defined]
            model.generate(
                **inputs,
                streamer=streamer,
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                repetition_penalty=settings.repetition_penalty,
                pad_token_id=tokenizer.pad_token_id,
            )

    worker = threading.Thread(target=run)
    worker.start()
    return streamer, worker


def _collect(stream: Iterator[str]) -> tuple[list[float], str]:
    stamps, reply = [], ""
    for delta in stream:
        if delta:
            stamps.append(time.perf_counter())
            reply += delta
    return stamps, reply


def _pane(engine: ChatEngine, started: float, stamps: list[float], text: str) -> Pane:
    if not stamps:
        return Pane(float("nan"), 0, 0.0, float("nan"))
    tokens = len(engine.tokenizer.encode(text, add_special_tokens=False))
    return Pane(stamps[0] - started, tokens, stamps[-1] - stamps[0], stamps[-1] - started)


def _median(rounds: list[Round], side: int, attr: str) -> float:
    return statistics.median(getattr(r[side], attr) for r in rounds)


def _report(title: str, ours: list[Round], plain: list[Round]) -> None:
    left, right = title.split(" vs ")
    print(f"\n{title}: median of {len(ours)} rounds")
    print(f"{'':32}{'left (' + left + ')':>18}{'right (' + right + ')':>18}")
    for label, rounds in (("stream_pair", ours), ("plain generate", plain)):
        for attr, name, scale, fmt in (
            ("first_token_s", "first token ms", 1000, ".0f"),
            ("tokens_per_s", "decode tok/s", 1, ".1f"),
            ("tokens", "tokens", 1, ".0f"),
        ):
            a, b = (_median(rounds, side, attr) * scale for side in (0, 1))
            print(f"{label + ' ' + name:32}{a:>18{fmt}}{b:>18{fmt}}")
        done = statistics.median(max(r[0].done_s, r[1].done_s) for r in rounds)
        print(f"{label + ' both done s':32}{done:>18.2f}")
    for side, name in ((0, "left"), (1, "right")):
        speed = _median(ours, side, "tokens_per_s") / _median(plain, side, "tokens_per_s")
        sooner = _median(plain, side, "first_token_s") / _median(ours, side, "first_token_s")
        print(f"ratio {name}: decode tok/s x{speed:.2f}, first token {sooner:.2f}x sooner")
    both = statistics.median(max(r[0].done_s, r[1].done_s) for r in plain)
    both /= statistics.median(max(r[0].done_s, r[1].done_s) for r in ours)
    print(f"ratio both replies done: {both:.2f}x sooner")


if __name__ == "__main__":
    raise SystemExit(main())
