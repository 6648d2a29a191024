"""`evaluate()`: one run's scorecard, top to bottom.

Set up (the run, its adapter, the brand's held-out split), load the model once, then measure:
likelihood of the real replies, generated replies, rules, style and readability, and collect the
run's training curve and blind votes. The helpers below each own one of those steps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatbot.brand.profile import BrandProfile
from chatbot.config import TrainConfig
from chatbot.engine import GenerationSettings
from chatbot.engine.fewshot import as_messages
from chatbot.errors import BrandVoiceError
from chatbot.feedback.votes import list_votes, tally
from chatbot.runs.adapters import AdapterSetup, adapter_setup, build_engine
from chatbot.runs.jobs import Run, get_run
from chatbot.scorecard.card import (
    REFERENCE,
    SYSTEMS,
    Example,
    Likelihood,
    Scorecard,
    ScorecardSettings,
    StyleSummary,
    TrainingCurve,
    VoteSummary,
)
from chatbot.scorecard.generation import (
    ReplyEngine,
    Turn,
    cached_base_replies,
    customer_turns,
    generate_replies,
    spread,
    system_rows,
)
from chatbot.scorecard.likelihood import held_out_likelihood, without_system_messages
from chatbot.scorecard.readability import text_stats
from chatbot.scorecard.rules import RuleTally
from chatbot.scorecard.style import MAX_POSITIVES, StyleClassifier
from chatbot.training.data import BrandData, read_brand
from chatbot.training.run_files import read_events
from chatbot.workspace import Workspace

if TYPE_CHECKING:
    from chatbot.engine import ChatEngine

__all__ = ["evaluate", "Progress", "brand_style_classifier"]

Progress = Callable[[str, int, int], None]
"""(stage, done, total), as `brandvoice prepare` reports it; drives a rich bar or gr.Progress."""

_DEFAULTS = ScorecardSettings()


def _silent(_stage: str, _done: int, _total: int) -> None:
    pass


@dataclass
class _Job:
    """Everything `evaluate` needs about the run before any model is loaded."""

    ws: Workspace
    run: Run
    setup: AdapterSetup
    profile: BrandProfile
    config: TrainConfig
    data: BrandData
    turns: list[Turn]
    """The held-out customer turns every system answers."""
    available: int
    """How many held-out customer turns there were before the cap."""
    settings: ScorecardSettings
    generation: GenerationSettings
    systems: tuple[str, ...] = SYSTEMS
    """The systems measured: all of them, unless the brand has no example for the few-shot one."""
    shown: list[dict[str, str]] = field(default_factory=list)
    """The example turns the few-shot system is shown (what fits the model's context)."""

    @property
    def prompts(self) -> dict[str, str]:
        """The system prompt each system gets ("" lets the chat template add its default)."""
        return {
            "base": "",
            "prompted": self.setup.system_prompt,
            "fewshot": self.setup.system_prompt,
            "tuned": self.setup.tuned_system_prompt,
        }


def evaluate(
    ws: Workspace,
    run_id: str,
    *,
    max_prompts: int = _DEFAULTS.max_prompts,
    max_new_tokens: int = _DEFAULTS.max_new_tokens,
    negatives: int = _DEFAULTS.negatives,
    max_conversations: int = _DEFAULTS.max_conversations,
    progress: Progress | None = None,
    engine: ChatEngine | None = None,
) -> Scorecard:
    """Score a finished run against the base model, the prompted base model and the few-shot
    prompted base model (style prompt and brand examples from the training split).

    Loads the run's base model with its adapter once (at the run's quantization), unless an
    `engine` already holding that adapter is passed; it must not serve anyone else meanwhile.
    `progress` is called with (stage, done, total) as work advances. Deterministic: greedy
    decoding, no sampling anywhere, so the same run and settings give the same scorecard.
    """
    started = time.monotonic()
    say = progress or _silent
    settings = ScorecardSettings(
        max_prompts=max_prompts,
        max_new_tokens=max_new_tokens,
        max_conversations=max_conversations,
        negatives=negatives,
    )
    job = _setup(ws, run_id, settings)
    engine = engine or _load_engine(job.setup, say)
    job.shown = as_messages(engine.fewshot_examples)
    job.systems = tuple(s for s in SYSTEMS if s != "fewshot" or job.shown)
    likelihood = _likelihood(engine, job, say)
    replies = _system_replies(engine, job, say)
    classifier, cached = _style_classifier(engine, job, say)
    card = _assemble(job, likelihood, replies, classifier, say)
    card.notes += _notes(job, cached, card.training)
    card.duration_s = round(time.monotonic() - started, 1)
    return card


# -- steps ---------------------------------------------------------------------------------------


def _setup(ws: Workspace, run_id: str, settings: ScorecardSettings) -> _Job:
    run = get_run(ws, run_id)
    setup = adapter_setup(ws, run.id)
    brand_dir = ws.brand_dir(run.brand)
    data = read_brand(brand_dir)
    everything = customer_turns(data.eval, limit=None)
    if not everything:
        raise BrandVoiceError(
            f"Brand '{run.brand}' has no held-out conversation with a customer message and a "
            f"reply ({brand_dir / 'eval.jsonl'}); prepare it again with more conversations."
        )
    generation = GenerationSettings(
        temperature=settings.temperature,
        max_new_tokens=settings.max_new_tokens,
        repetition_penalty=settings.repetition_penalty,
        seed=settings.seed,
    )
    return _Job(
        ws=ws,
        run=run,
        setup=setup,
        profile=BrandProfile.load(brand_dir / "brand.yaml"),
        config=run.folder.read_config(),
        data=data,
        turns=everything[: settings.max_prompts],
        available=len(everything),
        settings=settings,
        generation=generation,
    )


def _load_engine(setup: AdapterSetup, say: Progress) -> ChatEngine:
    say("loading model", 0, 1)
    engine = build_engine(setup)
    say("loading model", 1, 1)
    return engine


def _likelihood(engine: ChatEngine, job: _Job, say: Progress) -> dict[str, Likelihood]:
    conversations = spread(job.data.eval, job.settings.max_conversations)
    total, done = len(job.systems) * len(conversations), [0]

    def step() -> None:
        done[0] += 1
        say("likelihood", done[0], total)

    say("likelihood", 0, total)
    out = {
        system: held_out_likelihood(
            engine.model,
            engine.tokenizer,
            conversations,
            job.prompts[system],
            adapter=system == "tuned",
            max_length=job.config.max_length,
            step=step,
            shown=job.shown if system == "fewshot" else None,
        )
        for system in job.systems
    }
    say("likelihood", total, total)  # conversations too long to score were skipped, not counted
    return out


def _system_replies(engine: ChatEngine, job: _Job, say: Progress) -> dict[str, list[str]]:
    """Each system's reply to each held-out turn."""
    rows = system_rows(job.turns, fewshot="fewshot" in job.systems)
    texts = generate_replies(
        engine, rows, job.generation, lambda done, total: say("replies", done, total)
    )
    replies: dict[str, list[str]] = {system: [] for system in job.systems}
    for (_, mode), text in zip(rows, texts, strict=True):
        replies[mode].append(text)
    return replies


def _style_classifier(engine: ChatEngine, job: _Job, say: Progress) -> tuple[StyleClassifier, bool]:
    """Fit the classifier: brand training replies against base-model replies to training turns."""
    identity = {"base_model": job.setup.base_model, "quantization": job.setup.quantization}
    return brand_style_classifier(
        engine, job.ws, job.run.brand, job.data, identity, job.settings, say
    )


def brand_style_classifier(
    engine: ReplyEngine,
    ws: Workspace,
    brand: str,
    data: BrandData,
    identity: dict[str, str],
    settings: ScorecardSettings = _DEFAULTS,
    progress: Progress | None = None,
) -> tuple[StyleClassifier, bool]:
    """The brand's style classifier: its training replies against the base model's replies to
    training customer turns (kept in the workspace cache per brand, base model and settings).

    `identity` names the base model and quantization the engine runs. Returns the classifier and
    whether the base model's replies came from the cache.
    """
    say = progress or _silent
    train_turns = spread(customer_turns(data.train, limit=None), settings.negatives)
    generation = GenerationSettings(
        temperature=settings.temperature,
        max_new_tokens=settings.max_new_tokens,
        repetition_penalty=settings.repetition_penalty,
        seed=settings.seed,
    )
    negatives, cached = cached_base_replies(
        engine,
        train_turns,
        generation,
        ws.root / "cache" / "scorecard" / brand,
        identity,
        lambda done, total: say("base voice", done, total),
    )
    replies = [
        m["content"]
        for conversation in data.train
        for m in without_system_messages(conversation)
        if m["role"] == "assistant"
    ]
    say("classifier", 0, 1)
    classifier = StyleClassifier.fit(spread(replies, MAX_POSITIVES), negatives, seed=settings.seed)
    say("classifier", 1, 1)
    return classifier, cached


def _assemble(
    job: _Job,
    likelihood: dict[str, Likelihood],
    replies: dict[str, list[str]],
    classifier: StyleClassifier,
    say: Progress,
) -> Scorecard:
    """Score the replies (rules, style, readability) and put every figure in one Scorecard."""
    say("scoring", 0, 1)
    texts = {**replies, REFERENCE: [t.reply for t in job.turns]}
    p_brand = {system: classifier.p_brand(t) for system, t in texts.items()}
    rules = RuleTally(job.profile.rules)
    examples = []
    for i, turn in enumerate(job.turns):
        examples.append(
            Example(
                conversation=turn.conversation,
                turn=turn.turn,
                context=turn.messages,
                reference=turn.reply,
                replies={system: replies[system][i] for system in job.systems},
                p_brand={system: round(p[i], 4) for system, p in p_brand.items()},
                failed_rules={system: rules.add(system, t[i]) for system, t in texts.items()},
            )
        )
    say("scoring", 1, 1)
    return Scorecard(
        run_id=job.run.id,
        brand=job.run.brand,
        brand_name=job.profile.name,
        base_model=job.setup.base_model,
        quantization=job.setup.quantization,
        created=time.time(),
        duration_s=0.0,
        settings=job.settings,
        system_prompts={system: job.prompts[system] for system in job.systems},
        likelihood=likelihood,
        examples=examples,
        rules=rules.per_rule,
        all_rules=rules.all_rules,
        style=_style_summary(p_brand, classifier),
        text={system: text_stats(t) for system, t in texts.items()},
        training=_training_curve(job.run),
        votes=_blind_votes(job.ws, job.run),
        fewshot_examples=[list(job.shown[i : i + 2]) for i in range(0, len(job.shown), 2)],
    )


# -- figures -------------------------------------------------------------------------------------


def _share(pairs: list[tuple[float, float]]) -> float:
    """Share of pairs whose first value is strictly higher (a tie is not a win)."""
    return sum(a > b for a, b in pairs) / len(pairs) if pairs else 0.0


def _style_summary(p_brand: dict[str, list[float]], classifier: StyleClassifier) -> StyleSummary:
    tuned = p_brand["tuned"]
    return StyleSummary(
        mean={s: round(statistics.fmean(p), 4) for s, p in p_brand.items()},
        median={s: round(statistics.median(p), 4) for s, p in p_brand.items()},
        tuned_beats_base=_share(list(zip(tuned, p_brand["base"], strict=True))),
        tuned_beats_prompted=_share(list(zip(tuned, p_brand["prompted"], strict=True))),
        tuned_beats_fewshot=(
            _share(list(zip(tuned, p_brand["fewshot"], strict=True)))
            if "fewshot" in p_brand
            else None
        ),
        positives=classifier.positives,
        negatives=classifier.negatives,
        cv_accuracy=classifier.cv_accuracy,
    )


def _training_curve(run: Run) -> TrainingCurve:
    curve = TrainingCurve()
    for event in read_events(run.run_dir):
        step = event.get("step")
        if step is None:
            continue
        # The final "succeeded" event repeats the last logged loss; only "running" ones count.
        if event.get("state") == "running" and event.get("loss") is not None:
            curve.train.append([step, float(event["loss"])])
        if event.get("state") == "evaluating" and event.get("eval_loss") is not None:
            curve.eval.append([step, float(event["eval_loss"])])
    return curve


def _blind_votes(ws: Workspace, run: Run) -> VoteSummary | None:
    votes = [v for v in list_votes(ws, run.brand, run.id) if v.mode == "blind"]
    if not votes:
        return None
    per_system = tally(votes)
    return VoteSummary(
        votes=len(votes),
        wins={s: t.wins for s, t in per_system.items()},
        losses={s: t.losses for s, t in per_system.items()},
        ties=sum(v.verdict == "tie" for v in votes),
        both_bad=sum(v.verdict == "both_bad" for v in votes),
    )


def _notes(job: _Job, cached: bool, training: TrainingCurve) -> list[str]:
    notes = [
        f"{len(job.turns)} of {job.available} held-out customer turns answered "
        f"(max_prompts={job.settings.max_prompts}), from {len(job.data.eval)} held-out "
        "conversations; each reply sees the conversation up to that turn.",
        f"Replies: greedy decoding, at most {job.settings.max_new_tokens} new tokens, "
        f"repetition penalty {job.settings.repetition_penalty}.",
        f"Likelihood: the model at the run's quantization ({job.setup.quantization}), "
        f"conversations cut to max_length={job.config.max_length} tokens as in training.",
    ]
    scored = min(len(job.data.eval), job.settings.max_conversations)
    if scored < len(job.data.eval):
        notes.append(
            f"Likelihood scored on {scored} of {len(job.data.eval)} held-out conversations, "
            f"evenly spread (max_conversations={job.settings.max_conversations})."
        )
    if training.eval and scored == len(job.data.eval):
        notes.append(
            f"Training's own final eval loss was {training.eval[-1][1]:.3f}: the same measure on "
            "the same split as the tuned NLL here, so the two should agree closely."
        )
    if "fewshot" in job.systems:
        notes.append(
            f"Few-shot: the base model with the style prompt and {len(job.shown) // 2} example "
            "exchanges of the brand, all from the training split (none from the held-out one), as "
            "many as fit in half the model's context."
        )
    else:
        notes.append("No few-shot baseline: the brand has no training exchange to show as one.")
    if cached:
        notes.append("The base model's replies to training prompts came from the workspace cache.")
    return notes
