"""The application layer: what the command line, the app and `serve` do, written once and typed.

The faces (`chatbot.cli`, `ui`) call these functions and print or show what they return; they do
not reach into the packages below. Each function is a thin, typed entry point over the library:

- a workspace and its brands: `open_workspace`, `prepare_brand`, `token_counter`, and what a
  prepared brand's folder holds (`brand_profile`, `brand_yaml`/`save_brand_yaml`,
  `save_brand_profile`, `brand_style_guide`, `brand_report`, `brand_conversations`,
  `brand_reply_bounds`), so no face opens those files itself;
- runs: `list_runs`, `get_run`, `usable_runs` (finished with an adapter, the one definition:
  `Run.has_adapter`), `latest_usable_run`, `adapter_config`, `run_events`, `follow_events`,
  `parent_of`, and each run's file layout as a `RunFolder` (`Run.folder`);
- jobs: `estimate_training`, `start_training`, `start_from_votes`, `cancel_training`,
  `resume_training`;
- chat: `run_setup`/`checkpoint_setup` (how a run's adapter is talked to), `load_engine` (the one
  way to build a `ChatEngine` for a run), `reply_bounds`; `serve_run` for the HTTP face;
- evaluation and the border: `score_run` (`has_scorecard`, `scorecard_html`), `load_checker`,
  `read_drafts`/`check_drafts`/`write_check_report`, `export_run`, `import_adapter`,
  `export_votes`.

The library's types and helpers a face shows or fills in (`Scorecard`, `BrandProfile`, `Vote`,
the HTTP guard, ...) are re-exported here by name (`_REEXPORTED`), so a face imports this module
and the engine's types only.

Heavy libraries (torch, transformers) are imported inside the functions that need them, so a face
that only lists runs starts at once (and `AdapterSetup` is loaded on first use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.config import PrepareConfig, TrainConfig
from chatbot.runs import jobs
from chatbot.runs.jobs import Run
from chatbot.training.run_files import ADAPTER_CONFIG, Event, RunFolder, read_events
from chatbot.workspace import Workspace

if TYPE_CHECKING:
    from chatbot.brand import BrandProfile
    from chatbot.check import Draft, DraftCheck, DraftChecker
    from chatbot.engine import ChatEngine, GenerationSettings
    from chatbot.engine.reply_length import ReplyBounds
    from chatbot.export import ExportResult
    from chatbot.export.importing import ImportResult
    from chatbot.feedback.preferences import PreferenceExport
    from chatbot.ingest.style_guide import StyleGuide
    from chatbot.prepare.pipeline import PrepareResult
    from chatbot.prepare.validation import TokenCounter
    from chatbot.runs.adapters import AdapterSetup
    from chatbot.scorecard import Regression, ReportFiles, Scorecard
    from chatbot.training.estimate import RunEstimate

_BRAND_YAML = "brand.yaml"

__all__ = [
    "AdapterSetup",
    "Event",
    "Run",
    "RunFolder",
    "Score",
    "ServedModel",
    "Workspace",
    "adapter_config",
    "brand_conversations",
    "brand_profile",
    "brand_reply_bounds",
    "brand_report",
    "brand_style_guide",
    "brand_yaml",
    "cancel_training",
    "checkpoint_setup",
    "check_drafts",
    "default_check_report",
    "estimate_training",
    "export_run",
    "export_votes",
    "follow_events",
    "get_run",
    "has_scorecard",
    "import_adapter",
    "latest_usable_run",
    "list_runs",
    "load_checker",
    "load_engine",
    "load_served_model",
    "open_workspace",
    "parent_of",
    "prepare_brand",
    "read_drafts",
    "read_events",
    "reply_bounds",
    "resume_training",
    "run_events",
    "run_setup",
    "save_brand_profile",
    "save_brand_yaml",
    "score_run",
    "scorecard_html",
    "serve_run",
    "start_from_votes",
    "start_training",
    "token_counter",
    "usable_runs",
    "write_check_report",
    "base_model_bytes",
    "export_timings",
    "remember_export_time",
]


_REEXPORTED = {
    # The ground floor's names a face uses, so a face imports only this layer and the engine.
    "BrandVoiceError": "chatbot.errors",
    "ConfigError": "chatbot.errors",
    "DEFAULT_PRESET": "chatbot.config",
    "FIRST_TASTE_CONVERSATIONS": "chatbot.config",
    "PRESETS": "chatbot.config",
    "RECOMMENDED_CONVERSATIONS": "chatbot.config",
    "PrepareConfig": "chatbot.config",
    "TrainConfig": "chatbot.config",
    "Workspace": "chatbot.workspace",
    "default_model_dir": "chatbot.models",
    "resolve_base_model": "chatbot.models",
    # The library's types and helpers a face shows or fills in, loaded on first use (most of them
    # pull in torch): `from chatbot.service import Scorecard` works without the face knowing where
    # the type lives.
    "AdapterSetup": "chatbot.runs.adapters",
    "AddressRule": "chatbot.brand",
    "BrandProfile": "chatbot.brand",
    "BrandRules": "chatbot.brand",
    "EmojiRule": "chatbot.brand",
    "PreferredTerm": "chatbot.brand",
    "condense_system_prompt": "chatbot.brand.guide_prompt",
    "StyleGuide": "chatbot.ingest.style_guide",
    "TokenCounter": "chatbot.prepare.validation",
    "Draft": "chatbot.check",
    "DraftCheck": "chatbot.check",
    "DraftChecker": "chatbot.check",
    "ExportResult": "chatbot.export",
    "zip_adapter": "chatbot.export",
    "DEFAULT_HUB_ID": "chatbot.export.base_model",
    "max_lora_rank_for": "chatbot.export.vllm_compat",
    "Verdict": "chatbot.feedback.votes",
    "Vote": "chatbot.feedback.votes",
    "list_votes": "chatbot.feedback.votes",
    "record_vote": "chatbot.feedback.votes",
    "tally": "chatbot.feedback.votes",
    "preference_rows": "chatbot.feedback.preferences",
    "MIN_VOTES": "chatbot.runs.from_votes",
    "usable_votes": "chatbot.runs.from_votes",
    "Preview": "chatbot.runs.preview",
    "brand_previews": "chatbot.runs.preview",
    "pin_newest_preview": "chatbot.runs.preview",
    "VoiceMatch": "chatbot.runs.voice_match",
    "run_voice_match": "chatbot.runs.voice_match",
    "REFERENCE": "chatbot.scorecard",
    "SYSTEMS": "chatbot.scorecard",
    "Progress": "chatbot.scorecard",
    "Scorecard": "chatbot.scorecard",
    "ScorecardSettings": "chatbot.scorecard",
    "charts_html": "chatbot.scorecard",
    "evaluate": "chatbot.scorecard",
    "examples_html": "chatbot.scorecard",
    "headlines": "chatbot.scorecard",
    "load_scorecard": "chatbot.scorecard",
    "summary_rows": "chatbot.scorecard",
    "verdict": "chatbot.scorecard",
    "write_scorecard_report": "chatbot.scorecard:write_report",
    "SYSTEM_NAMES": "chatbot.scorecard.report",
    "RequestGuard": "chatbot.serving.http_guard",
    "allowed_hosts": "chatbot.serving.http_guard",
    "is_loopback": "chatbot.serving.http_guard",
    "ASGIApp": "chatbot.serving.http_guard",
    "Message": "chatbot.serving.http_guard",
    "Receive": "chatbot.serving.http_guard",
    "Scope": "chatbot.serving.http_guard",
    "Send": "chatbot.serving.http_guard",
}


def __getattr__(name: str) -> Any:
    import importlib

    where = _REEXPORTED.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr or name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_REEXPORTED})


# -- the workspace and its brands ---------------------------------------------------------------


def open_workspace(path: str | Path | None = None) -> Workspace:
    """The workspace at `path` (default: $BRANDVOICE_WORKSPACE, else the user data folder)."""
    return Workspace.open(path)


def token_counter(base_model: str | None = None) -> TokenCounter:
    """Counts tokens with the base model's tokenizer (None: the built-in default model)."""
    from transformers import AutoTokenizer

    from chatbot.models import resolve_base_model
    from chatbot.prepare.validation import tokenizer_counter

    return tokenizer_counter(AutoTokenizer.from_pretrained(resolve_base_model(base_model)))


