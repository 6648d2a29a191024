"""The training run on a tiny model and a tiny brand: what it learns, writes, and survives."""

from __future__ import annotations

import errno
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from chatbot.config import TrainConfig
from chatbot.training import TrainingError, train
from chatbot.training.data import (
    IGNORE_INDEX,
    read_brand,
    tokenize_conversations,
    training_chat_template,
    with_system_prompt,
)
from chatbot.training.recipe import learned_token_loss
from chatbot.training.run import TrainingRun
from chatbot.training.run_files import COMPLETE_MARKER, EVENT_FIELDS

SYSTEM_PROMPT = "You are Kettlebird Tea's support team. Be warm and brief."


def _conversation(i: int) -> dict:
    messages = [
        {"role": "user", "content": f"Hi, where is my order #{1000 + i}?"},
        {"role": "assistant", "content": f"Sorry for the wait! Order #{1000 + i} ships today. *KB"},
    ]
    if i % 3 == 0:  # some multi-turn conversations
        messages += [
            {"role": "user", "content": "Thanks, and the tracking number?"},
            {"role": "assistant", "content": "You will get it by e-mail within the hour. *KB"},
        ]
    return {"messages": messages}


@pytest.fixture
def brand_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "brand"
    folder.mkdir()
    rows = [_conversation(i) for i in range(16)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:12]))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[12:]))
    (folder / "brand.yaml").write_text(
        f"name: Kettlebird\nsystem_prompt: {json.dumps(SYSTEM_PROMPT)}\n"
        "system_prompt_mode: always\nrules: []\n"
    )
    return folder


def _config(model_dir: Path, **overrides: object) -> TrainConfig:
    values = {
        "base_model": str(model_dir),
        "epochs": 1,
        "batch_size": 2,  # 12 conversations: 6 steps an epoch
        "gradient_accumulation": 1,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "checkpoint_every": 100,
        "max_length": 256,
    }
    return TrainConfig.from_preset("quick", {**values, **overrides})


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _stop_after(step: int) -> tuple[threading.Event, object]:
    stop = threading.Event()

    def on_event(event: dict) -> None:
        if event["state"] == "running" and (event["step"] or 0) >= step:
            stop.set()

    return stop, on_event


# -- data: system prompt and loss mask -------------------------------------------------------


def test_only_assistant_replies_are_learned(tiny_model_dir: Path, brand_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = training_chat_template(tokenizer)
    brand = read_brand(brand_dir)
    conversations = [with_system_prompt(m, brand.system_prompt, True) for m in brand.train]
    examples, dropped = tokenize_conversations(conversations, tokenizer, template, 1024)
    assert dropped == 0 and len(examples) == 12
    for messages, example in zip(conversations, examples, strict=True):
        learned = [
            t
            for t, label in zip(example["input_ids"], example["labels"], strict=True)
            if label != IGNORE_INDEX
        ]
        replies = "".join(
            m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant"
        )
        assert tokenizer.decode(learned) == replies
        # ... and the full text, system prompt first, is what the model's own template renders.
        assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(
            messages, tokenize=False
        )
        assert SYSTEM_PROMPT in tokenizer.decode(example["input_ids"])


def test_training_template_renders_like_the_original(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = training_chat_template(tokenizer)
    assert "{% generation %}" in template and "{% generation %}" not in tokenizer.chat_template
    for messages in [
        _conversation(0)["messages"],
        _conversation(1)["messages"],
        with_system_prompt(_conversation(2)["messages"], SYSTEM_PROMPT, True),
    ]:
        for prompt in (False, True):
            assert tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=prompt, chat_template=template
            ) == tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=prompt
            )


def test_system_prompt_policy() -> None:
    messages = _conversation(1)["messages"]
    assert with_system_prompt(messages, SYSTEM_PROMPT, False) == messages
    assert with_system_prompt(messages, "", True) == messages
    assert with_system_prompt(messages, SYSTEM_PROMPT, True)[0] == {
        "role": "system",
        "content": SYSTEM_PROMPT,
    }
    own = [{"role": "system", "content": "Own."}, *messages]
    assert with_system_prompt(own, SYSTEM_PROMPT, True) == own


