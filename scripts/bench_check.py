"""Measure draft checking and the preview while training; print figures with their machine.

    .venv/bin/python scripts/bench_check.py speed --workspace WS --brand NAME [--words 300]
    .venv/bin/python scripts/bench_check.py held-out --workspace WS --brand NAME --turns TEST.jsonl
    .venv/bin/python scripts/bench_check.py preview --workspace WS --brand NAME [--steps 4]

speed: seconds to check a draft of --words words (built from the brand's training replies, or
--draft FILE) on the brand's newest run: without and with a customer message, and the tuned
model's suggested reply on its own. The first check of a run calibrates it (timed apart); medians
of --repeat checks after one warm-up.

held-out: for every customer turn of --turns (conversations the run never saw, e.g. the test part
of a split), the brand's real reply, the base model's, the few-shot prompt's and the tuned model's
(greedy, 80 tokens, as the scorecard makes them) are scored with the customer message. Prints each
set's score distribution and the share of turns where the brand's reply scores higher than the
base's and than the few-shot prompt's (a tie is not a win).

preview: trains the brand (quick preset, a checkpoint every 2 steps, at this process's priority)
and times its steps in phases: nothing else, a preview chatting without a pause in the background
mode the Compare tab uses, the same preview at normal priority with every core, and nothing else
again. Prints seconds per step and the slowdown of each phase against the quiet ones.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.check import DraftChecker  # noqa: E402
from chatbot.engine import GenerationSettings  # noqa: E402
from chatbot.scorecard.generation import customer_turns, generate_replies, spread  # noqa: E402
from chatbot.scorecard.likelihood import without_system_messages  # noqa: E402
from chatbot.training.data import read_brand  # noqa: E402
from chatbot.workspace import Workspace  # noqa: E402

REPLY = GenerationSettings(temperature=0.0, max_new_tokens=80, repetition_penalty=1.1)
CUSTOMER = "Hi, my order arrived broken and I need help. What can you do?"


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    flags = sorted(set(re.findall(r"\b(amx\w*|avx512_bf16)\b", cpuinfo)))
    return (
        f"CPU: {model.group(1) if model else 'unknown'} ({os.cpu_count()} CPUs; "
        f"{' '.join(flags) or 'no AMX/AVX512-BF16'}); load average {os.getloadavg()[0]:.1f}"
    )


def _say(stage: str, done: int, total: int) -> None:
    if done in (0, total):
        print(f"  {stage}: {done}/{total}", flush=True)


def _load(args: argparse.Namespace) -> tuple[DraftChecker, float]:
    started = time.perf_counter()
    checker = DraftChecker.load(Workspace.open(args.workspace), brand=args.brand, progress=_say)
    return checker, time.perf_counter() - started


def _draft(checker: DraftChecker, words: int, path: str | None) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8")
    data = read_brand(checker.run.run_dir.parents[1] / "brands" / checker.run.brand)
    replies = [m["content"] for c in data.train for m in c if m["role"] == "assistant"]
    text = " ".join(replies).split()
    return " ".join((text * (words // max(len(text), 1) + 1))[:words])


def _median_time(work, repeat: int) -> float:  # noqa: ANN001 - a zero-argument callable
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def speed(args: argparse.Namespace) -> None:
    print(_machine())
    checker, load_s = _load(args)
    draft = _draft(checker, args.words, args.draft)
    print(f"run {checker.run.id}: loaded (model, classifier, calibration) in {load_s:.1f} s")
    first = checker.check(draft, suggest=False)  # warm-up
    print(f"draft: {len(draft.split())} words, {first.tokens} tokens, score {first.score.total}")
    alone = _median_time(lambda: checker.check(draft, suggest=False), args.repeat)
    answered = _median_time(lambda: checker.check(draft, CUSTOMER, suggest=False), args.repeat)
    reply = _median_time(
        lambda: checker.engine.reply([{"role": "user", "content": CUSTOMER}], "tuned", REPLY), 1
    )
    print(f"check, no customer message:   {alone:.2f} s (median of {args.repeat})")
    print(f"check, with customer message: {answered:.2f} s (median of {args.repeat})")
    print(f"tuned model's suggested reply (80 tokens at most): {reply:.2f} s")
    print(_machine())


def _replies(checker: DraftChecker, turns: list) -> dict[str, list[str]]:  # noqa: ANN001
    rows = [(t.messages, mode) for t in turns for mode in ("base", "fewshot")]
    rows += [(t.messages, "tuned") for t in turns]
    texts = generate_replies(checker.engine, rows, REPLY, lambda d, t: _say("replies", d, t))
    out: dict[str, list[str]] = {"base": [], "fewshot": [], "tuned": []}
    for (_, mode), text in zip(rows, texts, strict=True):
        out[mode].append(text)
    return out


def _spread_text(scores: list[int]) -> str:
    q = statistics.quantiles(scores, n=4, method="inclusive") if len(scores) > 1 else scores * 3
    return (
        f"mean {statistics.fmean(scores):5.1f}  median {statistics.median(scores):5.1f}  "
        f"quartiles {q[0]:.0f}-{q[2]:.0f}  min {min(scores)}  max {max(scores)}"
    )


def held_out(args: argparse.Namespace) -> None:
    import json

    print(_machine())
    checker, _ = _load(args)
    lines = Path(args.turns).read_text(encoding="utf-8").splitlines()
    conversations = [without_system_messages(json.loads(x)["messages"]) for x in lines if x.strip()]
    turns = spread(customer_turns(conversations, limit=None), args.max_turns)
    print(f"{len(turns)} customer turns from {len(conversations)} conversations in {args.turns}")
    texts = {"brand": [t.reply for t in turns], **_replies(checker, turns)}
    scores: dict[str, list[int]] = {}
    for name, replies in texts.items():
        scores[name] = [
            checker.check(text, turn.context[-1][1], suggest=False).score.total
            for turn, text in zip(turns, replies, strict=True)
        ]
    print(checker.calibration.summary())
    for name in ("brand", "base", "fewshot", "tuned"):
        print(f"{name:>8}: {_spread_text(scores[name])}")
    for rival in ("base", "fewshot", "tuned"):
        pairs = list(zip(scores["brand"], scores[rival], strict=True))
        wins, ties = sum(a > b for a, b in pairs), sum(a == b for a, b in pairs)
        print(f"brand > {rival}: {wins}/{len(pairs)} = {wins / len(pairs):.0%} ({ties} ties)")
    print(_machine())


def _steps(run_dir: Path) -> list[tuple[int, float]]:
    from chatbot.runs.jobs import read_events

    return [
        (e["step"], e["time"])
        for e in read_events(run_dir)
        if e.get("state") == "running" and e.get("loss") is not None
    ]


def _phase(run_dir: Path, steps: int, chat: threading.Event | None, busy: threading.Lock) -> float:
    """Seconds per step over the next `steps` steps, with `chat` (a chatter's go signal) set."""
    if chat is not None:
        chat.set()
    first = _steps(run_dir)[-1]
    while _steps(run_dir)[-1][0] < first[0] + steps:
        time.sleep(1.0)
    last = _steps(run_dir)[-1]
    if chat is not None:
        chat.clear()
        with busy:  # the reply under way finishes before the next phase starts
            pass
    return (last[1] - first[1]) / (last[0] - first[0])


def _chatter(engine, background: bool, go: threading.Event, stop: threading.Event, busy, made):  # noqa: ANN001, ANN202
    messages = [{"role": "user", "content": CUSTOMER}]
    settings = GenerationSettings(temperature=0.0, max_new_tokens=48)
    while not stop.is_set():
        if not go.wait(0.5):
            continue
        with busy:
            text = "".join(engine.stream(messages, "tuned", settings, background=background))
        made.append(len(text))


def preview(args: argparse.Namespace) -> None:
    from functools import partial

    from chatbot.config import TrainConfig
    from chatbot.engine import ChatEngine
    from chatbot.engine.priority import in_background
    from chatbot.runs.adapters import checkpoint_setup
    from chatbot.runs.jobs import cancel_run, start_run
    from chatbot.runs.preview import newest_preview

    print(_machine())
    ws = Workspace.open(args.workspace)
    config = TrainConfig.from_preset("quick", {"epochs": 50, "checkpoint_every": 2})
    run = start_run(ws, args.brand, config, preset="quick")
    try:
        while (found := newest_preview(ws, run.id)) is None:
            time.sleep(2.0)
        setup = checkpoint_setup(ws, run.id, found.adapter_dir)
        load = partial(
            ChatEngine,
            setup.base_model,
            found.adapter_dir,
            setup.system_prompt,
            tuned_system_prompt=setup.tuned_system_prompt,
            quantization=setup.quantization,
        )
        engine = in_background(load)
        stop, gentle, normal, made = threading.Event(), threading.Event(), threading.Event(), []
        busy = threading.Lock()
        for flag, background in ((gentle, True), (normal, False)):
            chat_args = (engine, background, flag, stop, busy, made)
            threading.Thread(target=_chatter, args=chat_args, daemon=True).start()
        phases = [("quiet", None), ("preview, background", gentle)]
        phases += [("preview, normal priority", normal), ("quiet again", None)]
        times = {}
        for name, flag in phases:
            times[name] = _phase(run.run_dir, args.steps, flag, busy)
            print(f"  {name}: {times[name]:.1f} s per step", flush=True)
        stop.set()
    finally:
        cancel_run(ws, run.id, timeout=120)
    quiet = statistics.fmean([times["quiet"], times["quiet again"]])
    for name in ("preview, background", "preview, normal priority"):
        print(f"{name}: {times[name] / quiet:.2f}x the quiet step time ({quiet:.1f} s)")
    print(f"preview replies made: {len(made)}")
    print(_machine())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("speed", "held-out", "preview"):
        p = sub.add_parser(name)
        p.add_argument("--workspace", required=True)
        p.add_argument("--brand", required=True)
        if name == "speed":
            p.add_argument("--words", type=int, default=300)
            p.add_argument("--draft", help="a text file to check instead")
            p.add_argument("--repeat", type=int, default=5)
        if name == "held-out":
            p.add_argument("--turns", required=True, help="JSONL conversations never trained on")
            p.add_argument("--max-turns", type=int, default=60)
        if name == "preview":
            p.add_argument("--steps", type=int, default=4, help="training steps per phase")
    args = parser.parse_args()
    {"speed": speed, "held-out": held_out, "preview": preview}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