def prepare_brand(
    ws: Workspace,
    brand: str,
    conversations: Sequence[Path],
    style_guide: Path | None = None,
    config: PrepareConfig | None = None,
    *,
    count_tokens: TokenCounter | None = None,
    progress: Any = None,
) -> PrepareResult:
    """Check, clean, redact and split a brand's files; the report says what was found."""
    from chatbot.prepare.pipeline import prepare

    return prepare(
        ws,
        brand,
        [Path(f) for f in conversations],
        Path(style_guide) if style_guide else None,
        config,
        count_tokens=count_tokens,
        progress=progress,
    )


def brand_profile(ws: Workspace, brand: str) -> BrandProfile:
    """The prepared brand's profile (`brand.yaml`), validated."""
    from chatbot.brand import BrandProfile

    path = ws.brand_dir(brand) / _BRAND_YAML
    if not path.exists():  # a brand's name rather than its slug, or no such brand: say which exist
        path = ws.brand_dir(ws.find_brand(brand)) / _BRAND_YAML
    return BrandProfile.load(path)


def brand_yaml(ws: Workspace, slug: str) -> str:
    """The text of the brand's `brand.yaml` as saved ("" when there is none)."""
    path = ws.brand_dir(slug) / _BRAND_YAML
    return path.read_text("utf-8") if path.exists() else ""


