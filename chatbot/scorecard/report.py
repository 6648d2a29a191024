"""The scorecard on paper: `scorecard.json` and one self-contained `scorecard.html` per run.

The HTML carries its charts as inline SVG and its styles inline, so the single file can be mailed
or archived and still open anywhere. Every piece of brand or model text is HTML-escaped: replies
are data, and a reply containing markup must show as text, never run. The summary rows and
headlines are shared with the terminal and the browser tab, so all three say the same thing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

from chatbot.scorecard.card import REFERENCE, SCORECARD_FILE, Example, Scorecard
from chatbot.scorecard.plots import grouped_bars, line_chart, strip_plot
from chatbot.scorecard.verdict import verdict
from chatbot.storage import atomic_write_text

__all__ = [
    "HTML_FILE",
    "SYSTEM_NAMES",
    "ReportFiles",
    "write_report",
    "render_html",
    "summary_rows",
    "headlines",
    "charts_html",
    "examples_html",
]

HTML_FILE = "scorecard.html"
SYSTEM_NAMES = {
    "base": "Base model",
    "prompted": "Base + style prompt",
    "fewshot": "Base + prompt + examples",
    "tuned": "Tuned",
    REFERENCE: "Brand (held out)",
}


def _columns(card: Scorecard) -> list[str]:
    """The card's systems and the brand's own replies, in display order."""
    return [*card.systems, REFERENCE]


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    html: Path


def write_report(card: Scorecard, run_dir: Path) -> ReportFiles:
    """Write scorecard.json and scorecard.html into `run_dir` (each atomically)."""
    run_dir = Path(run_dir)
    files = ReportFiles(run_dir / SCORECARD_FILE, run_dir / HTML_FILE)
    # allow_nan=False: a NaN would make the file unreadable to strict JSON parsers; none is
    # expected, so one is a bug to surface here rather than in someone else's tool.
    text = json.dumps(card.to_dict(), ensure_ascii=False, indent=1, allow_nan=False)
    atomic_write_text(files.json, text + "\n")
    atomic_write_text(files.html, render_html(card))
    return files


# -- figures in words ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def summary_rows(card: Scorecard) -> tuple[list[str], list[list[str]]]:
    """The summary table: a header and one row per measure, one column per system + the brand."""
    columns = _columns(card)
    header = ["Measure", *(SYSTEM_NAMES[c] for c in columns)]

    def row(label: str, values: dict, spec: str) -> list[str]:
        return [label, *(_fmt(values.get(c), spec) for c in columns)]

    rates = {c: r.rate for c, r in card.all_rules.items()}
    rows = [
        row("NLL per reply token (lower is better)", _field(card.likelihood, "nll"), ".3f"),
        row("Perplexity", _field(card.likelihood, "perplexity"), ".1f"),
        row("P(brand voice), mean", card.style.mean, ".2f"),
        row("All rules passed", rates, ".0%"),
        row("Words per reply, median", _field(card.text, "words_median"), ".0f"),
        row("Flesch reading ease, mean", _field(card.text, "flesch_mean"), ".0f"),
    ]
    if card.votes:
        rows.append(row("Blind votes won", card.votes.wins, "d"))
    return header, rows


def _field(per_system: dict, name: str) -> dict:
    return {system: getattr(value, name) for system, value in per_system.items()}


def headlines(card: Scorecard) -> list[str]:
    """The few sentences a reader wants first: the verdict, then the main figures."""
    nll = {s: card.likelihood[s].nll for s in card.systems}
    found = verdict(card)
    lines = [found.summary] if found else []
    fewshot = (
        f", and {nll['tuned'] / nll['fewshot']:.2f}× the few-shot prompt's ({nll['fewshot']:.3f})"
        if "fewshot" in nll
        else ""
    )
    beats_fewshot = (
        f", and than the few-shot prompt's on {card.style.tuned_beats_fewshot:.0%}"
        if card.style.tuned_beats_fewshot is not None
        else ""
    )
    lines += [
        f"The tuned model gives the brand's real held-out replies an NLL of {nll['tuned']:.3f} "
        f"per token: {nll['tuned'] / nll['base']:.2f}× the base model's ({nll['base']:.3f}), "
        f"{nll['tuned'] / nll['prompted']:.2f}× the prompted base's ({nll['prompted']:.3f})"
        f"{fewshot}.",
        f"Its replies sound more like the brand (higher P(brand)) than the base model's on "
        f"{card.style.tuned_beats_base:.0%} of {len(card.examples)} held-out prompts, than "
        f"the prompted base's on {card.style.tuned_beats_prompted:.0%}{beats_fewshot}.",
    ]
    rates = {s: card.all_rules[s].rate for s in card.systems if s in card.all_rules}
    if rates:
        parts = ", ".join(f"{SYSTEM_NAMES[s].lower()} {_fmt(r, '.0%')}" for s, r in rates.items())
        lines.append(f"Replies passing every brand rule: {parts}.")
    return lines


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1180px;
color:#222;padding:0 16px;line-height:1.45}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:16px}.reply{white-space:pre-wrap;overflow-wrap:anywhere;max-width:260px}
.ctx{white-space:pre-wrap;overflow-wrap:anywhere;max-width:240px;color:#444}.p{color:#666;font-size:12px}
.bad{color:#b3261e;font-size:12px}ul.head li{margin:4px 0}details{margin:6px 0}
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i else ''}>{escape(cell)}</td>" for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _rules_table(card: Scorecard) -> str:
    header = ["Rule", *(SYSTEM_NAMES[c] for c in _columns(card))]
    rows = []
    for rule, per_system in sorted(card.rules.items()):
        cells = [rule]
        for column in _columns(card):
            rate = per_system.get(column)
            cells.append(
                f"{rate.passed}/{rate.total} ({rate.rate:.0%})" if rate and rate.total else "–"
            )
        rows.append(cells)
    if not rows:
        return "<p>brand.yaml sets no checkable rules.</p>"
    return _table(header, rows)


def _text_table(card: Scorecard) -> str:
    header = ["", "Replies", "Words: mean", "median", "p10", "p90", "Flesch: mean", "median"]
    rows = []
    for column in _columns(card):
        t = card.text[column]
        rows.append(
            [
                SYSTEM_NAMES[column],
                str(t.replies),
                *(_fmt(v, ".1f") for v in (t.words_mean, t.words_median, t.words_p10, t.words_p90)),
                _fmt(t.flesch_mean, ".1f"),
                _fmt(t.flesch_median, ".1f"),
            ]
        )
    return _table(header, rows)


def charts_html(card: Scorecard) -> str:
    """The report's charts (inline SVG): training curve, rule pass rates, P(brand), lengths."""
    rules = sorted(card.rules)
    charts = [
        line_chart(
            {"train": card.training.train, "eval": card.training.eval},
            title="Training loss (eval: NLL per reply token, held out)",
            x_label="step",
        ),
        strip_plot(
            {s: [e.p_brand.get(s, 0.0) for e in card.examples] for s in _columns(card)},
            title="P(brand voice) per reply",
            low=0.0,
            high=1.0,
            x_label="P(brand)",
        ),
    ]
    if rules:
        charts.append(
            grouped_bars(
                rules,
                {s: [_rate(card, r, s) for r in rules] for s in _columns(card)},
                title="Rule pass rate",
            )
        )
    words = {
        s: [
            float(len((e.reference if s == REFERENCE else e.replies[s]).split()))
            for e in card.examples
        ]
        for s in _columns(card)
    }
    longest = max((w for ws in words.values() for w in ws), default=1.0)
    charts.append(
        strip_plot(words, title="Reply length", low=0.0, high=max(longest, 1.0), x_label="words")
    )
    return '<div class="charts">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>"


