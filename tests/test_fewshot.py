"""The strongest prompt as a baseline: few-shot examples come from the training split only, fit
the model's context, reach the model after the style prompt, and the scorecard's verdict says
whether tuning beat them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from chatbot.engine import ChatEngine, GenerationSettings
from chatbot.engine.fewshot import MAX_EXAMPLES, fewshot_candidates
from chatbot.scorecard import Scorecard, verdict
from chatbot.scorecard.card import Likelihood, RuleRate, StyleSummary, VoteSummary
from chatbot.scorecard.report import render_html, summary_rows

ASSETS = Path(__file__).parent / "assets" / "scorecard"


def _conversation(ask: str, answer: str, *more: str) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": ask}, {"role": "assistant", "content": answer}]
    for i, text in enumerate(more):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


TRAIN = [_conversation(f"Question {i}?", f"Answer number {i}, friend.") for i in range(40)]
HELD_OUT = [_conversation("Where is my teapot?", "It left today, friend.")]


def test_no_held_out_conversation_is_ever_a_fewshot_example() -> None:
    # The held-out exchange also sits in the training data (a duplicate the split let through), and
    # another training conversation repeats the held-out reply to a different question.
    train = [
        *TRAIN[:10],
        HELD_OUT[0],
        _conversation("Is it shipped?", "It left today, friend."),
        *TRAIN[10:],
    ]
    examples = fewshot_candidates(train, HELD_OUT)
    held_out_texts = {m["content"] for m in HELD_OUT[0]}
    assert examples and len(examples) == MAX_EXAMPLES
    for example in examples:
        assert not {text for _, text in example} & held_out_texts
        assert [role for role, _ in example] == ["user", "assistant"]
    # Evenly spread through the training split, each its conversation's first exchange.
    assert examples[0] == (("user", "Question 0?"), ("assistant", "Answer number 0, friend."))
    assert len({e[0][1] for e in examples}) == MAX_EXAMPLES


def test_a_reply_far_longer_than_usual_is_not_an_example() -> None:
    long = _conversation("Tell me everything.", "word " * 200)
    examples = fewshot_candidates([*TRAIN[:5], long], [], limit=10)
    assert len(examples) == 5 and all("everything" not in e[0][1] for e in examples)
    assert fewshot_candidates([], HELD_OUT) == ()


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> ChatEngine:
    examples = fewshot_candidates(TRAIN, HELD_OUT, limit=MAX_EXAMPLES)
    return ChatEngine(
        tiny_model_dir,
        None,
        "You are Kettlebird's voice.",
        fewshot_examples=examples,
        quantization="none",
    )


def test_the_fewshot_prompt_is_the_style_prompt_then_the_examples(engine: ChatEngine) -> None:
    messages = [{"role": "user", "content": "Where is my teapot?"}]
    fewshot = engine.render_prompt(messages, "fewshot")
    prompted = engine.render_prompt(messages, "prompted")
    shown = engine.fewshot_examples
    assert shown and fewshot.startswith(prompted.split("<|im_start|>user")[0])
    for example in shown:
        assert example[0][1] in fewshot and example[1][1] in fewshot
    assert "It left today" not in fewshot  # the held-out reply is never shown
    assert fewshot.index(shown[-1][1][1]) < fewshot.rindex("Where is my teapot?")
    # k fits the context: half of the tiny model's 1024 positions hold the system and examples.
    tokens = engine.tokenizer.encode(fewshot, add_special_tokens=False)
    assert len(tokens) - len(engine.tokenizer.encode(prompted, add_special_tokens=False)) < 512
    reply = engine.reply(messages, "fewshot", GenerationSettings(temperature=0.0, max_new_tokens=4))
    assert isinstance(reply, str)


def test_k_is_as_many_examples_as_fit(tiny_model_dir: Path) -> None:
    long = [_conversation(f"Question {i}? " + "more " * 60, "Answer " * 60) for i in range(12)]
    engine = ChatEngine(
        tiny_model_dir,
        None,
        "Be brief.",
        fewshot_examples=fewshot_candidates(long, []),
        quantization="none",
    )
    k = len(engine.fewshot_examples)
    assert 0 < k < 12
    text = engine.render_prompt([{"role": "user", "content": "hi"}], "fewshot")
    assert len(engine.tokenizer.encode(text, add_special_tokens=False)) <= 512 + 16


# -- the verdict ---------------------------------------------------------------------------------


def _card(
    nll: dict[str, float], rules: dict[str, int], style: dict[str, float], votes=None
) -> Scorecard:  # noqa: ANN001
    """The assets' hand-made scorecard with a few-shot system and the given figures."""
    data = json.loads((ASSETS / "scorecard.json").read_text(encoding="utf-8"))
    card = Scorecard.from_dict(data)
    likelihood = {s: Likelihood(v, 1.0, 100, 2) for s, v in nll.items()}
    all_rules = {s: RuleRate(passed, 10) for s, passed in rules.items()}
    examples = [
        dataclasses.replace(
            e,
            replies={**e.replies, "fewshot": "Hi friend, it left today."},
            p_brand={**e.p_brand, "fewshot": 0.5},
        )
        for e in card.examples
    ]
    return dataclasses.replace(
        card,
        likelihood=likelihood,
        all_rules={**all_rules, "reference": RuleRate(10, 10)},
        style=StyleSummary(**{**card.style.__dict__, "mean": {**style, "reference": 0.9}}),
        examples=examples,
        text={**card.text, "fewshot": card.text["prompted"]},
        votes=votes,
        fewshot_examples=[
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi friend"}]
        ],
    )


