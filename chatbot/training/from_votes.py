"""Training from votes: the next version of a brand's model, learned from its Compare votes.

A run from votes starts from the adapter people voted on (its parent) and learns which replies they
preferred: with TRL's DPOTrainer (each vote a pair, chosen vs rejected) or KTOTrainer (each judged
reply marked good or bad). The votes become rows through `chatbot.feedback.preferences`, with
personal data redacted as in every vote export, and every prompt opens with the system prompt the
parent was trained with. A fifth of the prompts is held out.

`chatbot.runs.from_votes.start_from_votes` queues such a run through the job system; its config
records `method` and `parent_run`, the run's lineage. The job's worker calls `train_from_votes`
here, which reads top to bottom: setup, fit, finish. Its metrics.json holds the usual figures plus
the parent, the votes used, the held-out NLL of the brand's eval conversations for the parent
("before") and the new adapter ("after"), and how often each prefers the voted reply on the held-out
votes (DPO). A run from votes takes minutes: a cancelled or failed one starts again from its parent
when resumed.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chatbot.config import TrainConfig, choices
from chatbot.feedback.preferences import PreferenceRows, preference_rows
from chatbot.storage import (
    atomic_dir,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    read_jsonl,
)
from chatbot.training.data import (
    read_brand,
    tokenize_conversations,
    training_chat_template,
    with_system_prompt,
)
from chatbot.training.distributed import cpu_threads
from chatbot.training.progress import RunEventsCallback
from chatbot.training.recipe import TrainingError, learned_token_loss
from chatbot.training.run import TrainingRun
from chatbot.training.run_files import RunFolder
from chatbot.workspace import Workspace

__all__ = ["METHODS", "MIN_VOTES", "too_few_votes", "train_from_votes", "usable_votes", "VoteRun"]

METHODS: tuple[str, ...] = tuple(m for m in choices(TrainConfig, "method") if m != "sft")
MIN_VOTES = 20
"""Usable votes (DPO: a side chosen; KTO: not a tie) a run from votes needs."""
PREFERENCES_FILE = "preferences.jsonl"
"""The run's snapshot of its training rows (votes cast later do not change a run)."""
_HELD_OUT = 0.2


def usable_votes(data: PreferenceRows) -> int:
    """Votes that became training rows (DPO: a side was chosen; KTO: anything but a tie)."""
    return data.votes - sum(data.skipped.values())


def too_few_votes(parent_id: str, method: str, data: PreferenceRows) -> str:
    """What to tell the user when the parent's votes make too few rows: how many more are needed."""
    usable = usable_votes(data)
    missing = MIN_VOTES - usable
    left_out = ", ".join(f"{n} {why}" for why, n in sorted(data.skipped.items()))
    counted = "ties and 'both bad' do not count for DPO" if method == "dpo" else "ties do not"
    return (
        f"Run {parent_id} has {usable} usable vote(s) for {method.upper()}"
        + (f" ({data.votes} in all; left out: {left_out})" if left_out else "")
        + f"; training the next version needs at least {MIN_VOTES}. Vote on {missing} more "
        f"pair(s) of replies in the Compare tab ({counted})."
    )


# ----------------------------------------------------------------------------------------------
# The run (the job worker's side)
# ----------------------------------------------------------------------------------------------


def train_from_votes(
    run_dir: Path,
    config: TrainConfig,
    brand_dir: Path,
    *,
    workspace: Workspace,
    stop: threading.Event | None = None,
    resume: bool = False,
    on_event: Callable[[dict], None] | None = None,
) -> dict:
    """Train a run from votes; returns its metrics (raises TrainingError, recorded, on failure).

    `resume` starts again from the parent: a run from votes keeps no checkpoints.
    """
    del resume
    run = VoteRun(workspace, Path(run_dir), config, Path(brand_dir), stop, on_event)
    with run.failures_recorded():
        run.setup()
        run.fit()
        return run.finish()


class _NoSaveOnStop(RunEventsCallback):
    """The run's events and stop handling, without the checkpoint a stop would save."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: object) -> None:
        super().on_step_end(args, state, control, **kw)
        control.should_save = False


class _CountingCollator:
    """The trainer's collator, counting the real (not padding) tokens it hands over."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = 0

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


@dataclass(frozen=True)
class _Parent:
    """The run a run from votes starts from: same brand, its folder beside the new run's."""

    id: str
    brand: str
    runs_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.id

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)