def _rate(card: Scorecard, rule: str, system: str) -> float | None:
    rate = card.rules[rule].get(system)
    return rate.rate if rate else None


def _reply_cell(text: str, p: float | None, failed: list[str]) -> str:
    broken = f'<div class="bad">breaks: {escape(", ".join(failed))}</div>' if failed else ""
    score = f'<div class="p">P(brand) {p:.2f}</div>' if p is not None else ""
    return f'<td><div class="reply">{escape(text)}</div>{score}{broken}</td>'


def _example_row(example: Example, columns: list[str]) -> str:
    *earlier, last = example.context
    history = ""
    if earlier:
        turns = "\n".join(f"{m['role']}: {m['content']}" for m in earlier)
        history = f"<details><summary>earlier turns</summary>{escape(turns)}</details>"
    cells = [f'<td class="ctx">{history}{escape(last["content"])}</td>']
    for system in columns:
        text = example.reference if system == REFERENCE else example.replies[system]
        cells.append(
            _reply_cell(text, example.p_brand.get(system), example.failed_rules.get(system, []))
        )
    return "<tr>" + "".join(cells) + "</tr>"


def examples_html(card: Scorecard, limit: int | None = None) -> str:
    """Side-by-side replies to each held-out customer turn (all text escaped)."""
    columns = _columns(card)
    head = "".join(
        f"<th>{escape(h)}</th>" for h in ["Customer", *(SYSTEM_NAMES[c] for c in columns)]
    )
    rows = "".join(_example_row(e, columns) for e in card.examples[:limit])
    return f"<table><tr>{head}</tr>{rows}</table>"


