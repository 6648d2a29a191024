"""Checking a draft: the score's parts add up and each moves it the right way, rule fixes are
applied exactly, broken rules are found where they are, and the whole check runs on a tiny model
(calibration kept per run, likelihood gains equal to a plain forward pass, batch reports, CLI)."""

from __future__ import annotations

import csv
import itertools
import json
from functools import partial
from pathlib import Path

import pytest
import torch
from check_support import prepared_brand, record_run

from chatbot.brand.profile import AddressRule, BrandRules, EmojiRule, LengthRule, PreferredTerm
from chatbot.brand.rule_check import check_reply, locate_breaks, sentence_spans
from chatbot.brand.rule_fix import fix_reply
from chatbot.check import Anchor, DraftChecker, brand_score, check_drafts, read_drafts
from chatbot.check.batch import REPORT_COLUMNS, write_report
from chatbot.check.calibration import CALIBRATION_FILE
from chatbot.check.likelihood import NO_CUSTOMER
from chatbot.check.score import BASE_MARK, BRAND_MARK, WEIGHTS
from chatbot.cli.commands import main
from chatbot.errors import BrandVoiceError, InputError
from chatbot.scorecard.generation import customer_turns
from chatbot.training.data import read_brand
from chatbot.workspace import Workspace

RUN_ID = "20260101-120000-c4ec41"
KETTLEBIRD = BrandRules(
    banned_phrases=["Unfortunately", "valued customer", "per our policy", "Dear customer"],
    required_signoff="Steep well, the Kettlebird flock",
    preferred_terms=[
        PreferredTerm("tea parcel", "package"),
        PreferredTerm("swap", "exchange"),
        PreferredTerm("right away", "ASAP"),
    ],
    emoji=EmojiRule(max_per_reply=1, allowed=["🫖", "🍵"]),
    max_exclamations=1,
    length=LengthRule(max_words=60),
    address_customer=AddressRule(term="friend", greeting="Hi friend,", allow_first_name=True),
)
GAIN = Anchor(base=-0.4, brand=0.6, min_spread=0.05)
STYLE = Anchor(base=0.1, brand=0.9, min_spread=0.05)


# -- the score -----------------------------------------------------------------------------------


def test_parts_add_up_to_the_score_and_stay_within_their_points() -> None:
    for gain, p, kept in itertools.product([-3, -0.4, 0.05, 0.6, 2], [0, 0.3, 0.9, 1], range(6)):
        score = brand_score(gain, p, kept, 5, GAIN, STYLE)
        assert score.total == sum(part.points for part in score.parts)
        assert [p.key for p in score.parts] == list(WEIGHTS)
        for part in score.parts:
            assert 0 <= part.points <= part.max_points == WEIGHTS[part.key]
        assert 0 <= score.total <= 100


def _totals(values: list[float], score: object) -> list[int]:
    return [score(v).total for v in values]  # type: ignore[operator]


def test_the_score_is_monotone_in_each_part() -> None:
    gains = [x / 20 for x in range(-60, 61)]
    probabilities = [x / 50 for x in range(51)]
    for p, kept in itertools.product([0.0, 0.5, 1.0], [0, 3, 5]):
        by_gain = _totals(gains, partial(_score_by_gain, p=p, kept=kept))
        assert by_gain == sorted(by_gain) and by_gain[0] < by_gain[-1]
    for gain, kept in itertools.product([-1.0, 0.1, 1.0], [0, 5]):
        by_p = _totals(probabilities, partial(_score_by_style, gain=gain, kept=kept))
        assert by_p == sorted(by_p) and by_p[0] < by_p[-1]
    for gain, p in itertools.product([-1.0, 0.1, 1.0], [0.0, 1.0]):
        by_rules = _totals(list(range(6)), partial(_score_by_rules, gain=gain, p=p))
        assert by_rules == sorted(by_rules) and by_rules[0] < by_rules[-1]


def _score_by_gain(gain: float, *, p: float, kept: int):  # noqa: ANN202
    return brand_score(gain, p, kept, 5, GAIN, STYLE)


def _score_by_style(p: float, *, gain: float, kept: int):  # noqa: ANN202
    return brand_score(gain, p, kept, 5, GAIN, STYLE)


def _score_by_rules(kept: int, *, gain: float, p: float):  # noqa: ANN202
    return brand_score(gain, p, kept, 5, GAIN, STYLE)


