"""Training: a prepared brand's conversations in, a LoRA adapter out.

QLoRA with TRL's SFTTrainer by default (4-bit NF4 base, bf16 compute, LoRA on all linear layers,
loss on the assistant replies only). `train()` is the single entry point; the job runner and the
CLI wrap it. A run folder holds (each path named once by `run_files.RunFolder`):

- `config.yaml`: the resolved `TrainConfig`;
- `events.jsonl`: one event a line (time, state, step, total_steps, epoch, loss, eval_loss,
  learning_rate, tokens_per_s, eta_s), state one of running, evaluating, checkpoint, succeeded,
  failed (with `error`), cancelled;
- `checkpoints/checkpoint-<step>/`: resumable, written atomically, `COMPLETE` marker, newest 2 kept;
- `adapter/`: the final adapter (safetensors) and tokenizer;
- `metrics.json`: losses before/after, tokens/s, duration, steps.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "TrainingError"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: the job runner and the app read a run's events
    # (`run_files`) without paying for torch and transformers.
    if name == "train":
        from chatbot.training.run import train

        return train
    if name == "TrainingError":
        from chatbot.training.recipe import TrainingError

        return TrainingError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
