"""How likely each system finds the brand's real held-out replies: NLL and perplexity per token.

"Assistant token" means exactly what it means in training: conversations are rendered and masked
by `chatbot.training.data` (the reply, its end-of-turn token and newline), cut to the run's
`max_length`, and each learned token's NLL is taken from an fp32 log-softmax as the trainer's
`learned_token_loss` takes it. So the tuned figure is the run's final eval loss measured again,
and the base and prompted figures sit on the same scale.

One model serves all three systems: the run's adapter is loaded once and switched off with PEFT's
`disable_adapter()` for base and prompted. The model is the one the engine loaded, at the run's
quantization (4-bit NF4 for QLoRA runs), so the figures describe the model as trained and served,
not a full-precision twin of it. Scoring runs under `inference_mode` with no sampling, one
conversation at a time (no padding), so the same run gives the same figures every time.

Every conversation of a system starts with the same tokens (the system block, up to the first
customer words); their keys and values are computed once and each conversation continues from a
copy of them. On a CPU that halves the work for a brand with a long style prompt.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from chatbot.engine.prefix_cache import common_prefix
from chatbot.errors import BrandVoiceError
from chatbot.scorecard.card import Likelihood
from chatbot.training.data import (
    IGNORE_INDEX,
    tokenize_conversations,
    training_chat_template,
    with_system_prompt,
)

__all__ = [
    "held_out_likelihood",
    "adapter_off",
    "without_system_messages",
    "next_token_nlls",
    "prefix_cache",
]

Messages = list[dict[str, str]]


def without_system_messages(messages: Messages) -> Messages:
    """The conversation's customer and assistant turns only.

    The three systems differ only in the system prompt each is given; a system message stored in
    the data would otherwise be shared by all three and blur that difference.
    """
    return [m for m in messages if m["role"] != "system"]


def adapter_off(model: torch.nn.Module) -> AbstractContextManager[Any]:
    """PEFT's adapter switch, or nothing when the model carries no adapter."""
    from peft import PeftModel

    return model.disable_adapter() if isinstance(model, PeftModel) else nullcontext()


def held_out_likelihood(
    model: torch.nn.Module,
    tokenizer: Any,
    conversations: list[Messages],
    system_prompt: str,
    *,
    adapter: bool,
    max_length: int,
    step: Callable[[], None] | None = None,
    shown: Messages | None = None,
) -> Likelihood:
    """Mean NLL per assistant token of `conversations`, each started with `system_prompt`.

    An empty `system_prompt` adds none, so the chat template adds its own default if it has one
    (what the base model sees out of the box). `adapter=False` scores with the adapter off.
    `step` is called after each conversation is scored. `shown`: example turns put between the
    system prompt and every conversation (few-shot); they are never scored and take nothing from
    `max_length`, so each conversation is cut exactly where it is cut without them.
    """
    lead = list(shown or [])
    prompted = [
        with_system_prompt([*lead, *without_system_messages(m)], system_prompt, bool(system_prompt))
        for m in conversations
    ]
    template = training_chat_template(tokenizer)
    head = _ids(tokenizer, template, lead, system_prompt) if lead else []
    skip = len(head)
    extra = 0
    if lead and conversations:  # the tokens the examples add, whatever the template puts first
        probe = without_system_messages(conversations[0])
        extra = len(_ids(tokenizer, template, [*lead, *probe], system_prompt)) - len(
            _ids(tokenizer, template, probe, system_prompt)
        )
    examples, _ = tokenize_conversations(prompted, tokenizer, template, max_length + extra)
    for example in examples:
        if example["input_ids"][:skip] != head:
            raise BrandVoiceError(
                "The chat template renders the few-shot examples differently before each "
                "conversation, so they cannot be left out of the score."
            )
        example["labels"][:skip] = [IGNORE_INDEX] * skip
    # A conversation cut off right after the examples has nothing of its own left to score.
    examples = [e for e in examples if any(t != IGNORE_INDEX for t in e["labels"][1:])]
    with torch.inference_mode(), nullcontext() if adapter else adapter_off(model):
        total, count = _score(model, examples, step)
    if not count:
        raise BrandVoiceError(
            f"None of the {len(conversations)} held-out conversations has an assistant reply "
            f"within max_length={max_length} tokens, so there is nothing to score."
        )
    nll = total / count
    return Likelihood(
        nll=nll,
        perplexity=math.exp(nll),
        tokens=count,
        conversations=len(examples),
    )


def _ids(tokenizer: Any, template: str, messages: Messages, system_prompt: str) -> list[int]:
    """The token ids of `messages` after the system prompt, as training renders them."""
    rendered = with_system_prompt(list(messages), system_prompt, bool(system_prompt))
    out = tokenizer.apply_chat_template(
        rendered, chat_template=template, tokenize=True, return_dict=True
    )
    return list(out["input_ids"])


def _shared_length(examples: list[dict[str, list[int]]]) -> int:
    """How many leading tokens every example shares with nothing learned in or just after them.

    Token t is predicted from position t - 1, so the first token after the shared part must not
    be learned either: the shared part's own logits are never computed.
    """
    if not examples:
        return 0
    first = examples[0]["input_ids"]
    shared = min((common_prefix(first, e["input_ids"]) for e in examples[1:]), default=len(first))
    learned = min(
        next(t for t, label in enumerate(e["labels"]) if label != IGNORE_INDEX) for e in examples
    )
    return max(0, min(shared, learned - 1))


def prefix_cache(model: torch.nn.Module, ids: list[int]) -> Any:
    """The keys and values of `ids`, for `next_token_nlls` to continue from (never changed)."""
    device = next(model.parameters()).device
    return model(input_ids=torch.tensor([ids], device=device), use_cache=True).cache


def next_token_nlls(
    model: torch.nn.Module, ids: list[int], targets: list[int], prefix: Any | None = None
) -> torch.Tensor:
    """NLL (nats, fp32) of each scored target: `targets[i]` is the token that follows `ids[i]`,
    or IGNORE_INDEX where nothing is scored. `ids` continue the tokens cached in `prefix`, if any.

    Returns one value per scored target, in order.
    """
    device = next(model.parameters()).device
    # Logits only where the next token is scored: the LM head is a large part of the work.
    keep = [i for i, target in enumerate(targets) if target != IGNORE_INDEX]
    logits = model(
        input_ids=torch.tensor([ids], device=device),
        cache=copy.deepcopy(prefix) if prefix is not None else None,
        use_cache=prefix is not None,
        logits_to_keep=torch.tensor(keep, device=device),
    ).logits[0]
    # fp32 log-softmax, as in training: bf16 logits would round small losses to zero.
    target = torch.tensor([targets[i] for i in keep], device=device)
    return F.cross_entropy(logits.float(), target, reduction="none")


def _score(
    model: torch.nn.Module,
    examples: list[dict[str, list[int]]],
    step: Callable[[], None] | None = None,
) -> tuple[float, int]:
    """Summed NLL of the learned tokens of `examples`, and how many there are."""
    shared = _shared_length(examples)
    prefix = prefix_cache(model, examples[0]["input_ids"][:shared]) if shared else None
    total, count = 0.0, 0
    for example in examples:
        ids, labels = example["input_ids"][shared:], example["labels"][shared + 1 :]
        nlls = next_token_nlls(
            model, ids, labels + [IGNORE_INDEX] * (len(ids) - len(labels)), prefix
        )
        total += float(nlls.sum())
        count += len(nlls)
        if step:
            step()
    return total, count
