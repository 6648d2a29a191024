"""The reload check: load an export with plain transformers/PEFT and compute its greedy reply.

This file is run as a script in a fresh interpreter (`python -I reload_check.py EXPORT ...`), so it
imports nothing from brandvoice: what it proves is that the export stands on its own. It

1. checks every file against `manifest.json` (SHA-256), refusing missing, altered or extra files;
2. loads the model in float32: the merged model by itself, or the base model with the adapter;
3. renders the check prompt with the export's own chat template and system prompt; and
4. prints the ids of the first N greedy tokens (a plain argmax loop, no sampling settings) as JSON.

The exporter computes the same ids in-process with `greedy_ids` below before writing anything and
records them in the manifest; the export counts as verified when both agree token for token.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "SYSTEM_PROMPT_FILE",
    "sha256_file",
    "check_manifest",
    "check_messages",
    "prompt_ids",
    "greedy_ids",
    "main",
]

MANIFEST = "manifest.json"
SYSTEM_PROMPT_FILE = "system_prompt.txt"
# Exports are flat folders of plainly named files; anything else in a zip is refused unread.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CheckFailed(Exception):
    """The export does not match its manifest or cannot be loaded; the message says why."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, after checking that it lists exactly the folder's files, unaltered."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        listed: dict[str, dict] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckFailed(f"{MANIFEST} is missing or unreadable: {exc}") from exc
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    problems = [f"{name}: not in {MANIFEST}" for name in sorted(present - set(listed))]
    problems += [f"{name}: missing" for name in sorted(set(listed) - present)]
    for name in sorted(set(listed) & present):
        if sha256_file(folder / name) != listed[name].get("sha256"):
            problems.append(f"{name}: SHA-256 differs from {MANIFEST} (the file was changed)")
    if problems:
        raise CheckFailed("the export does not match its manifest: " + "; ".join(problems))
    return manifest


def check_messages(system_prompt: str, prompt: str) -> list[dict[str, str]]:
    """The conversation the check asks about: the brand's system prompt (if any), then `prompt`."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": prompt}]


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The chat-templated prompt, ready for the assistant's reply, as token ids."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer.encode(text, add_special_tokens=False))


def greedy_ids(model: Any, ids: list[int], n_tokens: int) -> list[int]:
    """The `n_tokens` most likely next tokens, one at a time (argmax; end-of-turn does not stop it).

    A loop of its own rather than `generate`, so that no generation config (sampling, repetition
    penalty, stop tokens) can make the two sides of the check decode differently. Each step runs the
    whole sequence again (no KV cache): a few more forward passes, and the same code under every
    transformers version, whatever its cache API.
    """
    import torch

    sequence = list(ids)
    with torch.inference_mode():
        for _ in range(n_tokens):
            logits = model(input_ids=torch.tensor([sequence]), use_cache=False).logits
            sequence.append(int(logits[0, -1].argmax()))
    return sequence[len(ids) :]


def _unpack(archive: Path, into: Path) -> Path:
    """Extract an export zip (flat, plainly named files only) into `into`."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir() or not _PLAIN_NAME.match(info.filename):
                raise CheckFailed(f"unexpected entry {info.filename!r} in {archive.name}")
            with zf.open(info) as src, open(into / info.filename, "xb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    return into


def _load(folder: Path, base: str | None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        if not base:
            raise CheckFailed("an adapter export needs --base, the base model's folder")
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(folder))
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, use_safetensors=True
        )
    return model.eval()


def run_check(export: Path, base: str | None, threads: int) -> dict[str, Any]:
    """Check, load and decode the export at `export` (a zip or a folder); see the module doc."""
    import torch
    from transformers import AutoTokenizer

    if threads > 0:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="brandvoice-check-") as tmp:
        folder = _unpack(export, Path(tmp)) if export.is_file() else export
        manifest = check_manifest(folder)
        check = manifest["check"]
        system_prompt = (folder / SYSTEM_PROMPT_FILE).read_text(encoding="utf-8")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        ids = prompt_ids(tokenizer, check_messages(system_prompt, check["prompt"]))
        tokens = greedy_ids(_load(folder, base), ids, int(check["max_new_tokens"]))
        return {"token_ids": tokens, "text": tokenizer.decode(tokens, skip_special_tokens=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load an export and print its greedy check reply.")
    parser.add_argument("export", type=Path, help="the export: a .zip or a folder")
    parser.add_argument("--base", help="base model folder (adapter exports only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    try:
        result = run_check(args.export, args.base, args.threads)
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