def save_brand_yaml(ws: Workspace, slug: str, yaml_text: str) -> BrandProfile:
    """Validate edited `brand.yaml` text and save it; ConfigError lists every problem (by field or
    line) and leaves the file as it was."""
    import tempfile

    from chatbot.brand import BrandProfile
    from chatbot.errors import BrandVoiceError, ConfigError

    target = ws.brand_dir(slug) / _BRAND_YAML
    if not target.parent.is_dir():
        raise BrandVoiceError(f"Brand '{slug}' is not in this workspace any more.")
    # BrandProfile.load holds the safe YAML reading (no aliases, size limit, line numbers), so the
    # text goes through a file of the same name; errors then read "Invalid settings in brand.yaml".
    with tempfile.TemporaryDirectory(prefix="brandvoice-rules-") as tmp:
        path = Path(tmp) / _BRAND_YAML
        path.write_text(yaml_text or "", encoding="utf-8")
        try:
            profile = BrandProfile.load(path)
        except ConfigError as exc:
            raise ConfigError(exc.problems, source=_BRAND_YAML) from None
    profile.save(target)
    return profile


def save_brand_profile(ws: Workspace, slug: str, profile: BrandProfile) -> str:
    """Save an edited profile as the brand's `brand.yaml`; returns the text saved."""
    from chatbot.errors import BrandVoiceError

    target = ws.brand_dir(slug) / _BRAND_YAML
    if not target.is_file():
        raise BrandVoiceError(f"Brand '{slug}' is not in this workspace any more.")
    profile.save(target)
    return target.read_text("utf-8")


def brand_style_guide(ws: Workspace, slug: str) -> StyleGuide:
    """The brand's style guide as prepare kept it (`style_guide.md`); empty when it had none."""
    from chatbot.ingest.style_guide import StyleGuide

    path = ws.brand_dir(slug) / "style_guide.md"
    text = path.read_text("utf-8") if path.is_file() else ""
    return StyleGuide(text=text, source="style_guide.md", format="md")


def brand_report(ws: Workspace, slug: str) -> dict:
    """The report of the brand's last successful prepare (`report.json`; {} when none)."""
    import json

    path = ws.brand_dir(slug) / "report.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def brand_conversations(ws: Workspace, slug: str, limit: int | None = None) -> list[dict]:
    """The brand's prepared, redacted conversations (the first `limit`), as stored."""
    from chatbot.storage import read_jsonl

    path = ws.brand_dir(slug) / "conversations.jsonl"
    return read_jsonl(path)[:limit] if path.exists() else []


