#!/usr/bin/env python3
"""Redaction time for one turn holding thousands of e-mail addresses, and how it grows.

Goal: 8000 addresses in one turn well under 0.5 s, growing linearly with the number of matches
(overlap resolution and the text rebuild were quadratic: 8000 took 4.6 s). Each size is redacted
a few times and the best time is kept; the machine (CPU model, flags, load average) is printed with
the figures, since other work on the machine slows every run alike.

usage: python scripts/bench_redact.py [--sizes 1000 2000 4000 8000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.prepare.privacy import Redactor  # noqa: E402


def _machine() -> str:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        cpuinfo = ""
    if found := re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE):
        model = found.group(1)
    flags = " ".join(sorted(set(re.findall(r"\b(amx\w*|avx512_bf16)\b", cpuinfo)))) or "none"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}; flags: {flags}; {os.cpu_count()} CPUs; load average {load}"


def _best(redactor: Redactor, text: str, repeat: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        _, counts = redactor.redact_text(text)
        times.append(time.perf_counter() - start)
        found = counts["EMAIL"]
    return min(times), found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    redactor = Redactor()
    redactor.redact_text("warm-up: jane@example.com")  # builds the analyzer once
    rows = []
    for n in args.sizes:
        text = " ".join(f"customer{i}@example.com" for i in range(n))
        seconds, found = _best(redactor, text, args.repeat)
        rows.append((n, len(text), found, seconds))
    print(_machine())
    print(f"{'addresses':>10} {'characters':>11} {'replaced':>9} {'seconds':>8} {'µs each':>8}")
    for n, chars, found, seconds in rows:
        print(f"{n:>10,} {chars:>11,} {found:>9,} {seconds:>8.3f} {seconds / n * 1e6:>8.1f}")
    if len(rows) >= 2:
        (n1, _, _, s1), (n2, _, _, s2) = rows[0], rows[-1]
        ratio = n2 / n1
        print(f"growth: {ratio:.0f}x the addresses, {s2 / s1:.1f}x the time (linear: {ratio:.0f}x)")
    largest = rows[-1]
    verdict = "met" if largest[3] < 0.5 else "missed"
    print(f"{largest[0]:,} addresses in one turn: {largest[3]:.3f} s (goal < 0.5 s: {verdict})")


if __name__ == "__main__":
    main()