def _votes_html(card: Scorecard) -> str:
    if not card.votes:
        return "<p>No blind votes for this run yet (the Compare tab's blind test records them).</p>"
    v = card.votes
    rows = [
        [SYSTEM_NAMES.get(s, s), str(v.wins.get(s, 0)), str(v.losses.get(s, 0))]
        for s in sorted(set(v.wins) | set(v.losses))
    ]
    note = f"<p>{v.votes} blind vote(s); {v.ties} tie(s), both bad {v.both_bad} time(s).</p>"
    return note + _table(["System", "Won", "Lost"], rows)


def _verdict_html(card: Scorecard) -> str:
    found = verdict(card)
    if found is None:
        return "<p>This scorecard has no few-shot baseline; run it again to get the verdict.</p>"
    rows = [
        [
            c.measure,
            f"{c.outcome} than {SYSTEM_NAMES[c.prompt_system].lower()}",
            c.detail,
        ]
        for c in found.comparisons
    ]
    examples = "".join(
        "<li>" + escape(" → ".join(m["content"] for m in exchange)) + "</li>"
        for exchange in card.fewshot_examples
    )
    shown = (
        f"<details><summary>The {len(card.fewshot_examples)} examples the few-shot prompt "
        f"showed (training split only)</summary><ul>{examples}</ul></details>"
    )
    return (
        f"<p><b>{escape(found.summary)}</b></p>"
        + _table(["Measure", "Tuned model", "Figures"], rows)
        + shown
    )


def _prompts_html(card: Scorecard) -> str:
    items = "".join(
        f"<details><summary>{escape(SYSTEM_NAMES[s])}</summary>"
        f'<div class="reply">{escape(p or "(none: the chat template adds its default)")}</div>'
        "</details>"
        for s, p in card.system_prompts.items()
    )
    return items


def render_html(card: Scorecard) -> str:
    """The whole report as one HTML document."""
    header, rows = summary_rows(card)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(card.created))
    style = card.style
    classifier = (
        f"Style classifier: character n-gram TF-IDF + logistic regression, trained on "
        f"{style.positives} brand training replies against {style.negatives} base-model replies "
        f"to training prompts"
        + (
            f"; cross-validated balanced accuracy {style.cv_accuracy:.2f}."
            if style.cv_accuracy
            else "."
        )
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Scorecard · {escape(card.brand_name)} · {escape(card.run_id)}</title>
<style>{_CSS}</style></head><body>
<h1>Brand scorecard: {escape(card.brand_name)}</h1>
<div class="meta">Run {escape(card.run_id)} · base model {escape(card.base_model)} ·
quantization {escape(card.quantization)} · {escape(when)} · {card.duration_s:.0f} s</div>
<ul class="head">{"".join(f"<li>{escape(line)}</li>" for line in headlines(card))}</ul>
<h2>Verdict: tuning against the best prompt</h2>{_verdict_html(card)}
<h2>Summary</h2>{_table(header, rows)}
<h2>Charts</h2>{charts_html(card)}
<h2>Brand rules</h2>{_rules_table(card)}
<h2>Length and readability</h2>{_text_table(card)}
<p class="meta">Flesch reading ease: higher is easier; 60-70 is plain English.</p>
<h2>Blind votes</h2>{_votes_html(card)}
<h2>Replies side by side</h2>{examples_html(card)}
<h2>How these figures were made</h2>
<ul>{"".join(f"<li>{escape(n)}</li>" for n in [*card.notes, classifier])}</ul>
<p>System prompt each system was given:</p>{_prompts_html(card)}
</body></html>
"""
