"""The Ollama Modelfile: its Go template renders conversations exactly as the chat template does."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.errors import BrandVoiceError
from chatbot.export.go_template import TemplateError, render
from chatbot.export.ollama import (
    CHECK_CONVERSATIONS,
    check_template,
    go_template,
    modelfile,
    ollama_messages,
    stop_strings,
    turn_format,
)

BRAND_PROMPT = "You are Kettlebird's assistant: warm, brief, no ALL-CAPS."
# A ChatML template without a default system prompt (as Qwen-style models write it).
PLAIN_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A template that folds the system prompt into the first user turn: not expressible turn by turn.
FOLDED = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }}"
    " [/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def tokenizer(default_model_dir: Path):  # noqa: ANN201 - a transformers tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


def _go(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"Role": m["role"], "Content": m["content"]} for m in messages]


def test_the_renderer_follows_go_semantics():
    data = {
        "Messages": _go([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    }
    template = "x  \n{{- range $i, $m := .Messages }}\n{{- if eq $i 0 }}[{{ $m.Role }}]{{ end }}"
    template += '{{ $m.Content }}{{ if and (ne $m.Role "user") (eq $i 1) }}!{{ else }},{{ end }}'
    template += "{{ end -}}  \n y"
    assert render(template, data) == "x[user]a,b!y"  # trims, range index, and/ne/eq, else
    with pytest.raises(TemplateError, match="no field"):
        render("{{ range $i, $m := .Messages }}{{ $m.Name }}{{ end }}", data)
    with pytest.raises(TemplateError, match="not closed"):
        render("{{ if eq 1 1 }}open", data)


def test_smollm2_template_and_modelfile_template_agree_token_for_token(tokenizer):
    fmt = turn_format(tokenizer)
    assert (
        fmt.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )
    template = go_template(fmt)
    assert check_template(template, tokenizer, BRAND_PROMPT) == []
    assert check_template(template, tokenizer, "") == []  # no SYSTEM: the template's default
    for messages in CHECK_CONVERSATIONS:
        sent = ollama_messages(BRAND_PROMPT, messages)
        want = tokenizer.apply_chat_template(sent, tokenize=False, add_generation_prompt=True)
        got = render(template, {"Messages": _go(sent)})
        assert tokenizer.encode(got, add_special_tokens=False) == tokenizer.encode(
            want, add_special_tokens=False
        )
        assert got == want


def test_a_template_without_a_default_system_prompt(tokenizer):
    tokenizer.chat_template, saved = PLAIN_CHATML, tokenizer.chat_template
    try:
        fmt = turn_format(tokenizer)
        assert fmt.default_system is None and fmt.begin == ""
        assert check_template(go_template(fmt), tokenizer, BRAND_PROMPT) == []
    finally:
        tokenizer.chat_template = saved


def test_a_template_that_cannot_be_read_as_turns_is_refused(tokenizer):
    tokenizer.chat_template, saved = FOLDED, tokenizer.chat_template
    try:
        with pytest.raises(BrandVoiceError, match="cannot be read as turns"):
            turn_format(tokenizer)
    finally:
        tokenizer.chat_template = saved


def test_the_modelfile_has_a_stop_for_every_end_token_and_the_brand_settings(tokenizer):
    fmt = turn_format(tokenizer)
    stops = stop_strings(tokenizer, [tokenizer.eos_token_id], fmt)
    assert stops == ["<|im_end|>", "<|im_start|>"]
    text = modelfile(
        gguf_name="kettlebird-q8_0.gguf",
        template=go_template(fmt),
        system_prompt=BRAND_PROMPT,
        stops=stops,
        sampling={"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1, "num_predict": 200},
        header="Kettlebird\nollama create kettlebird -f Modelfile",
    )
    lines = text.splitlines()
    assert lines[:3] == [
        "# Kettlebird",
        "# ollama create kettlebird -f Modelfile",
        "FROM ./kettlebird-q8_0.gguf",
    ]
    assert f'SYSTEM """{BRAND_PROMPT}"""' in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|im_start|>"' in lines
    assert "PARAMETER repeat_penalty 1.1" in lines
    with pytest.raises(BrandVoiceError, match='contains """'):
        modelfile(
            gguf_name="m.gguf", template="t", system_prompt='say """hi"""', stops=[],
            sampling={}, header="",
        )  # fmt: skip
