"""The chat engine: one loaded base model, one LoRA adapter on it, and replies streamed as text.

A reply is asked for in one of three modes:

- "base": the conversation as is. No system message is added, so the base model's chat template
  adds its own default one if it has one (SmolLM2's says "You are a helpful AI assistant named
  SmolLM, trained by Hugging Face"): that is what the base model does out of the box.
- "prompted": the brand's system prompt first, adapter off: what prompting alone achieves.
- "fewshot": the brand's system prompt and k of its example exchanges (`chatbot.engine.fewshot`)
  before the conversation, adapter off: the strongest prompt, the baseline tuning must beat. k is as
  many of the given examples as fit in a share of the context window (`FEWSHOT_CONTEXT_SHARE`).
- "tuned": the adapter on, with the system prompt the brand was trained with (`tuned_system_prompt`;
  empty means none, which again lets the template add its default, as it did in training).

Base and tuned replies come from the same weights: the adapter is switched on and off on the one
loaded model, never loaded twice. `stream_pair` answers two panes in one batched `generate` (run in
a worker thread, its tokens decoded as they come), each row with its own adapter or none: through
`fast_lora` for plain LoRA adapters, else PEFT's mixed-adapter batches (`adapter_names=`), else one
pane after the other. The system block of each mode is computed once and reused (`prefix_cache`).
Requests take turns on the model (`turns`); `exclusive()` lets other work (scoring a text) take one
too. A caller's `StopFlag` ends one row's reply or all of them; `GenerationSettings.signoff` ends a
row after the line with the brand's sign-off. A `background` request generates in one thread at the
lowest CPU priority (`priority`), so a training run on the same machine keeps its speed. The engine
knows nothing of the browser or terminal.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import typing
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from chatbot.engine.fast_lora import row_slice_lora, supports
from chatbot.engine.fewshot import Example, as_messages
from chatbot.engine.prefix_cache import (
    MIN_PREFIX,
    KeyValues,
    PrefixStore,
    Prompt,
    batch_inputs,
    common_prefix,
    prefix_states,
)
from chatbot.engine.priority import lower_this_thread
from chatbot.engine.settings import GenerationSettings
from chatbot.engine.streaming import IncrementalDecoder, SignoffEnd, StopFlag, TokenQueueStreamer
from chatbot.engine.turns import Ticket, TurnQueue
from chatbot.errors import BrandVoiceError
from chatbot.types import ChatMode

if TYPE_CHECKING:
    from chatbot.models import Quantization

__all__ = ["ChatEngine", "MODES", "Mode", "FEWSHOT_CONTEXT_SHARE"]

Mode = ChatMode
MODES: tuple[str, ...] = typing.get_args(ChatMode)
FEWSHOT_CONTEXT_SHARE = 0.5
"""The few-shot examples may fill this share of the context window; the conversation and the reply
keep the rest."""

# PEFT's name for "no adapter" in a mixed-adapter batch.
_NO_ADAPTER = "__base__"


@dataclass(frozen=True)
class _Pass:
    """One `generate` call: which of the caller's rows it answers, and which rows are tuned."""

    rows: list[int]
    tuned: list[bool]


@dataclass(frozen=True)
class _Done:
    """Queued after the last tokens of a job; carries the error that ended it, if any."""

    error: BaseException | None = None


