"""The scorecard's parts, each against figures worked out by hand: rules, likelihood, style,
readability, turn selection, batching, the report files and the comparison of two runs."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from chatbot.brand.profile import BrandRules
from chatbot.engine import GenerationSettings
from chatbot.scorecard import (
    Scorecard,
    ScorecardSettings,
    comparability,
    compare_scorecards,
    load_scorecard,
    summary_rows,
    write_report,
)
from chatbot.scorecard.card import (
    Likelihood,
    RuleRate,
    StyleSummary,
)
from chatbot.scorecard.generation import (
    cached_base_replies,
    customer_turns,
    generate_replies,
    spread,
    system_rows,
)
from chatbot.scorecard.likelihood import held_out_likelihood
from chatbot.scorecard.plots import grouped_bars, line_chart, strip_plot
from chatbot.scorecard.readability import flesch, percentile, syllables, text_stats
from chatbot.scorecard.rules import RuleTally
from chatbot.scorecard.style import StyleClassifier

ASSETS = Path(__file__).parent / "assets" / "scorecard"
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=8)


# -- rules ---------------------------------------------------------------------------------------


def tally_rules(rules: BrandRules, replies: dict[str, list[str]]) -> RuleTally:
    """Every reply of every system added, as the scorecard adds them."""
    tally = RuleTally(rules)
    for system, texts in replies.items():
        for text in texts:
            tally.add(system, text)
    return tally


def test_a_reply_that_breaks_a_rule_fails_it_and_rates_add_up() -> None:
    rules = BrandRules(
        banned_phrases=["unfortunately"], required_signoff="Steep well", max_exclamations=1
    )
    replies = {
        "tuned": ["Hi! Steep well", "Unfortunately no. Steep well", "Wow!! great"],
        "base": ["Fine. Steep well"],
    }
    tally = tally_rules(rules, replies)
    tuned = {rule: rates["tuned"] for rule, rates in tally.per_rule.items()}
    assert {rule: (r.passed, r.total) for rule, r in tuned.items()} == {
        "banned_phrase:unfortunately": (2, 3),
        "signoff": (2, 3),
        "exclamations": (2, 3),
    }
    assert tuned["signoff"].rate == pytest.approx(2 / 3)
    # Only the first reply keeps every rule; the base model's one reply keeps them all.
    assert (tally.all_rules["tuned"].passed, tally.all_rules["tuned"].total) == (1, 3)
    assert (tally.all_rules["base"].passed, tally.all_rules["base"].total) == (1, 1)
    assert tally.add("prompted", "Wow!! great") == ["signoff", "exclamations"]


def test_a_brand_without_rules_counts_nothing() -> None:
    tally = tally_rules(BrandRules(), {"tuned": ["anything at all!!!"]})
    assert tally.per_rule == {} and tally.all_rules["tuned"].total == 0
    assert tally.all_rules["tuned"].rate is None


# -- likelihood ----------------------------------------------------------------------------------


def test_nll_matches_a_log_softmax_by_hand(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    system = "You are Lumen Lamps. Be brief."
    conversation = [
        {"role": "user", "content": "My lamp flickers."},
        {"role": "assistant", "content": "Hello there, try a new bulb first. Shine on!"},
    ]
    result = held_out_likelihood(
        model, tokenizer, [conversation], system, adapter=True, max_length=512
    )

    # By hand: the assistant tokens are everything after the prompt that asks for the reply.
    messages = [{"role": "system", "content": system}, *conversation]
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    full, prompt = list(full), list(prompt)
    assert full[: len(prompt)] == prompt
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), dim=-1)
    picked = [logp[t - 1, full[t]].item() for t in range(len(prompt), len(full))]
    expected = -sum(picked) / len(picked)

    assert result.tokens == len(full) - len(prompt) and result.conversations == 1
    assert result.nll == pytest.approx(expected, rel=1e-5)
    assert result.perplexity == pytest.approx(torch.tensor(expected).exp().item(), rel=1e-5)


# -- style ---------------------------------------------------------------------------------------


def _lines(name: str) -> list[str]:
    return (ASSETS / name).read_text(encoding="utf-8").splitlines()


def test_classifier_separates_two_clearly_different_voices() -> None:
    classifier = StyleClassifier.fit(_lines("brand_voice.txt"), _lines("plain_voice.txt"))
    held_out = json.loads((ASSETS / "held_out.json").read_text(encoding="utf-8"))
    brand, plain = classifier.p_brand(held_out["brand"]), classifier.p_brand(held_out["plain"])
    assert min(brand) > 0.8 and max(plain) < 0.2
    assert classifier.positives == 20 and classifier.negatives == 20
    assert classifier.cv_accuracy is not None and classifier.cv_accuracy > 0.9


def test_classifier_needs_both_voices() -> None:
    from chatbot.errors import BrandVoiceError

    with pytest.raises(BrandVoiceError, match="at least 2 replies of each voice"):
        StyleClassifier.fit(_lines("brand_voice.txt"), ["only one"])


# -- readability and length ----------------------------------------------------------------------


def test_flesch_reading_ease_by_hand() -> None:
    # 6 words, 1 sentence, 6 one-syllable words: 206.835 - 1.015 * 6 - 84.6 * 6 / 6.
    assert flesch("The cat sat on the mat.") == pytest.approx(116.145)
    # 4 words, 1 sentence (textstat's counting), 4 syllables: 206.835 - 1.015 * 4 - 84.6.
    assert flesch("Hi there friend, ok?") == pytest.approx(118.175)
    assert syllables("The cat sat") == 3
    assert flesch("") is None and flesch(" ... ") is None


def test_text_stats_by_hand() -> None:
    replies = [
        "The cat sat on the mat.",
        "One two three four five six seven.",
        "",
        "Hi there friend, ok?",
    ]
    stats = text_stats(replies)
    # Word counts 6, 7, 0, 4: mean 4.25, median 5; p10 = 0 + 0.3 * (4 - 0) = 1.2;
    # p90 = 6 + 0.7 * (7 - 6) = 6.7 (linear interpolation, like numpy's default).
    assert stats.replies == 4
    assert (stats.words_mean, stats.words_median) == (4.25, 5.0)
    assert stats.words_p10 == pytest.approx(1.2) and stats.words_p90 == pytest.approx(6.7)
    scores = [flesch(r) for r in replies if r]  # the empty reply has no score
    assert stats.flesch_mean == pytest.approx(sum(scores) / 3)
    assert stats.flesch_median == pytest.approx(sorted(scores)[1])
    assert percentile([], 50) == 0.0 and text_stats([]).flesch_mean is None


# -- which turns, and how they are batched -------------------------------------------------------


def _conv(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": text} for role, text in turns]


def test_customer_turns_take_first_turns_first_and_skip_what_answers_nobody() -> None:
    conversations = [
        _conv(("user", "a1"), ("assistant", "A1"), ("user", "a2"), ("assistant", "A2")),
        _conv(("system", "s"), ("assistant", "welcome"), ("user", "b1"), ("assistant", "B1")),
        _conv(("user", "c1"), ("assistant", "C1"), ("assistant", "C1 again")),
    ]
    turns = customer_turns(conversations, limit=None)
    assert [(t.conversation, t.turn, t.reply) for t in turns] == [
        (0, 0, "A1"),
        (1, 1, "B1"),  # the opening greeting answers no customer: not a prompt
        (2, 0, "C1"),
        (0, 1, "A2"),
    ]
    assert turns[1].messages == [{"role": "user", "content": "b1"}]  # system and opener dropped
    assert turns[3].messages[-1] == {"role": "user", "content": "a2"}
    assert len(customer_turns(conversations, limit=2)) == 2
    assert spread(list(range(10)), 3) == [0, 3, 6] and spread([1, 2], 5) == [1, 2]


class _FakeEngine:
    """Answers "<mode>:<last user message>" and records each batch it was asked for."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def _text(self, messages: list[dict[str, str]], mode: str) -> str:
        return f"{mode}:{messages[-1]['content']} "

    def stream(self, messages, mode, settings=None) -> Iterator[str]:  # noqa: ANN001
        self.batches.append([mode])
        yield self._text(messages, mode)

    def stream_pair(self, left, mode_left, right, mode_right, settings=None) -> Iterator:  # noqa: ANN001
        self.batches.append([mode_left, mode_right])
        yield self._text(left, mode_left), ""
        yield "", self._text(right, mode_right)


