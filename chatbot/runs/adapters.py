"""A finished run's adapter and how to talk to it: which base, which prompts, where it lives.

The chat engine, the CLI's `chat`, the app's Compare tab and the scorecard all need the same
answer to "how was this adapter trained?", so it is worked out here once. A run still training has
no adapter yet, but its newest complete checkpoint holds one: `checkpoint_setup` answers the same
question for it (the preview while training). `build_engine` loads a chat engine for a setup, the
one place that turns an `AdapterSetup` into a `ChatEngine`.

"Finished with an adapter" has one definition, `Run.has_adapter`; `usable_runs` lists those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.brand.profile import BrandProfile
from chatbot.engine.fewshot import Example, fewshot_candidates
from chatbot.errors import BrandVoiceError
from chatbot.runs.jobs import Run, get_run, list_runs
from chatbot.training.data import DataError, read_brand
from chatbot.training.run_files import ADAPTER_CONFIG
from chatbot.workspace import Workspace

if TYPE_CHECKING:
    from chatbot.engine import ChatEngine

__all__ = [
    "AdapterSetup",
    "adapter_setup",
    "build_engine",
    "checkpoint_setup",
    "latest_adapter_run",
    "parent_of",
    "usable_runs",
]


@dataclass(frozen=True)
class AdapterSetup:
    run_id: str
    adapter_dir: Path
    base_model: str
    quantization: str
    system_prompt: str
    """The brand's style prompt (what "base + style prompt" is given)."""
    tuned_system_prompt: str
    """The prompt the tuned side gets: the one its training conversations carried, else ""."""
    fewshot_examples: tuple[Example, ...] = ()
    """Candidate example exchanges for "base + style prompt + examples", from the training split
    only (`chatbot.engine.fewshot`)."""


def usable_runs(ws: Workspace, brand: str) -> list[Run]:
    """The brand's runs finished with an adapter (`Run.has_adapter`), newest first.

    `brand` is a slug, or a name that `Workspace.find_brand` knows (which says what exists).
    """
    slug = brand if ws.brand_dir(brand).is_dir() else ws.find_brand(brand)
    return [run for run in list_runs(ws, slug) if run.has_adapter]


def latest_adapter_run(ws: Workspace, brand: str) -> Run:
    """The newest run of a brand finished with an adapter, or a message saying how to make one."""
    slug = ws.find_brand(brand)
    runs = usable_runs(ws, slug)
    if runs:
        return runs[0]
    raise BrandVoiceError(
        f"Brand '{slug}' has no finished training run yet; train one first.", option="train"
    )


def adapter_setup(ws: Workspace, run_id: str) -> AdapterSetup:
    """How to talk to a run's final adapter; BrandVoiceError when it has none."""
    run = get_run(ws, run_id)
    if not run.has_adapter:
        raise BrandVoiceError(f"Run {run.id} is {run.state} and has no finished adapter to use.")
    return _setup(ws, run, run.folder.adapter)


def checkpoint_setup(ws: Workspace, run_id: str, checkpoint: Path) -> AdapterSetup:
    """How to talk to the adapter in one of a run's checkpoints (the run may still be training)."""
    run = get_run(ws, run_id)
    if not (Path(checkpoint) / ADAPTER_CONFIG).exists():
        raise BrandVoiceError(f"{checkpoint} holds no adapter ({ADAPTER_CONFIG} is missing).")
    return _setup(ws, run, Path(checkpoint))


def _setup(ws: Workspace, run: Run, adapter: Path) -> AdapterSetup:
    config = run.folder.read_config()
    profile = BrandProfile.load(ws.brand_dir(run.brand) / "brand.yaml")
    # Training records the prompt it really used; a brand.yaml edited since then must not change
    # what the adapter is chatted with.
    tuned = run.folder.read_system_prompt()
    if tuned is None:
        with_prompt = config.system_prompt == "always" or (
            config.system_prompt == "brand" and profile.system_prompt_mode == "always"
        )
        tuned = profile.system_prompt if with_prompt else ""
    return AdapterSetup(
        run.id,
        adapter,
        config.base_model,
        config.quantization,
        profile.system_prompt,
        tuned,
        _fewshot(ws, run.brand),
    )


def build_engine(
    setup: AdapterSetup, *, adapter: bool = True, fewshot: bool = True, **options: Any
) -> ChatEngine:
    """Load the chat engine for `setup`: its base model, prompts and (with `adapter`) its adapter.

    `fewshot=False` leaves out the example exchanges (a face that never chats in "fewshot" mode);
    `options` go to `ChatEngine` as they are (device, compute_dtype, max_waiting).
    """
    from chatbot.engine import ChatEngine

    return ChatEngine(
        setup.base_model,
        setup.adapter_dir if adapter else None,
        setup.system_prompt,
        tuned_system_prompt=setup.tuned_system_prompt,
        fewshot_examples=setup.fewshot_examples if fewshot else (),
        quantization=setup.quantization,  # type: ignore[arg-type]
        **options,
    )


def _fewshot(ws: Workspace, brand: str) -> tuple[Example, ...]:
    try:
        data = read_brand(ws.brand_dir(brand))
    except DataError:  # no training data here (an imported adapter): nothing to show as examples
        return ()
    return fewshot_candidates(data.train, data.eval)


def parent_of(run: Run) -> str:
    """The run whose adapter this one started from ("" when none): its lineage, from config.yaml.

    Runs trained from votes (`chatbot.training.from_votes`) record their parent there.
    """
    import yaml

    try:
        config = yaml.safe_load(run.folder.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ""
    return str(config.get("parent_run") or "") if isinstance(config, dict) else ""
