"""Benchmark side-by-side chat: our `stream_pair` against plain PEFT `generate`, one pane after the
other, on the same loaded model in the same run; and, with --first-message, the first message after
the app starts, in a fresh process.

    .venv/bin/python scripts/bench_chat.py [--adapter RUN/adapter] [--base-model DIR] [--tokens 64]
    .venv/bin/python scripts/bench_chat.py --first-message --workspace WS [--brand NAME]

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

--first-message starts a fresh Python process per trial that does what `brandvoice ui` does (the
app's services, the warm-up of the first brand's newest adapter, the Gradio server on a free port)
and, once the warm-up is done, sends the brand's held-out customer messages (eval.jsonl) one after
the other through the Compare tab's own handler, "base vs tuned", with the tab's default settings
(the brand's length cap, its sign-off, temperature 0.7). The first of them is the first message
after start-up. Printed: start to ready (what a message sent at start-up waits for first), then per
message the time to the first text of either pane, and until each pane and both are complete.
Beside the wall-clock times, the CPU time the process used (all its threads): on a loaded machine
the wall clock includes waiting for the cores, the CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.engine import ChatEngine, GenerationSettings  # noqa: E402

if TYPE_CHECKING:
    from ui import Services

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
    if args.child:
        return _first_message_child(args)
    print(_machine())
    if args.first_message:
        return _first_message(args)
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
    parser.add_argument(
        "--first-message",
        action="store_true",
        help="time the first messages after the app starts, in a fresh process per trial",
    )
    parser.add_argument("--workspace", type=Path, help="with --first-message: a workspace")
    parser.add_argument("--brand", default=None, help="with --first-message (default: the first)")
    parser.add_argument("--messages", type=int, default=3, help="messages per trial")
    parser.add_argument("--trials", type=int, default=1, help="fresh processes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (args.first_message or args.child) and args.workspace is None:
        parser.error("--first-message needs --workspace (a workspace with a trained brand)")
    return args


def _machine() -> str:
    """The CPU (model and the flags that decide the matmul speed), threads and load, in one line."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", info).group(1)  # type: ignore[union-attr]
        flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    shown = sorted(f for f in flags if f.startswith("amx") or f in ("avx512_bf16", "avx2"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"CPU: {model}, {os.cpu_count()} cores, flags {' '.join(shown) or '-'} "
        f"(of amx*, avx512_bf16, avx2); torch threads {torch.get_num_threads()}; "
        f"load average {load}"
    )


# ------------------------------------------------------------------------------------------------
# The first message after start-up
# ------------------------------------------------------------------------------------------------


def _first_message(args: argparse.Namespace) -> int:
    """Run each trial in a fresh process and print its timeline."""
    command = [sys.executable, __file__, "--child", "--workspace", str(args.workspace)]
    command += ["--messages", str(args.messages)]
    command += ["--brand", args.brand] if args.brand else []
    command += ["--threads", str(args.threads)] if args.threads else []
    for trial in range(1, args.trials + 1):
        started = time.time()
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        events = [
            json.loads(line[len("BENCH ") :])
            for line in child.stdout.splitlines()
            if line.startswith("BENCH ")
        ]
        if child.returncode != 0 or not events:
            print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
            print(f"trial {trial}: the app process failed (exit status {child.returncode})")
            return 1
        _print_trial(trial, started, events)
    print(_machine())
    return 0


def _print_trial(trial: int, started: float, events: list[dict]) -> None:
    ready = next(e for e in events if e["event"] == "ready")
    print(f"\ntrial {trial}: fresh process, {ready['what']}")
    print(f"  process start to imports done   {ready['imported'] - started:7.1f} s")
    print(f"  process start to chat ready     {ready['time'] - started:7.1f} s")
    print(
        f"    (warm-up: model, adapter, system prefixes: {ready['seconds']:.1f} s;"
        f" CPU time of the process until ready {ready['cpu']:.1f} s)"
    )
    for e in (e for e in events if e["event"] == "message"):
        label = "first message after start-up" if e["index"] == 0 else f"message {e['index'] + 1}"
        print(f"  {label}: {e['prompt'][:60]!r}  (cap {e['max_new_tokens']} tokens)")
        print(
            f"    first text (either pane)      {e['first_text']:7.2f} s"
            f"   (CPU time {e['first_text_cpu']:.2f} s)"
        )
        for pane in ("left", "right"):
            p = e[pane]
            print(
                f"    {pane} ({p['system']:>6}) done       {p['done']:7.2f} s  "
                f"{p['tokens']:4d} tokens, {p['chars']:4d} chars, ended by {p['ended_by']}"
            )
        print(
            f"    both done                     {e['both_done']:7.2f} s"
            f"   (CPU time {e['both_done_cpu']:.2f} s)"
        )
    first = next(e for e in events if e["event"] == "message")
    print(
        f"  a message sent at start-up: first text after "
        f"{ready['time'] - started + first['first_text']:.1f} s"
    )


def _first_message_child(args: argparse.Namespace) -> int:
    """What `brandvoice ui` does, then the brand's messages through the Compare handler."""
    from chatbot.workspace import slugify
    from ui import Services, launch
    from ui.compare_tab import compare_setup, reply_bounds

    imported = time.time()
    services = Services.create(args.workspace)
    slug = slugify(args.brand) if args.brand else None
    warming = services.start_warm_up(slug)
    app = launch(services, port=_free_port(), block=False)
    if warming is not None:
        warming.join()
    state = services.warm_up_state
    if state.state != "ready":
        print(f"warm-up failed: {state.error}")
        return 1
    _emit(
        event="ready",
        imported=imported,
        what=state.what,
        seconds=state.seconds or 0.0,
        cpu=time.process_time(),
    )
    slug = slug or services.workspace.brands()[0]["slug"]
    run_id = compare_setup(services, slug).run_id
    bounds = reply_bounds(services, slug, run_id)
    settings = GenerationSettings(max_new_tokens=bounds.max_new_tokens or 200)
    for index, prompt in enumerate(_held_out_prompts(services, slug, args.messages)):
        _emit(
            event="message",
            index=index,
            prompt=prompt,
            max_new_tokens=settings.max_new_tokens,
            **_time_message(services, slug, run_id, prompt, settings, bounds.signoff),
        )
    app.close()
    return 0


def _time_message(
    services: Services,
    slug: str,
    run_id: str,
    prompt: str,
    settings: GenerationSettings,
    signoff: str,
) -> dict:
    from ui.compare_tab import compare_stream
    from ui.services import EngineSpec

    tokenizer = services.tokenizer(EngineSpec.for_run(services.workspace, run_id).base_model)
    started, cpu_started = time.perf_counter(), time.process_time()
    first = first_cpu = None
    done = {"left": None, "right": None}
    last: dict = {"left": "", "right": ""}
    frame = None
    for frame in compare_stream(
        services,
        slug,
        run_id,
        "base_vs_tuned",
        prompt,
        None,
        None,
        None,
        settings,
    ):
        now = time.perf_counter() - started
        for side in ("left", "right"):
            history = getattr(frame, side)
            text = history[-1]["content"] if history[-1]["role"] == "assistant" else ""
            if text != last[side]:
                if first is None:
                    first, first_cpu = now, time.process_time() - cpu_started
                last[side], done[side] = text, now
    assert frame is not None
    panes = {}
    for side in ("left", "right"):
        ids = tokenizer.encode(last[side], add_special_tokens=False)
        panes[side] = {
            "system": getattr(frame.matchup, side),
            "done": done[side] or 0.0,
            "tokens": len(ids),
            "chars": len(last[side]),
            "ended_by": _ended_by(last[side], len(ids), settings.max_new_tokens, signoff),
        }
    return {
        "first_text": first or 0.0,
        "first_text_cpu": first_cpu or 0.0,
        "both_done": time.perf_counter() - started,
        "both_done_cpu": time.process_time() - cpu_started,
        **panes,
    }


def _ended_by(text: str, tokens: int, cap: int, signoff: str) -> str:
    words = re.findall(r"\w+", signoff)
    last_line = text.rstrip().splitlines()[-1] if text.strip() else ""
    if words and re.search(r"[\W_]+".join(map(re.escape, words)), last_line, re.IGNORECASE):
        return "sign-off"
    # Re-encoding may count a token or two more or less than were generated.
    return "length cap" if tokens >= cap - 2 else "end of turn"


def _held_out_prompts(services: Services, slug: str, n: int) -> list[str]:
    """The first customer message of the brand's first `n` held-out conversations."""
    path = services.workspace.brand_dir(slug) / "eval.jsonl"
    prompts = []
    for line in path.read_text(encoding="utf-8").splitlines()[:n]:
        messages = json.loads(line)["messages"]
        prompts.append(next(m["content"] for m in messages if m["role"] == "user"))
    return prompts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _emit(**event: object) -> None:
    print("BENCH " + json.dumps({"time": time.time(), **event}), flush=True)


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
