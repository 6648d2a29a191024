"""A hand-made brand and finished LoRA run on the tiny model, for the export/import/serve tests.

The run is what training leaves behind (config.yaml, adapter/ with tokenizer, system_prompt.txt,
metrics.json, a succeeded runs row) without spending minutes training: the adapter is PEFT's own
LoRA with its B matrices set to random values, so it changes the model's replies.
"""

from __future__ import annotations

import json
from pathlib import Path

from chatbot.brand.profile import BrandProfile
from chatbot.config import TrainConfig
from chatbot.runs.jobs import Run, record_imported_run
from chatbot.workspace import Workspace, slugify

BRAND = "Lumen Lamps"
SYSTEM_PROMPT = "You are Lumen Lamps' assistant. Be warm and brief."
REPORT = {
    "stats": {
        "conversations": 40,
        "turns": 96,
        "assistant_replies": 48,
        "words_per_reply": {"p5": 12.0, "p50": 30.0, "p95": 55.0, "max": 70, "mean": 31.0},
    },
    "split": {"train": 36, "eval": 4},
    "pii": {"enabled": True, "total": 3, "counts": {"EMAIL": 2, "PHONE": 1}, "samples": []},
}
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_brand(ws: Workspace, name: str = BRAND) -> str:
    """A prepared brand's folder: brand.yaml, one conversation, report.json; returns its slug."""
    slug = slugify(name)
    folder = ws.brand_dir(slug)
    BrandProfile(name=name, system_prompt=SYSTEM_PROMPT).save(folder / "brand.yaml")
    conversation = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
        ]
    }
    (folder / "conversations.jsonl").write_text(json.dumps(conversation) + "\n")
    (folder / "report.json").write_text(json.dumps(REPORT))
    ws.record_brand(slug, name, 40, 36, 4)
    return slug


def make_adapter(base: Path, folder: Path, *, rank: int = 8, seed: int = 0) -> Path:
    """A LoRA adapter for `base` whose B matrices are random (so it matters), with the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=PROJECTIONS)
    model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's card template, as training removes it
    return folder


def make_run(ws: Workspace, slug: str, base: Path, scratch: Path) -> Run:
    """A succeeded run of `slug` on `base`, as a finished training run leaves it."""
    adapter = make_adapter(base, ws.runs_dir() / f".adapter-{scratch.name}")
    config = TrainConfig.from_preset(
        "quick", {"base_model": str(base), "lora_r": 8, "lora_alpha": 16, "max_steps": 6}
    )
    run = record_imported_run(
        ws, slug, config, adapter, system_prompt=SYSTEM_PROMPT, preset="quick"
    )
    metrics = {
        "state": "succeeded",
        "steps": 6,
        "final_train_loss": 2.5,
        "eval_loss_before": 3.1,
        "eval_loss_after": 2.7,
    }
    (run.run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run