def test_the_scale_puts_the_brand_median_at_80_and_the_base_median_at_20() -> None:
    assert GAIN.fraction(GAIN.brand) == pytest.approx(BRAND_MARK)
    assert GAIN.fraction(GAIN.base) == pytest.approx(BASE_MARK)
    assert brand_score(GAIN.brand, STYLE.brand, 5, 5, GAIN, STYLE).total == 40 + 24 + 20
    assert brand_score(GAIN.base, STYLE.base, 5, 5, GAIN, STYLE).total == 10 + 6 + 20
    # A part that does not separate the voices (brand below base) still orders texts the same way.
    flat = Anchor(base=0.5, brand=0.4, min_spread=0.05)
    assert flat.fraction(0.3) < flat.fraction(0.5) < flat.fraction(0.52)
    # No rules set: nothing is broken, the rule points are given in full.
    assert brand_score(0.0, 0.5, 0, 0, GAIN, STYLE).parts[2].points == WEIGHTS["rules"]


# -- rules: where they break, and their fixes ----------------------------------------------------

DRAFT = (
    "Dear customer, unfortunately your packages are late!! We will exchange them ASAP 😀. "
    "Sorry 🫖.\n\nKind regards,\nThe Support Team"
)
FIXED = (
    "Hi friend, your tea parcels are late! We will swap them right away. Sorry 🫖."
    "\n\nSteep well, the Kettlebird flock"
)


def test_rule_fixes_are_applied_exactly() -> None:
    fixed = fix_reply(KETTLEBIRD, DRAFT)
    assert fixed.text == FIXED
    assert [(f.rule, f.before, f.after) for f in fixed.fixes] == [
        ("banned_phrase:unfortunately", "unfortunately", ""),
        ("banned_phrase:dear customer", "Dear customer", ""),
        ("preferred_term:package", "packages", "tea parcels"),
        ("preferred_term:exchange", "exchange", "swap"),
        ("preferred_term:asap", "ASAP", "right away"),
        ("address", "", "Hi friend,"),
        ("signoff", "Kind regards,\nThe Support Team", "Steep well, the Kettlebird flock"),
        ("exclamations", "!", ""),
        ("emoji", "😀", ""),
    ]
    assert fixed.unfixed == []
    assert all(r.passed for r in check_reply(KETTLEBIRD, fixed.text))


@pytest.mark.parametrize(
    ("draft", "expected"),
    [
        # A capitalised term keeps its capital; a kept greeting and sign-off are left alone.
        (
            "Hi Maya, Package 12 left today. Steep well, the Kettlebird flock",
            "Hi Maya, Tea parcel 12 left today. Steep well, the Kettlebird flock",
        ),
        # Mid-sentence: the phrase and its comma go, the sentence closes up.
        (
            "Hi friend, we can't, per our policy, refund it. Steep well, the Kettlebird flock",
            "Hi friend, we can't, refund it. Steep well, the Kettlebird flock",
        ),
        # An exclamation mark beyond the limit becomes a full stop; the sign-off is appended.
        (
            "Hi friend, great! Thanks! Bye!",
            "Hi friend, great! Thanks. Bye. Steep well, the Kettlebird flock",
        ),
    ],
)
def test_each_fix_does_what_its_rule_says(draft: str, expected: str) -> None:
    assert fix_reply(KETTLEBIRD, draft).text == expected


def test_a_rule_no_fix_can_satisfy_is_left_to_the_writer() -> None:
    long = "Hi friend, " + "tea " * 70 + "Steep well, the Kettlebird flock"
    assert fix_reply(KETTLEBIRD, long).unfixed == ["length"]
    placeholder = BrandRules(address_customer=AddressRule(greeting="Hi <first name>,"))
    fixed = fix_reply(placeholder, "Your parcel is on its way.")
    assert fixed.text == "Your parcel is on its way." and fixed.unfixed == ["address"]


def test_broken_rules_are_located_in_the_text() -> None:
    breaks = {
        (b.rule, DRAFT[b.start : b.end] if b.start is not None else None)
        for b in locate_breaks(KETTLEBIRD, DRAFT)
    }
    sentences = sentence_spans(DRAFT)
    assert [DRAFT[a:b] for a, b in sentences] == [
        "Dear customer, unfortunately your packages are late!!",
        "We will exchange them ASAP 😀.",
        "Sorry 🫖.",
        "Kind regards,\nThe Support Team",
    ]
    assert breaks >= {
        ("banned_phrase:dear customer", "Dear customer"),
        ("banned_phrase:unfortunately", "unfortunately"),
        ("preferred_term:package", "packages"),
        ("preferred_term:asap", "ASAP"),
        ("exclamations", "!"),
        ("emoji", "😀"),
        ("address", "Dear customer, unfortunately your packages are late!!"),
        ("signoff", "Kind regards,\nThe Support Team"),
    }


