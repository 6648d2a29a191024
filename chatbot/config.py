"""Every setting in one place: dataclasses with their defaults, validation and YAML in/out."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatbot.errors import ConfigError

__all__ = ["PrepareConfig"]


# --- prepare ------------------------------------------------------------------------------------
@dataclass
class PrepareConfig:
    """How `brandvoice prepare` reads, cleans and splits a brand's data."""

    eval_fraction: float = 0.1
    """Share of conversations held out for evaluation (the scorecard and eval loss use them)."""
    min_eval: int = 2
    """At least this many held-out conversations, however small the data."""
    seed: int = 0
    """Seed of the fixed train/eval split."""
    min_conversations: int = 10
    """Fewer usable conversations than this is an error."""
    max_tokens: int = 1024
    """Training length: conversations longer than this get a warning (they are cut in training)."""
    redact_pii: bool | None = None
    """Redact PII (None: as the brand's brand.yaml says, on for a new brand)."""
    skip_invalid: bool = False
    """Leave broken records out with a warning instead of refusing the whole input."""
    column_map: dict[str, str] = field(default_factory=dict)
    """CSV/TSV columns by role, e.g. {"prompt": "Question", "response": "Answer"}."""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.eval_fraction < 0.5:
            problems.append(
                f"eval_fraction: must be at least 0 and under 0.5, got {self.eval_fraction}"
            )
        if self.min_eval < 0:
            problems.append(f"min_eval: must be 0 or more, got {self.min_eval}")
        if self.min_conversations < 1:
            problems.append(f"min_conversations: must be 1 or more, got {self.min_conversations}")
        if self.max_tokens < 16:
            problems.append(f"max_tokens: must be 16 or more, got {self.max_tokens}")
        unknown = set(self.column_map) - {"prompt", "response", "system", "conversation"}
        if unknown:
            problems.append(
                f"column_map: unknown role(s) {sorted(unknown)}; "
                "use prompt, response, system or conversation"
            )
        if problems:
            raise ConfigError(problems)
