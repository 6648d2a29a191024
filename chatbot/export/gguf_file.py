"""One GGUF file from a merged Llama-architecture model: weights, tokenizer, chat template, prompt.

The layout follows llama.cpp's own converter (`convert_hf_to_gguf.py`, its `LlamaModel`), written
with the `gguf` package that converter uses:

- tensor names from gguf's `TensorNameMap` for the llama architecture; the output head is left out
  when the model ties it to the token embeddings (llama.cpp then reuses them);
- the q and k projection rows permuted from Hugging Face's rotary layout into llama.cpp's (the
  converter's `LlamaModel.permute`; readers such as transformers undo it);
- 1-D tensors and norms in F32, every other weight in the chosen type: F16, or Q8_0 with F16 where a
  row does not split into Q8_0's 32-value blocks (as the converter falls back);
- hyper-parameters under `llama.*`, and the tokenizer as a GPT-2 style byte-level BPE vocabulary
  (tokens, token types, merges, special token ids, BOS/EOS flags, the chat template), with the
  pre-tokenizer named by the converter's fingerprint of its output;
- the brand's system prompt and where the model came from under `brandvoice.*`.

Q4_K_M is refused with the command that makes it: it needs llama.cpp's own quantizer (llama.cpp
chooses its mixture of 4- and 6-bit blocks per tensor), and the `gguf` package has no K-quant
encoder. brandvoice does not fake one.
"""

from __future__ import annotations

import json
import typing
from collections import Counter
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.errors import BrandVoiceError
from chatbot.types import GgufQuant

__all__ = [
    "GGUF_QUANTS",
    "GgufFile",
    "GgufSource",
    "check_gguf_support",
    "stop_token_ids",
    "write_gguf",
    "SYSTEM_PROMPT_KEY",
]

GGUF_QUANTS: tuple[str, ...] = typing.get_args(GgufQuant)
SYSTEM_PROMPT_KEY = "brandvoice.system_prompt"
"""Metadata key of the system prompt the model was trained with ("" when none)."""

# The converter's fingerprint of a BPE pre-tokenizer: the token ids of this text, hashed. Only the
# tokenizers of Llama-architecture models brandvoice trains on are listed (llama.cpp's own table,
# `get_vocab_base_pre`, has the rest).
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL"
)
_PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}
_QK8_0 = 32  # values per Q8_0 block


@dataclass(frozen=True)
class GgufSource:
    """What goes into the file besides the weights."""

    name: str
    """general.name: the brand's slug and run."""
    system_prompt: str
    base_model: str
    """The base model's public name (hub id or folder name)."""
    license: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    """More `brandvoice.*` string keys (brand, run id)."""


@dataclass(frozen=True)
class GgufFile:
    """A written GGUF: where, in which type, and what it holds."""

    path: Path
    quant: str
    tensor_types: dict[str, int]
    """How many tensors of each GGML type (F32, F16, Q8_0, ...)."""
    pre_tokenizer: str
    stop_token_ids: list[int]


def check_gguf_support(config: Any, quant: str) -> None:
    """Raise a BrandVoiceError saying what to do when this model or type cannot be written."""
    if quant not in GGUF_QUANTS:
        raise BrandVoiceError(
            f"Unknown GGUF quantization {quant!r}; use one of {', '.join(GGUF_QUANTS)}."
        )
    if getattr(config, "model_type", "") != "llama":
        raise BrandVoiceError(
            f"GGUF export writes Llama-architecture models (SmolLM2, Llama 3, ...); this base is "
            f"{getattr(config, 'model_type', 'unknown')!r}. Export the merged model and convert "
            "it with llama.cpp's convert_hf_to_gguf.py instead."
        )
    if quant == "q4_k_m":
        raise BrandVoiceError(
            "q4_k_m needs llama.cpp's own quantizer, which brandvoice does not include (the `gguf` "
            "package writes F16 and Q8_0 but has no K-quant encoder). Export as f16, then run "
            "llama.cpp's `llama-quantize MODEL-f16.gguf MODEL-q4_k_m.gguf Q4_K_M` and point the "
            "Modelfile's FROM line at the new file. A q8_0 export halves the size without it.",
            option="quant",
        )


def write_gguf(model: Any, tokenizer: Any, path: Path, quant: str, source: GgufSource) -> GgufFile:
    """Write `model` (a merged transformers Llama model, float32) with `tokenizer` to `path`."""
    import gguf

    check_gguf_support(model.config, quant)

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    types = _add_tensors(writer, model, quant)
    _add_model_metadata(writer, model.config, file_type[quant], source)
    pre, stops = _add_tokenizer(writer, tokenizer, model)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GgufFile(path, quant, dict(types), pre, stops)


