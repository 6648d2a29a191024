"""Voice match: held-out losses turned into "N× likelier", with what it means."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chatbot.runs.voice_match import run_voice_match, voice_match


def test_real_losses_give_the_ratio_and_its_meaning() -> None:
    match = voice_match(3.372, 1.9975)
    assert match is not None
    assert match.ratio == pytest.approx(3.953, abs=1e-3)  # exp(1.3745)
    assert match.figure == "4.0×" and match.level == "picked_up"
    assert match.meaning == (
        "The tuned model finds the brand's real replies 4.0× likelier than the base model "
        "does: it has picked up the voice."
    )


@pytest.mark.parametrize(
    ("base", "tuned", "level", "figure", "says"),
    [
        (2.9, 0.4, "picked_up", "12×", "12× likelier"),
        (2.0, 1.6, "started", "1.5×", "started to pick up the voice"),
        (2.0, 1.97, "hardly", "1.0×", "hardly changed"),
        (2.0, 2.3, "away", "0.7×", "less likely (0.7×)"),
    ],
)
def test_levels(base: float, tuned: float, level: str, figure: str, says: str) -> None:
    match = voice_match(base, tuned)
    assert match is not None
    assert (match.level, match.figure) == (level, figure)
    assert says in match.meaning
    assert match.ratio == pytest.approx(math.exp(base - tuned))


@pytest.mark.parametrize(
    ("base", "tuned"), [(None, 1.2), (3.0, None), (float("nan"), 1.0), (3.0, float("inf"))]
)
def test_missing_figures_give_none(base: float | None, tuned: float | None) -> None:
    assert voice_match(base, tuned) is None


def _run(tmp_path: Path, metrics: object) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_a_runs_metrics(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, {"eval_loss_before": 3.372, "eval_loss_after": 1.9975})
    match = run_voice_match(run_dir)
    assert match is not None and match.ratio == pytest.approx(math.exp(3.372 - 1.9975))

    class Run:  # what chatbot.runs.jobs.Run offers: its folder
        def __init__(self, folder: Path) -> None:
            self.run_dir = folder

    assert run_voice_match(Run(run_dir)) == match


def test_a_run_from_votes_is_matched_against_the_base_not_its_parent(tmp_path: Path) -> None:
    """A run from votes records its parent's loss as "before"; the voice match still compares
    with the base model's, found along the lineage."""
    runs = tmp_path / "runs"
    for name, metrics in {
        "sft": {"eval_loss_before": 3.375, "eval_loss_after": 2.001},
        "dpo1": {"parent_run": "sft", "eval_loss_before": 2.001, "eval_loss_after": 2.041},
        "dpo2": {"parent_run": "dpo1", "eval_loss_before": 2.041, "eval_loss_after": 2.0},
    }.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text(json.dumps(metrics))
    assert run_voice_match(runs / "dpo1").ratio == pytest.approx(math.exp(3.375 - 2.041))
    assert run_voice_match(runs / "dpo2").ratio == pytest.approx(math.exp(3.375 - 2.0))
    (runs / "sft" / "metrics.json").unlink()  # the parent was deleted: no figure, not a wrong one
    assert run_voice_match(runs / "dpo2") is None


def test_an_older_run_uses_its_step_zero_evaluation(tmp_path: Path) -> None:
    history = [{"step": 0, "eval_loss": 3.0}, {"step": 6, "eval_loss": 2.0}]
    run_dir = _run(tmp_path, {"eval_history": history, "eval_loss_after": 2.0})
    match = run_voice_match(run_dir)
    assert match is not None and match.ratio == pytest.approx(math.e)


@pytest.mark.parametrize(
    "metrics",
    [
        {"state": "cancelled", "eval_loss_before": 3.0, "eval_loss_after": None},
        {"eval_loss_after": 2.0, "eval_history": [{"step": 5, "eval_loss": 2.0}]},
        ["not", "a", "mapping"],
    ],
)
def test_unfinished_runs_give_none(tmp_path: Path, metrics: object) -> None:
    assert run_voice_match(_run(tmp_path, metrics)) is None


def test_no_metrics_file_gives_none(tmp_path: Path) -> None:
    assert run_voice_match(tmp_path / "missing") is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{half")
    assert run_voice_match(broken) is None
