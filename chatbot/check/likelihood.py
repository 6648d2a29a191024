"""How much likelier a text is under the tuned model than under the base model, token by token.

The text is scored as the assistant's reply to a customer message, exactly as each side is
prompted in chat (`ChatEngine.render_prompt`: the tuned side with its system prompt and the
adapter on, the base side as it comes, adapter off), on the one loaded model. A token's gain is
its NLL under the base model minus its NLL under the tuned model (nats): positive where the tuned
model expected it more. The text is tokenized on its own (what follows the prompt's last special
token and newline tokenizes the same way alone), so each token keeps its character offsets.

Without a customer message the text answers `NO_CUSTOMER`, a plain opener that asks for nothing
in particular. The system block of each side is computed once and reused (as in the scorecard).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from chatbot.engine import GenerationSettings
from chatbot.engine.prefix_cache import common_prefix
from chatbot.errors import BrandVoiceError
from chatbot.scorecard.likelihood import adapter_off, next_token_nlls, prefix_cache
from chatbot.training.data import IGNORE_INDEX

if TYPE_CHECKING:
    from chatbot.engine import ChatEngine

__all__ = ["NO_CUSTOMER", "TokenGains", "GainScorer"]

NO_CUSTOMER = "Hi, can you help me?"


@dataclass(frozen=True)
class TokenGains:
    """Each token of a text: its character span and its gain (nats, tuned over base)."""

    spans: list[tuple[int, int]]
    gains: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.gains) if self.gains else 0.0

    def within(self, start: int, end: int) -> list[float]:
        """Gains of the tokens whose last character lies in [start, end)."""
        return [g for (a, b), g in zip(self.spans, self.gains, strict=True) if start <= b - 1 < end]


class GainScorer:
    """Scores texts on one chat engine's model, tuned against base. Not thread-safe: one caller."""

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine
        self._prefixes: dict[tuple[str, ...], tuple[list[int], Any]] = {}

    def gains(self, text: str, customer: str | None = None) -> TokenGains:
        """Per-token gains of `text` as the reply to `customer` (None: `NO_CUSTOMER`)."""
        with self.engine.exclusive():
            return self.gains_held(text, customer)

    def gains_held(self, text: str, customer: str | None = None) -> TokenGains:
        """As `gains`, for a caller already inside `engine.exclusive()` (many texts in one turn)."""
        tokenizer = self.engine.tokenizer
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, spans = list(encoded["input_ids"]), [tuple(s) for s in encoded["offset_mapping"]]
        if not ids:
            return TokenGains([], [])
        messages = [{"role": "user", "content": customer or NO_CUSTOMER}]
        with torch.inference_mode():
            tuned = self._nlls("tuned", messages, ids)
            with adapter_off(self.engine.model):
                base = self._nlls("base", messages, ids)
        return TokenGains(spans, (base - tuned).tolist())  # type: ignore[arg-type]

    def _nlls(self, mode: str, messages: list[dict[str, str]], reply: list[int]) -> torch.Tensor:
        prompt = self._prompt(mode, messages, len(reply))
        prefix, cache = self._prefix(mode)
        shared = len(prefix) if prompt[: len(prefix)] == prefix else 0
        shared = min(shared, len(prompt) - 1)  # the prompt's last token must be run: it predicts
        ids = prompt[shared:] + reply
        targets = [IGNORE_INDEX] * (len(prompt) - shared - 1) + reply + [IGNORE_INDEX]
        return next_token_nlls(self.engine.model, ids, targets, cache if shared else None)

    def _prompt(self, mode: str, messages: list[dict[str, str]], room: int) -> list[int]:
        settings = GenerationSettings(max_new_tokens=max(1, min(room + 1, 4096)))
        try:
            text = self.engine.render_prompt(messages, mode, settings)
        except BrandVoiceError as exc:
            raise BrandVoiceError(
                f"The text is too long to check in one piece ({room} tokens): {exc}"
            ) from exc
        return self.engine.tokenizer.encode(text, add_special_tokens=False)

    def _prefix(self, mode: str) -> tuple[list[int], Any]:
        """The system block every prompt of `mode` starts with, run once: (its ids, its cache).

        Kept per adapter and prompts: the tuned block's keys and values change with the adapter.
        """
        engine = self.engine
        key = (mode, str(engine.adapter_dir), engine.system_prompt, engine.tuned_system_prompt)
        if key not in self._prefixes:
            one = self._prompt(mode, [{"role": "user", "content": "a"}], 1)
            two = self._prompt(mode, [{"role": "user", "content": "z"}], 1)
            shared = one[: common_prefix(one, two)]
            cache = prefix_cache(self.engine.model, shared) if shared else None
            self._prefixes[key] = (shared, cache)
        return self._prefixes[key]
