"""How likely each system finds the brand's real held-out replies: NLL and perplexity per token.

"Assistant token" means exactly what it means in training: conversations are rendered and masked
by `chatbot.training.data` (the reply, its end-of-turn token and newline) and scored with the
trainer's own `learned_token_loss`, cut to the run's `max_length`. So the tuned figure is the
run's final eval loss measured again, and the base and prompted figures sit on the same scale.

One model serves all three systems: the run's adapter is loaded once and switched off with PEFT's
`disable_adapter()` for base and prompted. The model is the one the engine loaded, at the run's
quantization (4-bit NF4 for QLoRA runs), so the figures describe the model as trained and served,
not a full-precision twin of it. Scoring runs under `inference_mode` with no sampling, one
conversation at a time (no padding), so the same run gives the same figures every time.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from chatbot.errors import BrandVoiceError
from chatbot.scorecard.card import Likelihood
from chatbot.training.data import tokenize_conversations, training_chat_template, with_system_prompt
from chatbot.training.recipe import learned_token_loss

__all__ = ["held_out_likelihood", "adapter_off", "without_system_messages"]

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
) -> Likelihood:
    """Mean NLL per assistant token of `conversations`, each started with `system_prompt`.

    An empty `system_prompt` adds none, so the chat template adds its own default if it has one
    (what the base model sees out of the box). `adapter=False` scores with the adapter off.
    """
    prompted = [
        with_system_prompt(without_system_messages(m), system_prompt, bool(system_prompt))
        for m in conversations
    ]
    template = training_chat_template(tokenizer)
    examples, _ = tokenize_conversations(prompted, tokenizer, template, max_length)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode(), nullcontext() if adapter else adapter_off(model):
        for example in examples:
            inputs = {
                key: torch.tensor([example[key]], device=device) for key in ("input_ids", "labels")
            }
            loss_sum, n = learned_token_loss(model, inputs)
            total, count = total + float(loss_sum), count + int(n)
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
