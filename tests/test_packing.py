"""Packed rows with a shared prefix: the same loss and gradients as a plain batch, within budget."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from chatbot.training.data import (
    IGNORE_INDEX,
    tokenize_conversations,
    training_chat_template,
    with_system_prompt,
)
from chatbot.training.packing import PackedCollator, plan_rows, shared_prefix_length
from chatbot.training.recipe import batch_loss, learned_token_loss

SYSTEM = "You are Kettlebird Tea's support team. Be warm, brief and kind; sign off as the flock."


def _conversations(n: int, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    teas = ["Ember Oolong", "Morning Mist", "Cedar Chai", "Night Heron"]
    out = []
    for i in range(n):
        tea = rng.choice(teas)
        messages = [
            {"role": "user", "content": f"Order {i}: my {tea} tin " + "arrived dented. " * (i % 4)},
            {"role": "assistant", "content": f"So sorry! A fresh {tea} tin ships today. *KB"},
        ]
        if i % 3 == 0:
            messages += [
                {"role": "user", "content": "Thanks! Tracking?"},
                {"role": "assistant", "content": "It comes by e-mail within the hour. *KB"},
            ]
        out.append(with_system_prompt(messages, SYSTEM, True))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64)
    return model, tokenizer


def _examples(tokenizer, n: int, max_length: int = 512) -> list[dict]:
    template = training_chat_template(tokenizer)
    examples, _ = tokenize_conversations(_conversations(n), tokenizer, template, max_length)
    return examples


def _plain_loss_and_grads(model, examples) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Each conversation in its own forward pass: the reference."""
    model.zero_grad()
    total, count = 0.0, 0
    for e in examples:
        batch = {"input_ids": torch.tensor([e["input_ids"]]), "labels": torch.tensor([e["labels"]])}
        loss_sum, n = learned_token_loss(model, batch)
        loss_sum.backward()
        total, count = total + loss_sum.detach(), count + n
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return total, count, grads


def test_the_shared_prefix_is_the_system_block_and_nothing_learned(tiny) -> None:
    _, tokenizer = tiny
    examples = _examples(tokenizer, 6)
    prefix = shared_prefix_length(examples)
    system_ids = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}], tokenize=True, return_dict=True
    )["input_ids"]
    assert prefix >= len(system_ids)  # the whole system block is shared ...
    for e in examples:
        assert e["input_ids"][:prefix] == examples[0]["input_ids"][:prefix]
        assert all(label == IGNORE_INDEX for label in e["labels"][: prefix + 1])  # ... unlearned


def test_packed_rows_give_the_plain_loss_and_gradients(tiny) -> None:
    model, tokenizer = tiny
    examples = _examples(tokenizer, 7)
    ref_sum, ref_count, ref_grads = _plain_loss_and_grads(model, examples)

    collator = PackedCollator(max_tokens=256, pad_to_multiple_of=64)
    batch = collator(examples)
    assert len(batch["rows"]) > 1  # the budget split the step into several rows
    prefix = shared_prefix_length(examples)
    model.zero_grad()
    loss_sum, count = batch_loss(model, batch, backward=True)
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}

    assert count == ref_count
    assert batch["real_tokens"] == sum(len(e["input_ids"]) for e in examples)
    assert sum(int(r["input_ids"].shape[1]) for r in batch["rows"]) < batch["real_tokens"] - (
        len(examples) - len(batch["rows"])
    ) * prefix + 64 * len(batch["rows"])
    torch.testing.assert_close(loss_sum, ref_sum, rtol=1e-6, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_rows_never_exceed_the_token_budget() -> None:
    rng = random.Random(1)
    for _ in range(200):
        budget = rng.choice([64, 100, 256, 1000])
        prefix = rng.randrange(0, budget // 2)
        lengths = [rng.randint(1, budget - prefix) for _ in range(rng.randint(1, 12))]
        rows = plan_rows(lengths, prefix, budget)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(prefix + sum(lengths[i] for i in row) <= budget for row in rows)


def test_padded_rows_stay_within_budget_and_pad_is_never_attended(tiny) -> None:
    _, tokenizer = tiny
    examples = _examples(tokenizer, 9)
    for budget in (200, 256, 300):
        batch = PackedCollator(max_tokens=budget, pad_to_multiple_of=64)(examples)
        for row in batch["rows"]:
            length = row["input_ids"].shape[1]
            assert length <= budget
            real = row["real_tokens"]
            mask = row["attention_mask"][0, 0]
            assert mask.shape == (length, length)
            assert mask.diagonal().all()  # every token sees itself: no empty softmax row
            assert not mask.triu(1).any()  # causal
            pad_cols = row["labels"][0] == IGNORE_INDEX
            assert real >= int((~pad_cols).sum())


def test_each_conversation_sees_only_the_prefix_and_itself(tiny) -> None:
    _, tokenizer = tiny
    examples = _examples(tokenizer, 3)
    prefix = shared_prefix_length(examples)
    row = PackedCollator(max_tokens=2048)(examples)["rows"][0]
    mask = row["attention_mask"][0, 0]
    lengths = sorted((len(e["input_ids"]) - prefix for e in examples), reverse=True)
    start = prefix
    for n in lengths:
        block = mask[start : start + n]
        assert block[:, :prefix].all()  # the whole shared prefix
        assert not block[:, prefix:start].any()  # no earlier conversation
        assert block[:, start : start + n].equal(torch.ones(n, n, dtype=torch.bool).tril())
        positions = row["position_ids"][0, start : start + n]
        assert positions.tolist() == list(range(prefix, prefix + n))
        start += n


def test_a_brand_without_a_common_prompt_still_packs_exactly(tiny) -> None:
    model, tokenizer = tiny
    template = training_chat_template(tokenizer)
    convs = [[m for m in c if m["role"] != "system"] for c in _conversations(4, seed=3)]
    convs[1] = [{"role": "system", "content": "Another voice entirely."}, *convs[1]]
    examples, _ = tokenize_conversations(convs, tokenizer, template, 512)
    ref_sum, ref_count, _ = _plain_loss_and_grads(model, examples)
    with torch.no_grad():
        loss_sum, count = batch_loss(model, PackedCollator(max_tokens=4096)(examples))
    assert count == ref_count
    torch.testing.assert_close(loss_sum, ref_sum, rtol=1e-6, atol=1e-6)


def test_fingerprints_identify_the_conversations(tiny) -> None:
    _, tokenizer = tiny
    examples = _examples(tokenizer, 4)
    batch = PackedCollator(max_tokens=512)(examples)
    again = PackedCollator(max_tokens=512)(list(reversed(examples)))
    assert sorted(batch["fingerprints"]) == sorted(again["fingerprints"])
    assert len(set(batch["fingerprints"])) == 4
    json.dumps(batch["fingerprints"])  # plain ints: they go into the run's events