def test_replies_are_generated_two_rows_at_a_time_alike_with_alike() -> None:
    turns = customer_turns([_conv(("user", f"q{i}"), ("assistant", "r")) for i in range(3)], None)
    engine = _FakeEngine()
    steps: list[tuple[int, int]] = []
    rows = system_rows(turns)
    replies = generate_replies(engine, rows, GREEDY, lambda d, t: steps.append((d, t)))
    assert engine.batches == [
        ["base", "prompted"],
        ["base", "prompted"],
        ["base", "prompted"],
        ["tuned", "tuned"],
        ["tuned"],
    ]
    assert replies[:2] == ["base:q0", "prompted:q0"] and replies[-1] == "tuned:q2"
    assert steps[-1] == (9, 9) and len(steps) == 5


def test_base_replies_are_cached_per_turns_and_settings(tmp_path: Path) -> None:
    turns = customer_turns([_conv(("user", f"q{i}"), ("assistant", "r")) for i in range(3)], None)
    engine = _FakeEngine()
    identity = {"base_model": "tiny", "quantization": "none"}
    first, cached = cached_base_replies(engine, turns, GREEDY, tmp_path, identity)
    assert not cached and first == ["base:q0", "base:q1", "base:q2"]
    again, cached = cached_base_replies(engine, turns, GREEDY, tmp_path, identity)
    assert cached and again == first and len(engine.batches) == 2  # nothing generated again
    other = GenerationSettings(temperature=0.0, max_new_tokens=9)
    _, cached = cached_base_replies(engine, turns, other, tmp_path, identity)
    assert not cached


