"""Two runs' scorecards side by side: what got worse in the newer run's tuned model.

A regression is a rule whose pass rate dropped, a higher NLL on the held-out replies, or a lower
mean P(brand). Small tolerances keep rounding noise out; a pass rate counts replies, so any drop
is a reply that now breaks the rule and is reported. Scorecards made on different held-out
turns or settings can still be compared; `comparability` says why their figures are not on
exactly the same footing.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.scorecard.card import Scorecard

__all__ = [
    "Regression",
    "compare_scorecards",
    "comparability",
    "NLL_TOLERANCE",
    "P_BRAND_TOLERANCE",
]

NLL_TOLERANCE = 0.005
"""Relative NLL rise ignored (0.5%): below what a retrained run's noise moves it."""
P_BRAND_TOLERANCE = 0.01
"""Drop in mean P(brand) ignored."""


@dataclass(frozen=True)
class Regression:
    """One measure that got worse from the old run to the new one (tuned model)."""

    metric: str
    """"rule:<id>", "nll" or "p_brand"."""
    old: float | None
    new: float | None
    detail: str


def compare_scorecards(new: Scorecard, old: Scorecard) -> list[Regression]:
    """What the new run's tuned model does worse than the old run's; empty when nothing does."""
    out = _rule_regressions(new, old)
    old_nll, new_nll = old.likelihood["tuned"].nll, new.likelihood["tuned"].nll
    if new_nll > old_nll * (1 + NLL_TOLERANCE):
        out.append(
            Regression(
                "nll",
                old_nll,
                new_nll,
                f"NLL of the held-out replies rose from {old_nll:.3f} to {new_nll:.3f} per token",
            )
        )
    old_p, new_p = old.style.mean["tuned"], new.style.mean["tuned"]
    if new_p < old_p - P_BRAND_TOLERANCE:
        out.append(
            Regression(
                "p_brand", old_p, new_p, f"mean P(brand voice) fell from {old_p:.2f} to {new_p:.2f}"
            )
        )
    return out


def _rule_regressions(new: Scorecard, old: Scorecard) -> list[Regression]:
    out = []
    for rule in sorted(set(new.rules) & set(old.rules)):
        before, after = old.rules[rule].get("tuned"), new.rules[rule].get("tuned")
        if not before or not after or before.rate is None or after.rate is None:
            continue
        if after.rate < before.rate:
            out.append(
                Regression(
                    f"rule:{rule}",
                    before.rate,
                    after.rate,
                    f"{rule}: passed by {after.passed}/{after.total} replies, was "
                    f"{before.passed}/{before.total} ({before.rate:.0%} → {after.rate:.0%})",
                )
            )
    return out


def comparability(new: Scorecard, old: Scorecard) -> list[str]:
    """Why two scorecards' figures are not on the same footing; empty when they are."""
    same_turns = [(e.conversation, e.turn, e.reference) for e in new.examples] == [
        (e.conversation, e.turn, e.reference) for e in old.examples
    ]
    reasons = []
    if new.brand != old.brand:
        reasons.append(f"they score different brands ({old.brand}, {new.brand})")
    if not same_turns:
        reasons.append("they answered different held-out turns (was the brand prepared again?)")
    if new.settings != old.settings:
        reasons.append("they used different scorecard settings")
    return reasons
