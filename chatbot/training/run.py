"""One training run, top to bottom: set up, fit, finish; every outcome is recorded in its folder."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback

from chatbot.config import TrainConfig
from chatbot.hardware import DTYPES, fastest_compute_dtype
from chatbot.models import keep_4bit_layers_trainable, load_base_model, resolve_base_model
from chatbot.storage import atomic_dir, atomic_write_json, atomic_write_text
from chatbot.training.base_eval import BaseEvalCache
from chatbot.training.data import (
    DataError,
    read_brand,
    tokenize_conversations,
    training_chat_template,
    with_system_prompt,
)
from chatbot.training.distributed import RankSync, cpu_threads
from chatbot.training.estimate import record_throughput
from chatbot.training.packing import PackedCollator
from chatbot.training.progress import EarlyStopping, RunEventsCallback
from chatbot.training.recipe import (
    BrandTrainer,
    TrainingError,
    lora_config,
    sft_config,
    use_gradient_checkpointing,
)
from chatbot.training.run_files import EventLog, RunFolder, is_disk_full

__all__ = ["train"]

# TRL and PEFT still read `model.is_gradient_checkpointing`, which transformers 5 deprecates with a
# FutureWarning on every run: library noise in the run's log that the user can do nothing about.
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)


def train(
    run_dir: Path,
    config: TrainConfig,
    brand_dir: Path,
    *,
    stop: threading.Event | None = None,
    resume: bool = False,
    on_event: Callable[[dict], None] | None = None,
) -> dict:
    """Train a LoRA adapter on a prepared brand; return the run's metrics.

    `stop` set: the run saves a checkpoint at the next step boundary and returns metrics with
    `"state": "cancelled"` (no exception). `resume`: continue from the newest complete
    checkpoint in `run_dir` (from the start if there is none). A failed run raises
    `TrainingError` after recording a "failed" event with the reason.
    """
    run = TrainingRun(Path(run_dir), config, Path(brand_dir), stop, on_event)
    with run.failures_recorded():
        run.setup(resume)
        run.fit()
        return run.finish()


class TrainingRun:
    """The stages of `train()`: setup, fit, finish (exposed for tests that look inside)."""

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        brand_dir: Path,
        stop: threading.Event | None,
        on_event: Callable[[dict], None] | None,
    ) -> None:
        self.run_dir, self.config, self.brand_dir, self.stop = run_dir, config, brand_dir, stop
        self.files = RunFolder(run_dir)
        self.sync = RankSync()
        """The other ranks of a multi-process run (see distributed.py); only rank 0 writes."""
        self.events = EventLog(run_dir, on_event, enabled=self.sync.is_main)
        self.checkpoints = self.files.checkpoint_store()
        self.started = time.time()
        self.sizes: dict[str, int] = {}
        self.dtype_probe: dict | None = None
        """The compute-dtype probe's figures when the dtype was measured (config 'auto')."""
        self.base_eval: BaseEvalCache | None = None

    @contextmanager
    def failures_recorded(self) -> Iterator[None]:
        """End every failure with a "failed" event; known causes become a TrainingError."""
        try:
            yield
        except TrainingError as exc:
            self.events.emit("failed", error=str(exc), known=True)
            raise
        except (DataError, OSError, RuntimeError) as exc:
            if not isinstance(exc, DataError) and not is_disk_full(exc):
                self.events.emit("failed", error=f"{type(exc).__name__}: {exc}")
                raise
            reason = str(exc) if isinstance(exc, DataError) else f"the disk is full ({exc})"
            self.events.emit("failed", error=reason, known=True)
            raise TrainingError(reason) from exc
        except Exception as exc:  # recorded, then re-raised unchanged
            self.events.emit("failed", error=f"{type(exc).__name__}: {exc}")
            raise

    # -- stages -------------------------------------------------------------------------------

    def setup(self, resume: bool) -> None:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        device = torch.device(_rank_device() or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads(config.threads, self.sync.world_size))
        dtype = self._compute_dtype(device)
        if self.sync.is_main:
            config.to_yaml(self.files.config)  # with the dtype resolved
        self.resume_from = self.checkpoints.newest() if resume else None
        model, self.tokenizer = load_base_model(
            config.base_model,
            quantization=config.quantization,
            compute_dtype=dtype,
            device=device,
            # FSDP and DeepSpeed shard parameters of one dtype: 4-bit weights stored as bf16.
            quant_storage=torch.bfloat16 if self._sharded else None,
        )
        keep_4bit_layers_trainable(model)
        train_set, eval_set = self._datasets()
        evaluate = eval_set is not None
        self.base_eval = BaseEvalCache.for_run(self.brand_dir, config, eval_set)
        args = sft_config(
            config,
            self.checkpoints.root,
            on_cpu=device.type == "cpu",
            evaluate=evaluate,
            # The base model's eval loss, for metrics' "before", unless this brand and base
            # have been evaluated before.
            eval_on_start=evaluate and self.resume_from is None and self.base_eval.loss is None,
            gradient_checkpointing=use_gradient_checkpointing(
                config, model, processes=self.sync.world_size
            ),
            processes=self.sync.world_size,
        )
        self.progress = RunEventsCallback(
            self.events,
            lambda: self.trainer.real_tokens,
            self.stop,
            sync=self.sync,
            samples=lambda: self.trainer.pop_samples(),
        )
        self.early_stopping = EarlyStopping(config.early_stopping_patience, config.min_steps)
        self.trainer = BrandTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=self.tokenizer,
            data_collator=PackedCollator(
                config.max_batch_tokens,
                share_prefix=config.share_prefix,
                pad_to_multiple_of=config.pad_to_multiple_of,
            ),
            peft_config=lora_config(config),
            callbacks=[self.progress, self.early_stopping],
            checkpoints=self.checkpoints,
            sync=self.sync,
        )
        # With tqdm off, Trainer prints every log dict; the run's events replace that output.
        self.trainer.remove_callback(PrinterCallback)

    def _compute_dtype(self, device: torch.device) -> torch.dtype:
        """The configured dtype, or the one this machine computes fastest (recorded in config)."""
        if self.config.compute_dtype != "auto":
            return DTYPES[self.config.compute_dtype]
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(resolve_base_model(self.config.base_model))
        dtype, probe = fastest_compute_dtype(model_config, device)
        self.config.compute_dtype = next(k for k, v in DTYPES.items() if v == dtype)
        self.dtype_probe = probe.to_dict() if probe else None
        return dtype

    def _datasets(self) -> tuple[Dataset, Dataset | None]:
        brand = read_brand(self.brand_dir)
        policy = self.config.system_prompt
        include = policy == "always" or (policy == "brand" and brand.system_prompt_mode == "always")
        if self.sync.is_main:
            # What the tuned model must be chatted with (chatbot.runs.adapters reads it), whatever
            # brand.yaml says later.
            atomic_write_text(self.files.system_prompt, brand.system_prompt if include else "")
        template = training_chat_template(self.tokenizer)

        def encode(conversations: list) -> tuple[list[dict], int]:
            with_prompt = [
                with_system_prompt(m, brand.system_prompt, include) for m in conversations
            ]
            return tokenize_conversations(
                with_prompt, self.tokenizer, template, self.config.max_length
            )

        train_rows, dropped = encode(brand.train)
        eval_rows, _ = encode(brand.eval)
        if not train_rows:
            raise TrainingError(
                f"no training conversation has an assistant reply within max_length="
                f"{self.config.max_length} tokens; raise max_length."
            )
        self.sizes = {"train": len(train_rows), "eval": len(eval_rows), "dropped": dropped}
        return Dataset.from_list(train_rows), Dataset.from_list(eval_rows) if eval_rows else None

    def fit(self) -> None:
        checkpoint = str(self.resume_from) if self.resume_from else None
        self.output = self.trainer.train(resume_from_checkpoint=checkpoint)

    def finish(self) -> dict:
        state = self.trainer.state
        if self.progress.stopped and state.global_step < state.max_steps:
            metrics = self._metrics("cancelled", eval_after=None)
            if self.sync.is_main:
                atomic_write_json(self.files.metrics, metrics)
            self.events.emit("cancelled", **self.progress.figures(state))
            return metrics
        eval_after = None
        if self.trainer.eval_dataset is not None:
            eval_after = self._last_eval_at(state.global_step)
            if eval_after is None:
                eval_after = self.trainer.evaluate()["eval_loss"]
        if self.sync.is_main:
            if self.base_eval is not None:
                self.base_eval.remember(self._eval_at_start())
            if self.sync.world_size == 1 and self.progress.steps_timed >= 3:
                record_throughput(
                    self.config, self.trainer.computed_tokens, self.progress.train_seconds
                )
        self._save_adapter()
        metrics = self._metrics("succeeded", eval_after=eval_after)
        if self.sync.is_main:
            atomic_write_json(self.files.metrics, metrics)
        self.events.emit(
            "succeeded",
            loss=metrics["final_train_loss"],
            eval_loss=eval_after,
            **self.progress.figures(self.trainer.state),
        )
        return metrics

    # -- helpers ------------------------------------------------------------------------------

    def _evals(self) -> list[dict]:
        return [h for h in self.trainer.state.log_history if "eval_loss" in h]

    def _last_eval_at(self, step: int) -> float | None:
        """The eval loss measured at `step` already (an early stop ends right after one)."""
        evals = self._evals()
        if evals and evals[-1].get("step") == step and step > 0:
            return evals[-1]["eval_loss"]
        return None

    def _eval_at_start(self) -> float | None:
        """The base model's eval loss: measured at step 0 by this run, or remembered."""
        evals = self._evals()
        if evals and evals[0].get("step", 0) == 0:
            return evals[0]["eval_loss"]
        return self.base_eval.loss if self.base_eval is not None else None

    @property
    def _sharded(self) -> bool:
        """Parameters sharded across ranks (FSDP, DeepSpeed ZeRO-3) rather than replicated."""
        return self.sync.world_size > 1 and self.config.distributed in ("fsdp", "deepspeed")

    def _save_adapter(self) -> None:
        """adapter/: adapter_model.safetensors, adapter_config.json and the tokenizer files."""
        if self._sharded:  # every rank hands its shards to Trainer.save_model; rank 0 writes
            with self.sync_dir(self.files.adapter) as folder:
                self.trainer.save_model(str(folder))
                self.sync.barrier()
                if self.sync.is_main:
                    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle
                    (folder / "README.md").unlink(missing_ok=True)
            return
        if not self.sync.is_main:
            return
        with atomic_dir(self.files.adapter) as folder:
            self.trainer.model.save_pretrained(folder, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)
            (folder / "README.md").unlink(missing_ok=True)  # PEFT's model card template

    @contextmanager
    def sync_dir(self, target: Path) -> Iterator[Path]:
        """`atomic_dir(target)` staged by rank 0 and filled by every rank."""
        if not self.sync.is_main:
            yield Path(self.sync.broadcast(None))
            return
        with atomic_dir(target) as folder:
            yield Path(self.sync.broadcast(str(folder)))

    def _metrics(self, state: str, *, eval_after: float | None) -> dict:
        history = self.trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        before = self._eval_at_start()
        progress = self.progress
        return {
            "state": state,
            "steps": self.trainer.state.global_step,
            "total_steps": self.trainer.state.max_steps,
            "epochs": self.trainer.state.epoch,
            "train_loss": getattr(getattr(self, "output", None), "training_loss", None),
            "final_train_loss": losses[-1] if losses else None,
            "eval_loss_before": before,
            "eval_loss_before_remembered": self.base_eval is not None and self.base_eval.hit,
            "eval_loss_after": eval_after,
            "eval_history": [
                {"step": h.get("step"), "eval_loss": h["eval_loss"]} for h in self._evals()
            ],
            "stopped_early": self.early_stopping.stopped_at,
            "tokens_per_s": progress.tokens_per_s,
            "train_tokens": self.trainer.real_tokens,
            "computed_tokens": self.trainer.computed_tokens,
            "train_seconds": round(progress.train_seconds, 2),
            "eval_seconds": round(progress.eval_seconds, 2),
            "duration_s": round(time.time() - self.started, 2),
            "peak_memory_mb": _peak_memory_mb(),
            "train_conversations": self.sizes.get("train"),
            "eval_conversations": self.sizes.get("eval"),
            "dropped_conversations": self.sizes.get("dropped"),
            "base_model": self.config.base_model,
            "quantization": self.config.quantization,
            "compute_dtype": self.config.compute_dtype,
            "dtype_probe": self.dtype_probe,
            "adapter": str(self.files.adapter) if state == "succeeded" else None,
            "checkpoint": str(self.checkpoints.newest() or "") or None,
        }


def _peak_memory_mb() -> float:
    """Peak resident memory of this process so far (rank 0's in a multi-process run), in MB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _rank_device() -> str | None:
    """This rank's GPU in a multi-process CUDA run (None: the default device)."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return None
