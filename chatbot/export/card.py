"""The model card (README.md) shipped with every export: what the model is and how to use it.

Everything the card says is read from the run and brand folders and handed over as `CardFacts`;
this module only writes Markdown. Personal data never reaches it: the data statistics are counts,
and the redaction report contributes counts per type, never samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CardFacts", "model_card"]

_HYPERPARAMETERS = (
    "preset",
    "quantization",
    "epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "batch_size",
    "gradient_accumulation",
    "max_length",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target",
    "system_prompt",
    "seed",
)


@dataclass(frozen=True)
class CardFacts:
    """What the card reports. Dicts are the run's and brand's own files, as read (may be empty)."""

    brand_name: str
    run_id: str
    format: str
    """"adapter" or "merged"."""
    model_name: str
    """The name the serving commands give the model (the brand's slug)."""
    base_model: str
    """The base model's public name (hub id) or folder name."""
    base_license: str
    base_note: str
    system_prompt: str
    check_prompt: str
    check_tokens: int
    check_reply: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    scorecard_table: tuple[list[str], list[list[str]]] | None = None
    """The scorecard's summary (header, rows), when the run was evaluated."""
    scorecard_headlines: list[str] = field(default_factory=list)
    imported: dict[str, Any] | None = None
    lora_rank: int | None = None
    max_lora_rank: int | None = None
    vllm_problems: list[str] = field(default_factory=list)
    vllm_version: str = ""
    quantization: str = ""
    """GGUF exports: the file's type (f16, q8_0, q4_k_m)."""
    gguf_file: str = ""
    verification: dict[str, Any] = field(default_factory=dict)
    """GGUF exports: what each reader reproduced (empty until verified)."""
    parent_run: str = ""
    """The run whose adapter this one was trained from (training from votes)."""


def model_card(facts: CardFacts) -> str:
    """The whole README.md, front matter first (the model hub reads it)."""
    sections = [
        _front_matter(facts),
        _title(facts),
        _data_section(facts),
        _training_section(facts),
        _scorecard_section(facts),
        _use_section(facts),
        _load_section(facts),
        _serve_section(facts),
        _check_section(facts),
    ]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def _front_matter(f: CardFacts) -> str:
    library = {"adapter": "peft", "gguf": "gguf"}.get(f.format, "transformers")
    license_line = f"license: {f.base_license.lower()}\n" if _known(f.base_license) else ""
    extra_tag = "\n  - gguf" if f.format == "gguf" else ""
    return (
        f"---\nbase_model: {f.base_model}\nlibrary_name: {library}\n{license_line}"
        f"pipeline_tag: text-generation\ntags:\n  - brandvoice\n  - lora\n  - chat{extra_tag}\n---"
    )


def _known(license_name: str) -> bool:
    return bool(license_name) and not license_name.startswith("not recorded")


def _title(f: CardFacts) -> str:
    what = {
        "adapter": "a LoRA adapter",
        "merged": "a merged model (base + LoRA adapter, bf16)",
        "gguf": f"one GGUF file (base + LoRA adapter merged, {f.quantization.upper()}) for "
        "llama.cpp and Ollama",
    }[f.format]
    lines = [
        f"# {f.brand_name}: brand voice chat model",
        "",
        f"This is {what} that answers customers in the voice of **{f.brand_name}**, made with "
        f"brandvoice from the brand's sample conversations and style guide (run `{f.run_id}`).",
        "",
        f"- Base model: `{f.base_model}` (licence: {f.base_license}). {f.base_note}".rstrip(),
        "- Using these weights is subject to the base model's licence.",
    ]
    return "\n".join(lines)


def _data_section(f: CardFacts) -> str:
    if not f.report:
        return "## Training data\n\nNot recorded with this run (the adapter was imported)."
    stats = f.report.get("stats", {})
    split = f.report.get("split", {})
    words = stats.get("words_per_reply", {})
    rows = [
        ("conversations", stats.get("conversations")),
        ("turns", stats.get("turns")),
        ("assistant replies", stats.get("assistant_replies")),
        ("training / held-out conversations", _pair(split.get("train"), split.get("eval"))),
        ("words per reply (median)", words.get("p50")),
        ("tokens", stats.get("total_tokens")),
    ]
    lines = ["## Training data", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows if value not in (None, "")]
    lines += ["", _privacy_line(f.report.get("pii", {}))]
    return "\n".join(lines)


def _pair(a: object, b: object) -> str:
    return f"{a} / {b}" if a is not None and b is not None else ""


def _privacy_line(pii: dict[str, Any]) -> str:
    if not pii.get("enabled", False):
        return (
            "**PII redaction was off** for this brand's data: the model may have seen personal "
            "data."
        )
    counts = pii.get("counts") or {}
    found = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none found"
    return (
        "PII redaction was applied before training: e-mail addresses, phone numbers, payment "
        "cards, IBANs and IP addresses were replaced by placeholders such as `<EMAIL>` "
        f"(replaced: {found})."
    )


def _training_section(f: CardFacts) -> str:
    if f.imported is not None:
        source = f.imported.get("archive", "an archive")
        return (
            f"## Training\n\nImported from `{source}`: trained outside brandvoice, so its "
            f"training settings are not known here. LoRA rank: {f.lora_rank}."
        )
    lines = ["## Training", "", _method_line(f)]
    lines += ["", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {f.config[k]} |" for k in _HYPERPARAMETERS if k in f.config]
    m = f.metrics
    results = [
        ("optimizer steps", m.get("steps")),
        ("final training loss", _num(m.get("final_train_loss"))),
        ("held-out loss before", _num(m.get("eval_loss_before"))),
        ("held-out loss after", _num(m.get("eval_loss_after"))),
    ]
    results = [(k, v) for k, v in results if v not in (None, "")]
    if results:
        lines += ["", "| result | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in results]
    return "\n".join(lines)


def _method_line(f: CardFacts) -> str:
    method = str(f.config.get("method", "sft"))
    if method == "sft" or not f.parent_run:
        return "QLoRA-style supervised fine-tuning (TRL SFTTrainer, PEFT LoRA)."
    trainer = "DPOTrainer" if method == "dpo" else "KTOTrainer"
    return (
        f"Preference tuning on blind votes from the app's Compare tab (TRL {trainer}, "
        f"{method.upper()}), starting from the adapter of run `{f.parent_run}` (its parent; "
        "that run's own card describes its supervised fine-tuning)."
    )


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ""


def _scorecard_section(f: CardFacts) -> str:
    """The scorecard's own summary table and headlines (chatbot.scorecard), if the run has one."""
    if f.scorecard_table is None:
        return ""
    header, rows = f.scorecard_table
    lines = [
        "## Scorecard",
        "",
        "Held-out conversations answered by the base model, the base model with the brand's "
        "prompt, and this tuned model.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
    ]
    if f.scorecard_headlines:
        lines += ["", *(f"- {line}" for line in f.scorecard_headlines)]
    return "\n".join(lines)


def _use_section(f: CardFacts) -> str:
    prompt = (
        f"It was trained with this system prompt, which `system_prompt.txt` holds; give it the "
        f"same one:\n\n> {f.system_prompt.strip().replace(chr(10), chr(10) + '> ')}"
        if f.system_prompt.strip()
        else "It was trained without a system prompt (`system_prompt.txt` is empty)."
    )
    return "\n".join(
        [
            "## Intended use and limitations",
            "",
            f"Drafting customer-service replies in the voice of {f.brand_name}, with a person "
            "reviewing them. " + prompt,
            "",
            "- It imitates a tone; it knows only what the base model and the sample conversations "
            "held. It can state wrong facts (prices, policies, order status) confidently: ground "
            "it in real data before customers see its answers.",
            "- Small base models follow instructions loosely and may drift out of the voice in "
            "long conversations.",
            "- `brand.yaml` lists the style rules read from the guide; brandvoice's scorecard "
            "checks replies against them.",
            "- Not for medical, legal or financial advice, or for decisions about people.",
        ]
    )


def _load_section(f: CardFacts) -> str:
    if f.format == "gguf":
        return _gguf_load_section(f)
    if f.format == "adapter":
        code = (
            "from peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{f.base_model}", dtype="bfloat16")\n'
            'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
    else:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
    chat = (
        'system = open("path/to/this/folder/system_prompt.txt").read()\n'
        'messages = ([{"role": "system", "content": system}] if system else []) + [\n'
        '    {"role": "user", "content": "Where is my order?"}\n]\n'
        "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
        'return_tensors="pt")\n'
        "out = model.generate(ids, max_new_tokens=200)\n"
        "print(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))"
    )
    return "\n".join(
        [
            "## Load it",
            "",
            "Unzip the export into a folder, then:",
            "",
            "```python",
            code,
            "",
            chat,
            "```",
            "",
            "`generation_config.json` holds the sampling settings brandvoice chats with "
            "(temperature, top_p, repetition penalty).",
        ]
    )


def _gguf_load_section(f: CardFacts) -> str:
    system = ' -sys "$(cat system_prompt.txt)"' if f.system_prompt.strip() else ""
    return "\n".join(
        [
            "## Run it with Ollama",
            "",
            f"`Modelfile` points at `{f.gguf_file}` and carries the chat template (as a Go "
            "template), a stop for every end-of-turn token, the system prompt and brandvoice's "
            "sampling settings. In this folder:",
            "",
            "```bash",
            f"ollama create {f.model_name} -f Modelfile",
            f"ollama run {f.model_name}",
            "```",
            "",
            "## Run it with llama.cpp",
            "",
            "The GGUF holds the tokenizer, the chat template and the stop tokens; the system "
            "prompt it was trained with is in its metadata (`brandvoice.system_prompt`) and in "
            "`system_prompt.txt`: llama.cpp does not add it by itself.",
            "",
            "```bash",
            f"llama-cli -m {f.gguf_file} -cnv{system}",
            f"llama-server -m {f.gguf_file} --jinja --port 8080   # OpenAI-compatible API",
            "```",
        ]
    )


def _serve_section(f: CardFacts) -> str:
    if f.format == "gguf":
        return ""
    if f.format == "merged":
        command = f"vllm serve path/to/this/folder --served-model-name {f.model_name}"
    else:
        command = (
            f"vllm serve {f.base_model} --enable-lora --lora-modules {f.model_name}="
            f"path/to/this/folder --max-lora-rank {f.max_lora_rank or 'R'}"
        )
    lines = [
        "## Serve it",
        "",
        f"An OpenAI-compatible server with vLLM; the model is called `{f.model_name}` in requests:",
        "",
        "```bash",
        command,
        "```",
    ]
    if f.format == "adapter" and f.vllm_problems:
        lines += ["", f"**vLLM {f.vllm_version} would not serve this adapter as is:**", ""]
        lines += [f"- {p}" for p in f.vllm_problems]
        lines += ["", "Export the merged model instead and serve that folder."]
    lines += [
        "",
        "The system prompt is not added by the server: send it as the first message.",
    ]
    return "\n".join(lines)


def _check_section(f: CardFacts) -> str:
    if f.format == "gguf":
        return _gguf_check_section(f)
    return "\n".join(
        [
            "## Integrity",
            "",
            "`manifest.json` lists the SHA-256 of every file. Before this export was written, a "
            "fresh Python process loaded it with plain transformers/PEFT and reproduced the tuned "
            f"model's first {f.check_tokens} greedy tokens (float32) for the prompt "
            f"“{f.check_prompt}”:",
            "",
            f"> {f.check_reply.strip() or '(only special tokens)'}".replace("\n", " "),
        ]
    )


def _gguf_check_section(f: CardFacts) -> str:
    lines = [
        "## Integrity and verification",
        "",
        "`manifest.json` lists the SHA-256 of every file, the base model, the quantization and "
        "the check replies. Before this export was offered, a fresh Python process read the GGUF "
        "back with readers brandvoice did not write, rendered a few customer prompts with the "
        "file's own chat template and system prompt, and decoded "
        f"{f.check_tokens} greedy tokens (float32) for each. Tolerance: "
        + (
            "for F16 every token must match the merged model with its weights rounded to F16."
            if f.quantization == "f16"
            else "the reader must rank the unquantised merged model's next token first at "
            "most positions (see `manifest.json`)."
        ),
        "",
        f"The tuned model's reply to “{f.check_prompt}”:",
        "",
        f"> {f.check_reply.strip() or '(only special tokens)'}".replace("\n", " "),
    ]
    results = [v for k, v in f.verification.items() if isinstance(v, dict) and "reader" in v]
    if results:
        lines += ["", "| reader | replies identical | next-token agreement | load time |"]
        lines += ["| --- | --- | --- | --- |"]
        lines += [
            f"| {r['reader']} | {r['identical_replies']} of {r['prompts']} | "
            f"{r['agreement']:.1%} of {r['tokens']} tokens | {r['load_s']:.1f} s |"
            for r in results
        ]
    return "\n".join(lines)
