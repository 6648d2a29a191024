"""A prepared test brand and a finished run on the tiny model, for the draft-check, few-shot and
preview tests: the run is what training leaves (config.yaml, adapter/, events, a succeeded runs
row), with a LoRA adapter whose B matrices are random so that it changes the model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from chatbot.config import TrainConfig
from chatbot.prepare.pipeline import prepare
from chatbot.workspace import Workspace

ASSETS = Path(__file__).parent / "assets" / "brand"
BRAND = "Lumen Lamps"
SLUG = "lumen-lamps"


def make_adapter(base_dir: Path, out: Path, seed: int = 3) -> Path:
    """A LoRA adapter with random B matrices (a fresh LoRA's B is zero and changes nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


def prepared_brand(root: Path) -> Workspace:
    """The Lumen Lamps test brand prepared (12 train / 2 eval conversations)."""
    ws = Workspace.open(root)
    result = prepare(ws, BRAND, [ASSETS / "conversations.jsonl"], ASSETS / "style_guide.md")
    assert result.ok, result.report.errors
    return ws


def record_run(
    ws: Workspace, model_dir: Path, run_id: str, state: str = "succeeded", adapter: bool = True
) -> Path:
    """A run row and folder as training leaves them; with `adapter`, a random LoRA adapter."""
    run_dir = ws.runs_dir() / run_id
    run_dir.mkdir(parents=True)
    TrainConfig(base_model=str(model_dir), quantization="none", max_length=256).to_yaml(
        run_dir / "config.yaml"
    )
    if adapter:
        make_adapter(model_dir, run_dir / "adapter")
    (run_dir / "events.jsonl").write_text(
        json.dumps({"state": "running", "step": 1, "total_steps": 10, "loss": 3.0}) + "\n"
    )
    now = time.time()
    with ws.db() as con:
        con.execute(
            "INSERT INTO runs (id, brand, state, preset, base_model, created, finished, run_dir) "
            "VALUES (?, ?, ?, 'quick', ?, ?, ?, ?)",
            (run_id, SLUG, state, str(model_dir), now, now, str(run_dir)),
        )
    return run_dir
