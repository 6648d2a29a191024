"""Calibrating the brand score on a run: where the brand's own replies and the base's land.

Two sets of texts answer the same held-out customer turns (eval.jsonl, never trained on): the
brand's real replies and the base model's replies (greedy, as the scorecard makes them). Each is
measured as a draft would be, with its customer message and without one; the medians of each set
are the anchors of `chatbot.check.score` (the brand's typical reply at 80% of a part's points, the
base's at 20%). Then both sets are scored on the finished scale, which is what the calibration
reports: where the brand's real replies and the base's replies land, and how often the brand's
reply to a customer outscores the base's reply to the same customer.

A calibration depends on the run's adapter, the brand's data and rules and the scoring settings;
it is kept in the run folder (`check-calibration.json`) with a key of all of them and made again
when any changes. The base model's replies are cached per brand in the workspace.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.brand.profile import BrandRules
from chatbot.brand.rule_check import check_reply
from chatbot.check.likelihood import GainScorer
from chatbot.check.score import WEIGHTS, Anchor, brand_score
from chatbot.engine import GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.scorecard.generation import Turn, cached_base_replies, customer_turns, spread
from chatbot.scorecard.style import StyleClassifier
from chatbot.storage import atomic_write_json

if TYPE_CHECKING:
    from chatbot.engine import ChatEngine

__all__ = [
    "CALIBRATION_FILE",
    "MAX_TURNS",
    "Calibration",
    "Measures",
    "calibrate",
    "load_calibration",
    "measure",
]

CALIBRATION_FILE = "check-calibration.json"
MAX_TURNS = 32
"""Held-out customer turns calibrated on (evenly spread): enough for stable medians, and one base
reply each is the slowest part on a CPU."""
MIN_GAIN_SPREAD = 0.05
"""Nats per token: the least distance the likelihood anchors are scaled by."""
MIN_STYLE_SPREAD = 0.05
"""P(brand): the least distance the style anchors are scaled by."""
_FORMAT = 1
_BASE_REPLY = GenerationSettings(temperature=0.0, max_new_tokens=80, repetition_penalty=1.1)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Measures:
    """The raw measures of one text: everything its score is made of."""

    gain: float
    """Mean likelihood gain per token, tuned over base (nats)."""
    p_brand: float
    rules_kept: int
    rules_checked: int


def measure(
    scorer: GainScorer,
    classifier: StyleClassifier,
    rules: BrandRules,
    text: str,
    customer: str | None,
) -> Measures:
    """Measure one text as the reply to `customer` (None: none given)."""
    results = check_reply(rules, text)
    return Measures(
        gain=scorer.gains(text, customer).mean,
        p_brand=classifier.p_brand([text])[0],
        rules_kept=sum(r.passed for r in results),
        rules_checked=len(results),
    )


@dataclass
class Spread:
    """Where a set of texts lands on the 0-100 scale."""

    scores: list[int]

    @property
    def median(self) -> float:
        return statistics.median(self.scores)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.scores) < 2:
            return (self.scores[0], self.scores[0])
        q = statistics.quantiles(self.scores, n=4, method="inclusive")
        return (q[0], q[2])


@dataclass
class Calibration:
    """The anchors of one run's scale and where the two calibration sets land on it."""

    run_id: str
    turns: int
    gain_with_customer: Anchor
    gain_alone: Anchor
    style: Anchor
    brand: dict[str, Spread]
    """Scores of the brand's held-out replies: "with_customer" and "alone"."""
    base: dict[str, Spread]
    """Scores of the base model's replies to the same turns."""
    brand_beats_base: dict[str, float]
    """Share of turns where the brand's reply outscores the base's (a tie is not a win)."""
    key: str = ""
    created: float = field(default_factory=time.time)

    def gain_anchor(self, with_customer: bool) -> Anchor:
        return self.gain_with_customer if with_customer else self.gain_alone

    def summary(self, with_customer: bool = True) -> str:
        """One sentence on what the scale means for this run."""
        case = "with_customer" if with_customer else "alone"
        brand, base = self.brand[case], self.base[case]
        return (
            f"On this run's scale the brand's own held-out replies score {brand.median:.0f} "
            f"(middle half {brand.quartiles[0]:.0f}-{brand.quartiles[1]:.0f}) and the base "
            f"model's replies {base.median:.0f} ({base.quartiles[0]:.0f}-{base.quartiles[1]:.0f}); "
            f"the brand's reply scores higher for {self.brand_beats_base[case]:.0%} of "
            f"{self.turns} held-out customers."
        )

    def to_dict(self) -> dict:
        return {"format": _FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(
            run_id=data["run_id"],
            turns=int(data["turns"]),
            gain_with_customer=Anchor(**data["gain_with_customer"]),
            gain_alone=Anchor(**data["gain_alone"]),
            style=Anchor(**data["style"]),
            brand={k: Spread(list(v["scores"])) for k, v in data["brand"].items()},
            base={k: Spread(list(v["scores"])) for k, v in data["base"].items()},
            brand_beats_base={k: float(v) for k, v in data["brand_beats_base"].items()},
            key=data["key"],
            created=float(data["created"]),
        )


def calibration_key(run_dir: Path, brand_dir: Path, adapter_dir: Path, rules: BrandRules) -> str:
    """A digest of everything a calibration depends on."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": _FORMAT, "weights": WEIGHTS}).encode())
    digest.update(json.dumps(asdict(rules), sort_keys=True, ensure_ascii=False).encode())
    for path in (brand_dir / "train.jsonl", brand_dir / "eval.jsonl"):
        digest.update(path.read_bytes() if path.is_file() else b"-")
    for path in sorted(Path(adapter_dir).glob("adapter_model.*")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(str(run_dir).encode())
    return digest.hexdigest()[:24]


def load_calibration(run_dir: Path, key: str) -> Calibration | None:
    """The run's saved calibration if it was made for `key`, else None."""
    path = Path(run_dir) / CALIBRATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT or data.get("key") != key:
            return None
        return Calibration.from_dict(data)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # missing, damaged or from another version: calibrate again


def calibrate(
    engine: ChatEngine,
    scorer: GainScorer,
    classifier: StyleClassifier,
    rules: BrandRules,
    held_out: list[list[dict[str, str]]],
    *,
    run_id: str,
    cache_dir: Path,
    identity: dict[str, str],
    key: str,
    progress: Progress | None = None,
) -> Calibration:
    """Calibrate on up to `MAX_TURNS` held-out customer turns of `held_out` (eval.jsonl)."""
    say = progress or (lambda _s, _d, _t: None)
    turns = spread(customer_turns(held_out, limit=None), MAX_TURNS)
    if len(turns) < 2:
        raise BrandVoiceError(
            f"The brand has {len(turns)} held-out customer turn(s) with a reply (eval.jsonl); "
            "at least 2 are needed to calibrate the score. Prepare it with more conversations."
        )
    base_replies, _ = cached_base_replies(
        engine,
        turns,
        _BASE_REPLY,
        cache_dir,
        identity,
        lambda done, total: say("base replies", done, total),
    )
    sets = {"brand": [t.reply for t in turns], "base": base_replies}
    measured: dict[str, dict[str, list[Measures]]] = {}
    total, done = 4 * len(turns), 0
    for name, texts in sets.items():
        for case in ("with_customer", "alone"):
            rows = []
            for turn, text in zip(turns, texts, strict=True):
                customer = _customer(turn) if case == "with_customer" else None
                rows.append(measure(scorer, classifier, rules, text, customer))
                done += 1
                say("calibrating", done, total)
            measured.setdefault(name, {})[case] = rows
    return _finish(measured, run_id, len(turns), key)


def _customer(turn: Turn) -> str:
    return turn.context[-1][1]


def _anchor(base: list[float], brand: list[float], min_spread: float) -> Anchor:
    return Anchor(statistics.median(base), statistics.median(brand), min_spread)


def _finish(
    measured: dict[str, dict[str, list[Measures]]], run_id: str, turns: int, key: str
) -> Calibration:
    brand, base = measured["brand"], measured["base"]
    gains = {
        case: _anchor([m.gain for m in base[case]], [m.gain for m in brand[case]], MIN_GAIN_SPREAD)
        for case in ("with_customer", "alone")
    }
    style = _anchor(
        [m.p_brand for m in base["alone"]], [m.p_brand for m in brand["alone"]], MIN_STYLE_SPREAD
    )
    scores = {
        name: {
            case: [
                brand_score(
                    m.gain, m.p_brand, m.rules_kept, m.rules_checked, gains[case], style
                ).total
                for m in rows
            ]
            for case, rows in cases.items()
        }
        for name, cases in measured.items()
    }
    beats = {
        case: sum(a > b for a, b in zip(scores["brand"][case], scores["base"][case], strict=True))
        / turns
        for case in ("with_customer", "alone")
    }
    return Calibration(
        run_id=run_id,
        turns=turns,
        gain_with_customer=gains["with_customer"],
        gain_alone=gains["alone"],
        style=style,
        brand={case: Spread(s) for case, s in scores["brand"].items()},
        base={case: Spread(s) for case, s in scores["base"].items()},
        brand_beats_base=beats,
        key=key,
    )


def save_calibration(calibration: Calibration, run_dir: Path) -> None:
    atomic_write_json(Path(run_dir) / CALIBRATION_FILE, calibration.to_dict())
