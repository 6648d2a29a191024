"""The brand score of one text: three parts that add up to 0-100, each on a calibrated scale.

- likelihood (up to 50 points): how much likelier the text is under the tuned model than under
  the base model, in nats per token. The tuned model learned the brand's voice, so a text in that
  voice gains; a text in the base model's voice does not.
- style (up to 30): the style classifier's P(brand voice) (`chatbot.scorecard.style`).
- rules (up to 20): the share of the brand's rules (brand.yaml) the text keeps; every broken rule
  costs its share. A brand without rules gives these points in full.

The likelihood and style parts are calibrated per run (`chatbot.check.calibration`) on two sets of
held-out texts: the brand's own replies and the base model's replies to the same customers. A
part gets 80% of its points where the brand's typical (median) reply sits and 20% where the base
model's typical reply sits, linearly between and beyond, capped at 0 and 100%. So a text that
reads like the brand's usual reply on every part scores about 80 and one that reads like the
untuned model about 20; the calibration reports where both sets really land.

Each part is rounded to whole points and the total is their sum, so the parts shown always add up
to the score shown, and a better value of any part never lowers the score.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "WEIGHTS",
    "BRAND_MARK",
    "BASE_MARK",
    "PART_NAMES",
    "Anchor",
    "Part",
    "BrandScore",
    "brand_score",
]

WEIGHTS: dict[str, int] = {"likelihood": 50, "style": 30, "rules": 20}
"""Points per part. The likelihood gain carries most: it is what the tuned model knows of the voice
beyond surface habits; rules are already fixable by rule (`chatbot.brand.rule_fix`)."""
BRAND_MARK = 0.8
"""Share of a part's points at the brand's typical held-out reply."""
BASE_MARK = 0.2
"""Share of a part's points at the base model's typical reply."""
PART_NAMES = {
    "likelihood": "Sounds like the tuned model",
    "style": "Style classifier",
    "rules": "Brand rules kept",
}


@dataclass(frozen=True)
class Anchor:
    """Where the base model's and the brand's typical held-out texts sit on one raw measure."""

    base: float
    brand: float
    min_spread: float
    """The smallest distance between the two used to scale: a part that barely separates the
    voices on this run then moves the score little instead of jumping from 0 to full."""

    def fraction(self, value: float) -> float:
        """0..1: BASE_MARK at `base`, BRAND_MARK at `brand`, linear between and beyond."""
        spread = max(self.brand - self.base, self.min_spread)
        share = BASE_MARK + (BRAND_MARK - BASE_MARK) * (value - self.base) / spread
        return min(1.0, max(0.0, share))


@dataclass(frozen=True)
class Part:
    """One part of a score: its points out of `max_points` and the raw measure behind them."""

    key: str
    points: int
    max_points: int
    raw: float
    detail: str

    @property
    def name(self) -> str:
        return PART_NAMES[self.key]


@dataclass(frozen=True)
class BrandScore:
    total: int
    parts: list[Part]


def brand_score(
    gain: float,
    p_brand: float,
    rules_kept: int,
    rules_checked: int,
    gain_anchor: Anchor,
    style_anchor: Anchor,
) -> BrandScore:
    """The score of a text from its raw measures: mean likelihood gain per token (nats), P(brand)
    and how many of the rules that apply to it it keeps."""
    kept = rules_kept / rules_checked if rules_checked else 1.0
    parts = [
        Part(
            "likelihood",
            round(WEIGHTS["likelihood"] * gain_anchor.fraction(gain)),
            WEIGHTS["likelihood"],
            gain,
            f"{gain:+.3f} nats per token under the tuned model vs the base",
        ),
        Part(
            "style",
            round(WEIGHTS["style"] * style_anchor.fraction(p_brand)),
            WEIGHTS["style"],
            p_brand,
            f"P(brand voice) {p_brand:.2f}",
        ),
        Part(
            "rules",
            round(WEIGHTS["rules"] * kept),
            WEIGHTS["rules"],
            kept,
            f"{rules_kept} of {rules_checked} rules kept" if rules_checked else "no rules set",
        ),
    ]
    return BrandScore(sum(p.points for p in parts), parts)