# ----------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q/k projection from Hugging Face's rotary halves to llama.cpp's interleaved pairs.

    The same reshape as the converter's `LlamaModel.permute` (for k, `n_head` is the kv heads).
    """
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _add_tensors(writer: Any, model: Any, quant: str) -> Counter[str]:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    types: Counter[str] = Counter()
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses token_embd for the output when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise BrandVoiceError(
                f"GGUF export does not know where the tensor {hf_name!r} of this model goes; "
                "convert the merged export with llama.cpp's convert_hf_to_gguf.py instead."
            )
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, config.num_key_value_heads)
        qtype = _tensor_type(name, data, quant)
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        types[qtype.name] += 1
    return types


def _tensor_type(name: str, data: np.ndarray, quant: str) -> Any:
    from gguf import GGMLQuantizationType as T

    if data.ndim <= 1 or name.endswith("_norm.weight"):
        return T.F32  # llama.cpp computes norms and other 1-D tensors in F32
    if quant == "q8_0" and data.shape[-1] % _QK8_0 == 0:
        return T.Q8_0
    return T.F16


# ----------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------


def _add_model_metadata(writer: Any, config: Any, file_type: int, source: GgufSource) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(source.name)
    if source.license:
        writer.add_license(source.license)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    head_dim = getattr(config, "head_dim", None) or (
        config.hidden_size // config.num_attention_heads
    )
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_string(SYSTEM_PROMPT_KEY, source.system_prompt)
    writer.add_string("brandvoice.base_model", source.base_model)
    for key, value in source.extra.items():
        writer.add_string(f"brandvoice.{key}", value)


def _rope_theta(config: Any) -> float:
    """RoPE's base frequency; plain (unscaled) RoPE only, as the llama models brandvoice trains."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", None):
        raise BrandVoiceError(
            f"GGUF export handles plain RoPE; this model uses {kind!r} scaling. Convert the merged "
            "export with llama.cpp's convert_hf_to_gguf.py instead."
        )
    return params.get("rope_theta", getattr(config, "rope_theta", 10000.0))


def _add_tokenizer(writer: Any, tokenizer: Any, model: Any) -> tuple[str, list[int]]:
    """The byte-level BPE vocabulary as the converter's `_set_vocab_gpt2` writes it.

    Returns the pre-tokenizer's name and the ids that end a reply.
    """
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend.get("model", {}).get("type") != "BPE":
        raise BrandVoiceError(
            "GGUF export writes byte-level BPE tokenizers (SmolLM2, Llama 3); this model's is "
            f"{backend.get('model', {}).get('type')!r}. Convert the merged export with llama.cpp's "
            "convert_hf_to_gguf.py instead."
        )
    pre = _pre_tokenizer(tokenizer, backend)
    tokens, token_types = _vocabulary(tokenizer, model.config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(
        [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    )
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a")
    writer.add_add_bos_token(len(full) > len(plain) and full[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(full) > len(plain) and full[-1] == tokenizer.eos_token_id)
    stops = stop_token_ids(tokenizer, model)
    if tokenizer.eos_token_id is not None and len(stops) > 1:
        # The end-of-turn token, when the model ends turns with another than its EOS.
        writer.add_eot_token_id(next(t for t in stops if t != tokenizer.eos_token_id))
    if not tokenizer.chat_template:
        raise BrandVoiceError("The model's tokenizer has no chat template to put into the GGUF.")
    writer.add_chat_template(tokenizer.chat_template)
    return pre, stops


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """Every id that ends a reply: the tokenizer's EOS and the generation config's EOS ids."""
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= {configured} if isinstance(configured, int) else set(configured or [])
    return sorted(ids)


def _pre_tokenizer(tokenizer: Any, backend: dict[str, Any]) -> str:
    """llama.cpp's name for how this tokenizer splits text before BPE.

    First the converter's fingerprint of known tokenizers; else a vocabulary split exactly as GPT-2
    splits it (a lone byte-level pre-tokenizer with its regex, no normalizer) is "gpt-2".
    """
    digest = sha256(str(tokenizer.encode(_CHECK_TEXT)).encode()).hexdigest()
    name = _PRE_TOKENIZERS.get(digest)
    pre = backend.get("pre_tokenizer") or {}
    if name is None and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        name = "gpt-2" if backend.get("normalizer") is None else None
    if name is None:
        raise BrandVoiceError(
            "GGUF export does not recognise this tokenizer's pre-tokenizer (how text is split "
            "before BPE), so llama.cpp could tokenize differently from training. Known: "
            f"{', '.join(sorted(set(_PRE_TOKENIZERS.values())))}. Convert the merged export with "
            "llama.cpp's convert_hf_to_gguf.py instead."
        )
    return name


def _vocabulary(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and their types, id by id, as the converter's `get_vocab_base` lists them."""
    from gguf import TokenType

    reverse = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            special = added[i].special or (token.startswith("<|") and token.endswith("|>"))
            tokens.append(token)
            types.append(TokenType.CONTROL if special else TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(TokenType.NORMAL)
    return tokens, types