# -- report and comparison -----------------------------------------------------------------------


def _card(**changes: object) -> Scorecard:
    """The hand-made scorecard in the assets (three systems, two examples, one rule), changed."""
    data = json.loads((ASSETS / "scorecard.json").read_text(encoding="utf-8"))
    return dataclasses.replace(Scorecard.from_dict(data), **changes)


def test_report_files_are_written_and_the_html_escapes_replies(tmp_path: Path) -> None:
    card = _card()
    files = write_report(card, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scorecard.html", "scorecard.json"]
    page = files.html.read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Is my &lt;b&gt;order&lt;/b&gt; late?" in page and "Kettlebird &lt;Tea&gt;" in page
    assert "Hi friend &amp; co" in page
    assert page.count("<svg") == 4  # loss curve, P(brand), rule pass rates, lengths
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch
    assert load_scorecard(tmp_path) == card  # the JSON reads back as the same scorecard
    header, rows = summary_rows(card)
    assert header[1:] == ["Base model", "Base + style prompt", "Tuned", "Brand (held out)"]
    assert rows[0][1:] == ["3.000", "2.800", "2.000", "–"] and rows[3][1:] == [
        "0%",
        "0%",
        "100%",
        "100%",
    ]


def test_an_outdated_or_broken_scorecard_file_reads_as_none(tmp_path: Path) -> None:
    assert load_scorecard(tmp_path) is None
    (tmp_path / "scorecard.json").write_text('{"format": 0}')
    assert load_scorecard(tmp_path) is None
    (tmp_path / "scorecard.json").write_text("{not json")
    assert load_scorecard(tmp_path) is None


def test_charts_are_well_formed_svg() -> None:
    for svg in (
        line_chart({"train": [[1, 2.0], [2, 1.5]], "eval": [[0, 2.5]]}, title="a<b", x_label="s"),
        line_chart({}, title="empty", x_label="s"),
        grouped_bars(["rule & co"], {"base": [0.5], "tuned": [None]}, title="Rules"),
        strip_plot({"base": [0.1, 0.2], "tuned": []}, title="P", low=0, high=1, x_label="p"),
    ):
        ET.fromstring(svg)  # raises on anything unescaped or unbalanced


def test_compare_flags_a_rule_regression_nll_rise_and_p_brand_drop() -> None:
    old = _card()
    worse_rules = {"signoff": {**old.rules["signoff"], "tuned": RuleRate(1, 2)}}
    worse_style = StyleSummary(**{**old.style.__dict__, "mean": {**old.style.mean, "tuned": 0.7}})
    new = _card(
        rules=worse_rules,
        likelihood={**old.likelihood, "tuned": Likelihood(2.2, 9.03, 100, 2)},
        style=worse_style,
    )
    found = {r.metric: r for r in compare_scorecards(new, old)}
    assert set(found) == {"rule:signoff", "nll", "p_brand"}
    assert (found["rule:signoff"].old, found["rule:signoff"].new) == (1.0, 0.5)
    assert "1/2" in found["rule:signoff"].detail and "2/2" in found["rule:signoff"].detail
    assert compare_scorecards(old, new) == []  # the other way round, everything improved
    assert compare_scorecards(old, old) == [] and comparability(old, old) == []
    other = _card(settings=ScorecardSettings(max_prompts=5))
    assert comparability(other, old) == ["they used different scorecard settings"]
