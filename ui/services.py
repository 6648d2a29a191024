"""What the browser app is built on: one typed object holding the workspace and the engine hooks.

`build_app(services)` wires every tab to a `Services`. Production code gets one from
`Services.create()`; tests build one with a fake chat engine and fake job starter, so every handler
runs without a model or a training process. Nothing here imports gradio.

One chat model is kept loaded. `start_warm_up` loads and warms it in the background for the brand
the app opens on (the base model and that brand's newest adapter), so the first message does not
wait for loading; a chat request made meanwhile waits for the warm-up rather than loading again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from chatbot import service
from chatbot.service import (
    AdapterSetup,
    BrandVoiceError,
    Run,
    Workspace,
    checkpoint_setup,
    get_run,
    latest_usable_run,
    run_setup,
)

if TYPE_CHECKING:
    from chatbot.engine import Example, GenerationSettings, StopFlag
    from chatbot.service import TokenCounter

__all__ = [
    "Services",
    "ChatBackend",
    "EngineFactory",
    "EngineSpec",
    "WarmUp",
    "QuickCard",
    "QUICK_SCORECARD",
]

log = logging.getLogger("brandvoice.ui")


class ChatBackend(Protocol):
    """The part of `chatbot.engine.ChatEngine` the Compare tab uses."""

    def load_adapter(self, adapter_dir: Path) -> None: ...

    def set_system_prompts(self, system_prompt: str, tuned_system_prompt: str) -> None: ...

    def set_fewshot_examples(self, examples: tuple[Example, ...]) -> None: ...

    def warm_up(self) -> None: ...

    def stream_pair(
        self,
        messages_left: list[dict[str, str]],
        mode_left: str,
        messages_right: list[dict[str, str]],
        mode_right: str,
        settings: GenerationSettings,
        *,
        stop: StopFlag | None = None,
        background: bool = False,
    ) -> Iterator[tuple[str, str]]: ...


@dataclass(frozen=True)
class EngineSpec:
    """What a loaded chat model is: changing any of these means loading another model."""

    base_model: str
    """"default", a local model folder or a hub id, as the run was trained on."""
    quantization: str = "nf4"
    """As the run was trained: the adapter is served on the same kind of base."""
    system_prompt: str = ""
    """The brand's system prompt, for the "prompted" side."""
    tuned_system_prompt: str = ""
    """The system prompt the tuned side gets: the brand's, or "" when it was trained without."""
    fewshot: tuple[Example, ...] = ()
    """Example exchanges for "base + style prompt + examples" (training split only)."""

    @property
    def model(self) -> tuple[str, str]:
        """What is loaded: the prompts are switched on a loaded model, these are not."""
        return (self.base_model, self.quantization)

    @classmethod
    def for_run(cls, ws: Workspace, run_id: str) -> EngineSpec:
        """The model a run's adapter belongs on, and the prompts each side gets."""
        return cls.of(run_setup(ws, run_id))

    @classmethod
    def for_checkpoint(cls, ws: Workspace, run_id: str, checkpoint: Path) -> EngineSpec:
        """As `for_run`, for one of a run's checkpoints (the preview while it trains)."""
        return cls.of(checkpoint_setup(ws, run_id, checkpoint))

    @classmethod
    def of(cls, setup: AdapterSetup) -> EngineSpec:
        return cls(
            base_model=setup.base_model,
            quantization=setup.quantization,
            system_prompt=setup.system_prompt,
            tuned_system_prompt=setup.tuned_system_prompt,
            fewshot=setup.fewshot_examples,
        )


@dataclass(frozen=True)
class WarmUp:
    """Where loading the chat model for the first message stands."""

    state: Literal["idle", "warming", "ready", "failed"] = "idle"
    what: str = ""
    """What is (being) loaded, in words: "Kettlebird (run 20250101-…)" or "the base model"."""
    seconds: float | None = None
    """How long it took, once ready."""
    error: str = ""