NLL = {"base": 3.0, "prompted": 2.8, "fewshot": 2.4}
RULES = {"base": 1, "prompted": 4, "fewshot": 7}
STYLE = {"base": 0.1, "prompted": 0.3, "fewshot": 0.6}


def test_tuning_that_beats_the_best_prompt_is_shipped() -> None:
    card = _card({**NLL, "tuned": 1.8}, {**RULES, "tuned": 9}, {**STYLE, "tuned": 0.8})
    found = verdict(card)
    assert found is not None and found.beat_best_prompt and found.ship
    assert found.summary.startswith("Tuning beat the best prompt (base + style prompt + examples)")
    assert "25% lower" in found.summary and found.summary.endswith("Ship the adapter.")
    assert {c.measure: c.prompt_system for c in found.comparisons} == {
        "held-out likelihood": "fewshot",
        "rule pass rate": "fewshot",
        "style classifier": "fewshot",
    }
    header, rows = summary_rows(card)
    assert header[1:] == [
        "Base model",
        "Base + style prompt",
        "Base + prompt + examples",
        "Tuned",
        "Brand (held out)",
    ]
    page = render_html(card)
    assert "Verdict: tuning against the best prompt" in page and "Ship the adapter." in page


def test_tuning_that_loses_on_any_measure_is_not_shipped() -> None:
    card = _card({**NLL, "tuned": 1.8}, {**RULES, "tuned": 5}, {**STYLE, "tuned": 0.8})
    found = verdict(card)
    assert found is not None and not found.ship and not found.beat_best_prompt
    assert "rule pass rate: replies keeping every rule 50% vs 70%" in found.summary
    assert "Don't ship this adapter yet" in found.summary
    votes = VoteSummary(
        votes=6,
        wins={"tuned": 1, "prompted": 5},
        losses={"tuned": 5, "prompted": 1},
        ties=0,
        both_bad=0,
    )
    outvoted = _card({**NLL, "tuned": 1.8}, {**RULES, "tuned": 9}, {**STYLE, "tuned": 0.8}, votes)
    assert not verdict(outvoted).ship and "blind votes" in verdict(outvoted).summary


def test_a_draw_with_the_best_prompt_is_not_shipped() -> None:
    card = _card({**NLL, "tuned": 2.395}, {**RULES, "tuned": 7}, {**STYLE, "tuned": 0.61})
    found = verdict(card)
    assert found is not None and not found.ship
    assert found.summary.startswith("Tuning did not clearly beat the best prompt")


def test_an_older_scorecard_without_the_fewshot_system_has_no_verdict() -> None:
    data = json.loads((ASSETS / "scorecard.json").read_text(encoding="utf-8"))
    card = Scorecard.from_dict(data)
    assert card.systems == ["base", "prompted", "tuned"] and verdict(card) is None
    assert "no few-shot baseline" in render_html(card)
