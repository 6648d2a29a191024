"""The app's side of training from votes: Compare's button appears with enough votes and starts a
run that names its parent; the Train and Export tabs show that lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from job_support import prepared_workspace

from chatbot.config import TrainConfig
from chatbot.feedback.votes import Vote, record_vote
from chatbot.runs.jobs import Run, record_imported_run
from chatbot.training.from_votes import MIN_VOTES
from chatbot.workspace import Workspace
from ui import compare_tab, export_tab, train_tab
from ui.services import Services


class _Started:
    def __init__(self) -> None:
        self.configs: list[tuple[TrainConfig, str]] = []

    def __call__(self, ws: Workspace, brand: str, config: TrainConfig, *, preset: str = "") -> Run:
        self.configs.append((config, preset))
        adapter = ws.runs_dir() / f".child-{len(self.configs)}"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
        return record_imported_run(ws, brand, config, adapter, preset=preset)


def _parent(ws: Workspace) -> Run:
    adapter = ws.runs_dir() / ".parent"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return record_imported_run(ws, "lumen-lamps", TrainConfig.from_preset("quick"), adapter)


def _votes(ws: Workspace, run: Run, count: int) -> None:
    for number in range(count):
        record_vote(
            ws,
            Vote(
                brand="lumen-lamps",
                mode="base_vs_tuned",
                prompt=f"Question {number}",
                left_system="base",
                right_system="tuned",
                left_reply="no.",
                right_reply="Happy to help!",
                verdict="right",
                run_id=run.id,
            ),
        )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Services, Run, _Started]:
    ws = prepared_workspace(tmp_path / "ws")
    started = _Started()
    services = Services(workspace=ws, engine_factory=lambda spec: None, start_run=started)
    return services, _parent(ws), started


def test_the_button_appears_with_enough_votes_and_starts_a_child_run(setup: tuple):
    services, parent, started = setup
    _votes(services.workspace, parent, MIN_VOTES - 1)
    assert not compare_tab.next_version_ready(services, "lumen-lamps", parent.id)
    _votes(services.workspace, parent, 1)
    assert compare_tab.next_version_ready(services, "lumen-lamps", parent.id)

    message = compare_tab.train_next_version(services, "lumen-lamps", parent.id)
    [(config, preset)] = started.configs
    assert (config.method, config.parent_run, preset) == ("dpo", parent.id, "from votes (DPO)")
    assert "is learning from your votes" in message and "**Train**" in message

    view = train_tab.train_view(services, "lumen-lamps")
    child_row = next(row for row in view.runs_table if row[0] != parent.id)
    assert child_row[2] == f"from votes (DPO), from run {parent.id}"
    labels = [label for label, _ in export_tab.export_choices(services, "lumen-lamps").run_choices]
    assert any(f"from run {parent.id}" in label for label in labels)
