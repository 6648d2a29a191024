"""The `brandvoice` command: a map from sub-command names to plain functions.

Argument parsing and printing live here only; the library functions it calls return values and
raise BrandVoiceError, which is printed as one readable message (never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from chatbot.config import DEFAULT_PRESET, PRESETS, TrainConfig, choices
from chatbot.errors import BrandVoiceError
from chatbot.types import ChatMode, ExportFormat, GgufQuant, PreferenceKind, PromptStyle

if TYPE_CHECKING:
    from chatbot.engine.reply_length import ReplyBounds

__all__ = ["main"]

_err = Console(stderr=True)


def _add_workspace(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace folder (default: $BRANDVOICE_WORKSPACE, else the user data folder)",
    )


def _add_allowed_hosts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a further host name the server answers to (a proxy's or this machine's network "
        "name; repeatable; also $BRANDVOICE_ALLOWED_HOSTS)",
    )


def _cmd_prepare(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import print_prepare_result, rich_progress
    from chatbot.config import PrepareConfig

    ws = service.open_workspace(args.workspace)
    overrides: dict = {"skip_invalid": args.skip_invalid, "preset": args.preset}
    if args.no_redact:
        overrides["redact_pii"] = False
    if args.column_map:
        overrides["column_map"] = _parse_pairs(args.column_map, "--column")
    config = PrepareConfig(**overrides)
    counter = None if args.no_tokens else service.token_counter(args.base_model)
    with rich_progress() as progress:
        result = service.prepare_brand(
            ws,
            args.brand,
            [Path(f) for f in args.conversations],
            Path(args.style_guide) if args.style_guide else None,
            config,
            count_tokens=counter,
            progress=progress,
        )
    print_prepare_result(result)
    return 0 if result.ok else 1


def _parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BrandVoiceError(
                f"{flag} {item!r}: expected KEY=VALUE, e.g. prompt='Customer Message'"
            )
        out[key.strip()] = value.strip()
    return out


def _cmd_model_fetch(args: argparse.Namespace) -> int:
    from chatbot.models import fetch_default_model

    path = fetch_default_model()
    print(f"Default base model ready: {path}")
    return 0


def _cmd_brands(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import print_brands

    print_brands(service.open_workspace(args.workspace))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import follow_run

    ws = service.open_workspace(args.workspace)
    if args.from_votes:
        return _train_from_votes(ws, args)
    overrides = list(args.set or [])
    for flag in ("base_model", "quantization", "processes", "distributed", "accelerate_config"):
        if getattr(args, flag):
            overrides.append(f"{flag}={getattr(args, flag)}")
    config = TrainConfig.from_preset(args.preset, overrides, yaml_path=args.config)
    estimate = service.estimate_training(ws, args.brand, config)
    print(f"Training {args.brand} ({config.preset} preset): {estimate.describe()}.", flush=True)
    run = service.start_training(ws, args.brand, config, preset=args.preset)
    print(
        f"Run {run.id} started for brand '{run.brand}' ({args.preset} preset); folder {run.run_dir}"
    )
    if args.detach:
        return 0
    return follow_run(ws, run.id)


def _train_from_votes(ws, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Workspace
    from chatbot import service
    from chatbot.cli.report import follow_run

    run = service.start_from_votes(ws, args.brand, args.method, overrides=args.set or ())
    parent = service.parent_of(run)
    print(f"Run {run.id} started from the votes on run {parent} ({args.method.upper()})")
    print(f"Score it against its parent: brandvoice eval --run {run.id} --against {parent}")
    return 0 if args.detach else follow_run(ws, run.id)


def _cmd_runs(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import print_runs

    ws = service.open_workspace(args.workspace)
    print_runs(service.list_runs(ws, args.brand))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from chatbot import service

    run = service.cancel_training(
        service.open_workspace(args.workspace), args.run, timeout=args.timeout
    )
    print(f"Run {run.id}: {run.state}" + (f" ({run.error})" if run.error else ""))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import follow_run

    ws = service.open_workspace(args.workspace)
    run = service.resume_training(ws, args.run)
    print(f"Run {run.id} resumed from its newest complete checkpoint")
    return 0 if args.detach else follow_run(ws, run.id)


def _cmd_chat(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.chat import run_chat
    from chatbot.engine import GenerationSettings

    ws = service.open_workspace(args.workspace)
    setup = service.run_setup(ws, args.run, brand=args.brand)
    print(f"Loading {setup.base_model} with the adapter of run {setup.run_id}...")
    engine = service.load_engine(setup)
    settings = _say_bounds(service.reply_bounds(ws, setup.run_id, engine.tokenizer)).apply(
        GenerationSettings(temperature=args.temperature, seed=args.seed),
        max_new_tokens=args.max_new_tokens,
    )
    run_chat(engine, args.mode, settings)
    return 0


def _say_bounds(bounds: ReplyBounds) -> ReplyBounds:
    """The run's brand's reply bounds, said in one line: its length cap and its sign-off."""
    from chatbot.engine.reply_length import REPLY_CAP_FACTOR

    if bounds.lengths is not None:
        print(
            f"Replies run to at most {bounds.lengths.max_new_tokens} tokens by default "
            f"({REPLY_CAP_FACTOR:g}× the brand's 95th-percentile reply of "
            f"{bounds.lengths.p95_tokens})"
            + (" and end after its sign-off." if bounds.signoff else ".")
        )
    return bounds


def _cmd_ui(args: argparse.Namespace) -> int:
    from ui import Services, launch
    from ui.app import check_bind

    check_bind(args.host)  # a refusal comes before anything says the app is running
    services = Services.create(args.workspace, base_model=args.base_model or "default")
    # The chat model loads while the app starts, so the first message does not wait for it.
    warming = services.start_warm_up()
    if warming is not None:
        print(f"Getting the chat model ready for {services.warm_up_state.what}...", flush=True)

    def ready() -> None:
        print(
            f"brandvoice is running at http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True
        )
        if warming is not None:
            warming.join()
        state = services.warm_up_state
        if state.state == "ready":
            print(f"Chat model ready ({state.seconds:.0f} s).", flush=True)
        elif state.state == "failed":
            _err.print(f"The chat model could not be loaded yet: {state.error}")

    launch(services, args.host, args.port, allowed=args.allowed_host or (), on_ready=ready)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import print_regressions, print_scorecard, rich_progress

    ws = service.open_workspace(args.workspace)
    # Unset options keep the scorecard's own defaults (ScorecardSettings).
    knobs = {
        k: v
        for k, v in (("max_prompts", args.max_prompts), ("max_new_tokens", args.max_new_tokens))
        if v is not None
    }
    with rich_progress() as progress:
        score = service.score_run(ws, args.run, against=args.against, progress=progress, **knobs)
    print_scorecard(score.card, score.files.html)
    if score.older is None:
        return 0
    return print_regressions(score.card, score.older, list(score.regressions))


def _cmd_check(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import print_check, print_check_batch, rich_progress

    ws = service.open_workspace(args.workspace)
    source = None if args.source == "-" else Path(args.source)
    batch = source is not None and (source.is_dir() or source.suffix.lower() == ".csv")
    drafts = service.read_drafts(source) if source is not None else []
    text = sys.stdin.read() if source is None else drafts[0].text
    with rich_progress() as progress:
        checker = service.load_checker(ws, brand=args.brand, run_id=args.run, progress=progress)
        if batch:
            results = service.check_drafts(checker, drafts, progress)
    if not batch:
        print_check(checker.check(text, args.customer, suggest=not args.no_suggest))
        return 0
    out = Path(args.report) if args.report else service.default_check_report(ws, checker.run.brand)
    print_check_batch(results, service.write_check_report(results, out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import rich_progress

    ws = service.open_workspace(args.workspace)
    out = Path(args.out) if args.out else None
    with rich_progress() as progress:
        result = service.export_run(
            ws, args.run, args.format, out, progress=progress, quant=args.quant
        )
    print(f"Exported run {result.run_id} ({result.format}): {result.path}")
    if result.format == "gguf":
        from chatbot.cli.report import print_gguf_verification

        print_gguf_verification(result)
    else:
        print(
            f"Verified in a fresh process: {len(result.check.token_ids)} greedy tokens reproduced."
        )
    for warning in result.warnings:
        _err.print(Text("warning: ", style="bold yellow") + Text(warning))
    return 0


def _cmd_import_adapter(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.cli.report import rich_progress

    ws = service.open_workspace(args.workspace)
    with rich_progress() as progress:
        result = service.import_adapter(
            ws,
            Path(args.archive),
            args.brand,
            base_model=args.base_model,
            quantization=args.quantization,
            progress=progress,
        )
    run = result.run
    print(f"Imported as run {run.id} of brand '{run.brand}' (base model {run.base_model}).")
    if result.ignored:
        print(f"Left out {len(result.ignored)} file(s) not needed: {', '.join(result.ignored)}")
    for warning in result.warnings:
        _err.print(Text("warning: ", style="bold yellow") + Text(warning))
    print(f"Chat with it: brandvoice chat --run {run.id}")
    return 0


def _cmd_export_votes(args: argparse.Namespace) -> int:
    from chatbot import service

    ws = service.open_workspace(args.workspace)
    result = service.export_votes(
        ws, args.brand, Path(args.out), args.format, run_id=args.run, style=args.style
    )
    print(f"Wrote {result.rows} {result.kind.upper()} rows ({result.votes} votes): {result.path}")
    for reason, count in sorted(result.skipped.items()):
        print(f"  left out ({reason}): {count}")
    redacted = ", ".join(f"{n} {kind}" for kind, n in sorted(result.redacted.items()))
    print(f"  personal data replaced: {redacted or 'none found'}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from chatbot import service
    from chatbot.serving.server import API_KEY_ENV, check_bind, read_api_key

    if args.api_key is not None:
        raise BrandVoiceError(
            "--api-key would show the key to every user of this machine (in `ps`); set "
            f"{API_KEY_ENV} or pass --api-key-file FILE instead."
        )
    ws = service.open_workspace(args.workspace)
    api_key = read_api_key(Path(args.api_key_file) if args.api_key_file else None)
    check_bind(args.host, api_key)  # before the model loads, so a refusal comes at once
    setup = service.run_setup(ws, args.run, brand=args.brand)
    print(f"Loading {setup.base_model} with the adapter of run {setup.run_id}...")
    model = service.load_served_model(ws, setup)
    _say_bounds(model.bounds)
    print(
        f"OpenAI-compatible API at http://{args.host}:{args.port}/v1 (model '{model.model_id}'); "
        "Ctrl-C to stop",
        flush=True,
    )
    allowed = args.allowed_host or ()
    service.serve_run(model, args.host, args.port, api_key=api_key, allowed=allowed)
    return 0


_HINTS = {
    "base_model": "--base-model MODEL",
    "brand": "--brand NAME",
    "conversations": "--conversations FILE",
    "quant": "--quant f16 or --quant q8_0",
    "prepare": "`brandvoice prepare --brand NAME --conversations FILE --style-guide FILE`",
    "train": "`brandvoice train --brand NAME`",
}
"""How the command line gives what fixes an error (`BrandVoiceError.option`)."""


def _hint(exc: BrandVoiceError) -> str:
    hint = _HINTS.get(getattr(exc, "option", None) or "")
    return f" (command line: {hint})" if hint else ""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brandvoice",
        description="Turn a brand's conversations and style guide into a fine-tuned chatbot.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="check, clean, redact and split a brand's data")
    _add_workspace(p)
    p.add_argument("--brand", required=True, help="brand name, e.g. 'Kettlebird'")
    p.add_argument(
        "--conversations",
        nargs="+",
        required=True,
        metavar="FILE",
        help="conversation files: OpenAI JSONL, ShareGPT, CSV/TSV, transcripts, Zendesk",
    )
    p.add_argument(
        "--style-guide",
        metavar="FILE",
        help=".md, .txt, .pdf or .docx (optional: without one, the rules are derived from the "
        "brand's replies in the conversations)",
    )
    p.add_argument(
        "--column",
        dest="column_map",
        action="append",
        metavar="ROLE=HEADER",
        help="CSV/TSV column mapping, e.g. --column prompt='Question' (repeatable)",
    )
    p.add_argument("--no-redact", action="store_true", help="keep PII as is (not recommended)")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out broken records instead of stopping on them",
    )
    p.add_argument(
        "--base-model",
        default=None,
        help="model whose tokenizer counts tokens (default: the built-in default)",
    )
    p.add_argument("--no-tokens", action="store_true", help="skip token counting")
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="the training preset to check conversation lengths against "
        f"(default: {DEFAULT_PRESET})",
    )
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("model", help="manage base models")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    f = msub.add_parser("fetch", help="put the default base model into the local cache")
    f.set_defaults(func=_cmd_model_fetch)

    p = sub.add_parser("train", help="fine-tune a prepared brand (QLoRA) in a background job")
    _add_workspace(p)
    p.add_argument("--brand", required=True)
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help=f"quick: minutes on a laptop CPU; balanced; thorough (default: {DEFAULT_PRESET})",
    )
    p.add_argument("--base-model", default=None, help="hub id or local folder (default: built-in)")
    p.add_argument(
        "--quantization",
        choices=choices(TrainConfig, "quantization"),
        default=None,
        help=f"nf4 = QLoRA, none = plain LoRA on a bf16/fp32 base (default: "
        f"{TrainConfig.quantization})",
    )
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings to override")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set learning_rate=1e-4 (repeatable)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="train on N processes through `accelerate launch` (one per GPU; default 1)",
    )
    p.add_argument(
        "--distributed",
        choices=choices(TrainConfig, "distributed"),
        default=None,
        help="how N processes share the work: ddp, fsdp or deepspeed (CUDA only; default: "
        f"{TrainConfig.distributed})",
    )
    p.add_argument(
        "--accelerate-config",
        metavar="YAML",
        default=None,
        help="an accelerate config file (several machines, custom settings); see docs/scaling.md",
    )
    p.add_argument(
        "--from-votes",
        action="store_true",
        help="train the next version from the Compare votes on the brand's newest voted run",
    )
    p.add_argument(
        "--method",
        choices=typing.get_args(PreferenceKind),
        default=typing.get_args(PreferenceKind)[0],
        help="with --from-votes: dpo (pairs, default) or kto (each reply good or bad)",
    )
    p.add_argument("--detach", action="store_true", help="start and return; do not follow")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("runs", help="list training runs and their states")
    _add_workspace(p)
    p.add_argument("--brand", default=None)
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("cancel", help="stop a training run (keeps its last checkpoint)")
    _add_workspace(p)
    p.add_argument("run", help="run id (a unique prefix is enough)")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for a graceful stop before killing it",
    )
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("resume", help="continue a failed or cancelled run from its checkpoint")
    _add_workspace(p)
    p.add_argument("run")
    p.add_argument("--detach", action="store_true")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("chat", help="chat with a brand's tuned model in the terminal")
    _add_workspace(p)
    p.add_argument("--brand", help="brand name (its newest finished run is used)")
    p.add_argument("--run", help="a run id instead of the brand's newest")
    p.add_argument(
        "--mode",
        choices=typing.get_args(ChatMode),
        default="tuned",
        help="tuned (default), base, prompted (base + the brand's style prompt) or fewshot "
        "(prompted + examples of the brand's replies)",
    )
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="longest reply in tokens (default: 1.5× the brand's 95th-percentile reply)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("ui", help="open the browser app")
    _add_workspace(p)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--base-model", default=None, help="base model the Train tab proposes")
    _add_allowed_hosts(p)
    p.set_defaults(func=_cmd_ui)

    p = sub.add_parser(
        "eval", help="score a run against the base model: likelihood, rules, style, report"
    )
    _add_workspace(p)
    p.add_argument("--run", required=True, help="run id (a unique prefix is enough)")
    p.add_argument(
        "--against",
        metavar="OLD_RUN",
        help="also list what got worse since this older run (exit status 1 if anything did)",
    )
    p.add_argument("--max-prompts", type=int, help="held-out customer turns answered (default 40)")
    p.add_argument("--max-new-tokens", type=int, help="tokens per generated reply (default 80)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "check", help="score a draft (or a folder or CSV of drafts) against the brand's voice"
    )
    _add_workspace(p)
    p.add_argument(
        "source",
        metavar="FILE|-",
        help="a text file, - for standard input, or a folder of .txt/.md files or a CSV "
        "(a report of every text, worst first)",
    )
    p.add_argument("--brand", help="brand name (its newest finished run is used)")
    p.add_argument("--run", help="a run id instead of the brand's newest")
    p.add_argument(
        "--customer",
        metavar="MESSAGE",
        help="the customer message the draft answers (also shows the tuned model's own reply)",
    )
    p.add_argument("--no-suggest", action="store_true", help="skip the tuned model's own reply")
    p.add_argument(
        "--report",
        metavar="OUT",
        help="batch report file, .csv or .html (default: the workspace's exports/ folder)",
    )
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "export", help="package a run for production: adapter zip, merged model or GGUF"
    )
    _add_workspace(p)
    p.add_argument("--run", required=True, help="run id (a unique prefix is enough)")
    p.add_argument(
        "--format",
        choices=typing.get_args(ExportFormat),
        default=typing.get_args(ExportFormat)[0],
        help="adapter: LoRA adapter zip (PEFT, vLLM); merged: base + adapter in bf16 (a folder); "
        "gguf: one GGUF file + Ollama Modelfile (llama.cpp, Ollama)",
    )
    p.add_argument(
        "--quant",
        choices=typing.get_args(GgufQuant),
        default=typing.get_args(GgufQuant)[0],
        help="GGUF type: f16 (default), q8_0 (half the size), q4_k_m (needs llama-cpp-python)",
    )
    p.add_argument(
        "--out",
        metavar="PATH",
        help="where to write it; a path ending in .zip gives a zip, else a folder "
        "(default: the workspace's exports/ folder)",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import-adapter", help="add a LoRA adapter zip trained elsewhere as a run")
    _add_workspace(p)
    p.add_argument("archive", metavar="ZIP", help="zip with adapter_model.safetensors and config")
    p.add_argument(
        "--brand", help="a prepared brand (default: the brand named by the zip's brand.yaml)"
    )
    p.add_argument(
        "--base-model", default=None, help="base model to use instead of the one the adapter names"
    )
    p.add_argument(
        "--quantization",
        choices=choices(TrainConfig, "quantization"),
        default="none",
        help="how chat loads the base for it: none (default) or nf4 (4-bit, as in QLoRA)",
    )
    p.set_defaults(func=_cmd_import_adapter)

    p = sub.add_parser("export-votes", help="Compare votes as DPO or KTO training data (JSONL)")
    _add_workspace(p)
    p.add_argument("--brand", required=True)
    p.add_argument(
        "--format",
        choices=typing.get_args(PreferenceKind),
        default=typing.get_args(PreferenceKind)[0],
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the .jsonl file to write")
    p.add_argument("--run", help="only the votes on this run's adapter")
    p.add_argument(
        "--style",
        choices=typing.get_args(PromptStyle),
        default=typing.get_args(PromptStyle)[0],
        help="prompts as message lists (default) or plain strings",
    )
    p.set_defaults(func=_cmd_export_votes)

    p = sub.add_parser("serve", help="an OpenAI-compatible API for a tuned model")
    _add_workspace(p)
    p.add_argument("--run", help="run id (default: the brand's newest finished run)")
    p.add_argument("--brand", help="brand name, when no --run is given")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        default=None,
        help="require the key on this file's first line (Authorization: Bearer KEY); "
        "default $BRANDVOICE_API_KEY",
    )
    p.add_argument("--api-key", default=None, help=argparse.SUPPRESS)  # refused: visible in ps
    _add_allowed_hosts(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("brands", help="list prepared brands")
    _add_workspace(p)
    p.set_defaults(func=_cmd_brands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from chatbot.workspace import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)  # what the workspace holds is its owner's alone (files 0600)
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "chat" and not (args.brand or args.run):
        parser.error("chat needs --brand NAME or --run RUN")
    if args.command == "check" and not (args.brand or args.run):
        parser.error("check needs --brand NAME or --run RUN")
    if args.command == "serve" and not (args.brand or args.run):
        parser.error("serve needs --run RUN or --brand NAME")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrandVoiceError as exc:
        _err.print(Text("error: ", style="bold red") + Text(str(exc) + _hint(exc)))
        return 2
    except KeyboardInterrupt:
        _err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