@dataclass(frozen=True)
class QuickCard:
    """Where the quick scorecard made after a run stands."""

    state: Literal["running", "done", "failed"]
    started: float
    """time.time() when it started."""
    error: str = ""


QUICK_SCORECARD: dict[str, int] = {
    "max_prompts": 6,
    "max_new_tokens": 48,
    "max_conversations": 24,
    "negatives": 6,
}
"""The quick scorecard's work: a handful of customer turns and short replies, so a finished run
has a first scorecard within a minute or two on a laptop, without anyone starting it."""

EngineFactory = Callable[[EngineSpec], ChatBackend]
"""Loads the base model of a spec, with no adapter yet."""

StartRun = Callable[..., Run]
"""`chatbot.service.start_training(ws, brand, config, preset=...)` or a stand-in with that
signature."""
CancelRun = Callable[[Workspace, str], Run]


def _no_token_counter() -> TokenCounter | None:
    return None


def _no_tokenizer(base_model: str) -> Any | None:
    return None


@dataclass
class Services:
    """Everything the UI's handlers touch outside their own inputs."""

    workspace: Workspace
    engine_factory: EngineFactory
    """Builds a chat engine; the app keeps one alive and switches adapters on it."""
    start_run: StartRun = service.start_training
    cancel_run: CancelRun = service.cancel_training
    token_counter: Callable[[], TokenCounter | None] = _no_token_counter
    """Returns the token counter prepare uses for token statistics (None: words only)."""
    tokenizer: Callable[[str], Any | None] = _no_tokenizer
    """Returns the tokenizer of a base model, which measures a brand's reply lengths (None: the
    replies keep the settings' own length cap)."""
    default_base_model: str = "default"
    """What the Train tab proposes as base model ("default" is the built-in model)."""
    rng: random.Random = field(default_factory=random.Random)
    """Shuffles the sides in blind comparisons (seeded in tests)."""
    evaluate: Callable[..., Any] | None = None
    """Makes a scorecard (`chatbot.scorecard.evaluate` or a stand-in). When set, a run that
    finishes gets a quick scorecard in the background; None (tests): only on request."""
    scorecard_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """One scorecard at a time: each loads a model and uses every core it can get."""
    _quick: dict[str, QuickCard] = field(default_factory=dict, init=False, repr=False)
    _quick_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _engine: tuple[EngineSpec, ChatBackend, Path | None] | None = field(
        default=None, init=False, repr=False
    )
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _warm: WarmUp = field(default_factory=WarmUp, init=False, repr=False)
    _warm_serial: int = field(default=0, init=False, repr=False)
    _warm_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def exports_dir(self) -> Path:
        """The only workspace folder the browser may download from."""
        return self.workspace.root / "exports"

    def engine(self, spec: EngineSpec, adapter_dir: Path | None) -> ChatBackend:
        """The chat engine for `spec` with the adapter in `adapter_dir` loaded (None: any or none).

        One engine is kept: another base model replaces it (the old model is dropped first, so two
        are never held at once); other prompts or another adapter on the same model are switched
        in place, which takes a fraction of a model load.
        """
        with self._engine_lock:
            if self._engine is not None and self._engine[0].model == spec.model:
                old, backend, loaded = self._engine
            else:
                self._engine = None
                old, backend, loaded = spec, self.engine_factory(spec), None
            new_prompts = (old.system_prompt, old.tuned_system_prompt) != (
                spec.system_prompt,
                spec.tuned_system_prompt,
            )
            if old.fewshot != spec.fewshot:
                backend.set_fewshot_examples(spec.fewshot)
                new_prompts = True
            if new_prompts:
                backend.set_system_prompts(spec.system_prompt, spec.tuned_system_prompt)
            if adapter_dir is not None and adapter_dir != loaded:
                backend.load_adapter(adapter_dir)  # warms the new prefixes too
                loaded = adapter_dir
            elif new_prompts:
                backend.warm_up()
            self._engine = (spec, backend, loaded)
            return backend

    @property
    def warm_up_state(self) -> WarmUp:
        """Where the latest warm-up stands."""
        return self._warm

    def start_warm_up(
        self, slug: str | None = None, run_id: str | None = None
    ) -> threading.Thread | None:
        """Load and warm the chat model in the background (see `warm_up`); returns the thread, or
        None when that model is already loaded or being loaded."""
        with self._warm_lock:
            try:
                target = self._warm_target(slug, run_id)
            except BrandVoiceError as exc:  # a broken run or brand.yaml: say so, start anyway
                self._warm_serial += 1
                self._warm = WarmUp("failed", slug or "the first brand", error=str(exc))
                return None
            # Read without the engine lock, which a warm-up holds for as long as loading takes.
            engine, warm = self._engine, self._warm
            loaded = engine is not None and (engine[0], engine[2]) == target[:2]
            if loaded or (warm.state == "warming" and warm.what == target[2]):
                return None
            self._warm_serial += 1
            self._warm = WarmUp("warming", target[2])
            worker = threading.Thread(
                target=self._warm_up,
                args=(target, self._warm_serial),
                name="brandvoice-warm-up",
                daemon=True,
            )
        worker.start()
        return worker

    def warm_up(self, slug: str | None = None, run_id: str | None = None) -> WarmUp:
        """Load the model the Compare tab will chat with first, and run it once.

        That is `run_id`'s adapter, else the newest adapter of `slug` (else of the first brand),
        on its base model; or the default base model alone when no brand has a trained run.
        """
        with self._warm_lock:
            self._warm_serial += 1
            serial = self._warm_serial
        return self._warm_up(self._warm_target(slug, run_id), serial)

    def _warm_up(self, target: tuple[EngineSpec, Path | None, str], serial: int) -> WarmUp:
        spec, adapter, what = target
        started = time.perf_counter()
        self._set_warm(serial, WarmUp("warming", what))
        try:
            self.engine(spec, adapter)
        # Any failure: the app must not show "warming up" for ever. The first chat request
        # loads again and shows the error where it can be read; here it is only logged.
        except Exception as exc:  # noqa: BLE001
            log.warning("Loading the chat model for %s failed", what, exc_info=True)
            return self._set_warm(serial, WarmUp("failed", what, error=str(exc)))
        return self._set_warm(serial, WarmUp("ready", what, time.perf_counter() - started))

    def _set_warm(self, serial: int, state: WarmUp) -> WarmUp:
        # Only the newest warm-up reports: an older one finishing late must not overwrite it.
        with self._warm_lock:
            if serial == self._warm_serial:
                self._warm = state
        return state

    def _warm_target(
        self, slug: str | None, run_id: str | None
    ) -> tuple[EngineSpec, Path | None, str]:
        names = {b["slug"]: b["name"] for b in self.workspace.brands()}
        if slug not in names:
            slug = next(iter(names), None)
        if slug is not None and run_id is None:
            try:
                run_id = latest_usable_run(self.workspace, slug).id
            except BrandVoiceError:
                run_id = None  # no trained run yet: the base model alone
        if slug is None or run_id is None:
            return EngineSpec(self.default_base_model), None, "the base model"
        run = get_run(self.workspace, run_id)
        what = f"{names[slug]} (run {run.id})"
        return EngineSpec.for_run(self.workspace, run.id), run.folder.adapter, what

    def quick_scorecard(self, run_id: str | None) -> QuickCard | None:
        """The quick scorecard of `run_id` made by this app, if one was started."""
        return self._quick.get(run_id or "")

    def start_quick_scorecard(self, run_id: str, run_dir: Path) -> threading.Thread | None:
        """Score a finished run quickly in the background (`QUICK_SCORECARD`), once.

        Nothing happens when no `evaluate` is set, the run has a scorecard already, or one was
        started for it. Returns the thread, if one was started.
        """
        if self.evaluate is None or service.has_scorecard(run_dir):
            return None
        with self._quick_lock:
            if run_id in self._quick:
                return None
            self._quick[run_id] = QuickCard("running", time.time())
        worker = threading.Thread(
            target=self._quick_scorecard,
            args=(run_id, run_dir),
            name="brandvoice-quick-scorecard",
            daemon=True,
        )
        worker.start()
        return worker

    @contextlib.contextmanager
    def one_model_load(
        self, progress: Callable[[str, int, int], None] | None = None
    ) -> Iterator[Callable[[str, int, int], None]]:
        """A progress callback for `chatbot.scorecard.evaluate` that holds the chat engine's lock
        while the scorecard loads its model.

        Loading a model patches how torch creates weights for as long as it runs, for the whole
        process; two loads at once (a scorecard's and the chat's) can leave one model with empty
        weights. So loads take turns; generation afterwards runs side by side.
        """
        held: list[bool] = []

        def report(stage: str, done: int, total: int) -> None:
            if stage == "loading model" and done < total and not held:
                self._engine_lock.acquire()
                held.append(True)
            elif stage == "loading model" and held:
                self._engine_lock.release()
                held.clear()
            if progress is not None:
                progress(stage, done, total)

        try:
            yield report
        finally:
            if held:
                self._engine_lock.release()

    def _quick_scorecard(self, run_id: str, run_dir: Path) -> None:
        from chatbot.service import write_scorecard_report

        assert self.evaluate is not None
        started = self._quick[run_id].started
        try:
            with self.scorecard_lock, self.one_model_load() as progress:
                if not service.has_scorecard(run_dir):  # not made meanwhile by hand
                    card = self.evaluate(
                        self.workspace, run_id, progress=progress, **QUICK_SCORECARD
                    )
                    write_scorecard_report(card, run_dir)
        # Any failure: the tab must not say "being made" for ever; it offers the full one.
        except Exception as exc:  # noqa: BLE001
            log.warning("The quick scorecard of run %s failed", run_id, exc_info=True)
            self._quick[run_id] = QuickCard("failed", started, str(exc))
            return
        self._quick[run_id] = QuickCard("done", started)

    @classmethod
    def create(cls, workspace: str | Path | None = None, base_model: str = "default") -> Services:
        """The production wiring: the real chat engine, real training jobs, real token counts.

        `base_model` is what the Train tab proposes and whose tokenizer counts tokens in prepare.
        """
        return cls(
            workspace=Workspace.open(workspace),
            engine_factory=_real_engine,
            token_counter=_cached_counter(base_model),
            tokenizer=_cached_tokenizers(),
            default_base_model=base_model,
            evaluate=_real_evaluate,
        )


def _real_evaluate(*args: Any, **kwargs: Any) -> Any:
    from chatbot.service import evaluate

    return evaluate(*args, **kwargs)


def _real_engine(spec: EngineSpec) -> ChatBackend:
    from chatbot.engine import ChatEngine

    return ChatEngine(
        spec.base_model,
        None,
        spec.system_prompt,
        tuned_system_prompt=spec.tuned_system_prompt,
        fewshot_examples=spec.fewshot,
        quantization=spec.quantization,
    )


def _cached_tokenizers() -> Callable[[str], Any | None]:
    """Load a base model's tokenizer on first use, then reuse it."""
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def get(base_model: str) -> Any | None:
        with lock:
            if base_model not in cache:
                from transformers import AutoTokenizer

                from chatbot.service import resolve_base_model

                cache[base_model] = AutoTokenizer.from_pretrained(resolve_base_model(base_model))
            return cache[base_model]

    return get


def _cached_counter(base_model: str) -> Callable[[], TokenCounter | None]:
    """Load the base model's tokenizer on the first prepare, then reuse it."""
    cache: list[TokenCounter] = []

    def get() -> TokenCounter | None:
        if not cache:
            cache.append(service.token_counter(base_model))
        return cache[0]

    return get
