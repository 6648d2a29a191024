"""A micro Llama for the GGUF tests: a 400-token byte-level BPE tokenizer and 2 small layers.

The default model's 49,152-token vocabulary makes every GGUF read (the metadata is parsed token by
token) take tens of seconds; a vocabulary trained here from the test brand's own conversations
keeps the same kind of tokenizer (byte-level BPE, ChatML special tokens, SmolLM2's chat template)
and makes a read take a second.
"""

from __future__ import annotations

import json
from pathlib import Path

ASSETS = Path(__file__).parent / "assets" / "brand"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _texts() -> list[str]:
    lines = (ASSETS / "conversations.jsonl").read_text(encoding="utf-8").splitlines()
    return [m["content"] for line in lines if line.strip() for m in json.loads(line)["messages"]]


def make_micro_model(folder: Path) -> Path:
    """Write the micro model and its tokenizer (with SmolLM2's chat template) into `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from chatbot.training.data import SMOLLM2_CHAT_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_texts(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