def brand_reply_bounds(ws: Workspace, slug: str, tokenizer: object) -> ReplyBounds:
    """The brand's reply bounds (its length cap and sign-off), counted with `tokenizer`."""
    from chatbot.engine.reply_length import brand_reply_bounds as bounds

    return bounds(ws.brand_dir(slug), tokenizer)


# -- runs ---------------------------------------------------------------------------------------


def list_runs(ws: Workspace, brand: str | None = None) -> list[Run]:
    """Every run (of `brand`, a slug, when given), newest first."""
    return jobs.list_runs(ws, brand)


def get_run(ws: Workspace, run_id: str) -> Run:
    """The run with this id or unique id prefix."""
    return jobs.get_run(ws, run_id)


def usable_runs(ws: Workspace, brand: str) -> list[Run]:
    """The brand's runs finished with an adapter (`Run.has_adapter`), newest first."""
    from chatbot.runs.adapters import usable_runs as usable

    return usable(ws, brand)


def latest_usable_run(ws: Workspace, brand: str) -> Run:
    """The brand's newest run finished with an adapter; BrandVoiceError when it has none."""
    from chatbot.runs.adapters import latest_adapter_run

    return latest_adapter_run(ws, brand)


def adapter_config(run: Run) -> dict:
    """The run's final adapter's PEFT config (`adapter_config.json`: rank, targets, base)."""
    import json

    return json.loads((run.folder.adapter / ADAPTER_CONFIG).read_text("utf-8"))


def run_events(run: Run) -> list[Event]:
    """The run's training events so far (`events.jsonl`)."""
    return read_events(run.run_dir)


def parent_of(run: Run) -> str:
    """The run whose adapter `run` started from ("" when none): a run from votes' parent."""
    from chatbot.runs.adapters import parent_of as parent

    return parent(run)


def follow_events(ws: Workspace, run_id: str) -> Iterator[Event]:
    """The run's events as they are written, until it ends."""
    return jobs.follow_events(ws, run_id)


# -- training jobs ------------------------------------------------------------------------------


def estimate_training(ws: Workspace, brand: str, config: TrainConfig) -> RunEstimate:
    """How long training `brand` with `config` will take, roughly, and on what."""
    from chatbot.training.estimate import estimate_run

    return estimate_run(ws.brand_dir(ws.find_brand(brand)), config)


def start_training(ws: Workspace, brand: str, config: TrainConfig, *, preset: str = "") -> Run:
    """Queue a training run of `brand` in a background process; returns it at once."""
    return jobs.start_run(ws, brand, config, preset=preset)


def start_from_votes(
    ws: Workspace,
    brand: str,
    method: str = "dpo",
    *,
    parent_run: str | None = None,
    overrides: Sequence[str] = (),
    start: Callable[..., Run] | None = None,
) -> Run:
    """Queue the next version trained from the Compare votes on `parent_run` (default: the brand's
    newest voted run). `start` queues the run (default `start_training`; the app passes its own)."""
    from chatbot.runs.from_votes import start_from_votes as queue

    return queue(
        ws,
        brand,
        method,
        parent_run=parent_run,
        overrides=list(overrides),
        start=start or start_training,
    )


def cancel_training(ws: Workspace, run_id: str, *, timeout: float = 60.0) -> Run:
    """Stop a run gracefully (it keeps its last checkpoint); kill it after `timeout` seconds."""
    return jobs.cancel_run(ws, run_id, timeout=timeout)


def resume_training(ws: Workspace, run_id: str) -> Run:
    """Continue a failed or cancelled run from its newest complete checkpoint."""
    return jobs.resume_run(ws, run_id)


# -- chat ---------------------------------------------------------------------------------------