def test_max_length_cuts_and_drops(tiny_model_dir: Path, brand_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = training_chat_template(tokenizer)
    brand = read_brand(brand_dir)
    conversations = [with_system_prompt(m, brand.system_prompt, True) for m in brand.train]
    examples, dropped = tokenize_conversations(conversations, tokenizer, template, 20)
    assert not examples and dropped == 12  # 20 tokens hold only the system prompt's start


def test_bad_data_names_file_and_line(tiny_model_dir: Path, brand_dir: Path) -> None:
    with open(brand_dir / "train.jsonl", "a") as fh:
        fh.write('{"messages": [{"role": "user", "content": "no reply"}]}\n')
    with pytest.raises(TrainingError, match=r"train.jsonl, line 13: .*no assistant reply"):
        train(brand_dir.parent / "run", _config(tiny_model_dir), brand_dir)


# -- the loss ----------------------------------------------------------------------------------


def test_padding_free_loss_matches_padded_loss(tiny_model_dir: Path, brand_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    template = training_chat_template(tokenizer)
    examples, _ = tokenize_conversations(read_brand(brand_dir).train[:4], tokenizer, template, 512)
    assert len({len(e["input_ids"]) for e in examples}) > 1  # lengths differ: padding happens
    pad = tokenizer.pad_token_id
    padded = DataCollatorForLanguageModeling(pad_token_id=pad)(examples)
    flat = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)(examples)
    with torch.no_grad():
        padded_sum, padded_n = learned_token_loss(model, padded)
        flat_sum, flat_n = learned_token_loss(model, flat)
        reference = model(**padded, num_items_in_batch=padded_n).loss  # full-logits HF loss
    assert padded_n == flat_n
    torch.testing.assert_close(flat_sum / flat_n, padded_sum / padded_n, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(padded_sum / padded_n, reference, rtol=1e-4, atol=1e-4)


def test_fused_head_path_gives_the_same_loss(tiny_model_dir: Path, brand_dir: Path) -> None:
    """The path CUDA takes (TRL's fused LM head) agrees with the CPU path."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from trl.trainer.utils import add_fused_lm_head

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    add_fused_lm_head(model)  # as SFTTrainer does, before PEFT wraps the model
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear")).eval()
    template = training_chat_template(tokenizer)
    examples, _ = tokenize_conversations(read_brand(brand_dir).train[:4], tokenizer, template, 512)
    batch = DataCollatorForLanguageModeling(tokenizer.pad_token_id, padding_free=True)(examples)
    with torch.no_grad():
        fused_sum, fused_n = learned_token_loss(model, batch, fused=True)
        plain_sum, plain_n = learned_token_loss(model, batch, fused=False)
    assert fused_n == plain_n
    torch.testing.assert_close(fused_sum, plain_sum, rtol=1e-4, atol=1e-3)


# -- a whole run -----------------------------------------------------------------------------


def test_lora_weights_change_and_base_weights_do_not(tiny_model_dir: Path, brand_dir: Path):
    run = TrainingRun(brand_dir.parent / "run", _config(tiny_model_dir), brand_dir, None, None)
    run.setup(resume=False)
    model = run.trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run.fit()
    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    assert lora and all(after[n].requires_grad for n in lora)
    for name, value in before.items():
        changed = not torch.equal(after[name].detach(), value)
        assert changed == (name in lora), name


def test_run_writes_its_folder_and_learns(tiny_model_dir: Path, brand_dir: Path) -> None:
    run_dir = brand_dir.parent / "run"
    seen: list[dict] = []
    metrics = train(run_dir, _config(tiny_model_dir, epochs=3), brand_dir, on_event=seen.append)

    assert metrics["state"] == "succeeded" and metrics["steps"] == 18
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] - 0.5
    assert metrics["tokens_per_s"] > 0 and metrics["train_tokens"] > 0
    assert 100 < metrics["peak_memory_mb"] < 1_000_000  # this process, in MB (not KiB or bytes)
    assert {p.name for p in run_dir.iterdir()} == {
        "config.yaml",
        "events.jsonl",
        "metrics.json",
        "system_prompt.txt",
        "adapter",
        "checkpoints",
    }
    # brand.yaml says "always": the prompt trained with is the one the adapter is chatted with.
    assert (run_dir / "system_prompt.txt").read_text(encoding="utf-8") == SYSTEM_PROMPT
    assert {p.name for p in (run_dir / "adapter").iterdir()} == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    }
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint-18"]
    # config.yaml holds what the run trained with: 'auto' resolved to the measured dtype.
    assert metrics["compute_dtype"] in ("fp32", "bf16") and metrics["dtype_probe"]
    assert metrics["dtype_probe"]["choice"] == metrics["compute_dtype"]
    expected = _config(tiny_model_dir, epochs=3, compute_dtype=metrics["compute_dtype"])
    assert TrainConfig.from_yaml(run_dir / "config.yaml") == expected
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    # The base's eval loss is remembered in the brand folder: the next run skips measuring it.
    again = train(brand_dir.parent / "run2", _config(tiny_model_dir, max_steps=1), brand_dir)
    assert again["eval_loss_before_remembered"] and not metrics["eval_loss_before_remembered"]
    assert again["eval_loss_before"] == metrics["eval_loss_before"]
    assert [h["step"] for h in again["eval_history"]] == [1]  # only the final evaluation

    events = _events(run_dir)
    assert events == seen
    assert all(set(EVENT_FIELDS) <= e.keys() for e in events)
    assert events[0]["state"] == "running" and events[-1]["state"] == "succeeded"
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and steps[-1] == 18
    assert {"running", "evaluating", "checkpoint"} <= {e["state"] for e in events}
    running = [e for e in events if e["state"] == "running" and e["loss"] is not None]
    assert len(running) == 18 and all(e["total_steps"] == 18 for e in running)
    assert all(e["tokens_per_s"] > 0 and e["eta_s"] >= 0 for e in running)


@pytest.mark.parametrize("measured", ["fp32", "bf16"])
def test_the_measured_compute_dtype_is_used_and_recorded(
    tiny_model_dir: Path, brand_dir: Path, monkeypatch: pytest.MonkeyPatch, measured: str
) -> None:
    from chatbot import hardware
    from chatbot.training import run as run_module

    probe = hardware.DtypeProbe(
        tflops={"fp32": 1.0, "bf16": 2.0} if measured == "bf16" else {"fp32": 2.0, "bf16": 1.0},
        choice=measured,
        cpu="test CPU",
        tokens=256,
        seconds=0.1,
    )
    monkeypatch.setattr(
        run_module, "fastest_compute_dtype", lambda *a, **k: (hardware.DTYPES[measured], probe)
    )
    run = TrainingRun(brand_dir.parent / "run", _config(tiny_model_dir), brand_dir, None, None)
    run.setup(resume=False)
    dtype = hardware.DTYPES[measured]
    layers = [m for m in run.trainer.model.modules() if hasattr(m, "compute_dtype")]
    assert layers and all(m.compute_dtype == dtype for m in layers)
    lora = [p for n, p in run.trainer.model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == dtype for p in lora)
    run.fit()
    metrics = run.finish()
    assert metrics["compute_dtype"] == measured and metrics["dtype_probe"]["cpu"] == "test CPU"
    recorded = TrainConfig.from_yaml(brand_dir.parent / "run" / "config.yaml")
    assert recorded.compute_dtype == measured
    # An explicit setting wins over the probe.
    forced = _config(tiny_model_dir, compute_dtype="fp32", max_steps=1)
    assert train(brand_dir.parent / "forced", forced, brand_dir)["dtype_probe"] is None


def test_early_stopping_ends_a_run_that_stopped_improving(
    tiny_model_dir: Path, brand_dir: Path
) -> None:
    # A learning rate of ~0 never lowers the eval loss: patience 1 after a floor of 3 steps.
    config = _config(
        tiny_model_dir,
        epochs=3,
        learning_rate=1e-9,
        eval_every=1,
        early_stopping_patience=1,
        min_steps=3,
    )
    metrics = train(brand_dir.parent / "run", config, brand_dir)
    assert metrics["state"] == "succeeded"
    assert metrics["stopped_early"] == metrics["steps"] == 3 < metrics["total_steps"]
    # The evaluation it stopped on is the final one: not repeated.
    assert [h["step"] for h in metrics["eval_history"]] == [0, 1, 2, 3]
    assert (brand_dir.parent / "run" / "adapter" / "adapter_model.safetensors").is_file()
    # The same run learning normally is not stopped.
    learning = _config(tiny_model_dir, epochs=1, eval_every=2, early_stopping_patience=1)
    assert train(brand_dir.parent / "run2", learning, brand_dir)["stopped_early"] is None


def test_stop_saves_a_loadable_checkpoint_and_resume_finishes(
    tiny_model_dir: Path, brand_dir: Path
) -> None:
    run_dir = brand_dir.parent / "run"
    stop, on_event = _stop_after(2)
    metrics = train(run_dir, _config(tiny_model_dir), brand_dir, stop=stop, on_event=on_event)

    stopped_at = metrics["steps"]
    assert metrics["state"] == "cancelled" and 2 <= stopped_at < 6
    assert _events(run_dir)[-1]["state"] == "cancelled"
    checkpoint = run_dir / "checkpoints" / f"checkpoint-{stopped_at}"
    assert (checkpoint / COMPLETE_MARKER).is_file()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == stopped_at
    _assert_adapter_loads(tiny_model_dir, checkpoint)
    assert not (run_dir / "adapter").exists()

    # An incomplete, newer checkpoint (a crash mid-write) must be ignored.
    broken = run_dir / "checkpoints" / "checkpoint-5"
    shutil.copytree(checkpoint, broken)
    (broken / COMPLETE_MARKER).unlink()

    resumed = train(run_dir, _config(tiny_model_dir), brand_dir, resume=True)
    assert resumed["state"] == "succeeded" and resumed["steps"] == 6
    events = _events(run_dir)
    restart = max(i for i, e in enumerate(events) if e["state"] == "cancelled") + 1
    assert events[restart]["state"] == "running" and events[restart]["step"] == stopped_at
    trained = [e["step"] for e in events[restart:] if e["loss"] is not None]
    assert trained[0] == stopped_at + 1  # continues, does not restart from step 1
    _assert_adapter_loads(tiny_model_dir, run_dir / "adapter")


def test_resumed_run_ends_where_an_uninterrupted_one_does(
    tiny_model_dir: Path, brand_dir: Path
) -> None:
    from safetensors.torch import load_file

    straight = brand_dir.parent / "straight"
    train(straight, _config(tiny_model_dir), brand_dir)
    interrupted = brand_dir.parent / "interrupted"
    stop, on_event = _stop_after(2)
    train(interrupted, _config(tiny_model_dir), brand_dir, stop=stop, on_event=on_event)
    train(interrupted, _config(tiny_model_dir), brand_dir, resume=True)

    def losses(run_dir: Path) -> dict[int, float]:
        return {
            e["step"]: e["loss"]
            for e in _events(run_dir)
            if e["state"] == "running" and e["loss"] is not None
        }

    # Same data order, optimizer and scheduler state: the same losses, step by step (up to
    # bf16 rounding of the adapter weights), and the same final adapter.
    assert losses(interrupted).keys() == losses(straight).keys() == set(range(1, 7))
    for step, loss in losses(straight).items():
        assert losses(interrupted)[step] == pytest.approx(loss, abs=1e-3), step
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(interrupted / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=2e-2, atol=2e-3, msg=name)


def _assert_adapter_loads(base_dir: Path, adapter_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_nan_loss_fails_with_the_reason(tiny_model_dir: Path, brand_dir: Path) -> None:
    run_dir = brand_dir.parent / "run"
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step \d+; try a lower"):
        train(run_dir, _config(tiny_model_dir, learning_rate=1e30), brand_dir)
    last = _events(run_dir)[-1]
    assert last["state"] == "failed" and "try a lower learning rate" in last["error"]


def test_full_disk_fails_and_keeps_the_previous_checkpoint(
    tiny_model_dir: Path, brand_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer

    original = Trainer._save_optimizer_and_scheduler

    def fill_disk_at_step_4(self: Trainer, output_dir: str) -> None:
        if self.state.global_step >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", fill_disk_at_step_4)
    run_dir = brand_dir.parent / "run"
    with pytest.raises(TrainingError, match="the disk is full.*checkpoint-2 is intact"):
        train(run_dir, _config(tiny_model_dir, checkpoint_every=2), brand_dir)
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint-2"]
    assert (run_dir / "checkpoints" / "checkpoint-2" / COMPLETE_MARKER).is_file()
    assert _events(run_dir)[-1]["state"] == "failed"


@pytest.mark.slow
def test_default_model_trains_and_its_adapter_loads_on_the_full_precision_base(
    default_model_dir: Path, brand_dir: Path
) -> None:
    shutil.copy(brand_dir / "train.jsonl", brand_dir / "eval.jsonl")  # learnable in a few steps
    run_dir = brand_dir.parent / "run"
    config = _config(default_model_dir, max_steps=4, batch_size=4, learning_rate=1e-3)
    metrics = train(run_dir, config, brand_dir)
    assert metrics["state"] == "succeeded" and metrics["steps"] == 4
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == default_model_dir
    _assert_adapter_loads(default_model_dir, run_dir / "adapter")


def test_the_estimate_counts_the_run_and_learns_this_machines_speed(
    tiny_model_dir: Path, brand_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatbot.training.estimate import estimate_run

    monkeypatch.setenv("BRANDVOICE_HOME", str(tmp_path / "home"))  # no speed recorded yet
    config = _config(tiny_model_dir, epochs=1)
    first = estimate_run(brand_dir, config)
    assert not first.measured and first.steps == 6 and first.seconds > 0
    assert "a first guess" in first.describe()
    metrics = train(brand_dir.parent / "run", config, brand_dir)
    assert first.train_tokens == metrics["train_tokens"]  # the same tokens, counted in advance
    again = estimate_run(brand_dir, config)
    assert again.measured and "measured on earlier runs here" in again.describe()
    speed = metrics["computed_tokens"] / metrics["train_seconds"]
    assert again.tokens_per_s == pytest.approx(speed, rel=0.05)  # metrics round the seconds
