"""Training from votes: too few votes are refused with the count needed; DPO trains only the LoRA
weights of a copy of the voted adapter, through the job system, and records its parent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_support import SYSTEM_PROMPT, make_run
from job_support import prepared_workspace

from chatbot.cli.commands import main
from chatbot.config import TrainConfig
from chatbot.errors import BrandVoiceError
from chatbot.feedback.votes import Vote, record_vote
from chatbot.runs.from_votes import MIN_VOTES, start_from_votes
from chatbot.runs.jobs import Run, wait_for_run
from chatbot.training.from_votes import VoteRun
from chatbot.workspace import Workspace

ON_BRAND = "Thanks for reaching out! A new shade leaves tomorrow. Shine on, Lumen Lamps"
OFF_BRAND = "UNFORTUNATELY DAMAGE HAPPENS. NOT OUR PROBLEM."


def _vote(run: Run, number: int, verdict: str = "left") -> Vote:
    return Vote(
        brand=run.brand,
        mode="blind",
        prompt=f"Order {number} arrived with a dented shade. Mail me at ann{number}@example.com",
        left_system="tuned",
        right_system="base",
        left_reply=ON_BRAND,
        right_reply=OFF_BRAND,
        verdict=verdict,  # type: ignore[arg-type]
        run_id=run.id,
    )


@pytest.fixture
def voted(tmp_path: Path, tiny_model_dir: Path) -> tuple[Workspace, Run]:
    """A prepared brand, a finished run on the tiny model, and MIN_VOTES + 4 votes on it."""
    ws = prepared_workspace(tmp_path / "ws")
    parent = make_run(ws, "lumen-lamps", tiny_model_dir, tmp_path / "scratch")
    for number in range(MIN_VOTES + 4):
        record_vote(ws, _vote(parent, number))
    return ws, parent


def test_too_few_votes_are_refused_with_how_many_are_needed(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
):
    ws = prepared_workspace(tmp_path / "ws")
    parent = make_run(ws, "lumen-lamps", tiny_model_dir, tmp_path / "scratch")
    for number in range(5):
        record_vote(ws, _vote(parent, number))
    record_vote(ws, _vote(parent, 99, verdict="tie"))
    with pytest.raises(BrandVoiceError) as raised:
        start_from_votes(ws, "Lumen Lamps", start=lambda *a, **k: pytest.fail("started"))
    message = str(raised.value)
    assert "has 5 usable vote(s) for DPO (6 in all; left out: 1 tie)" in message
    assert f"needs at least {MIN_VOTES}" in message and "Vote on 15 more" in message

    argv = ["train", "--workspace", str(ws.root), "--brand", "Lumen Lamps", "--from-votes"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Vote on 15 more" in err and "Traceback" not in err


def test_dpo_from_votes_changes_only_the_lora_weights(voted: tuple[Workspace, Run], tmp_path: Path):
    ws, parent = voted
    configs: list[TrainConfig] = []
    start_from_votes(ws, "Lumen Lamps", start=lambda _ws, _b, c, **_k: configs.append(c))
    [config] = configs
    assert (config.method, config.parent_run) == ("dpo", parent.id)
    assert config.lora_r == 8 and config.base_model == parent.base_model  # the parent's shape
    config = TrainConfig.from_preset(None, config.to_dict() | {"max_steps": 3, "batch_size": 2})

    run_dir = ws.runs_dir() / "child"
    run = VoteRun(ws, run_dir, config, ws.brand_dir("lumen-lamps"), None, None)
    run.setup()
    before = {name: p.detach().clone() for name, p in run.trainer.model.named_parameters()}
    run.fit()
    metrics = run.finish()
    after = dict(run.trainer.model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed and all(".lora_" in name and ".default." in name for name in changed)

    rows = [json.loads(line) for line in (run_dir / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == MIN_VOTES + 4
    assert rows[0]["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "<EMAIL>" in rows[0]["prompt"][1]["content"]  # redacted as every vote export
    assert rows[0]["chosen"][0]["content"] == ON_BRAND
    assert metrics["parent_run"] == parent.id and metrics["method"] == "dpo"
    assert metrics["steps"] == 3 and metrics["eval_loss_before"] and metrics["eval_loss_after"]
    assert metrics["vote_agreement_before"] is not None
    assert sorted(p.name for p in (run_dir / "adapter").iterdir() if p.is_dir()) == []  # no "ref"
    saved = _safetensors(run_dir / "adapter" / "adapter_model.safetensors")
    old = _safetensors(parent.run_dir / "adapter" / "adapter_model.safetensors")
    assert saved.keys() == old.keys()
    assert any(not torch.equal(saved[k].float(), old[k].float()) for k in saved)
    assert (run_dir / "system_prompt.txt").read_text() == SYSTEM_PROMPT


def test_kto_from_votes_learns_good_and_bad_replies(voted: tuple[Workspace, Run]):
    ws, parent = voted
    for number in range(100, 106):
        record_vote(ws, _vote(parent, number, verdict="both_bad"))
    configs: list[TrainConfig] = []
    start_from_votes(ws, "Lumen Lamps", "kto", start=lambda _ws, _b, c, **_k: configs.append(c))
    config = TrainConfig.from_preset(None, configs[0].to_dict() | {"max_steps": 2})
    run = VoteRun(ws, ws.runs_dir() / "kto", config, ws.brand_dir("lumen-lamps"), None, None)
    run.setup()
    before = {name: p.detach().clone() for name, p in run.trainer.model.named_parameters()}
    run.fit()
    metrics = run.finish()
    changed = [n for n, p in run.trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert changed and all(".lora_" in name and ".default." in name for name in changed)
    assert {row["label"] for row in run.rows} == {True, False}
    assert run.trainer.args.desirable_weight > 1  # more bad replies than good: balanced
    assert metrics["method"] == "kto" and metrics["parent_run"] == parent.id


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def test_a_run_from_votes_goes_through_the_job_system(voted: tuple[Workspace, Run]):
    ws, parent = voted
    overrides = ["max_steps=2", "batch_size=2"]
    run = start_from_votes(ws, "Lumen Lamps", "dpo", parent_run=parent.id, overrides=overrides)
    assert run.preset == "from votes (DPO)"
    done = wait_for_run(ws, run.id, timeout=600)
    assert done.state == "succeeded", done.error
    config = TrainConfig.from_yaml(done.run_dir / "config.yaml")
    assert (config.method, config.parent_run, config.max_steps) == ("dpo", parent.id, 2)
    metrics = json.loads((done.run_dir / "metrics.json").read_text())
    assert metrics["parent_run"] == parent.id and metrics["state"] == "succeeded"
    assert (done.run_dir / "adapter" / "adapter_config.json").is_file()
