#!/usr/bin/env python3
"""Ingest + validate time for generated brand data of 1k and 10k conversations.

Goal: 10k conversations in under 10 s on a 2-core machine, growing linearly. Measures the same work
`brandvoice prepare` does before writing: read (format detection, decoding, normalisation),
deduplicate, redact PII, validate with token counts from the default model's tokenizer.

usage: python scripts/bench_ingest.py [--sizes 1000 10000] [--no-tokens]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from chatbot.ingest import deduplicate, read_conversations
from chatbot.prepare.privacy import Redactor
from chatbot.prepare.validation import tokenizer_counter, validate

_USER = [
    "Hi, my tea parcel has not arrived yet, order {n}. Can you check?",
    "the teapot lid cracked on day one :( what now",
    "Can I pause my subscription for {n} weeks while I travel? email me at guest{n}@example.com",
    "How hot should the water be for a green tea? I keep getting it bitter.",
    "Charged twice this month, card ending {n}. Please sort it out.",
]
_BOT = [
    "Hi friend, so sorry for the wait. I've checked order {n} and it leaves us today. "
    "Steep well, the Kettlebird flock",
    "Hi friend, that's not the welcome we wanted for you. A new lid is on its way right away. "
    "Steep well, the Kettlebird flock",
    "Hi friend, of course. Your parcels are paused for {n} weeks and restart on their own. "
    "Steep well, the Kettlebird flock",
]


def _write(path: Path, n: int, rng: random.Random) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            turns = []
            for _ in range(rng.choice([1, 1, 2, 3])):
                turns.append({"role": "user", "content": rng.choice(_USER).format(n=i)})
                turns.append({"role": "assistant", "content": rng.choice(_BOT).format(n=i)})
            fh.write(json.dumps({"messages": turns}) + "\n")


def _measure(path: Path, counter) -> tuple[float, int]:  # noqa: ANN001
    start = time.perf_counter()
    result = read_conversations(path)
    convs, dupes = deduplicate(result.conversations)
    redacted = Redactor(enabled=True).redact_conversations(convs)
    report = validate(list(redacted.conversations), result.findings + dupes, count_tokens=counter)
    return time.perf_counter() - start, report.stats["conversations"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--no-tokens", action="store_true")
    args = ap.parse_args()
    counter = None
    if not args.no_tokens:
        from transformers import AutoTokenizer

        from chatbot.models import resolve_base_model

        counter = tokenizer_counter(AutoTokenizer.from_pretrained(resolve_base_model(None)))
    rng = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.jsonl"
        _write(warm, 50, rng)
        _measure(warm, counter)  # builds the PII analyzer and tokenizer caches once
        for n in args.sizes:
            path = Path(tmp) / f"bench-{n}.jsonl"
            _write(path, n, rng)
            seconds, kept = _measure(path, counter)
            rows.append((n, kept, seconds))
    print(f"{'conversations':>14} {'kept':>8} {'seconds':>9} {'per 1k (s)':>11}")
    for n, kept, seconds in rows:
        print(f"{n:>14,} {kept:>8,} {seconds:>9.2f} {seconds / n * 1000:>11.3f}")
    if len(rows) >= 2:
        (n1, _, s1), (n2, _, s2) = rows[0], rows[-1]
        print(
            f"growth: {n2 / n1:.0f}x the data took {s2 / s1:.1f}x the time "
            f"(linear = {n2 / n1:.0f}x); 10k goal < 10 s: {'met' if s2 < 10 else 'missed'}"
        )


if __name__ == "__main__":
    main()
