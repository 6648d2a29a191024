"""Turns the trainer's callbacks into the run's events, and a stop request into a clean stop.

Measures throughput in real (non-padding) tokens per second of training time, evaluation
excluded, and estimates the time left from the mean step time so far. In a multi-process run the
ranks agree after every step on whether to stop, tokens are summed over the ranks, and each
"running" event lists which conversations every rank trained on in that step (`rank_samples`:
per rank, a CRC-32 of each conversation's tokens).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from chatbot.training.distributed import RankSync
from chatbot.training.run_files import EventLog

__all__ = ["RunEventsCallback", "EarlyStopping"]


class RunEventsCallback(TrainerCallback):
    """Emits running/evaluating/checkpoint events; on `stop`, saves and ends after this step."""

    def __init__(
        self,
        events: EventLog,
        real_tokens: Callable[[], int],
        stop: threading.Event | None,
        *,
        sync: RankSync | None = None,
        samples: Callable[[], list[int]] | None = None,
    ) -> None:
        self.events = events
        self.real_tokens = real_tokens
        """This process's real tokens so far."""
        self.stop = stop
        self.sync = sync or RankSync()
        self.samples = samples
        """Pops the fingerprints of the conversations this process trained on since last asked."""
        self.stopped = False
        """A stop was requested (on any rank) and training ends after this step."""
        self.total_tokens = 0
        self._rank_samples: list[list[int]] | None = None
        self.train_seconds = 0.0
        self.steps_timed = 0
        self.eval_seconds = 0.0
        self.evals_timed = 0
        self._step_start: float | None = None
        self._eval_start = 0.0
        self._state: TrainerState | None = None

    # -- figures ------------------------------------------------------------------------------

    @property
    def tokens_per_s(self) -> float | None:
        if self.train_seconds <= 0:
            return None
        return round(self.total_tokens / self.train_seconds, 1)

    def figures(self, state: TrainerState) -> dict:
        """The event fields every state shares: step, totals, throughput, time left.

        Time left: the remaining steps at the mean step time so far, plus the evaluations still
        to come (every eval_steps, and the final one) at the mean evaluation time so far.
        """
        remaining = max(state.max_steps - state.global_step, 0)
        per_step = self.train_seconds / self.steps_timed if self.steps_timed else None
        eta = remaining * per_step if per_step is not None else None
        if eta is not None and self.evals_timed:
            every = state.eval_steps or 0
            evals_left = 1 + (remaining // every if every else 0)
            eta += evals_left * self.eval_seconds / self.evals_timed
        return {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "epoch": round(state.epoch, 4) if state.epoch is not None else None,
            "tokens_per_s": self.tokens_per_s,
            "eta_s": round(eta, 1) if eta is not None else None,
        }

    # -- trainer hooks ------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: object
    ) -> None:
        self._state = state
        self.events.emit("running", **self.figures(state))

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: object
    ) -> None:
        self._step_start = time.perf_counter()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: object
    ) -> None:
        if self._step_start is not None:
            self.train_seconds += time.perf_counter() - self._step_start
            self.steps_timed += 1
            self._step_start = None
        self._agree(bool(self.stop is not None and self.stop.is_set()))
        if self.stopped:
            # Trainer saves right after this hook when asked, then leaves its loop.
            control.should_save = True
            control.should_training_stop = True

    def _agree(self, stop_here: bool) -> None:
        """Tokens, samples and the stop decision, the same on every rank (collectives)."""
        self.stopped = self.sync.any(stop_here)
        self.total_tokens = int(self.sync.sum(self.real_tokens())[0])
        if self.sync.world_size > 1 and self.samples is not None:
            self._rank_samples = self.sync.gather(self.samples())

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kw: object,
    ) -> None:
        if logs and "loss" in logs:
            extra = {"rank_samples": self._rank_samples} if self._rank_samples else {}
            self._rank_samples = None
            self.events.emit(
                "running",
                loss=logs["loss"],
                learning_rate=logs.get("learning_rate"),
                **self.figures(state),
                **extra,
            )

    def evaluation_started(self) -> None:
        """Called by the trainer as an evaluation begins (transformers has no hook for it)."""
        self._eval_start = time.perf_counter()
        if self._state is not None:
            self.events.emit("evaluating", **self.figures(self._state))

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict | None = None,
        **kw: object,
    ) -> None:
        self.eval_seconds += time.perf_counter() - self._eval_start
        self.evals_timed += 1
        eval_loss = (metrics or {}).get("eval_loss")
        self.events.emit("evaluating", eval_loss=eval_loss, **self.figures(state))

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: object
    ) -> None:
        self.events.emit("checkpoint", **self.figures(state))


class EarlyStopping(TrainerCallback):
    """Ends training once the eval loss has stopped improving, never before `min_steps`.

    "Improving" means at least 0.5% lower than the best so far; `patience` evaluations in a row
    without that end the run after the current step (0: never). transformers' own
    EarlyStoppingCallback needs `load_best_model_at_end`, which keeps a checkpoint of every
    evaluation; a run here keeps its final adapter, so only the decision is needed.
    """

    _MIN_GAIN = 0.005

    def __init__(self, patience: int, min_steps: int = 0) -> None:
        self.patience, self.min_steps = patience, min_steps
        self.best: float | None = None
        self.bad = 0
        self.stopped_at: int | None = None
        """The step training stopped at for lack of progress (None: it did not)."""

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict | None = None,
        **kw: object,
    ) -> None:
        loss = (metrics or {}).get("eval_loss")
        if loss is None or not self.patience or state.global_step == 0:
            return
        if self.best is None or loss < self.best * (1 - self._MIN_GAIN):
            self.best, self.bad = loss, 0
            return
        self.bad += 1
        done = state.global_step >= min(self.min_steps, state.max_steps)
        if self.bad >= self.patience and done and state.global_step < state.max_steps:
            control.should_training_stop = True
            self.stopped_at = state.global_step