def run_setup(
    ws: Workspace, run_id: str | None = None, *, brand: str | None = None
) -> AdapterSetup:
    """How to talk to a run's adapter: `run_id`, else the newest usable run of `brand`."""
    if run_id is None:
        if brand is None:
            raise ValueError("run_setup needs a run id or a brand")
        run_id = latest_usable_run(ws, brand).id
    from chatbot.runs.adapters import adapter_setup

    return adapter_setup(ws, run_id)


def checkpoint_setup(ws: Workspace, run_id: str, checkpoint: Path) -> AdapterSetup:
    """As `run_setup`, for one of a running run's checkpoints (the preview while it trains)."""
    from chatbot.runs.adapters import checkpoint_setup as setup

    return setup(ws, run_id, checkpoint)


def load_engine(setup: AdapterSetup, *, adapter: bool = True, fewshot: bool = True) -> ChatEngine:
    """The chat engine for a run's adapter (`adapter=False`: its base model alone, no adapter)."""
    from chatbot.runs.adapters import build_engine

    return build_engine(setup, adapter=adapter, fewshot=fewshot)


def reply_bounds(ws: Workspace, run_id: str, tokenizer: object) -> ReplyBounds:
    """The run's brand's reply bounds: its length cap (from its replies) and its sign-off."""
    return brand_reply_bounds(ws, get_run(ws, run_id).brand, tokenizer)


@dataclass(frozen=True)
class ServedModel:
    """A run's tuned model, loaded for the OpenAI-compatible API."""

    engine: ChatEngine
    setup: AdapterSetup
    model_id: str
    """The name clients ask for: the brand's slug."""
    bounds: ReplyBounds
    defaults: GenerationSettings
    """The settings a request that sets none gets (the brand's reply bounds applied)."""


def load_served_model(ws: Workspace, setup: AdapterSetup) -> ServedModel:
    """Load a run's adapter for `serve_run` (no few-shot examples: the API chats "tuned" only)."""
    from chatbot.engine import GenerationSettings

    engine = load_engine(setup, fewshot=False)
    bounds = reply_bounds(ws, setup.run_id, engine.tokenizer)
    model_id = get_run(ws, setup.run_id).brand
    return ServedModel(engine, setup, model_id, bounds, bounds.apply(GenerationSettings()))


def serve_run(
    model: ServedModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    allowed: Sequence[str] = (),
) -> None:
    """Serve `model` as an OpenAI-compatible API until interrupted."""
    from chatbot.serving.server import serve

    serve(
        model.engine,
        model.model_id,
        host,
        port,
        api_key=api_key,
        defaults=model.defaults,
        allowed=allowed,
    )


# -- scorecard, draft check, export -------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A run's scorecard, where its report was written, and (with `against`) what got worse."""

    card: Scorecard
    files: ReportFiles
    older: Scorecard | None = None
    regressions: tuple[Regression, ...] = ()


def score_run(
    ws: Workspace,
    run_id: str,
    *,
    against: str | None = None,
    progress: Any = None,
    **settings: int,
) -> Score:
    """Score a run, write its report into its folder; with `against`, compare with that run.

    `settings` are `ScorecardSettings` fields (max_prompts, max_new_tokens, ...); unset ones keep
    its defaults. The older run's saved scorecard is reused; one is made (and saved) if it has none.
    """
    from chatbot.scorecard import compare_scorecards, evaluate, load_scorecard, write_report

    card = evaluate(ws, run_id, progress=progress, **settings)
    files = write_report(card, get_run(ws, card.run_id).run_dir)
    if against is None:
        return Score(card, files)
    old_run = get_run(ws, against)
    old = load_scorecard(old_run.run_dir)
    if old is None:
        old = evaluate(ws, old_run.id, progress=progress, **settings)
        write_report(old, old_run.run_dir)
    return Score(card, files, old, tuple(compare_scorecards(card, old)))


def has_scorecard(run_dir: Path) -> bool:
    """The run has a saved scorecard (`scorecard.json` in its folder)."""
    from chatbot.scorecard.card import SCORECARD_FILE

    return (Path(run_dir) / SCORECARD_FILE).exists()