class VoteRun(TrainingRun):
    """The stages of `train_from_votes` (TrainingRun's events and failure handling)."""

    def __init__(
        self,
        ws: Workspace,
        run_dir: Path,
        config: TrainConfig,
        brand_dir: Path,
        stop: threading.Event | None,
        on_event: Callable[[dict], None] | None,
    ) -> None:
        super().__init__(run_dir, config, brand_dir, stop, on_event)
        self.ws = ws
        self.before: dict[str, float | None] = {}

    # -- stages -------------------------------------------------------------------------------

    def setup(self, resume: bool = False) -> None:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config.to_yaml(self.files.config)
        self.parent = _Parent(config.parent_run, self.brand_dir.name, self.ws.runs_dir())
        self.system_prompt = _read_text(self.parent.folder.system_prompt)
        # The new adapter is chatted with as its parent was.
        atomic_write_text(self.files.system_prompt, self.system_prompt)
        self.rows = self._rows()
        self.train_rows, self.held_out = _split(self.rows)
        self.model, self.tokenizer = self._model()
        torch.set_num_threads(cpu_threads(config.threads, 1))
        self.eval_examples = self._eval_conversations()
        self.before = self._held_out_figures()
        self.trainer = self._trainer()

    def fit(self) -> None:
        self.output = self.trainer.train()

    def finish(self) -> dict:
        state = self.trainer.state
        if self.progress.stopped and state.global_step < state.max_steps:
            metrics = self._vote_metrics("cancelled", {})
            atomic_write_json(self.files.metrics, metrics)
            self.events.emit("cancelled", **self.progress.figures(state))
            return metrics
        after = self._held_out_figures()
        self._save_adapter()
        metrics = self._vote_metrics("succeeded", after)
        atomic_write_json(self.files.metrics, metrics)
        self.events.emit(
            "succeeded",
            loss=metrics["final_train_loss"],
            eval_loss=after["eval_loss"],
            **self.progress.figures(state),
        )
        return metrics

    # -- setup helpers ------------------------------------------------------------------------

    def _rows(self) -> list[dict]:
        """The training rows: the run's snapshot, else the parent's votes now (then snapshotted)."""
        snapshot = self.run_dir / PREFERENCES_FILE
        if snapshot.is_file():
            return read_jsonl(snapshot)
        data = preference_rows(
            self.ws, self.parent.brand, self.config.method, run_id=self.parent.id
        )
        if usable_votes(data) < MIN_VOTES:
            raise TrainingError(too_few_votes(self.parent.id, self.config.method, data))
        rows = [_with_system(row, self.system_prompt) for row in data.rows]
        atomic_write_jsonl(snapshot, rows)
        return rows

    def _model(self) -> tuple[Any, Any]:
        from peft import PeftModel

        from chatbot.models import keep_4bit_layers_trainable, load_base_model

        model, tokenizer = load_base_model(
            self.config.base_model, quantization=self.config.quantization
        )
        keep_4bit_layers_trainable(model)
        adapter = self.parent.folder.adapter
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        if (adapter / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(adapter)
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        return model, tokenizer

    def _eval_conversations(self) -> list[dict]:
        brand = read_brand(self.brand_dir)
        prompt = self.system_prompt
        conversations = [with_system_prompt(m, prompt, bool(prompt)) for m in brand.eval]
        template = training_chat_template(self.tokenizer)
        examples, _ = tokenize_conversations(
            conversations, self.tokenizer, template, self.config.max_length
        )
        return examples

    def _trainer(self) -> Any:
        from datasets import Dataset
        from transformers import PrinterCallback

        args = _preference_args(self.config, self.checkpoints.root, self.train_rows)
        trainer_class = _trainer_class(self.config.method)
        self.progress = _NoSaveOnStop(self.events, lambda: self.collator.tokens, self.stop)
        trainer = trainer_class(
            model=self.model,
            args=args,
            train_dataset=Dataset.from_list(self.train_rows),
            processing_class=self.tokenizer,
            callbacks=[self.progress],
        )
        self.collator = _CountingCollator(trainer.data_collator)
        trainer.data_collator = self.collator
        trainer.remove_callback(PrinterCallback)
        return trainer

    # -- held-out figures ---------------------------------------------------------------------

    def _held_out_figures(self) -> dict[str, float | None]:
        """Held-out NLL of the brand's eval replies and agreement with the held-out votes."""
        model = self.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            figures = {
                "eval_loss": _mean_nll(model, self.eval_examples),
                "vote_agreement": _vote_agreement(model, self.tokenizer, self.held_out),
            }
        model.train(was_training)
        return figures

    # -- finishing ----------------------------------------------------------------------------

    def _save_adapter(self) -> None:
        """adapter/: the new adapter only (not the frozen copy of the parent DPO compares with)."""
        with atomic_dir(self.files.adapter) as folder:
            self.trainer.model.save_pretrained(
                folder, selected_adapters=["default"], safe_serialization=True
            )
            self.tokenizer.save_pretrained(folder)
            (folder / "README.md").unlink(missing_ok=True)

    def _vote_metrics(self, state: str, after: dict[str, float | None]) -> dict:
        history = self.trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        return {
            "state": state,
            "method": self.config.method,
            "parent_run": self.parent.id,
            "votes": len(self.rows) if self.config.method == "dpo" else len(self.rows) // 2,
            "preference_rows": {"train": len(self.train_rows), "held_out": len(self.held_out)},
            "steps": self.trainer.state.global_step,
            "total_steps": self.trainer.state.max_steps,
            "epochs": self.trainer.state.epoch,
            "train_loss": getattr(getattr(self, "output", None), "training_loss", None),
            "final_train_loss": losses[-1] if losses else None,
            "eval_loss_before": self.before.get("eval_loss"),
            "eval_loss_after": after.get("eval_loss"),
            "vote_agreement_before": self.before.get("vote_agreement"),
            "vote_agreement_after": after.get("vote_agreement"),
            "tokens_per_s": self.progress.tokens_per_s,
            "train_tokens": self.collator.tokens,
            "train_seconds": round(self.progress.train_seconds, 2),
            "duration_s": round(time.time() - self.started, 2),
            "base_model": self.config.base_model,
            "quantization": self.config.quantization,
            "adapter": str(self.files.adapter) if state == "succeeded" else None,
        }


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _with_system(row: dict, system_prompt: str) -> dict:
    """The row with the parent's system prompt opening its prompt (when it had one)."""
    prompt = row["prompt"]
    if not system_prompt or (prompt and prompt[0]["role"] == "system"):
        return row
    return {**row, "prompt": [{"role": "system", "content": system_prompt}, *prompt]}


def _prompt_text(row: dict) -> str:
    return "\n".join(m["content"] for m in row["prompt"] if m["role"] != "system")


def _split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, held out): a fifth of the prompts held out, chosen by a hash of their text, so one
    prompt's rows never sit on both sides and the split does not change as votes are added."""
    held = [r for r in rows if zlib.crc32(_prompt_text(r).encode()) % 100 < _HELD_OUT * 100]
    if len(held) >= len(rows) or not held:  # tiny sets: hold out the last row only
        held = rows[-1:]
    train = [r for r in rows if r not in held]
    return train, held


