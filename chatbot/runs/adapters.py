"""A finished run's adapter and how to talk to it: which base, which prompts, where it lives.

The chat engine, the CLI's `chat`, the app's Compare tab and the scorecard all need the same
answer to "how was this adapter trained?", so it is worked out here once. A run still training has
no adapter yet, but its newest complete checkpoint holds one: `checkpoint_setup` answers the same
question for it (the preview while training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.brand.profile import BrandProfile
from chatbot.config import TrainConfig
from chatbot.engine.fewshot import Example, fewshot_candidates
from chatbot.errors import BrandVoiceError
from chatbot.runs.jobs import Run, get_run, list_runs
from chatbot.training.data import DataError, read_brand
from chatbot.workspace import Workspace

__all__ = ["AdapterSetup", "adapter_setup", "checkpoint_setup", "latest_adapter_run", "parent_of"]


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


def latest_adapter_run(ws: Workspace, brand: str) -> Run:
    """The newest succeeded run of a brand, or a message saying how to make one."""
    slug = ws.find_brand(brand)
    for run in list_runs(ws, slug):
        if run.state == "succeeded" and (run.run_dir / "adapter").is_dir():
            return run
    raise BrandVoiceError(
        f"Brand '{slug}' has no finished training run yet; "
        f"train one with `brandvoice train --brand {slug}`."
    )


def adapter_setup(ws: Workspace, run_id: str) -> AdapterSetup:
    run = get_run(ws, run_id)
    adapter = run.run_dir / "adapter"
    if run.state != "succeeded" or not (adapter / "adapter_config.json").exists():
        raise BrandVoiceError(f"Run {run.id} is {run.state} and has no finished adapter to use.")
    return _setup(ws, run, adapter)


def checkpoint_setup(ws: Workspace, run_id: str, checkpoint: Path) -> AdapterSetup:
    """How to talk to the adapter in one of a run's checkpoints (the run may still be training)."""
    run = get_run(ws, run_id)
    if not (Path(checkpoint) / "adapter_config.json").exists():
        raise BrandVoiceError(f"{checkpoint} holds no adapter (adapter_config.json is missing).")
    return _setup(ws, run, Path(checkpoint))


def _setup(ws: Workspace, run: Run, adapter: Path) -> AdapterSetup:
    config = TrainConfig.from_yaml(run.run_dir / "config.yaml")
    profile = BrandProfile.load(ws.brand_dir(run.brand) / "brand.yaml")
    # Training records the prompt it really used; a brand.yaml edited since then must not change
    # what the adapter is chatted with.
    recorded = run.run_dir / "system_prompt.txt"
    if recorded.exists():
        tuned = recorded.read_text(encoding="utf-8")
    else:
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
        config = yaml.safe_load((run.run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ""
    return str(config.get("parent_run") or "") if isinstance(config, dict) else ""
