"""Did tuning beat the best prompt? The scorecard's verdict, and whether to ship the adapter.

The tuned model is set against the best prompt on each measure: the better of "base + style
prompt" and "base + style prompt + examples" there (usually the latter). The measures are the
held-out likelihood (the brand's real replies, lower NLL is better), the share of replies keeping
every brand rule, the style classifier's mean P(brand), and blind votes where at least
`MIN_VOTES` were cast. A difference within a measure's tolerance counts as a draw.

Ship the adapter when it is better on the held-out likelihood (the one measure taken on the brand's
own replies rather than on generated ones) and worse on none of the others; otherwise the verdict
says which prompt does as well and recommends it, or more data and training, instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.scorecard.card import Scorecard

__all__ = ["Comparison", "Verdict", "verdict", "MIN_VOTES"]

MIN_VOTES = 5
"""Fewer blind votes than this say too little to count."""
_NLL_TOLERANCE = 0.005
"""Relative NLL difference taken as a draw (as in `compare.NLL_TOLERANCE`)."""
_RULES_TOLERANCE = 0.05
_STYLE_TOLERANCE = 0.02
_PROMPTS = {"prompted": "base + style prompt", "fewshot": "base + style prompt + examples"}


@dataclass(frozen=True)
class Comparison:
    """The tuned model against the best prompt on one measure."""

    measure: str
    tuned: float
    prompt: float
    prompt_system: str
    outcome: str
    """"better", "worse" or "draw" (for the tuned model)."""
    detail: str


@dataclass(frozen=True)
class Verdict:
    beat_best_prompt: bool
    ship: bool
    summary: str
    """The verdict in plain words: did tuning beat the best prompt, by how much, ship or not."""
    comparisons: list[Comparison]


def _outcome(gain: float, tolerance: float) -> str:
    return "better" if gain > tolerance else "worse" if gain < -tolerance else "draw"


def _prompts(card: Scorecard) -> list[str]:
    return [s for s in ("prompted", "fewshot") if s in card.systems]


def _likelihood(card: Scorecard) -> Comparison:
    best = min(_prompts(card), key=lambda s: card.likelihood[s].nll)
    tuned, prompt = card.likelihood["tuned"].nll, card.likelihood[best].nll
    change = (prompt - tuned) / prompt if prompt else 0.0
    return Comparison(
        "held-out likelihood",
        tuned,
        prompt,
        best,
        _outcome(change, _NLL_TOLERANCE),
        f"NLL of the brand's real replies {tuned:.3f} vs {prompt:.3f} "
        f"({abs(change):.0%} {'lower' if change >= 0 else 'higher'})",
    )


def _rules(card: Scorecard) -> Comparison | None:
    rates = {s: card.all_rules[s].rate for s in [*_prompts(card), "tuned"] if s in card.all_rules}
    if rates.get("tuned") is None or not any(rates.get(s) is not None for s in _prompts(card)):
        return None  # brand.yaml sets no checkable rule
    best = max((s for s in _prompts(card) if rates.get(s) is not None), key=lambda s: rates[s])
    tuned, prompt = rates["tuned"], rates[best]
    return Comparison(
        "rule pass rate",
        tuned,
        prompt,
        best,
        _outcome(tuned - prompt, _RULES_TOLERANCE),
        f"replies keeping every rule {tuned:.0%} vs {prompt:.0%}",
    )


def _style(card: Scorecard) -> Comparison:
    mean = card.style.mean
    best = max(_prompts(card), key=lambda s: mean.get(s, 0.0))
    tuned, prompt = mean["tuned"], mean.get(best, 0.0)
    return Comparison(
        "style classifier",
        tuned,
        prompt,
        best,
        _outcome(tuned - prompt, _STYLE_TOLERANCE),
        f"mean P(brand voice) {tuned:.2f} vs {prompt:.2f}",
    )


def _votes(card: Scorecard) -> Comparison | None:
    votes = card.votes
    if votes is None or votes.votes < MIN_VOTES:
        return None
    won, lost = votes.wins.get("tuned", 0), votes.losses.get("tuned", 0)
    rival = max(_prompts(card), key=lambda s: votes.wins.get(s, 0) + votes.losses.get(s, 0))
    decided = won + lost
    share = won / decided if decided else 0.5
    return Comparison(
        "blind votes",
        won,
        lost,
        rival,
        _outcome(share - 0.5, 0.05),
        f"won {won}, lost {lost} of {votes.votes} blind votes",
    )


def verdict(card: Scorecard) -> Verdict | None:
    """The verdict of a scorecard that measured the few-shot prompt; None for one that did not."""
    if "fewshot" not in card.systems or "tuned" not in card.systems:
        return None
    found = [_likelihood(card), _rules(card), _style(card), _votes(card)]
    comparisons = [c for c in found if c is not None]
    primary = comparisons[0]
    worse = [c for c in comparisons if c.outcome == "worse"]
    better = [c for c in comparisons if c.outcome == "better"]
    beat = primary.outcome == "better" and not worse
    return Verdict(beat, beat, _summary(beat, better, worse, primary), comparisons)


def _summary(
    beat: bool, better: list[Comparison], worse: list[Comparison], primary: Comparison
) -> str:
    best = _PROMPTS[primary.prompt_system]
    if beat:
        how = "; ".join(c.detail for c in better)
        return f"Tuning beat the best prompt ({best}): {how}. Ship the adapter."
    if worse:
        how = "; ".join(f"{c.measure}: {c.detail}" for c in worse)
        lead = f"Tuning did not beat the best prompt: it does worse on {how}."
    else:
        lead = (
            f"Tuning did not clearly beat the best prompt ({best}): {primary.detail}, no more "
            "than a draw."
        )
    return (
        f"{lead} Don't ship this adapter yet: the prompt does as well, so use it, or train with "
        "more conversations and compare again."
    )
