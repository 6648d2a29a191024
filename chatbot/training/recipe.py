"""The training recipe: TRL's SFTTrainer with a LoRA adapter on a (4-bit) base, tuned for speed.

`BrandTrainer` changes five things about `SFTTrainer` and nothing else:
- a step's conversations arrive as packed rows under a token budget, their shared system block
  computed once per row (`packing.PackedCollator`); each row is a forward and backward of its own,
  gradients accumulating, so memory is bounded by the budget; the loss is that of the plain batch;
- the loss projects through the LM head only the positions whose next token is learned (the
  assistant replies), instead of every position; the loss value is the same;
- evaluation is the mean loss per learned token over the eval split, like the product's scorecard;
- a loss that is NaN or infinite stops training with a `TrainingError` naming the step;
- checkpoints are written to a temporary folder and renamed into place, complete or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig
from torch.utils.data import DataLoader
from trl import SFTConfig, SFTTrainer

from chatbot.config import TrainConfig
from chatbot.errors import BrandVoiceError
from chatbot.training.data import IGNORE_INDEX
from chatbot.training.distributed import RankSync
from chatbot.training.packing import FINGERPRINTS, REAL_TOKENS, ROWS
from chatbot.training.progress import RunEventsCallback
from chatbot.training.run_files import CheckpointStore, is_disk_full

__all__ = [
    "learned_token_loss",
    "batch_loss",
    "TrainingError",
    "BrandTrainer",
    "lora_config",
    "sft_config",
    "use_gradient_checkpointing",
]

# Inputs the causal LM forward takes from a batch (packed rows add position ids and a 4-D mask).
_MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")
# Eval batches: no gradients are kept, so a larger share of the eval split goes into each batch
# (its rows still hold at most max_batch_tokens tokens) and the system block is shared wider.
_EVAL_BATCH = 32
# Below this size activations fit easily, and recomputing them would only cost time.
_CHECKPOINTING_MIN_PARAMS = 1_000_000_000
# Below this much free memory (after loading the model) activations may not fit a quick run's
# longest batches on the default model (measured peaks up to 2.7 GB, ~2 GB above the model).
_CHECKPOINTING_BELOW_FREE = 3 * 2**30


class TrainingError(BrandVoiceError):
    """Why a run failed (NaN/inf loss, disk full, unusable data), in words the user can act on."""


def lora_config(config: TrainConfig) -> LoraConfig:
    """The adapter: rank, scaling, dropout and target layers from `config`."""
    target = config.lora_target.strip()
    modules: str | list[str] = (
        target if target == "all-linear" else [m.strip() for m in target.split(",") if m.strip()]
    )
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=modules,
        task_type="CAUSAL_LM",
    )


def use_gradient_checkpointing(
    config: TrainConfig, model: torch.nn.Module, *, processes: int = 1
) -> bool:
    """'auto': for models too large to keep every activation, or a machine short of memory.

    Checkpointing trades ~25% of speed for activations that no longer grow with every layer
    (on the default model's quick run: a 1.2 GB peak instead of 1.6-2.7 GB). `processes` on one
    machine share its free memory.
    """
    if config.gradient_checkpointing != "auto":
        return config.gradient_checkpointing == "on"
    # num_parameters() counts a 4-bit weight's real size, not its packed bytes.
    if model.num_parameters() > _CHECKPOINTING_MIN_PARAMS:
        return True
    device = next(model.parameters()).device
    return available_memory_bytes(device) / processes < _CHECKPOINTING_BELOW_FREE


def available_memory_bytes(device: torch.device) -> int:
    """Memory free for training on `device`: the GPU's free memory, or the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def sft_config(
    config: TrainConfig,
    output_dir: Path,
    *,
    on_cpu: bool,
    evaluate: bool,
    eval_on_start: bool,
    gradient_checkpointing: bool,
    processes: int = 1,
) -> SFTConfig:
    """TRL/transformers arguments for `config`; logging every step feeds the progress events.

    With several processes each takes `batch_size // processes` conversations of every batch, so
    the optimizer steps (and the learning-rate schedule) are those of a one-process run.
    """
    eval_every = config.eval_every if evaluate else 0
    per_process = max(1, config.batch_size // processes)
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=per_process,
        per_device_eval_batch_size=max(per_process, _EVAL_BATCH),
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        # No autocast: the model and adapter already compute in bf16 (see BrandTrainer).
        bf16=False,
        use_cpu=on_cpu,
        activation_checkpointing=gradient_checkpointing,
        # Conversations arrive tokenized and cut to config.max_length (see data.py), and are
        # packed by BrandTrainer's own collator (packing.py).
        max_length=None,
        padding_free=False,
        logging_steps=1,
        # Our own NaN check raises; the default filter would silently drop such losses.
        logging_nan_inf_filter=False,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None,
        eval_on_start=eval_on_start,  # the base model's eval loss, for metrics' "before"
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=None,  # CheckpointStore rotates (complete ones only)
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=not on_cpu,
        remove_unused_columns=False,
        # Every LoRA weight takes part in every step: no search for unused parameters.
        ddp_find_unused_parameters=False,
    )