def _mean_nll(model: Any, examples: list[dict]) -> float | None:
    """Mean NLL per learned token (the scorecard's and SFT's held-out loss)."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for example in examples:
        batch = {k: torch.tensor([example[k]], device=device) for k in ("input_ids", "labels")}
        loss_sum, n = learned_token_loss(model, batch, fused=False)
        total, count = total + float(loss_sum), count + int(n)
    return round(total / count, 5) if count else None


def _reply_logprob(model: Any, tokenizer: Any, prompt: list[dict], reply: list[dict]) -> float:
    """Mean log-probability per token of `reply` after `prompt`."""
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*prompt, *reply], tokenize=False)
    head_ids = tokenizer.encode(head, add_special_tokens=False)
    ids = tokenizer.encode(full, add_special_tokens=False)
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0]
    logprobs = torch.log_softmax(logits[len(head_ids) - 1 : -1].float(), dim=-1)
    targets = torch.tensor(ids[len(head_ids) :], device=device)
    return float(logprobs.gather(1, targets[:, None]).mean())


def _vote_agreement(model: Any, tokenizer: Any, rows: list[dict]) -> float | None:
    """Share of held-out DPO votes whose chosen reply the model finds likelier (per token)."""
    pairs = [r for r in rows if "chosen" in r]
    if not pairs:
        return None
    wins = sum(
        _reply_logprob(model, tokenizer, r["prompt"], r["chosen"])
        > _reply_logprob(model, tokenizer, r["prompt"], r["rejected"])
        for r in pairs
    )
    return round(wins / len(pairs), 4)


def _trainer_class(method: str) -> Any:
    if method == "dpo":
        from trl import DPOTrainer

        return DPOTrainer
    from trl import KTOTrainer

    return KTOTrainer


def _kto_weights(rows: list[dict]) -> dict[str, float]:
    """KTO's desirable weight that balances good against bad replies, as its authors advise
    (weight x good count = bad count); votes usually mark more replies bad than good."""
    good = sum(bool(r["label"]) for r in rows)
    bad = len(rows) - good
    return {"desirable_weight": round(bad / good, 3)} if good and bad else {}


def _preference_args(config: TrainConfig, output_dir: Path, rows: list[dict]) -> Any:
    """TRL's DPOConfig/KTOConfig for `config` (no checkpoints, no evaluation, log every step)."""
    if config.method == "dpo":
        from trl import DPOConfig as Args

        extra: dict[str, float] = {}
    else:
        from trl import KTOConfig as Args

        extra = _kto_weights(rows)
    on_cpu = not torch.cuda.is_available()
    return Args(
        **extra,
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        beta=config.preference_beta,
        max_length=config.max_length,
        # As SFT: the model already computes in its compute dtype, no autocast; short runs of a
        # small model need no recomputation.
        bf16=False,
        use_cpu=on_cpu,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=not on_cpu,
    )
