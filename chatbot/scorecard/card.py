"""The scorecard as data: its settings, every measured figure, and its JSON form.

A `Scorecard` is what `evaluate()` returns and what `scorecard.json` holds; `load_scorecard` reads
one back (to compare two runs without evaluating the older one again). Nothing here measures.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError

__all__ = [
    "SYSTEMS",
    "REFERENCE",
    "SCORECARD_FILE",
    "ScorecardSettings",
    "Likelihood",
    "RuleRate",
    "Example",
    "StyleSummary",
    "TextStats",
    "VoteSummary",
    "TrainingCurve",
    "Scorecard",
    "load_scorecard",
]

SYSTEMS: tuple[str, ...] = ("base", "prompted", "fewshot", "tuned")
"""The systems a scorecard compares, in display order. "fewshot" (base + style prompt + brand
examples, the strongest prompt) is absent from scorecards made before it existed, and from those
of brands without a usable example: `Scorecard.systems` lists a card's own."""
REFERENCE = "reference"
"""The brand's own held-out replies, scored alongside the systems where that means something."""
SCORECARD_FILE = "scorecard.json"
_FORMAT = 1
"""Bumped when the JSON layout changes incompatibly; older files are then evaluated afresh."""


@dataclass(frozen=True)
class ScorecardSettings:
    """How much work a scorecard does and how its replies are generated."""

    max_prompts: int = 40
    """Held-out customer turns answered by each system (the first turns of every conversation
    first, so a cap still covers as many conversations as possible)."""
    max_new_tokens: int = 80
    """Each generated reply stops after this many tokens."""
    max_conversations: int = 200
    """Held-out conversations whose real replies are scored for likelihood (evenly spread)."""
    negatives: int = 32
    """Base-model replies to training prompts that teach the style classifier the base voice."""
    temperature: float = 0.0
    """0: greedy decoding, so the replies do not depend on the seed."""
    repetition_penalty: float = 1.1
    """As in chat: small models repeat themselves under greedy decoding without it."""
    seed: int = 0
    """Seed of generation (used only when temperature is above 0)."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_prompts", "max_new_tokens", "max_conversations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}: must be a whole number of 1 or more, got {value!r}")
        if not isinstance(self.negatives, int) or self.negatives < 2:
            problems.append(f"negatives: must be a whole number of 2 or more, got {self.negatives}")
        if problems:
            raise ConfigError(problems, source="scorecard settings")


@dataclass
class Likelihood:
    """How well a system predicts the brand's real held-out replies, per assistant token."""

    nll: float
    """Mean negative log-likelihood (nats per assistant token)."""
    perplexity: float
    tokens: int
    """Assistant tokens scored."""
    conversations: int


@dataclass
class RuleRate:
    passed: int = 0
    total: int = 0

    @property
    def rate(self) -> float | None:
        return self.passed / self.total if self.total else None


@dataclass
class Example:
    """One held-out customer turn, the brand's real reply and each system's reply to it."""

    conversation: int
    """Index of the conversation in eval.jsonl (0-based)."""
    turn: int
    """Which assistant turn of that conversation (0-based)."""
    context: list[dict[str, str]]
    """The conversation up to the reply, ending with the customer's message."""
    reference: str
    replies: dict[str, str]
    p_brand: dict[str, float] = field(default_factory=dict)
    """P(brand voice) of each reply and of the reference, from the style classifier."""
    failed_rules: dict[str, list[str]] = field(default_factory=dict)
    """Rules each reply (and the reference) broke."""


@dataclass
class StyleSummary:
    mean: dict[str, float]
    """Mean P(brand) per system and for the reference replies."""
    median: dict[str, float]
    tuned_beats_base: float
    """Share of prompts where the tuned reply gets a higher P(brand) than the base reply."""
    tuned_beats_prompted: float
    positives: int
    """Brand training replies the classifier learned from."""
    negatives: int
    """Base-model replies the classifier learned from."""
    cv_accuracy: float | None
    """Cross-validated balanced accuracy of the classifier on its own training replies (None: too
    few to tell); near 0.5 means the two voices barely differ and P(brand) says little."""
    tuned_beats_fewshot: float | None = None
    """As `tuned_beats_prompted`, against the few-shot prompt (None: not measured)."""


@dataclass
class TextStats:
    replies: int
    words_mean: float
    words_median: float
    words_p10: float
    words_p90: float
    flesch_mean: float | None
    """Mean Flesch reading ease (higher is easier; 60-70 is plain English)."""
    flesch_median: float | None


@dataclass
class VoteSummary:
    """Blind votes cast in the Compare tab for this run."""

    votes: int
    wins: dict[str, int]
    losses: dict[str, int]
    ties: int
    both_bad: int


@dataclass
class TrainingCurve:
    train: list[list[float]] = field(default_factory=list)
    """[step, training loss] pairs."""
    eval: list[list[float]] = field(default_factory=list)
    """[step, eval loss] pairs (mean NLL per assistant token of the held-out split)."""


@dataclass
class Scorecard:
    """Base, prompted and tuned compared on a brand's held-out conversations."""

    run_id: str
    brand: str
    brand_name: str
    base_model: str
    quantization: str
    created: float
    duration_s: float
    settings: ScorecardSettings
    system_prompts: dict[str, str]
    """What each system was given as system prompt ("" for none)."""
    likelihood: dict[str, Likelihood]
    examples: list[Example]
    rules: dict[str, dict[str, RuleRate]]
    """Rule id -> system (and "reference") -> pass count."""
    all_rules: dict[str, RuleRate]
    """Replies that passed every rule, per system and for the reference."""
    style: StyleSummary
    text: dict[str, TextStats]
    training: TrainingCurve
    votes: VoteSummary | None = None
    notes: list[str] = field(default_factory=list)
    """What a reader should know about how the figures were made (caps, cache use, cuts)."""
    fewshot_examples: list[list[dict[str, str]]] = field(default_factory=list)
    """The example exchanges the "fewshot" system was shown, all from the training split."""
    format: int = _FORMAT

    @property
    def systems(self) -> list[str]:
        """The systems this scorecard measured, in display order."""
        return [s for s in SYSTEMS if s in self.likelihood]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scorecard:
        return _build(cls, data)


def load_scorecard(run_dir: Path) -> Scorecard | None:
    """The scorecard saved in a run folder, or None if there is none (or an outdated one)."""
    path = Path(run_dir) / SCORECARD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None
    try:
        return Scorecard.from_dict(data)
    except (TypeError, KeyError, ValueError, ConfigError):
        return None  # written by another version: the caller evaluates again


def _build(hint: Any, value: Any) -> Any:
    """Rebuild `value` (parsed JSON) as the type `hint`: dataclasses, dicts, lists, optionals."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint) if f.init}
        return hint(**{k: _build(hints[k], v) for k, v in value.items() if k in names})
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _build(inner[0], value)
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _build(item, v) for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_build(item, v) for v in value]
    return value