# -- the check on a tiny model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = prepared_brand(tmp_path_factory.mktemp("check") / "ws")
    record_run(ws, tiny_model_dir, RUN_ID)
    return ws


@pytest.fixture(scope="module")
def checker(workspace: Workspace) -> DraftChecker:
    stages: list[str] = []
    checker = DraftChecker.load(
        workspace, brand="Lumen Lamps", progress=lambda s, d, t: stages.append(s)
    )
    assert {"loading model", "base voice", "base replies", "calibrating"} <= set(stages)
    return checker


def test_a_check_scores_every_sentence_and_names_the_broken_rules(checker: DraftChecker) -> None:
    draft = "Unfortunately your unit is late! We will send a new one ASAP. Shine on, Lumen Lamps"
    check = checker.check(draft, "Where is my lamp?")
    assert check.score.total == sum(p.points for p in check.score.parts)
    assert [s.text for s in check.sentences] == [
        "Unfortunately your unit is late!",
        "We will send a new one ASAP.",
        "Shine on, Lumen Lamps",
    ]
    assert all(s.score is not None and 0 <= s.score <= 100 for s in check.sentences)
    first = {b.rule for b in check.sentences[0].breaks}
    assert first == {"banned_phrase:unfortunately", "preferred_term:unit", "address"}
    assert {b.rule for b in check.sentences[1].breaks} == {"preferred_term:asap"}
    assert check.fixed.text == (
        "Hello there, your lamp is late! We will send a new one right away. Shine on, Lumen Lamps"
    )
    assert check.suggestion  # the tuned model's own reply to the customer
    assert "held-out replies score" in check.calibration
    # The same draft with its rules fixed keeps more rules, so its rule part is higher.
    again = checker.check(check.fixed.text, "Where is my lamp?", suggest=False)
    assert again.suggestion is None
    assert again.score.parts[2].points == 20 > check.score.parts[2].points


def test_the_gains_are_the_plain_models_nll_differences(
    checker: DraftChecker, tiny_model_dir: Path
) -> None:
    """The tuned and base NLLs of each token, computed with prefix reuse, equal one plain forward
    pass over the whole rendered conversation (the base with the adapter off)."""
    from transformers import AutoTokenizer

    from chatbot.scorecard.likelihood import adapter_off

    text = "Hello there, your lamp ships tomorrow."
    gains = checker.scorer.gains(text, None)
    engine, tokenizer = checker.engine, AutoTokenizer.from_pretrained(tiny_model_dir)
    reply = tokenizer(text, add_special_tokens=False)["input_ids"]
    messages = [{"role": "user", "content": NO_CUSTOMER}]

    def plain_nlls(mode: str) -> torch.Tensor:
        prompt = tokenizer.encode(engine.render_prompt(messages, mode), add_special_tokens=False)
        ids = torch.tensor([prompt + reply])
        logits = engine.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        return torch.nn.functional.cross_entropy(logits, torch.tensor(reply), reduction="none")

    with torch.inference_mode():
        tuned = plain_nlls("tuned")
        with adapter_off(engine.model):
            base = plain_nlls("base")
    assert gains.gains == pytest.approx((base - tuned).tolist(), abs=0.05)
    assert len(gains.spans) == len(reply) and gains.spans[-1][1] == len(text)
    assert abs(gains.mean) > 1e-4  # the random adapter moves the likelihood


