"""Simulate blind votes on a finished run, train its next version from them (DPO), compare the two.

    .venv/bin/python scripts/bench_votes.py --workspace WS --brand kettlebird [--votes 32]

1. Votes: the run answers customer turns from the brand's training conversations twice (sampled);
   a simulated voter prefers the reply that passes more of the brand's rules (brand.yaml, checked
   by `chatbot.brand.rule_check`); pairs that pass equally many are skipped. Recorded as Compare
votes. 2. Trains the child with `start_from_votes`, through the job system, and times it.
3. Compares parent and child on held-out customer turns (eval.jsonl, never voted on): greedy
   replies, their rule pass rate, the style classifier's P(brand) (the brand's training replies
   against base-model replies to training turns, as the scorecard fits it), and the held-out NLL
   the child's run records for itself and its parent (eval_loss_after/before).

Timings are disturbed by other load on the machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.brand.profile import BrandProfile  # noqa: E402
from chatbot.brand.rule_check import check_reply  # noqa: E402
from chatbot.feedback.votes import Vote, record_vote  # noqa: E402
from chatbot.models import load_base_model  # noqa: E402
from chatbot.runs.adapters import adapter_setup, latest_adapter_run  # noqa: E402
from chatbot.runs.from_votes import start_from_votes  # noqa: E402
from chatbot.runs.jobs import wait_for_run  # noqa: E402
from chatbot.scorecard.style import StyleClassifier  # noqa: E402
from chatbot.workspace import Workspace  # noqa: E402


def _first_turns(path: Path) -> list[str]:
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"] if line.strip() else []
        user = next((m["content"] for m in messages if m["role"] == "user"), None)
        if user and user not in turns:
            turns.append(user)
    return turns


def _replies(model, tokenizer, system: str, prompts: list[str], *, sample: bool, n: int = 1):  # noqa: ANN001, ANN202
    """`n` replies per prompt (batched, left padded), as lists per prompt."""
    tokenizer.padding_side = "left"
    out: list[list[str]] = []
    for start in range(0, len(prompts), 8):
        batch = prompts[start : start + 8]
        texts = [
            tokenizer.apply_chat_template(
                ([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": p}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for p in batch
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            ids = model.generate(
                **enc, max_new_tokens=80, do_sample=sample, temperature=0.9 if sample else None,
                top_p=0.95 if sample else None, num_return_sequences=n,
                repetition_penalty=1.1, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        texts = tokenizer.batch_decode(
            ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        out += [texts[i * n : (i + 1) * n] for i in range(len(batch))]
    return out


def _passed(rules, reply: str) -> tuple[int, int]:  # noqa: ANN001
    results = check_reply(rules, reply)
    return sum(r.passed for r in results), len(results)


def _pass_rate(rules, replies: list[str]) -> float:  # noqa: ANN001
    counts = [_passed(rules, r) for r in replies]
    return sum(p for p, _ in counts) / max(sum(t for _, t in counts), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--brand", required=True)
    parser.add_argument("--votes", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=24, help="base replies for the classifier")
    args = parser.parse_args()
    torch.manual_seed(0)
    ws = Workspace.open(args.workspace)
    slug = ws.find_brand(args.brand)
    parent = latest_adapter_run(ws, slug)
    setup = adapter_setup(ws, parent.id)
    rules = BrandProfile.load(ws.brand_dir(slug) / "brand.yaml").rules
    print(f"parent run {parent.id}; load {os.getloadavg()}")

    from peft import PeftModel

    base, tokenizer = load_base_model(setup.base_model, quantization=setup.quantization)
    model = PeftModel.from_pretrained(base, str(setup.adapter_dir)).eval()
    system = setup.tuned_system_prompt

    started = time.perf_counter()
    votes = 0
    train = _first_turns(ws.brand_dir(slug) / "train.jsonl")
    asked = train[: args.votes * 2]  # about half the sampled pairs differ in rules passed
    for prompt, pair in zip(
        asked, _replies(model, tokenizer, system, asked, sample=True, n=2), strict=True
    ):
        (a, b), (pa, pb) = pair, (_passed(rules, pair[0])[0], _passed(rules, pair[1])[0])
        if pa == pb or votes >= args.votes:
            continue
        record_vote(
            ws,
            Vote(
                brand=slug, mode="blind", prompt=prompt, left_system="tuned",
                right_system="tuned", left_reply=a, right_reply=b,
                verdict="left" if pa > pb else "right", run_id=parent.id,
            ),
        )  # fmt: skip
        votes += 1
    print(f"{votes} simulated votes in {time.perf_counter() - started:.0f} s")

    child = start_from_votes(ws, slug, "dpo", parent_run=parent.id)
    done = wait_for_run(ws, child.id)
    metrics = json.loads((done.run_dir / "metrics.json").read_text())
    print(
        f"child {done.id}: {done.state}, {metrics['steps']} steps, train {metrics['train_seconds']}"
        f" s, whole run {done.finished - done.started:.0f} s; load {os.getloadavg()}"
    )
    before, after = metrics["eval_loss_before"], metrics["eval_loss_after"]
    print(
        f"held-out NLL: parent {before:.4f}, child {after:.4f} ({after / before - 1:+.1%}); "
        f"held-out vote agreement: parent {metrics['vote_agreement_before']}, child "
        f"{metrics['vote_agreement_after']}"
    )

    model.load_adapter(str(done.run_dir / "adapter"), adapter_name="child")
    held_out = _first_turns(ws.brand_dir(slug) / "eval.jsonl")
    model.set_adapter("default")
    parent_replies = [r[0] for r in _replies(model, tokenizer, system, held_out, sample=False)]
    model.set_adapter("child")
    child_replies = [r[0] for r in _replies(model, tokenizer, system, held_out, sample=False)]
    with model.disable_adapter():
        negatives = [
            r[0] for r in _replies(model, tokenizer, "", train[-args.negatives :], sample=False)
        ]
    brand_replies = [
        m["content"]
        for line in (ws.brand_dir(slug) / "train.jsonl").read_text().splitlines()
        for m in json.loads(line)["messages"]
        if m["role"] == "assistant"
    ]
    style = StyleClassifier.fit(brand_replies, negatives)
    for name, replies in (("parent", parent_replies), ("child", child_replies)):
        p_brand = statistics.mean(style.p_brand(replies))
        print(
            f"{name}: rule pass rate {_pass_rate(rules, replies):.1%}, style P(brand) "
            f"{p_brand:.3f} on {len(replies)} held-out turns"
        )
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
