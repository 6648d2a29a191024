"""The scorecard end to end on a tiny model: a prepared test brand, a recorded run with a real
(perturbed) LoRA adapter, `evaluate()`, the report files, and `brandvoice eval` on the command line.

The tiny model is random, so its replies are nonsense; what is checked is that every figure is
computed the documented way (the base and prompted likelihoods are the plain model's), that the
run is scored deterministically, and that the files and the command come out right.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from chatbot.cli.commands import main
from chatbot.config import TrainConfig
from chatbot.feedback.votes import Vote, record_vote
from chatbot.models import default_compute_dtype
from chatbot.prepare.pipeline import prepare
from chatbot.scorecard import SYSTEMS, evaluate, load_scorecard, write_report
from chatbot.scorecard.generation import customer_turns
from chatbot.scorecard.likelihood import held_out_likelihood
from chatbot.training.data import read_brand
from chatbot.workspace import Workspace

ASSETS = Path(__file__).parent / "assets" / "brand"
RUN_ID = "20260101-120000-5c0ecd"
QUICK = {"max_prompts": 3, "max_new_tokens": 6, "negatives": 4}


def _make_adapter(base_dir: Path, out: Path) -> None:
    """A LoRA adapter with random B matrices (a fresh LoRA's B is zero and changes nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)


@pytest.fixture(scope="module")
def workspace(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The test brand prepared, one succeeded run with an adapter and events, one blind vote."""
    ws = Workspace.open(tmp_path_factory.mktemp("scorecard") / "ws")
    result = prepare(ws, "Lumen Lamps", [ASSETS / "conversations.jsonl"], ASSETS / "style_guide.md")
    assert result.ok, result.report.errors
    run_dir = ws.runs_dir() / RUN_ID
    run_dir.mkdir(parents=True)
    TrainConfig(base_model=str(tiny_model_dir), quantization="none", max_length=256).to_yaml(
        run_dir / "config.yaml"
    )
    _make_adapter(tiny_model_dir, run_dir / "adapter")
    events = [
        {"state": "evaluating", "step": 0, "eval_loss": 10.5},
        {"state": "running", "step": 1, "loss": 10.9},
        {"state": "running", "step": 2, "loss": 10.1},
        {"state": "evaluating", "step": 2, "eval_loss": 10.2},
        {"state": "succeeded", "step": 2, "loss": 10.1, "eval_loss": 10.2},
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    now = time.time()
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, finished, run_dir) "
            "VALUES (?, 'lumen-lamps', 'succeeded', 'quick', ?, ?, ?, ?)",
            (RUN_ID, str(tiny_model_dir), now, now, str(run_dir)),
        )
    record_vote(
        ws,
        Vote("lumen-lamps", "blind", "Hi", "tuned", "prompted", "a", "b", "left", run_id=RUN_ID),
    )
    return ws


@pytest.fixture(scope="module")
def card(workspace: Workspace):  # noqa: ANN201 - a Scorecard
    stages: list[str] = []
    card = evaluate(workspace, RUN_ID, progress=lambda s, d, t: stages.append(s), **QUICK)
    assert stages[0] == "loading model" and "replies" in stages and "base voice" in stages
    return card


def test_evaluate_scores_all_three_systems(workspace: Workspace, card, tiny_model_dir: Path):  # noqa: ANN001
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = read_brand(workspace.brand_dir("lumen-lamps"))
    assert card.run_id == RUN_ID and card.brand_name == "Lumen Lamps"
    assert set(card.likelihood) == set(SYSTEMS)
    # The base and prompted figures are the plain model's: the adapter was switched off. The plain
    # model computes in the dtype the engine picks on this machine, so the figures are identical.
    dtype = default_compute_dtype("cpu")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for system in ("base", "prompted"):
        plain = held_out_likelihood(
            model,
            tokenizer,
            data.eval,
            card.system_prompts[system],
            adapter=True,
            max_length=256,
        )
        assert card.likelihood[system].nll == pytest.approx(plain.nll, rel=1e-9)
    assert card.system_prompts["base"] == "" and card.system_prompts["prompted"]
    # The random tiny model's logits are near zero, so even a large LoRA moves the NLL a little.
    assert abs(card.likelihood["tuned"].nll - card.likelihood["prompted"].nll) > 1e-3
    assert card.likelihood["tuned"].tokens == card.likelihood["prompted"].tokens > 0

    turns = customer_turns(data.eval, limit=None)[:3]
    assert [(e.conversation, e.turn) for e in card.examples] == [
        (t.conversation, t.turn) for t in turns
    ]
    for example in card.examples:
        assert set(example.replies) == set(SYSTEMS)
        assert set(example.p_brand) == {*SYSTEMS, "reference"}
        assert all(0.0 <= p <= 1.0 for p in example.p_brand.values())
    # The brand's own held-out replies follow its style guide's sign-off.
    assert card.rules["signoff"]["reference"].rate == 1.0
    assert set(card.all_rules) == {*SYSTEMS, "reference"}
    assert card.style.negatives == 4 and card.style.positives > 4
    assert card.text["reference"].words_mean > 5
    assert card.training.train == [[1, 10.9], [2, 10.1]]
    assert card.training.eval == [[0, 10.5], [2, 10.2]]
    assert card.votes is not None and card.votes.votes == 1
    assert card.votes.wins == {"tuned": 1, "prompted": 0} and card.votes.losses["prompted"] == 1


def test_scoring_is_deterministic_and_reuses_the_base_replies(workspace: Workspace, card):  # noqa: ANN001
    again = evaluate(workspace, RUN_ID, **QUICK)
    assert [e.replies for e in again.examples] == [e.replies for e in card.examples]
    assert {s: v.nll for s, v in again.likelihood.items()} == {
        s: v.nll for s, v in card.likelihood.items()
    }
    assert again.style == card.style
    assert any("from the workspace cache" in note for note in again.notes)


def test_report_files_and_the_eval_command(workspace: Workspace, card, capsys):  # noqa: ANN001
    run_dir = workspace.runs_dir() / RUN_ID
    files = write_report(card, run_dir)
    assert load_scorecard(run_dir) == card
    assert "<svg" in files.html.read_text(encoding="utf-8")

    ws = str(workspace.root)
    args = ["eval", "--workspace", ws, "--run", RUN_ID, "--max-prompts", "2"]
    assert main([*args, "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "Scorecard: Lumen Lamps" in out and "NLL" in out and "Perplexity" in out
    assert "scorecard.html" in out.replace("\n", "")
    # Against itself: nothing got worse; its saved scorecard is reused, not evaluated again.
    assert main([*args, "--max-new-tokens", "4", "--against", RUN_ID[:10]]) == 0
    assert "No regressions" in capsys.readouterr().out
    assert main(["eval", "--workspace", ws, "--run", "nope"]) == 2


def test_the_fewshot_baseline_shows_training_examples_only(workspace: Workspace, card) -> None:  # noqa: ANN001
    """The few-shot system is shown brand exchanges from train.jsonl, never one from eval.jsonl,
    and its likelihood scores the held-out replies only (the examples' tokens are not counted)."""
    data = read_brand(workspace.brand_dir("lumen-lamps"))
    shown = [[(m["role"], m["content"]) for m in exchange] for exchange in card.fewshot_examples]
    assert shown, "the test brand has training exchanges to show"
    held_out = {m["content"] for conversation in data.eval for m in conversation}
    trained = [[(m["role"], m["content"]) for m in c if m["role"] != "system"] for c in data.train]
    for exchange in shown:
        assert not {text for _, text in exchange} & held_out
        assert any(c[: len(exchange)] == exchange for c in trained)
    assert (
        "fewshot" in card.systems
        and card.system_prompts["fewshot"] == card.system_prompts["prompted"]
    )
    assert card.likelihood["fewshot"].tokens == card.likelihood["prompted"].tokens
    assert all(example.replies["fewshot"] is not None for example in card.examples)
    assert card.style.tuned_beats_fewshot is not None