class ChatEngine:
    """Streams replies from one base model with a switchable LoRA adapter. Thread-safe."""

    def __init__(
        self,
        base_model: str | Path | None,
        adapter_dir: Path | None,
        system_prompt: str = "",
        *,
        tuned_system_prompt: str | None = None,
        fewshot_examples: Sequence[Example] = (),
        quantization: Quantization = "nf4",
        max_waiting: int = 8,
        device: str | torch.device | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        """Load `base_model` (None: the default model) and, if given, the adapter in `adapter_dir`.

        `quantization` is "nf4" (4-bit, as trained with QLoRA) or "none". `max_waiting` is how many
        requests may queue behind the running one before new ones are refused as busy. `device` and
        `compute_dtype` default to what `chatbot.models.load_base_model` picks (bf16 where native).
        `fewshot_examples` are the candidates for the "fewshot" mode, best first.
        """
        from chatbot.models import load_base_model

        if max_waiting < 0:
            raise BrandVoiceError(f"max_waiting must be 0 or more, got {max_waiting}.")
        model, tokenizer = load_base_model(
            base_model,
            quantization=quantization,
            compute_dtype=compute_dtype,
            device=device,
        )
        # Never trained here: eval mode turns dropout off, and on CPUs with AVX512-BF16 it lets
        # bitsandbytes repack 4-bit weights for its fast inference kernel on the first forward.
        model.eval()
        self._model: Any = model
        self._tokenizer: Any = tokenizer
        self.system_prompt = system_prompt
        self.tuned_system_prompt = (
            system_prompt if tuned_system_prompt is None else tuned_system_prompt
        )
        self._turns = TurnQueue(max_waiting)
        self._adapter: str | None = None
        self._adapter_dir: Path | None = None
        self._adapter_serial = 0
        self._tuned_template: str | None = None
        self._fast_lora = False
        """Whether the loaded adapter runs through `fast_lora` instead of PEFT's forward."""
        self._prefixes: dict[tuple[str, str | None, tuple], list[int]] = {}
        self._costs: dict[tuple, tuple[float, float]] = {}
        self._prefix_states = PrefixStore()
        self._stop_ids = _stop_token_ids(model, tokenizer)
        self._pad_id = _pad_token_id(tokenizer, self._stop_ids)
        self._fewshot = self._fit_examples(list(fewshot_examples))
        if adapter_dir is not None:
            self.load_adapter(adapter_dir)
        else:
            self.warm_up()

    # ------------------------------------------------------------------------------------------
    # What callers see
    # ------------------------------------------------------------------------------------------

    @property
    def model(self) -> torch.nn.Module:
        """The loaded model (a PEFT model once an adapter is loaded); read it, do not change it."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def adapter_dir(self) -> Path | None:
        """The folder of the loaded adapter, or None."""
        return self._adapter_dir

    @property
    def fewshot_examples(self) -> list[Example]:
        """The example exchanges the "fewshot" mode shows the model: those that fit its context."""
        return list(self._fewshot)

    @property
    def pending(self) -> int:
        """Requests generating or waiting for the model right now."""
        return self._turns.pending

    def load_adapter(self, adapter_dir: Path) -> None:
        """Switch the tuned mode to the adapter in `adapter_dir`, replacing the loaded one.

        Waits for the requests already in line. The new adapter is loaded next to the old one and
        only then made active and the old one deleted, so a broken adapter leaves the old in place.
        """
        adapter_dir = Path(adapter_dir)
        config_file = adapter_dir / "adapter_config.json"
        if not config_file.is_file():
            raise BrandVoiceError(
                f"{adapter_dir} holds no adapter: adapter_config.json is missing. Pass a run's "
                "adapter/ folder."
            )
        template = _chat_template_of(adapter_dir)
        with self._turns.exclusive():
            self._attach_adapter(adapter_dir)
            self._adapter_dir = adapter_dir
            self._tuned_template = template
        self.warm_up()

    def set_system_prompts(self, system_prompt: str, tuned_system_prompt: str) -> None:
        """Give the prompted and tuned modes other system prompts (another brand, same model).

        Takes effect for requests made from now on; call `warm_up` to compute their prefixes
        before the first such request rather than during it.
        """
        self.system_prompt = system_prompt
        self.tuned_system_prompt = tuned_system_prompt

    def set_fewshot_examples(self, examples: Sequence[Example]) -> None:
        """Give the "fewshot" mode other example candidates (another brand); as many as fit are
        kept. Takes effect as `set_system_prompts` does."""
        self._fewshot = self._fit_examples(list(examples))

    def warm_up(self) -> None:
        """Compute each mode's system prefix now, so the first reply starts as soon as later ones.

        On CPU this is also the first 4-bit forward, in which bitsandbytes repacks the weights for
        its inference kernel. Called on loading; call again after changing a system prompt.
        """
        sample = [{"role": "user", "content": "Hello"}]
        modes = [mode for mode in MODES if self._mode_available(mode)]
        short = GenerationSettings(max_new_tokens=1)
        prompts = [self._prompt_ids(sample, mode, short) for mode in modes]
        with self._turns.exclusive():
            for prompt, mode in zip(prompts, modes, strict=True):
                self._prefix_state(prompt, tuned=mode == "tuned")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the model for work outside generation (scoring a text with `model`): waits for the
        requests already in line, and no reply starts until the block ends."""
        with self._turns.exclusive():
            yield

    def stream(
        self,
        messages: list[dict[str, str]],
        mode: str,
        settings: GenerationSettings | None = None,
        *,
        stop: StopFlag | None = None,
        background: bool = False,
    ) -> Iterator[str]:
        """Stream the reply to `messages` (user/assistant turns, the last a user's) as text deltas.

        Raises BusyError when too many requests wait, BrandVoiceError when the request is invalid.
        Closing the iterator early, or setting `stop` from another thread, stops generation after
        the current step; a request still waiting for the model when `stop` is set leaves the line
        at once. `background`: generate in one thread at the lowest CPU priority (slower, but a
        training run nearby keeps its speed).
        """
        settings = settings or GenerationSettings()
        prompt = self._prompt_ids(messages, mode, settings)
        for (delta,) in self._run([prompt], [mode], settings, stop or StopFlag(), background):
            yield delta

    def stream_pair(
        self,
        messages_left: list[dict[str, str]],
        mode_left: str,
        messages_right: list[dict[str, str]],
        mode_right: str,
        settings: GenerationSettings | None = None,
        *,
        stop: StopFlag | None = None,
        background: bool = False,
    ) -> Iterator[tuple[str, str]]:
        """Stream two replies at once as (left delta, right delta) pairs; either may be "".

        Both rows go through one batched `generate`, each with its own adapter (or none), so the
        panes fill in together and the pair costs little more than one reply. `stop.set(0)` or
        `stop.set(1)` from another thread ends one side's reply while the other goes on.
        `background` as for `stream`.
        """
        settings = settings or GenerationSettings()
        prompts = [
            self._prompt_ids(messages_left, mode_left, settings),
            self._prompt_ids(messages_right, mode_right, settings),
        ]
        modes = [mode_left, mode_right]
        stop = stop or StopFlag()
        yield from self._run(prompts, modes, settings, stop, background)  # type: ignore[misc]

    def reply(
        self, messages: list[dict[str, str]], mode: str, settings: GenerationSettings | None = None
    ) -> str:
        """The whole reply at once (evaluation and scripts)."""
        return "".join(self.stream(messages, mode, settings))

    def render_prompt(
        self, messages: list[dict[str, str]], mode: str, settings: GenerationSettings | None = None
    ) -> str:
        """The exact prompt text the model is given for `mode`, special tokens included."""
        prompt = self._prompt_ids(messages, mode, settings or GenerationSettings())
        return self._tokenizer.decode(prompt.ids, skip_special_tokens=False)

    # ------------------------------------------------------------------------------------------
    # Prompts
    # ------------------------------------------------------------------------------------------

    def _prompt_ids(
        self, messages: list[dict[str, str]], mode: str, settings: GenerationSettings
    ) -> Prompt:
        """The chat-templated prompt for `mode`, cut to fit the context window (oldest turns go)."""
        _check_messages(messages)
        if mode not in MODES:
            raise BrandVoiceError(f"Unknown chat mode {mode!r}; use one of {', '.join(MODES)}.")
        if not self._mode_available(mode):
            raise BrandVoiceError(
                "No adapter is loaded, so there is no tuned model to chat with."
                if mode == "tuned"
                else "The brand has no example conversations to show the model (few-shot)."
            )
        system = self.tuned_system_prompt if mode == "tuned" else self.system_prompt
        system = "" if mode == "base" else system
        template = self._tuned_template if mode == "tuned" else None
        lead = as_messages(self._fewshot) if mode == "fewshot" else []
        window = _context_length(self._model)
        # Room kept for the reply. A reply asked to be as long as the window would leave none for
        # the conversation: at most half the window is kept free, and `_generate` ends a reply
        # where the window does.
        reserve = min(settings.max_new_tokens, window // 2)
        limit = window - reserve
        turns, ids = self._fit(list(messages), system, template, limit, lead)
        if len(ids) > limit:
            raise BrandVoiceError(
                f"The message is too long: its prompt takes {len(ids)} tokens and the reply up "
                f"to {reserve}, over the model's {window}. Shorten the message or lower max "
                "new tokens."
            )
        shared = self._shared_prefix(system, template, lead)
        prefix = len(shared) if ids[: len(shared)] == shared else 0
        return Prompt(ids, prefix)

    def _fit(
        self,
        turns: list[dict[str, str]],
        system: str,
        template: str | None,
        limit: int,
        lead: list[dict[str, str]],
    ) -> tuple[list[dict[str, str]], list[int]]:
        """The newest turns whose prompt (after `lead`) fits in `limit` tokens, and its ids.

        The oldest exchange goes first, and the conversation still starts with a user turn; the
        last user turn alone is the floor (its prompt may still be too long). Each turn is
        tokenized once to estimate where to cut, and only prompts of about `limit` tokens are
        rendered to confirm it, so the work grows with the conversation, not with its square.
        """

        def render(start: int) -> list[int]:
            return self._template(lead + turns[start:], system, template)

        starts = _cut_points(len(turns))
        # A conversation of more than a few characters per token of the window cannot fit: skip
        # rendering all of it (a long request would be tokenized whole for nothing).
        if sum(len(m["content"]) for m in turns) <= 4 * limit:
            ids = render(0)
            if len(ids) <= limit or len(starts) == 1:
                return turns, ids
        fixed, per_turn = self._template_cost(system, template, lead)
        sizes = [len(self._tokenizer.encode(m["content"], add_special_tokens=False)) for m in turns]
        after = [*itertools.accumulate(reversed(sizes))][::-1]  # tokens from each turn on
        estimates = [fixed + per_turn * (len(turns) - start) + after[start] for start in starts]
        # The first cut estimated to fit, then confirmed: later cuts while the prompt is too long,
        # earlier ones while it still fits (the estimate is off by a few tokens at most).
        at = next((i for i, estimate in enumerate(estimates) if estimate <= limit), len(starts) - 1)
        ids = render(starts[at])
        while len(ids) > limit and at + 1 < len(starts):
            at += 1
            ids = render(starts[at])
        while at > 0 and len(ids) <= limit:
            wider = render(starts[at - 1])
            if len(wider) > limit:
                break
            at, ids = at - 1, wider
        return turns[starts[at] :], ids

    def _template_cost(
        self, system: str, template: str | None, lead: list[dict[str, str]]
    ) -> tuple[float, float]:
        """Tokens a prompt has beyond its turns' own: (fixed part, per turn), from empty turns."""
        key = (system, template, tuple((m["role"], m["content"]) for m in lead))
        if key not in self._costs:
            empty = [{"role": r, "content": ""} for r in ("user", "assistant", "user")]
            one = len(self._template(lead + empty[:1], system, template))
            three = len(self._template(lead + empty, system, template))
            per_turn = (three - one) / 2
            self._costs[key] = (one - per_turn, per_turn)
        return self._costs[key]

    def _shared_prefix(
        self, system: str, template: str | None, lead: list[dict[str, str]]
    ) -> list[int]:
        """The ids every prompt with this system prompt (and these leading example turns) starts
        with, as far as the first user words of the conversation.

        Found by rendering two different one-line conversations and keeping what they share, which
        works for any chat template.
        """
        key = (system, template, tuple((m["role"], m["content"]) for m in lead))
        if key not in self._prefixes:
            one = self._template([*lead, {"role": "user", "content": "a"}], system, template)
            two = self._template([*lead, {"role": "user", "content": "z"}], system, template)
            self._prefixes[key] = one[: common_prefix(one, two)]
        return self._prefixes[key]

    def _mode_available(self, mode: str) -> bool:
        return {"tuned": self._adapter is not None, "fewshot": bool(self._fewshot)}.get(mode, True)

    def _fit_examples(self, candidates: list[Example]) -> list[Example]:
        """As many of the candidates, in order, as fit in `FEWSHOT_CONTEXT_SHARE` of the context."""
        budget = int(_context_length(self._model) * FEWSHOT_CONTEXT_SHARE)
        kept: list[Example] = []
        for example in candidates:
            shown = as_messages([*kept, example])
            if len(self._template(shown, self.system_prompt, None)) > budget:
                break
            kept.append(example)
        return kept

    def _template(
        self, turns: list[dict[str, str]], system: str, template: str | None
    ) -> list[int]:
        conversation = [{"role": "system", "content": system}] if system else []
        conversation += [{"role": m["role"], "content": m["content"]} for m in turns]
        # Render to text, then encode without padding: the Rust tokenizer keeps padding settings as
        # shared state, so padding here would race between concurrent requests.
        try:
            text = self._tokenizer.apply_chat_template(
                conversation, chat_template=template, add_generation_prompt=True, tokenize=False
            )
        except ValueError as exc:  # the tokenizer has no chat template at all
            raise BrandVoiceError(
                f"The base model's tokenizer has no chat template, so it cannot chat: {exc}"
            ) from exc
        return self._tokenizer.encode(text, add_special_tokens=False)

    # ------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------

    def _run(
        self,
        prompts: list[Prompt],
        modes: Sequence[str],
        settings: GenerationSettings,
        stop: StopFlag,
        background: bool = False,
    ) -> Iterator[tuple[str, ...]]:
        """Queue one job for the model and stream its rows' text deltas as they are decoded."""
        passes = self._plan(modes)
        ticket = self._turns.enter()
        out: queue.Queue = queue.Queue()
        stop.on_set(ticket.cancel)  # a stop while waiting leaves the line at once
        worker = threading.Thread(
            target=self._work,
            args=(ticket, prompts, passes, settings, stop, out, background),
            name="brandvoice-generate",
            daemon=True,
        )
        worker.start()
        try:
            yield from self._decode(out, len(prompts), settings, stop)
        finally:
            # Reached when the reply ends and when the reader stops early (the generator is closed
            # or collected): either way, generation stops after the current step.
            stop.set()
            ticket.cancel()

    def _plan(self, modes: Sequence[str]) -> list[_Pass]:
        """One batched pass for all rows, base rows first so the tuned rows form one slice."""
        tuned = [mode == "tuned" for mode in modes]
        order = sorted(range(len(modes)), key=lambda row: tuned[row])
        if self._fast_lora or len(set(tuned)) <= 1 or self._mixed_batches_supported():
            return [_Pass(order, [tuned[row] for row in order])]
        # Fallback: an adapter type without PEFT's mixed-adapter batches answers row by row, one
        # `generate` after the other, so the second pane starts when the first has finished.
        return [_Pass([row], [tuned[row]]) for row in range(len(modes))]

    def _mixed_batches_supported(self) -> bool:
        from peft import PeftModel, PeftType

        if not isinstance(self._model, PeftModel) or self._adapter is None:
            return False
        # PEFT implements per-row adapters (`adapter_names=`) for LoRA layers, 4-bit ones included.
        return self._model.peft_config[self._adapter].peft_type == PeftType.LORA

    def _work(
        self,
        ticket: Ticket,
        prompts: list[Prompt],
        passes: list[_Pass],
        settings: GenerationSettings,
        stop: StopFlag,
        out: queue.Queue,
        background: bool = False,
    ) -> None:
        """The worker thread: wait for the model, run each pass, then mark the job done."""
        error: BaseException | None = None
        if background:
            lower_this_thread()  # the thread ends with the job, and its priority with it
        try:
            with self._turns.turn(ticket) as go:
                for step in passes if go else []:
                    if all(stop.is_set(row) for row in step.rows):
                        continue
                    self._generate([prompts[r] for r in step.rows], step, settings, stop, out)
        except Exception as exc:  # re-raised in the reader's thread, where it can be reported
            error = exc
        finally:
            out.put(_Done(error))

    def _generate(
        self,
        prompts: list[Prompt],
        step: _Pass,
        settings: GenerationSettings,
        stop: StopFlag,
        out: queue.Queue,
    ) -> None:
        from transformers import StoppingCriteriaList

        states = [self._prefix_state(p, t) for p, t in zip(prompts, step.tuned, strict=True)]
        inputs = batch_inputs(
            prompts, states, self._pad_id, self._model.config, _device_of(self._model)
        )
        if len(set(step.tuned)) > 1 and not self._fast_lora:
            inputs["adapter_names"] = [self._adapter if t else _NO_ADAPTER for t in step.tuned]
        # Seeded inside the turn, so no other request draws from the generator in between.
        torch.manual_seed(settings.seed)
        room = _context_length(self._model) - max(len(p.ids) for p in prompts)
        settings = replace(settings, max_new_tokens=max(1, min(settings.max_new_tokens, room)))
        with torch.inference_mode(), self._adapter_state(step.tuned):
            self._model.generate(
                **inputs,
                generation_config=self._generation_config(settings),
                streamer=TokenQueueStreamer(out, step.rows),
                stopping_criteria=StoppingCriteriaList([stop.criteria(step.rows)]),
            )

    def _prefix_state(self, prompt: Prompt, tuned: bool) -> KeyValues | None:
        """The cached keys and values of the prompt's shared prefix, computed on first use."""
        if prompt.prefix < MIN_PREFIX:
            return None
        key = (self._adapter if tuned else None, *prompt.ids[: prompt.prefix])
        states = self._prefix_states.get(key)
        if states is None:
            ids = torch.tensor([prompt.ids[: prompt.prefix]], device=_device_of(self._model))
            with torch.inference_mode(), self._adapter_state([tuned]):
                states = prefix_states(self._model(input_ids=ids, use_cache=True).cache)
            self._prefix_states.put(key, states)
        return states

    def _adapter_state(self, tuned: list[bool]) -> AbstractContextManager[Any]:
        """Which rows of a pass see the adapter (its tuned rows come last, see `_plan`)."""
        from peft import PeftModel

        if not isinstance(self._model, PeftModel) or self._adapter is None:
            return nullcontext()
        if self._fast_lora:
            first = tuned.index(True) if any(tuned) else len(tuned)
            return row_slice_lora(self._model, self._adapter, slice(first, len(tuned)))
        if not any(tuned):
            return self._model.disable_adapter()
        return nullcontext()  # all rows tuned, or mixed rows via `adapter_names`

    def _generation_config(self, settings: GenerationSettings) -> Any:
        from transformers import GenerationConfig

        config: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "repetition_penalty": settings.repetition_penalty,
            "eos_token_id": sorted(self._stop_ids),
            "pad_token_id": self._pad_id,
            "do_sample": not settings.greedy,
        }
        if not settings.greedy:
            # top_k=0: nucleus sampling alone decides, as the settings describe (transformers would
            # otherwise add its default top-k of 50).
            config.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        return GenerationConfig(**config)

    def _decode(
        self, out: queue.Queue, n_rows: int, settings: GenerationSettings, stop: StopFlag
    ) -> Iterator[tuple[str, ...]]:
        """Turn queued (row, id) steps into text deltas per row until the job is done."""
        rows = _RowTexts(self._tokenizer, self._stop_ids, n_rows, settings.signoff, stop)
        while True:
            steps = [out.get()]
            # A slow reader gets every step that piled up in one yield, not one yield per token.
            while not out.empty() and not isinstance(steps[-1], _Done):
                steps.append(out.get_nowait())
            deltas = [""] * n_rows
            for step in steps:
                if isinstance(step, _Done):
                    if step.error is not None:
                        raise step.error
                    rows.flush(deltas)
                    break
                rows.push(step, deltas)
            if any(deltas):
                yield tuple(deltas)
            if isinstance(steps[-1], _Done):
                return

    # ------------------------------------------------------------------------------------------
    # Adapters
    # ------------------------------------------------------------------------------------------

    def _attach_adapter(self, adapter_dir: Path) -> None:
        """Load the adapter under a fresh name, make it active, then delete the previous one."""
        from peft import PeftModel

        self._adapter_serial += 1
        name = f"adapter{self._adapter_serial}"
        old = self._adapter
        try:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
                self._model.set_adapter(name, inference_mode=True)
            else:
                self._model = PeftModel.from_pretrained(
                    self._model, str(adapter_dir), adapter_name=name, is_trainable=False
                )
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            self._forget_adapter(name, restore=old)
            raise BrandVoiceError(
                f"Cannot load the adapter in {adapter_dir}: {exc}. "
                "Was it trained on this base model?"
            ) from exc
        if old is not None:
            self._model.delete_adapter(old)
        self._adapter = name
        self._model.eval()
        self._fast_lora = supports(self._model, name)
        self._prefix_states.clear()  # tuned prefixes were computed with the old adapter

    def _forget_adapter(self, name: str, *, restore: str | None) -> None:
        """Undo a half-loaded adapter so the previous one stays in charge."""
        from peft import PeftModel

        if not isinstance(self._model, PeftModel):
            return
        if name in self._model.peft_config:
            self._model.delete_adapter(name)
        if restore is not None:
            self._model.set_adapter(restore, inference_mode=True)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


class _RowTexts:
    """The rows' texts as they are decoded: ids to text, cut after the sign-off's line.

    A row stopped by the caller gets no text decoded after the stop; a row whose sign-off line
    has ended is stopped here, so its generation ends at the next step.
    """

    def __init__(
        self, tokenizer: Any, stop_ids: frozenset[int], n_rows: int, signoff: str, stop: StopFlag
    ) -> None:
        self._decoders = [IncrementalDecoder(tokenizer, stop_ids) for _ in range(n_rows)]
        self._signoffs = [SignoffEnd(signoff) if signoff else None for _ in range(n_rows)]
        self._stop = stop

    def push(self, step: list[tuple[int, int]], deltas: list[str]) -> None:
        """Add one generation step's (row, id) pairs to `deltas`."""
        for row, token_id in step:
            if not self._stop.is_set(row):
                deltas[row] += self._cut(row, self._decoders[row].push(token_id))

    def flush(self, deltas: list[str]) -> None:
        """Add the text each row still held back when the job ended."""
        for row, decoder in enumerate(self._decoders):
            if not self._stop.is_set(row):
                deltas[row] += self._cut(row, decoder.flush())

    def _cut(self, row: int, delta: str) -> str:
        signoff = self._signoffs[row]
        if signoff is None or not delta:
            return delta
        kept = signoff.feed(delta)
        if signoff.finished:
            self._stop.set(row)
        return kept


def _check_messages(messages: list[dict[str, str]]) -> None:
    if not isinstance(messages, list) or not messages:
        raise BrandVoiceError("There is no message to reply to.")
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant") or not isinstance(message.get("content"), str):
            raise BrandVoiceError(
                f"messages[{i}]: expected {{'role': 'user' or 'assistant', 'content': text}}, got "
                f"{message!r:.80}. The engine adds the system prompt itself, by mode."
            )
    if messages[0]["role"] != "user" or messages[-1]["role"] != "user":
        raise BrandVoiceError("The conversation must start and end with a user message.")


def _cut_points(n: int) -> list[int]:
    """Where a conversation of `n` turns may start once old turns are dropped, longest first:
    whole exchanges go (every second turn), and the last turn alone is the last resort."""
    starts = [0]
    while n - starts[-1] > 2:
        starts.append(starts[-1] + 2)
    if n - starts[-1] > 1:
        starts.append(n - 1)
    return starts


def _stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-turn ids: the generation config's and the tokenizer's (chat models use both)."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise BrandVoiceError(
            "The base model defines no end-of-sequence token, so replies would never end."
        )
    return frozenset(ids)


def _pad_token_id(tokenizer: Any, stop_ids: frozenset[int]) -> int:
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else min(stop_ids)


def _context_length(model: Any) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "max_position_embeddings", None) or 2048)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _chat_template_of(adapter_dir: Path) -> str | None:
    """The chat template saved with a run's adapter (the one training used), if any."""
    jinja = adapter_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = adapter_dir / "tokenizer_config.json"
    if config.is_file():
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, RecursionError, ValueError):  # an imported adapter's file may be junk
            return None
        template = settings.get("chat_template") if isinstance(settings, dict) else None
        return template if isinstance(template, str) else None
    return None