def scorecard_html(run_dir: Path) -> Path:
    """Where the run's scorecard report (`scorecard.html`) is written."""
    from chatbot.scorecard.report import HTML_FILE

    return Path(run_dir) / HTML_FILE


def load_checker(
    ws: Workspace,
    *,
    brand: str | None = None,
    run_id: str | None = None,
    engine: ChatEngine | None = None,
    progress: Any = None,
) -> DraftChecker:
    """Set up checking drafts with a run (default: the brand's newest usable run)."""
    from chatbot.check import DraftChecker

    return DraftChecker.load(ws, brand=brand, run_id=run_id, engine=engine, progress=progress)


def read_drafts(source: Path) -> list[Draft]:
    """The texts to check in a folder of .txt/.md files, a CSV, or one text file."""
    from chatbot.check import read_drafts as read

    return read(Path(source))


def check_drafts(
    checker: DraftChecker, drafts: list[Draft], progress: Any = None
) -> list[tuple[Draft, DraftCheck]]:
    """Check every draft (a batch audit: no suggested replies), worst score first."""
    from chatbot.check import check_drafts as check

    return check(checker, drafts, progress)


def write_check_report(results: list[tuple[Draft, DraftCheck]], out: Path) -> Path:
    """Write a batch check's report, CSV (a .csv path) or HTML, atomically; returns the path."""
    from chatbot.check import write_report

    return write_report(results, Path(out))


def default_check_report(ws: Workspace, brand: str) -> Path:
    """Where a batch check's report goes when no file is named: the workspace's exports/."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return ws.root / "exports" / f"check-{brand}-{stamp}.html"


def export_run(
    ws: Workspace,
    run_id: str,
    fmt: str = "adapter",
    out: Path | None = None,
    *,
    quant: str = "f16",
    progress: Any = None,
) -> ExportResult:
    """Export a run as an adapter zip, a merged model or GGUF, verified in a fresh process."""
    from chatbot.export import export_run as export

    return export(ws, run_id, fmt, out, progress=progress, quant=quant)


def import_adapter(
    ws: Workspace,
    archive: Path,
    brand: str | None = None,
    *,
    base_model: str | None = None,
    quantization: str = "none",
    progress: Any = None,
) -> ImportResult:
    """Add a LoRA adapter zip trained elsewhere as a finished run of a brand."""
    from chatbot.export.importing import import_adapter as importing

    return importing(
        ws,
        Path(archive),
        brand,
        base_model=base_model,
        quantization=quantization,
        progress=progress,
    )


def export_votes(
    ws: Workspace,
    brand: str,
    out: Path,
    kind: str = "dpo",
    *,
    run_id: str | None = None,
    style: str = "conversational",
) -> PreferenceExport:
    """Write the brand's Compare votes as DPO or KTO data (JSONL), personal data replaced."""
    from chatbot.feedback.preferences import export_votes as export

    return export(ws, brand, Path(out), kind, run_id=run_id, style=style)


# -- export timings ------------------------------------------------------------------------------
_EXPORT_TIMINGS = ".export-timings.json"


def base_model_bytes(base_model: str) -> int | None:
    """The size of the base model's weight files, when it is on this machine (None: unknown)."""
    from chatbot.models import default_model_dir

    folder = default_model_dir() if base_model in ("", "default") else Path(base_model)
    if not folder.is_dir():
        return None  # a hub id: not looked up, so nothing is downloaded for an estimate
    sizes = [p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    return sum(sizes) or None


def export_timings(exports_dir: Path) -> dict:
    """Measured seconds per export format on this machine, with the base model's size then."""
    import json

    try:
        data = json.loads((Path(exports_dir) / _EXPORT_TIMINGS).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_export_time(exports_dir: Path, fmt: str, seconds: float, size: int | None) -> None:
    """Keep the measured seconds per GB of base model, so the next estimate is this machine's."""
    from chatbot.storage import atomic_write_json

    data = export_timings(exports_dir)
    data[fmt] = {"seconds": round(seconds, 1), "gb": round((size or 0) / 1e9, 3)}
    atomic_write_json(Path(exports_dir) / _EXPORT_TIMINGS, data)
