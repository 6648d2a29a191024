"""Starting a run from votes: the parent run people voted on, its votes counted, a job queued.

`start_from_votes` refuses when there are too few votes (saying how many more are needed) and
queues the run through the job system like any training run; the job's worker then trains it
(`chatbot.training.from_votes`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatbot.config import TrainConfig
from chatbot.errors import BrandVoiceError
from chatbot.feedback.preferences import PreferenceRows, preference_rows
from chatbot.runs.jobs import Run, get_run, list_runs, start_run
from chatbot.training.from_votes import METHODS, MIN_VOTES, too_few_votes, usable_votes
from chatbot.workspace import Workspace

__all__ = [
    "METHODS",
    "MIN_VOTES",
    "VotePlan",
    "plan_from_votes",
    "start_from_votes",
    "usable_votes",
]

# What a run from votes changes from its parent's settings: preference learning moves a trained
# adapter, so a gentler rate than SFT's, a short warm-up and small batches of pairs.
_VOTE_SETTINGS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "epochs": 3.0,
    "max_steps": 0,
    "batch_size": 4,
    "gradient_accumulation": 1,
    "warmup_ratio": 0.1,
    "eval_every": 0,
    "early_stopping_patience": 0,
    "processes": 1,
    "accelerate_config": "",
}


@dataclass(frozen=True)
class VotePlan:
    """What a run from votes will learn: the parent's votes as preference rows."""

    parent: Run
    method: str
    data: PreferenceRows

    @property
    def usable(self) -> int:
        return usable_votes(self.data)


def _parent(ws: Workspace, slug: str, run_id: str | None) -> Run:
    """The run whose adapter was voted on: `run_id`, else the newest finished run with votes."""
    from chatbot.feedback.votes import list_votes

    if run_id:
        run = get_run(ws, run_id)
        if run.brand != slug:
            raise BrandVoiceError(f"Run {run.id} belongs to brand '{run.brand}', not '{slug}'.")
        if not run.has_adapter:
            raise BrandVoiceError(f"Run {run.id} is {run.state} and has no adapter to start from.")
        return run
    finished = [r for r in list_runs(ws, slug) if r.has_adapter]
    if not finished:
        raise BrandVoiceError(
            f"Brand '{slug}' has no finished training run to vote on yet; train one first, "
            "then vote in the Compare tab.",
            option="train",
        )
    voted = {v.run_id for v in list_votes(ws, slug)}
    return next((r for r in finished if r.id in voted), finished[0])


def plan_from_votes(
    ws: Workspace, brand: str, method: str = "dpo", parent_run: str | None = None
) -> VotePlan:
    """The parent's votes as rows; BrandVoiceError saying how many more are needed if too few."""
    if method not in METHODS:
        raise BrandVoiceError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
    slug = ws.find_brand(brand)
    parent = _parent(ws, slug, parent_run)
    plan = VotePlan(parent, method, preference_rows(ws, slug, method, run_id=parent.id))
    if plan.usable < MIN_VOTES:
        raise BrandVoiceError(_too_few(plan))
    return plan


def _too_few(plan: VotePlan) -> str:
    return too_few_votes(plan.parent.id, plan.method, plan.data)


def start_from_votes(
    ws: Workspace,
    brand: str,
    method: str = "dpo",
    *,
    parent_run: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    start: Callable[..., Run] = start_run,
) -> Run:
    """Queue a run from votes (a job, like any training run); see the module doc.

    The new run keeps its parent's settings (base model, quantization, LoRA shape, length, system
    prompt policy) with `_VOTE_SETTINGS`, then `overrides` ("key=value", as `--set`) on top.
    """
    plan = plan_from_votes(ws, brand, method, parent_run)
    parent = plan.parent.folder.read_config().to_dict()
    values = {**parent, **_VOTE_SETTINGS, "method": method, "parent_run": plan.parent.id}
    pairs = [f"{key}={json.dumps(value)}" for key, value in values.items()]
    config = TrainConfig.from_preset(None, [*pairs, *overrides])
    return start(ws, plan.parent.brand, config, preset=f"from votes ({method.upper()})")
