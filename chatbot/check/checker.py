"""`DraftChecker`: one run's tuned model, set up to check any text against the brand.

`DraftChecker.load` reads the run and the brand, loads the model (or takes a chat engine that
already holds the run's adapter), fits the style classifier and loads or makes the run's
calibration. `check` then scores one text: the calibrated brand score with its parts, every
sentence's score and the rules it breaks, the rule-made fixes, and (given the customer message
it answers) the tuned model's own reply as a suggestion.
"""

from __future__ import annotations

import statistics
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatbot.brand.profile import BrandProfile
from chatbot.brand.rule_check import (
    RuleResult,
    RuleSpan,
    check_reply,
    locate_breaks,
    sentence_spans,
)
from chatbot.brand.rule_fix import FixedReply, fix_reply
from chatbot.check.calibration import (
    Calibration,
    calibrate,
    calibration_key,
    load_calibration,
    save_calibration,
)
from chatbot.check.likelihood import GainScorer, TokenGains
from chatbot.check.score import BrandScore, brand_score
from chatbot.engine import GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.runs.adapters import AdapterSetup, adapter_setup, build_engine, latest_adapter_run
from chatbot.runs.jobs import Run, get_run
from chatbot.scorecard.evaluate import brand_style_classifier
from chatbot.scorecard.style import StyleClassifier
from chatbot.training.data import read_brand
from chatbot.workspace import Workspace

if TYPE_CHECKING:
    from chatbot.engine import ChatEngine

__all__ = ["DraftChecker", "DraftCheck", "SentenceCheck", "ON_BRAND", "OFF_BRAND", "verdict_of"]

Progress = Callable[[str, int, int], None]

ON_BRAND = 60
"""A sentence scoring this or more (0-100, likelihood scale) reads as the brand."""
OFF_BRAND = 40
"""A sentence scoring below this reads as the base model, not the brand."""
_SUGGESTION = GenerationSettings(temperature=0.0, max_new_tokens=160, repetition_penalty=1.1)


def verdict_of(score: int | None) -> str:
    """ "on-brand", "in between" or "off-brand" for a 0-100 score."""
    if score is None:
        return "in between"
    return "on-brand" if score >= ON_BRAND else "off-brand" if score < OFF_BRAND else "in between"


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence: where it is, its likelihood score (0-100) and the rules it breaks."""

    start: int
    end: int
    text: str
    score: int | None
    """None for a sentence without a scored token."""
    gain: float | None
    breaks: list[RuleSpan]

    @property
    def verdict(self) -> str:
        return verdict_of(self.score)


@dataclass
class DraftCheck:
    """Everything a check of one text found."""

    text: str
    """The text as checked (Unicode NFC, outer spaces removed): offsets refer to it."""
    customer: str | None
    score: BrandScore
    rules: list[RuleResult]
    breaks: list[RuleSpan]
    sentences: list[SentenceCheck]
    fixed: FixedReply
    suggestion: str | None
    tokens: int
    duration_s: float
    calibration: str = ""
    """What the scale means for this run, in one sentence."""
    notes: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]


class DraftChecker:
    """Checks texts against one run's brand voice. Use from one thread at a time."""

    def __init__(
        self,
        engine: ChatEngine,
        run: Run,
        profile: BrandProfile,
        classifier: StyleClassifier,
        calibration: Calibration,
        scorer: GainScorer | None = None,
    ) -> None:
        self.engine = engine
        self.run = run
        self.profile = profile
        self.classifier = classifier
        self.calibration = calibration
        self.scorer = scorer or GainScorer(engine)

    @classmethod
    def load(
        cls,
        ws: Workspace,
        *,
        brand: str | None = None,
        run_id: str | None = None,
        engine: ChatEngine | None = None,
        progress: Progress | None = None,
    ) -> DraftChecker:
        """Set up checking with a run (default: the brand's newest finished run).

        `engine` must hold that run's adapter; without one the model is loaded here. The first
        check of a run calibrates its scale (minutes on a CPU); later ones reuse it.
        """
        say = progress or (lambda _s, _d, _t: None)
        if run_id is None and brand is None:
            raise BrandVoiceError("Name a brand or a run to check against.")
        run = get_run(ws, run_id) if run_id else latest_adapter_run(ws, brand or "")
        setup = adapter_setup(ws, run.id)
        engine = engine or _load_engine(setup, say)
        brand_dir = ws.brand_dir(run.brand)
        profile = BrandProfile.load(brand_dir / "brand.yaml")
        data = read_brand(brand_dir)
        identity = {"base_model": setup.base_model, "quantization": setup.quantization}
        classifier, _ = brand_style_classifier(engine, ws, run.brand, data, identity, progress=say)
        scorer = GainScorer(engine)
        key = calibration_key(run.run_dir, brand_dir, setup.adapter_dir, profile.rules)
        calibration = load_calibration(run.run_dir, key)
        if calibration is None:
            calibration = calibrate(
                engine,
                scorer,
                classifier,
                profile.rules,
                data.eval,
                run_id=run.id,
                cache_dir=ws.root / "cache" / "check" / run.brand,
                identity=identity,
                key=key,
                progress=say,
            )
            save_calibration(calibration, run.run_dir)
        return cls(engine, run, profile, classifier, calibration, scorer)

    def check(self, text: str, customer: str | None = None, *, suggest: bool = True) -> DraftCheck:
        """Check `text` (optionally the reply to `customer`); `suggest`: add the tuned reply."""
        started = time.monotonic()
        text = unicodedata.normalize("NFC", text or "").strip()
        customer = unicodedata.normalize("NFC", customer).strip() if customer else None
        if not text:
            raise BrandVoiceError("There is no text to check: paste or upload a draft first.")
        rules = self.profile.rules
        gains = self.scorer.gains(text, customer)
        results = check_reply(rules, text)
        anchor = self.calibration.gain_anchor(customer is not None)
        score = brand_score(
            gains.mean,
            self.classifier.p_brand([text])[0],
            sum(r.passed for r in results),
            len(results),
            anchor,
            self.calibration.style,
        )
        breaks = locate_breaks(rules, text)
        suggestion = None
        if customer and suggest:
            reply = self.engine.reply([{"role": "user", "content": customer}], "tuned", _SUGGESTION)
            suggestion = reply.strip()
        return DraftCheck(
            text=text,
            customer=customer,
            score=score,
            rules=results,
            breaks=breaks,
            sentences=_sentences(text, gains, breaks, anchor.fraction),
            fixed=fix_reply(rules, text),
            suggestion=suggestion,
            tokens=len(gains.gains),
            duration_s=round(time.monotonic() - started, 2),
            calibration=self.calibration.summary(customer is not None),
        )


def _sentences(
    text: str, gains: TokenGains, breaks: list[RuleSpan], fraction: Callable[[float], float]
) -> list[SentenceCheck]:
    out = []
    for start, end in sentence_spans(text):
        inside = gains.within(start, end)
        gain = statistics.fmean(inside) if inside else None
        mine = [b for b in breaks if b.start is not None and start <= b.start < end]
        out.append(
            SentenceCheck(
                start=start,
                end=end,
                text=text[start:end],
                score=round(100 * fraction(gain)) if gain is not None else None,
                gain=gain,
                breaks=mine,
            )
        )
    return out


def _load_engine(setup: AdapterSetup, say: Progress) -> ChatEngine:
    say("loading model", 0, 1)
    engine = build_engine(setup)
    say("loading model", 1, 1)
    return engine
