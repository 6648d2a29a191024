"""Terminal rendering for the CLI: report tables and progress bars (rich). No logic lives here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from chatbot.service import Run, Workspace, cancel_training, follow_events, get_run

if TYPE_CHECKING:
    from chatbot.prepare.pipeline import PrepareResult

__all__ = [
    "print_prepare_result",
    "print_brands",
    "print_runs",
    "follow_run",
    "rich_progress",
    "print_scorecard",
    "print_regressions",
    "print_check",
    "print_check_batch",
    "print_gguf_verification",
]

console = Console()


@contextmanager
def rich_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A (stage, done, total) callback that drives one bar per stage."""
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield update


def _stats_table(stats: dict) -> Table:
    t = Table(title="Statistics", show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key in ("conversations", "turns", "assistant_replies", "total_tokens", "assistant_tokens"):
        if key in stats:
            t.add_row(key.replace("_", " "), f"{stats[key]:,}")
    for key in ("tokens_per_example", "assistant_tokens_per_example", "words_per_reply"):
        if key in stats:
            p = stats[key]
            t.add_row(
                key.replace("_", " ") + " (p5 / p50 / p95)",
                f"{p['p5']:g} / {p['p50']:g} / {p['p95']:g}",
            )
    return t


def _findings_table(title: str, rows: list[dict], style: str) -> Table:
    t = Table(title=title, title_style=style, show_header=True, header_style="bold")
    t.add_column("where", overflow="fold")
    t.add_column("problem", overflow="fold")
    for f in rows:
        where = ", ".join(x for x in (f["file"], f["location"], f["field"]) if x)
        t.add_row(Text(where or "-"), Text(f["message"]))
    return t


def _pii_table(pii: dict) -> Table:
    t = Table(title="PII redaction", show_header=True, header_style="bold")
    t.add_column("type")
    t.add_column("redacted", justify="right")
    counts = pii.get("counts", {})
    if not pii.get("enabled", True):
        t.add_row("(redaction turned off for this brand)", "-")
    for kind, n in sorted(counts.items()):
        t.add_row(kind, str(n))
    if pii.get("enabled", True) and not counts:
        t.add_row("none found", "0")
    return t


def print_prepare_result(result: PrepareResult) -> None:
    data = result.to_dict()
    console.rule(Text(f"Brand: {result.brand}"))
    if data["formats"]:
        console.print(Text("Read: " + ", ".join(f"{k} ({v})" for k, v in data["formats"].items())))
    console.print(_stats_table(data["stats"]))
    console.print(_pii_table(data["pii"]))
    for sample in data["pii"].get("samples", [])[:5]:
        console.print(Text(f"  before: {sample['before']}", style="dim"))
        console.print(Text(f"  after:  {sample['after']}"))
    if data.get("data_size_advice") and data["ok"]:
        console.print(Text(data["data_size_advice"], style="bold yellow"))
    # The data-size advice, printed above, is also a warning: listed once is enough.
    warnings = [w for w in data["warnings"] if w.get("code") != "few"]
    if warnings:
        console.print(_findings_table(f"Warnings ({len(warnings)})", warnings, "yellow"))
    if data.get("rules_note"):
        console.print(Text(data["rules_note"], style="bold"))
        for line in data.get("rules_found", []):
            console.print(Text(f"  - {line}"))
    if data["rules_unsure"]:
        console.print(Text("Guide lines left for you to turn into rules in brand.yaml:", "bold"))
        for line in data["rules_unsure"]:
            console.print(Text(f"  - {line}"))
    if data["errors"]:
        console.print(_findings_table(f"Errors ({len(data['errors'])})", data["errors"], "red"))
        console.print(
            Text(
                "Not written: fix the errors above (or pass --skip-invalid to leave "
                "broken records out). The previous version, if any, is unchanged.",
                style="bold red",
            )
        )
        return
    split = data["split"]
    console.print(
        Text(
            f"Written to {result.brand_dir} "
            f"({split.get('train', 0)} train / {split.get('eval', 0)} eval).",
            style="bold green",
        )
    )


def print_brands(ws: Workspace) -> None:
    t = Table(title=f"Brands in {ws.root}")
    for col in ("slug", "name", "conversations", "train", "eval"):
        t.add_column(col)
    for b in ws.brands():
        t.add_row(
            b["slug"], b["name"], str(b["conversations"]), str(b["train_size"]), str(b["eval_size"])
        )
    console.print(t)


def print_runs(runs: list[Run]) -> None:
    t = Table(title="Training runs")
    for col in ("run", "brand", "preset", "state", "base model", "note"):
        t.add_column(col, overflow="fold")
    colours = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    for r in runs:
        t.add_row(
            r.id,
            r.brand,
            r.preset,
            Text(r.state, style=colours.get(r.state, "")),
            r.base_model,
            Text(r.error or ""),
        )
    console.print(t)


def _describe(event: dict) -> str:
    parts = [event.get("state", "")]
    if event.get("loss") is not None:
        parts.append(f"loss {event['loss']:.3f}")
    if event.get("eval_loss") is not None:
        parts.append(f"eval {event['eval_loss']:.3f}")
    if event.get("tokens_per_s"):
        parts.append(f"{event['tokens_per_s']:.0f} tok/s")
    return "  ".join(parts)


def _follow_plain(ws: Workspace, run_id: str, every: float = 10.0) -> None:
    """Progress as log lines (a pipe or CI log has no live bar): state changes and every 10 s."""
    last_state, last_print = None, 0.0
    for event in follow_events(ws, run_id):
        now = time.monotonic()
        if event.get("state") != last_state or now - last_print >= every:
            eta = event.get("eta_s")
            eta_text = f"  eta {eta:.0f}s" if isinstance(eta, (int, float)) else ""
            step = f"step {event.get('step', 0)}/{event.get('total_steps') or '?'}"
            console.print(Text(f"{step}  {_describe(event)}{eta_text}"))
            last_state, last_print = event.get("state"), now


def follow_run(ws: Workspace, run_id: str) -> int:
    """Show a run's progress until it ends; Ctrl-C cancels it gracefully. Exit 0 on success."""
    from rich.progress import TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    try:
        if not console.is_terminal:
            _follow_plain(ws, run_id)
        else:
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("training", total=None, info="queued")
                for event in follow_events(ws, run_id):
                    bar.update(
                        task,
                        completed=event.get("step", 0),
                        total=event.get("total_steps") or None,
                        info=_describe(event),
                    )
    except KeyboardInterrupt:
        console.print("Stopping the run gracefully (it keeps its last checkpoint)...")
        cancel_training(ws, run_id)
    run = get_run(ws, run_id)
    style = {"succeeded": "bold green", "failed": "bold red"}.get(run.state, "bold yellow")
    console.print(Text(f"Run {run.id}: {run.state}", style=style))
    if run.error:
        console.print(Text(run.error))
    if run.state == "succeeded":
        console.print(Text(f"Adapter: {run.folder.adapter}"))
    return 0 if run.state == "succeeded" else 1


def print_scorecard(card, html: Path) -> None:  # noqa: ANN001 - a chatbot.scorecard.Scorecard
    """The scorecard's summary table and headlines, and where its HTML report is."""
    from chatbot.scorecard import headlines, summary_rows

    header, rows = summary_rows(card)
    table = Table(title=f"Scorecard: {card.brand_name}, run {card.run_id}", header_style="bold")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in headlines(card):
        console.print(Text(f"- {line}"))
    console.print(Text(f"Report: {html}", style="bold green"))


def print_regressions(card, old, regressions: list) -> int:  # noqa: ANN001 - Scorecards
    """What got worse against the older run's scorecard; the exit status (1: regressions)."""
    from chatbot.scorecard import comparability

    for reason in comparability(card, old):
        console.print(Text(f"Note: {reason}.", style="yellow"))
    if not regressions:
        console.print(Text(f"No regressions against run {old.run_id}.", style="bold green"))
        return 0
    console.print(Text(f"{len(regressions)} regression(s) against run {old.run_id}:", "bold red"))
    for regression in regressions:
        console.print(Text(f"  - {regression.detail}"))
    return 1


_VERDICT_STYLE = {"on-brand": "green", "in between": "yellow", "off-brand": "red"}


def print_check(check) -> None:  # noqa: ANN001 - a chatbot.check.DraftCheck
    """One checked text: the score and its parts, each sentence, broken rules, fixes, suggestion."""
    console.print(Text(f"Brand score: {check.score.total}/100", style="bold"))
    table = Table(show_header=False, box=None, padding=(0, 2))
    for part in check.score.parts:
        table.add_row(part.name, f"{part.points}/{part.max_points}", Text(part.detail, "dim"))
    console.print(table)
    console.print(Text(f"Scale: {check.calibration}", style="dim"))
    _print_sentences(check)
    _print_fixes(check.fixed)
    if check.suggestion:
        console.print(Text("The tuned model would reply:", style="bold"))
        console.print(Text(check.suggestion))
    console.print(Text(f"Checked {check.tokens} tokens in {check.duration_s:.1f} s.", "dim"))


def _print_sentences(check) -> None:  # noqa: ANN001 - a chatbot.check.DraftCheck
    console.print(Text("Sentences:", style="bold"))
    for sentence in check.sentences:
        mark = f"{sentence.verdict} {sentence.score if sentence.score is not None else '-'}"
        line = Text(f"  [{mark}] ", style=_VERDICT_STYLE[sentence.verdict]) + Text(sentence.text)
        # A rule broken at several places of one sentence (each extra "!") is named once.
        for rule, detail in dict.fromkeys((b.rule, b.detail) for b in sentence.breaks):
            line += Text(f"  (breaks {rule}: {detail})", style="red")
        console.print(line)
    placed = {b.rule for b in check.breaks if b.start is not None}
    for result in check.broken:
        if result.rule not in placed:  # a rule about the whole text (its length)
            console.print(Text(f"  breaks {result.rule}: {result.detail}", style="red"))


def _print_fixes(fixed) -> None:  # noqa: ANN001 - a chatbot.brand.rule_fix.FixedReply
    if fixed.fixes:
        console.print(Text(f"Fixed by the brand's rules ({len(fixed.fixes)} changes):", "bold"))
        console.print(Text(fixed.text))
        for fix in fixed.fixes:
            after = f'"{fix.after}"' if fix.after else "removed"
            change = f'"{fix.before}" -> {after}' if fix.before else f"added {after}"
            console.print(Text(f"  {fix.rule}: {change}", style="dim"))
    if fixed.unfixed:
        console.print(Text("Still to fix by hand: " + ", ".join(fixed.unfixed), "yellow"))


def print_check_batch(results: list, report: Path) -> None:
    """A batch check: the texts worst first, and where the full report is."""
    table = Table(title=f"{len(results)} texts, worst first", header_style="bold")
    for column in ("text", "score", "rules broken"):
        table.add_column(column, overflow="fold")
    for draft, check in results:
        table.add_row(draft.name, str(check.score.total), ", ".join(r.rule for r in check.broken))
    console.print(table)
    if results:
        console.print(Text(f"Scale: {results[0][1].calibration}", style="dim"))
    console.print(Text(f"Report: {report}", style="bold green"))


def print_gguf_verification(result) -> None:  # noqa: ANN001 - a chatbot.export.ExportResult
    """What the independent reader reproduced of a GGUF export, and how to run it."""
    check = result.verification["transformers"]
    print(
        f"Verified before it was written: {check['reader']} read the GGUF ({result.quant}) back "
        f"in {check['load_s']:.1f} s; {check['identical_replies']} of {check['prompts']} replies "
        f"identical, {check['agreement']:.1%} of {check['tokens']} check tokens ranked first."
    )
    print(f"Tolerance: {result.verification['tolerance']}.")
    where = "unzip it, then in its folder" if result.path.suffix == ".zip" else f"cd {result.path}"
    print(f"Ollama: {where}: ollama create NAME -f Modelfile && ollama run NAME")
