"""A prepared brand as training examples: its system prompt policy, chat template and loss mask.

Reads `train.jsonl`, `eval.jsonl` and the two keys of `brand.yaml` that training needs, applies the
system prompt as configured, renders each conversation with the model's chat template and marks
the tokens the model learns: the assistant turns, each with its end-of-turn token, nothing else.
The template needs `{% generation %}` markers for that; templates without them get a training
twin that renders the same text with the markers added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from chatbot.errors import BrandVoiceError
from chatbot.types import ROLES

__all__ = [
    "BrandData",
    "read_brand",
    "with_system_prompt",
    "training_chat_template",
    "tokenize_conversations",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100
"""Label of a token the loss skips (PyTorch's cross-entropy default)."""

Messages = list[dict[str, str]]

# SmolLM2-Instruct's own template (as shipped in its GGUF and on the hub), recognised verbatim.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
# Its training twin: the same text, with the assistant's reply, end-of-turn token and newline
# inside {% generation %} (the newline too, as TRL's ChatML training templates do); the
# "<|im_start|>assistant\n" header stays outside since inference supplies it as the prompt.
SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' + '\n' }}"
    "{% endgeneration %}{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class DataError(BrandVoiceError):
    """The brand's training files cannot be used; the message names the file and line."""


@dataclass
class BrandData:
    """A prepared brand's conversations and the system prompt policy it asks for."""

    train: list[Messages]
    eval: list[Messages]
    system_prompt: str = ""
    system_prompt_mode: str = "never"


def read_brand(brand_dir: Path) -> BrandData:
    """Read a prepared brand folder: train.jsonl, eval.jsonl (optional) and brand.yaml."""
    brand_dir = Path(brand_dir)
    train = _read_conversations(brand_dir / "train.jsonl", required=True)
    if not train:
        raise DataError(f"{brand_dir / 'train.jsonl'} has no conversations to train on.")
    evals = _read_conversations(brand_dir / "eval.jsonl", required=False)
    prompt, mode = _read_system_prompt(brand_dir / "brand.yaml")
    return BrandData(train, evals, prompt, mode)


def _read_conversations(path: Path, *, required: bool) -> list[Messages]:
    if not path.exists():
        if required:
            raise DataError(f"{path} is missing; prepare the brand first.")
        return []
    conversations = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                conversations.append(_parse_line(line, f"{path}, line {number}"))
    return conversations


def _parse_line(line: str, where: str) -> Messages:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: expected an object with a non-empty 'messages' list")
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(
                f"{where}: message {i + 1} must have a role ({', '.join(ROLES)}) and text content"
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: the conversation has no assistant reply to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _read_system_prompt(path: Path) -> tuple[str, str]:
    """The two brand.yaml keys training uses; the rest of the file belongs to the brand model."""
    if not path.exists():
        return "", "never"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from exc
    prompt = data.get("system_prompt") or ""
    mode = data.get("system_prompt_mode") or "never"
    if not isinstance(prompt, str) or mode not in ("always", "never"):
        raise DataError(
            f"{path}: system_prompt must be text and system_prompt_mode 'always' or 'never'"
        )
    return prompt.strip(), mode


def with_system_prompt(messages: Messages, prompt: str, include: bool) -> Messages:
    """Start the conversation with the brand's system prompt when asked to.

    A conversation that already opens with its own system message keeps it: it is data.
    """
    if not include or not prompt or messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": prompt}, *messages]


def training_chat_template(tokenizer: object) -> str:
    """A chat template with `{% generation %}` markers that renders like the tokenizer's own."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise DataError("The base model's tokenizer has no chat template; choose a chat model.")
    if has_generation_markers(template):
        return template
    if template.strip() == SMOLLM2_CHAT_TEMPLATE:
        return SMOLLM2_TRAINING_TEMPLATE
    try:  # TRL ships training twins of the common families (Llama 3, Qwen, Gemma, Phi, ...)
        patched = get_training_chat_template(tokenizer)
    except ValueError as exc:
        raise DataError(
            "The base model's chat template has no assistant markers and brandvoice has no "
            "training version of it, so the loss cannot be limited to the replies; choose a "
            "model from a common family (SmolLM2, Llama 3, Qwen, Gemma, Phi)."
        ) from exc
    return patched or template


def tokenize_conversations(
    conversations: list[Messages], tokenizer: object, template: str, max_length: int
) -> tuple[list[dict[str, list[int]]], int]:
    """Token ids and labels (IGNORE_INDEX outside assistant replies), cut to `max_length`.

    Returns the examples and how many conversations were left out because nothing to learn
    remained within `max_length`.
    """
    examples, dropped = [], 0
    for messages in conversations:
        out = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            messages,
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids = list(out["input_ids"])[:max_length]
        mask = list(out["assistant_masks"])[:max_length]
        labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
        # Position 0 is never predicted, so a conversation needs a learned token after it.
        if all(label == IGNORE_INDEX for label in labels[1:]):
            dropped += 1
            continue
        examples.append({"input_ids": ids, "labels": labels})
    return examples, dropped