def test_the_calibration_is_kept_per_run_and_reused(
    workspace: Workspace, checker: DraftChecker, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = json.loads((checker.run.run_dir / CALIBRATION_FILE).read_text())
    held_out = customer_turns(read_brand(workspace.brand_dir("lumen-lamps")).eval, limit=None)
    assert saved["run_id"] == RUN_ID and saved["turns"] == len(held_out) >= 2
    brand, base = (
        saved["brand"]["with_customer"]["scores"],
        saved["base"]["with_customer"]["scores"],
    )
    assert len(brand) == len(base) == len(held_out)

    def no_calibration(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the saved calibration should have been reused")

    monkeypatch.setattr("chatbot.check.checker.calibrate", no_calibration)
    again = DraftChecker.load(workspace, run_id=RUN_ID, engine=checker.engine)
    assert again.calibration == checker.calibration


def test_a_batch_is_checked_worst_first_into_csv_and_html(
    checker: DraftChecker, tmp_path: Path
) -> None:
    table = tmp_path / "drafts.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "Customer message", "Reply"])
        writer.writerow(
            ["good", "Where is it?", "Hello there, it ships today. Shine on, Lumen Lamps"]
        )
        writer.writerow(["bad", "", "Unfortunately, per our policy, no!!! Regards, Bob"])
        writer.writerow(["blank", "", "  "])
    drafts = read_drafts(table)
    assert [(d.name, d.customer) for d in drafts] == [("good", "Where is it?"), ("bad", None)]
    results = check_drafts(checker, drafts)
    scores = [c.score.total for _, c in results]
    assert scores == sorted(scores) and results[0][0].name == "bad"
    out = write_report(results, tmp_path / "report.csv")
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == REPORT_COLUMNS and [r[1] for r in rows[1:]] == ["bad", "good"]
    assert "banned_phrase:per our policy" in rows[1][6]
    html = write_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.index("bad") < html.index("good") and "Unfortunately" in html

    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("Hello there, hi.", encoding="utf-8")
    (folder / "notes.json").write_text("{}", encoding="utf-8")
    assert [d.name for d in read_drafts(folder)] == ["a.txt"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Question,Answer text\nhi,there\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"wrong.csv, line 1: no column holds the texts"):
        read_drafts(wrong)
    with pytest.raises(BrandVoiceError, match="no text to check"):
        checker.check("   ")


def test_the_check_command(
    workspace: Workspace, checker: DraftChecker, tmp_path: Path, capsys
) -> None:  # noqa: ANN001
    draft = tmp_path / "draft.txt"
    draft.write_text("Unfortunately the unit is late!!! Shine on, Lumen Lamps", encoding="utf-8")
    ws = str(workspace.root)
    code = main(["check", "--workspace", ws, "--brand", "Lumen Lamps", str(draft), "--no-suggest"])
    out = capsys.readouterr().out
    assert code == 0 and "Brand score:" in out and "/100" in out
    # Two marks too many, one rule: the sentence names it once.
    assert " ".join(out.split()).count("(breaks exclamations:") == 1
    assert "banned_phrase:unfortunately" in out and "Fixed by the brand's rules" in out
    assert "Hello there, the lamp is late! Shine on" in " ".join(out.split())
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "one.md").write_text("Hello there. Shine on, Lumen Lamps", encoding="utf-8")
    report = tmp_path / "out.csv"
    assert (
        main(["check", "--workspace", ws, "--run", RUN_ID, str(folder), "--report", str(report)])
        == 0
    )
    assert "one.md" in report.read_text(encoding="utf-8")
    assert main(["check", "--workspace", ws, "--run", RUN_ID, str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: no such file or folder" in " ".join(capsys.readouterr().err.split())


def test_stdin_is_checked(workspace: Workspace, checker: DraftChecker, monkeypatch, capsys) -> None:  # noqa: ANN001
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there, your lamp ships today."))
    args = ["check", "--workspace", str(workspace.root), "--run", RUN_ID, "-", "--no-suggest"]
    assert main(args) == 0
    assert "[" in capsys.readouterr().out  # each sentence is listed with its verdict


def test_the_check_tab_highlights_every_sentence(
    workspace: Workspace, checker: DraftChecker
) -> None:
    from ui import check_tab
    from ui.services import Services

    check = checker.check("Unfortunately it is late.  We will send it ASAP.\nShine on, Lumen Lamps")
    pieces, colors = check_tab.highlights(check)
    assert "".join(text for text, _ in pieces) == check.text
    labels = [label for _, label in pieces if label]
    assert len(labels) == len(check.sentences) == 3
    assert labels[0].startswith(check.sentences[0].verdict) and 'uses "Unfortunately"' in labels[0]
    assert colors[labels[0]] == check_tab.BROKEN_COLOR
    services = Services(workspace, engine_factory=lambda spec: None)  # type: ignore[arg-type,return-value]
    assert "Prepare a brand" in check_tab.check_setup(services, None).notice
    setup = check_tab.check_setup(services, "lumen-lamps")
    assert setup.run_id == RUN_ID and [v for _, v in setup.run_choices] == [RUN_ID]
    with pytest.raises(BrandVoiceError, match="Paste a draft"):
        check_tab.run_check(services, check_tab.CheckerCache(), RUN_ID, "  ", "")
