"""What the browser app is built on: one typed object holding the workspace and the engine hooks.

`build_app(services)` wires every tab to a `Services`. Production code gets one from
`Services.create()`; tests build one with a fake chat engine and fake job starter, so every handler
runs without a model or a training process. Nothing here imports gradio.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from chatbot import jobs
from chatbot.workspace import Workspace

if TYPE_CHECKING:
    from chatbot.adapters import AdapterSetup
    from chatbot.engine import GenerationSettings
    from chatbot.fewshot import Example
    from chatbot.validation import TokenCounter

__all__ = ["Services", "ChatBackend", "EngineFactory", "EngineSpec", "engine_spec"]


class ChatBackend(Protocol):
    """The part of `chatbot.engine.ChatEngine` the Compare tab uses."""

    def load_adapter(self, adapter_dir: Path) -> None: ...

    def stream_pair(
        self,
        messages_left: list[dict[str, str]],
        mode_left: str,
        messages_right: list[dict[str, str]],
        mode_right: str,
        settings: GenerationSettings,
        *,
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


def engine_spec(setup: AdapterSetup) -> EngineSpec:
    """The model a run's adapter (or checkpoint) belongs on, and the prompts each side gets.

    Every tab that chats or scores makes its spec here, so they share one loaded model.
    """
    return EngineSpec(
        base_model=setup.base_model,
        quantization=setup.quantization,
        system_prompt=setup.system_prompt,
        tuned_system_prompt=setup.tuned_system_prompt,
        fewshot=setup.fewshot_examples,
    )


EngineFactory = Callable[[EngineSpec], ChatBackend]
"""Loads the base model of a spec, with no adapter yet."""

StartRun = Callable[..., jobs.Run]
"""`chatbot.jobs.start_run(ws, brand, config, preset=...)` or a stand-in with that signature."""
CancelRun = Callable[[Workspace, str], jobs.Run]


def _no_token_counter() -> TokenCounter | None:
    return None


@dataclass
class Services:
    """Everything the UI's handlers touch outside their own inputs."""

    workspace: Workspace
    engine_factory: EngineFactory
    """Builds a chat engine; the app keeps one alive and switches adapters on it."""
    start_run: StartRun = jobs.start_run
    cancel_run: CancelRun = jobs.cancel_run
    token_counter: Callable[[], TokenCounter | None] = _no_token_counter
    """Returns the token counter prepare uses for token statistics (None: words only)."""
    default_base_model: str = "default"
    """What the Train tab proposes as base model ("default" is the built-in model)."""
    rng: random.Random = field(default_factory=random.Random)
    """Shuffles the sides in blind comparisons (seeded in tests)."""
    _engine: tuple[EngineSpec, ChatBackend, Path | None] | None = field(
        default=None, init=False, repr=False
    )
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def exports_dir(self) -> Path:
        """The only workspace folder the browser may download from."""
        return self.workspace.root / "exports"

    def engine(self, spec: EngineSpec, adapter_dir: Path) -> ChatBackend:
        """The chat engine for `spec` with the adapter in `adapter_dir` loaded.

        One engine is kept: another spec replaces it (the old model is dropped first, so two are
        never held at once); another adapter on the same spec is switched in place, which takes a
        fraction of a model load.
        """
        with self._engine_lock:
            if self._engine is not None and self._engine[0] == spec:
                _, backend, loaded = self._engine
            else:
                self._engine = None
                backend, loaded = self.engine_factory(spec), None
            if adapter_dir != loaded:
                backend.load_adapter(adapter_dir)
            self._engine = (spec, backend, adapter_dir)
            return backend

    @classmethod
    def create(cls, workspace: str | Path | None = None, base_model: str = "default") -> Services:
        """The production wiring: the real chat engine, real training jobs, real token counts.

        `base_model` is what the Train tab proposes and whose tokenizer counts tokens in prepare.
        """
        return cls(
            workspace=Workspace.open(workspace),
            engine_factory=_real_engine,
            token_counter=_cached_counter(base_model),
            default_base_model=base_model,
        )


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


def _cached_counter(base_model: str) -> Callable[[], TokenCounter | None]:
    """Load the base model's tokenizer on the first prepare, then reuse it."""
    cache: list[TokenCounter] = []

    def get() -> TokenCounter | None:
        if not cache:
            from transformers import AutoTokenizer

            from chatbot.models import resolve_base_model
            from chatbot.validation import tokenizer_counter

            tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(base_model))
            cache.append(tokenizer_counter(tokenizer))
        return cache[0]

    return get
