"""Voice match: the held-out losses as a figure a marketer can read.

A run measures the loss of the brand's real held-out replies twice: under the base model
(`eval_loss_before`, remembered per brand in `base_eval.json` by `chatbot.training.base_eval`) and
under the tuned model (`eval_loss_after`); both are in the run's `metrics.json`. Losses are mean
negative log-likelihoods per token, so exp(base - tuned) is how many times likelier, token for
token, the tuned model finds the brand's own words. That ratio, with one line saying what it
means, is the voice match.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chatbot.training.run_files import RunFolder

__all__ = ["VoiceMatch", "run_voice_match", "voice_match"]

Level = Literal["picked_up", "started", "hardly", "away"]

PICKED_UP = 2.0
"""At least this many times likelier: the tuned model has picked up the voice."""
STARTED = 1.25
"""At least this: it has started to; below it (down to `AWAY`) it has hardly changed."""
AWAY = 0.95
"""Below this the tuned model finds the brand's replies less likely than the base did."""


@dataclass(frozen=True)
class VoiceMatch:
    ratio: float
    """exp(base_loss - tuned_loss): how many times likelier per token, under the tuned model."""
    base_loss: float
    tuned_loss: float
    level: Level
    meaning: str
    """One plain sentence: the figure and what it says."""

    @property
    def figure(self) -> str:
        """The ratio as shown: "3.9×" (one decimal below 10, whole numbers above)."""
        return _times(self.ratio)


def _times(ratio: float) -> str:
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _level(ratio: float) -> Level:
    if ratio >= PICKED_UP:
        return "picked_up"
    if ratio >= STARTED:
        return "started"
    return "hardly" if ratio >= AWAY else "away"


_MEANINGS: dict[Level, str] = {
    "picked_up": "it has picked up the voice.",
    "started": "it has started to pick up the voice; more conversations or epochs would help.",
    "hardly": "training has hardly changed it; add conversations or train for longer.",
    "away": (
        "training has moved it away from the voice; check the conversations, or train again "
        "with fewer epochs or a lower learning rate."
    ),
}


def voice_match(base_eval_loss: float | None, tuned_eval_loss: float | None) -> VoiceMatch | None:
    """The voice match of a base and a tuned held-out loss; None when either is missing."""
    losses = (base_eval_loss, tuned_eval_loss)
    if any(
        loss is None or isinstance(loss, bool) or not isinstance(loss, int | float)
        for loss in losses
    ):
        return None
    base, tuned = float(base_eval_loss), float(tuned_eval_loss)  # type: ignore[arg-type]
    if not (math.isfinite(base) and math.isfinite(tuned)):
        return None
    ratio = math.exp(base - tuned)
    level = _level(ratio)
    if level == "away":
        compared = f"less likely ({_times(ratio)}) than the base model does"
    else:
        compared = f"{_times(ratio)} likelier than the base model does"
    meaning = f"The tuned model finds the brand's real replies {compared}: {_MEANINGS[level]}"
    return VoiceMatch(ratio, base, tuned, level, meaning)


_MAX_LINEAGE = 32  # runs from votes, one on another; a guard against a loop in hand-edited files


def _base_loss(metrics: dict) -> float | None:
    before = metrics.get("eval_loss_before")
    if before is not None:
        return before
    # An older metrics.json: the evaluation at step 0 is the base model's.
    history = metrics.get("eval_history") or []
    first = history[0] if history and isinstance(history[0], dict) else {}
    return first.get("eval_loss") if first.get("step") == 0 else None


def run_voice_match(run: object) -> VoiceMatch | None:
    """The voice match of a run (a `chatbot.runs.jobs.Run`, or its folder); None when the run has
    not finished with both held-out losses (running, cancelled, failed, or no eval split)."""
    run_dir = Path(getattr(run, "run_dir", run))  # type: ignore[arg-type]
    metrics = _metrics(run_dir)
    if metrics is None:
        return None
    return voice_match(_base_loss_of_lineage(run_dir, metrics), metrics.get("eval_loss_after"))


def _metrics(run_dir: Path) -> dict | None:
    try:
        metrics = json.loads(RunFolder(run_dir).metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _base_loss_of_lineage(run_dir: Path, metrics: dict) -> float | None:
    """The base model's held-out loss. A run trained from another (from votes) records its
    parent's loss as "before", so the base's is looked up along the parents; the voice match
    compares with the base model, whatever the lineage."""
    for _ in range(_MAX_LINEAGE):
        parent = metrics.get("parent_run")
        if not parent:
            return _base_loss(metrics)
        parent_metrics = _metrics(run_dir.parent / str(parent))
        if parent_metrics is None:
            return None
        run_dir, metrics = run_dir.parent / str(parent), parent_metrics
    return None
