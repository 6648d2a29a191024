"""How a reply is sampled: one dataclass, its defaults and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from chatbot.errors import ConfigError

__all__ = ["GenerationSettings"]

# Far beyond what a chat pane shows; a guard against a typo that would hold the model for minutes.
_MAX_NEW_TOKENS_LIMIT = 4096
# A sign-off is a line or two; a guard against pasting a whole document into it.
_MAX_SIGNOFF_CHARS = 1000


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings for one reply or one pair of replies; invalid values raise ConfigError."""

    temperature: float = 0.7
    """0 means greedy decoding (always the most likely token; `top_p` and `seed` go unused)."""
    top_p: float = 0.9
    """Nucleus sampling: draw only from the likeliest tokens whose probabilities add up to this."""
    max_new_tokens: int = 200
    """The reply stops after this many tokens even if the model has not finished."""
    seed: int = 0
    """The same seed, prompt and settings give the same sampled reply. A pair is sampled as one
    batch, so a pane's reply in a pair may differ from the same request made alone."""
    repetition_penalty: float = 1.1
    """Above 1 discourages repeating tokens already in the conversation; 1 turns it off."""
    signoff: str = ""
    """When set, a reply ends with the line in which it writes these words (the brand's sign-off),
    matched in order and case-insensitively; "" lets replies run to their end or the token cap."""

    def __post_init__(self) -> None:
        problems = []
        if not _finite(self.temperature) or not 0.0 <= self.temperature <= 5.0:
            problems.append(f"temperature: must be between 0 and 5, got {self.temperature}")
        if not _finite(self.top_p) or not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p: must be above 0 and at most 1, got {self.top_p}")
        if not _whole(self.max_new_tokens) or not 1 <= self.max_new_tokens <= _MAX_NEW_TOKENS_LIMIT:
            problems.append(
                f"max_new_tokens: must be a whole number from 1 to {_MAX_NEW_TOKENS_LIMIT}, "
                f"got {self.max_new_tokens}"
            )
        # torch.manual_seed takes any 64-bit value; negative ones are refused to stay portable.
        if not _whole(self.seed) or not 0 <= self.seed < 2**63:
            problems.append(f"seed: must be a whole number, 0 or more, got {self.seed}")
        if not _finite(self.repetition_penalty) or not 0.0 < self.repetition_penalty <= 10.0:
            problems.append(
                f"repetition_penalty: must be above 0 and at most 10, got {self.repetition_penalty}"
            )
        if not isinstance(self.signoff, str) or len(self.signoff) > _MAX_SIGNOFF_CHARS:
            problems.append(f"signoff: must be text of at most {_MAX_SIGNOFF_CHARS} characters")
        if problems:
            raise ConfigError(problems, source="generation settings")

    @property
    def greedy(self) -> bool:
        """Temperature 0: decode greedily, so the reply does not depend on the seed."""
        return self.temperature == 0.0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
