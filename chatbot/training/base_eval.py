"""The base model's eval loss per brand, remembered so a run need not measure it again.

Every run reports the eval loss before training (the base model's) next to the loss after. It is
the same for every run of a brand on the same base model, eval split, prompt policy, quantization
and compute dtype, and measuring it costs a whole pass over the eval split. So the first run
stores it in the brand folder (`base_eval.json`), under a key made of exactly those inputs (the
tokenized eval split stands for the data, the system prompt and max_length), and later runs read
it instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from chatbot.config import TrainConfig
from chatbot.models import resolve_base_model
from chatbot.storage import atomic_write_json

__all__ = ["BaseEvalCache"]

_FILE = "base_eval.json"
# Keys kept per brand (one per base model / dtype / data version tried): the newest few.
_KEEP = 16


class BaseEvalCache:
    """The remembered base eval loss of one run's setting (`loss` None: not measured yet)."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.loss: float | None = self._read().get(key)
        self.hit = self.loss is not None

    @classmethod
    def for_run(cls, brand_dir: Path, config: TrainConfig, eval_set: object) -> BaseEvalCache:
        digest = hashlib.sha256()
        base = resolve_base_model(config.base_model)
        digest.update(str(base.resolve()).encode())
        for name in ("config.json", "model.safetensors"):
            item = base / name
            if item.is_file():
                stat = item.stat()
                digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(f"{config.quantization}:{config.compute_dtype}".encode())
        for row in eval_set or ():
            digest.update(json.dumps([row["input_ids"], row["labels"]]).encode())
        return cls(Path(brand_dir) / _FILE, digest.hexdigest()[:32])

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, int | float)}
            if isinstance(data, dict)
            else {}
        )

    def remember(self, loss: float | None) -> None:
        """Store `loss` for this setting (a no-op when already known or not measured)."""
        if loss is None or self.hit:
            return
        data = self._read()
        data.pop(self.key, None)
        data[self.key] = loss
        with contextlib.suppress(OSError):  # a read-only brand folder: the next run measures again
            atomic_write_json(self.path, dict(list(data.items())[-_KEEP:]))