def learned_token_loss(
    model: torch.nn.Module, inputs: dict, *, fused: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL of the learned tokens (labels not IGNORE_INDEX) of a batch, and their count.

    Only positions whose next token is learned go through the LM head (hidden state t predicts
    token t+1): on the default model the head is a fifth of the FLOPs and most positions are
    prompt. On accelerators TRL's fused LM head does this in tiles (Triton where available)
    without ever holding the logits, which bounds memory for large vocabularies and batches. On
    CPU (`fused` False) the model's own forward projects just those positions
    (`logits_to_keep`): TRL's CPU fallback scores every position and accumulates in fp32,
    several times slower there.
    Works for padded and padding-free (one row, position ids) batches alike.
    """
    model_inputs = {k: inputs[k] for k in _MODEL_INPUTS if k in inputs}
    mask = model_inputs.get("attention_mask")
    if mask is not None and mask.dim() == 4:
        model_inputs["attention_mask"] = _mask_for(model, mask)
    if fused is None:
        fused = inputs["input_ids"].device.type != "cpu"
    if fused:  # the head SFTTrainer installs on the model (trl.trainer.utils.add_fused_lm_head)
        out = model(**model_inputs, labels=inputs["labels"], fused_lm_head=True)
        return -out.log_probs.sum(), out.label_mask.sum()
    labels = inputs["labels"][:, 1:]
    learned = labels != IGNORE_INDEX
    keep = learned.any(dim=0).nonzero().squeeze(-1)
    logits = model(**model_inputs, use_cache=False, logits_to_keep=keep).logits
    target = labels[:, keep]
    # fp32 log-softmax: bf16 logits would round the loss of confident tokens to zero.
    loss_sum = F.cross_entropy(
        logits.float().flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss_sum, learned.sum()


def batch_loss(
    model: torch.nn.Module, batch: dict, *, backward: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`learned_token_loss` of a whole batch: its packed rows one after another, or a plain batch.

    `backward`: each row's summed loss is back-propagated as soon as it is computed (so only one
    row's activations are held at a time) and the returned sum is detached.
    """
    if ROWS not in batch:
        loss_sum, count = learned_token_loss(model, batch)
        if backward:
            loss_sum.backward()
        return (loss_sum.detach() if backward else loss_sum), count
    total, count = None, 0
    for row in batch[ROWS]:
        loss_sum, n = learned_token_loss(model, row)
        if backward:
            loss_sum.backward()
            loss_sum = loss_sum.detach()
        total = loss_sum if total is None else total + loss_sum
        count = count + n
    assert total is not None  # a batch has at least one row
    return total, torch.as_tensor(count)


def _mask_for(model: torch.nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """A packed row's boolean 4-D mask as the model's attention takes it.

    SDPA and flex attention take booleans (True: attend); eager attention adds the mask to its
    scores, so it gets 0 where allowed and the dtype's minimum elsewhere.
    """
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", "sdpa") != "eager" or mask.dtype != torch.bool:
        return mask
    dtype = model.get_input_embeddings().weight.dtype
    blocked = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return blocked.masked_fill_(~mask, torch.finfo(dtype).min)


class BrandTrainer(SFTTrainer):
    """SFTTrainer with a lean loss, token-weighted evaluation, NaN checks, atomic checkpoints."""

    def __init__(
        self,
        *args: object,
        checkpoints: CheckpointStore,
        sync: RankSync | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._adapter_in_compute_dtype()
        self.checkpoints = checkpoints
        self.sync = sync or RankSync()
        self.real_tokens = 0
        """Conversation tokens trained on so far in this process (for tokens/s): each
        conversation counted whole, as a plain batch would compute it."""
        self.computed_tokens = 0
        """Tokens actually run through the model: shared prefixes once per row, padding too."""
        self._samples: list[int] = []

    def pop_samples(self) -> list[int]:
        """Fingerprints of the conversations this process trained on since the last call."""
        samples, self._samples = self._samples, []
        return samples

    def _adapter_in_compute_dtype(self) -> None:
        """Keep the LoRA weights in the base model's compute dtype (bf16 where supported).

        The model already computes in that dtype, so training needs no autocast; on CPU,
        autocast's per-op casts halved throughput (measured), and fp32 LoRA weights without it
        cost another quarter in casts. SFTTrainer does the same for 4-bit bases (QLoRA paper);
        this also covers plain LoRA and adapters that a resumed run reloads as fp32.
        """
        dtype = self.model.get_input_embeddings().weight.dtype
        for param in self.model.parameters():
            if param.requires_grad and param.dtype != dtype:
                param.data = param.data.to(dtype)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: object = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._adapter_in_compute_dtype()  # before the optimizer is built from these weights

    # -- loss ---------------------------------------------------------------------------------

    def training_step(
        self,
        model: torch.nn.Module,
        inputs: dict,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Each packed row of the batch is a forward and backward of its own (see packing.py).

        Every row's loss is divided by the learned tokens of the whole step (num_items_in_batch),
        so the accumulated gradient is the plain batch's. In a multi-process run the ranks
        exchange gradients once, after the last row.
        """
        rows = inputs.get(ROWS)
        if rows is None:
            return super().training_step(model, inputs, num_items_in_batch)
        if self.sync.world_size > 1:
            self._samples += list(inputs.get(FINGERPRINTS) or ())
        losses = []
        for i, row in enumerate(rows):
            with self._gradients_kept_local(model, last=i == len(rows) - 1):
                losses.append(super().training_step(model, row, num_items_in_batch))
        return torch.stack(losses).sum()

    def _gradients_kept_local(
        self, model: torch.nn.Module, *, last: bool
    ) -> AbstractContextManager[object]:
        """DDP's no_sync for all but a step's last row: one gradient exchange per step."""
        if last or self.sync.world_size == 1 or not hasattr(model, "no_sync"):
            return nullcontext()
        return model.no_sync()

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict,
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        if return_outputs:
            raise NotImplementedError("BrandTrainer computes the loss without full logits")
        loss_sum, count = learned_token_loss(model, inputs)
        # Trainer counts the learned tokens of every accumulated micro-batch in num_items_in_batch
        # (of every rank, in a multi-process run).
        denominator = num_items_in_batch if num_items_in_batch is not None else count
        loss = loss_sum / torch.as_tensor(denominator).clamp(min=1)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # DDP averages gradients over the ranks, and the denominator already counts every
            # rank's tokens: scale back up, as Trainer.compute_loss does (1 in one process).
            loss = loss * self.accelerator.num_processes
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {float(loss)} at step {self.state.global_step + 1}; try a lower "
                f"learning rate (now {self.args.learning_rate:g}, e.g. learning_rate="
                f"{self.args.learning_rate / 10:g}) or check the brand's data."
            )
        self.real_tokens += int(inputs.get(REAL_TOKENS, 0))
        self.computed_tokens += int(inputs["input_ids"].numel())
        return loss

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset: object = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Mean loss per learned token over the eval split (not a mean of batch means)."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, RunEventsCallback):
                callback.evaluation_started()
        model = self.model
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self._eval_batches(eval_dataset):
                loss_sum, n = batch_loss(model, self._prepare_inputs(batch))
                total, count = total + float(loss_sum), count + int(n)
        model.train(was_training)
        total, count = self.sync.sum(total, count)
        metrics = {f"{metric_key_prefix}_loss": total / max(count, 1)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics

    def _eval_batches(self, eval_dataset: object = None) -> Iterable[dict]:
        """This process's eval batches: all of them, or its own contiguous share of the rows.

        With several processes every row is scored exactly once (the sums are then added up);
        the trainer's own sharded loader would repeat rows to even out the last batch.
        """
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if self.sync.world_size == 1:
            return self.get_eval_dataloader(dataset)
        rows = len(dataset)
        start = rows * self.sync.rank // self.sync.world_size
        end = rows * (self.sync.rank + 1) // self.sync.world_size
        return DataLoader(
            dataset.select(range(start, end)),
            batch_size=self.args.per_device_eval_batch_size,
            collate_fn=self.data_collator,
        )

    # -- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self, model: torch.nn.Module, trial: object) -> None:
        """Let Trainer write its checkpoint into a staging folder: complete, or nothing at all."""
        step = self.state.global_step
        run_output = self.args.output_dir
        try:
            with self._checkpoint_staging(step) as staging:
                # Trainer writes to <output_dir>/checkpoint-<step>; aim it at the staging folder.
                self.args.output_dir = str(staging)
                super()._save_checkpoint(model, trial)
                self.sync.barrier()  # every rank's part (its RNG state, its shards) is written
                if self.sync.is_main:
                    inner = staging / f"checkpoint-{step}"
                    for item in inner.iterdir():
                        os.replace(item, staging / item.name)
                    inner.rmdir()
                    (staging / "README.md").unlink(missing_ok=True)  # model card, not needed
        except (OSError, RuntimeError) as exc:
            if not is_disk_full(exc):
                raise
            previous = self.checkpoints.newest()
            kept = f"; {previous.name} is intact" if previous else ""
            raise TrainingError(
                f"the disk is full: checkpoint-{step} could not be written to "
                f"{self.checkpoints.root}{kept}. Free some space, then resume the run."
            ) from exc
        finally:
            self.args.output_dir = run_output

    @contextmanager
    def _checkpoint_staging(self, step: int) -> Iterator[Path]:
        """The folder a checkpoint is written into: rank 0 stages it, every rank writes in it."""
        if not self.sync.is_main:
            yield Path(self.sync.broadcast(None))
            return
        with self.checkpoints.writing(step) as staging:
            yield Path(self.sync.broadcast(str(staging)))
