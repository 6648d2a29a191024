"""The GGUF reload check: read an exported GGUF with readers brandvoice did not write, and decode.

Run as a script in a fresh interpreter (`python -I gguf_check.py EXPORT ...`); it imports nothing
from brandvoice (only `reload_check`, the plain script beside it). It

1. checks every file against `manifest.json` (SHA-256);
2. loads the GGUF with transformers' GGUF loader (its own tensor mapping, q/k un-permutation and a
   tokenizer rebuilt from the file's metadata), timing the load;
3. for each check prompt in the manifest, renders the conversation with the chat template and the
   system prompt stored in the GGUF, tokenizes it with the GGUF's tokenizer, and computes
   - the first N greedy tokens (argmax, float32), and
   - how many of the expected reply's tokens the model ranks first when fed the expected reply
     (teacher-forced agreement: one divergent token does not derail the rest of the count);
4. prints one JSON object. The exporter judges it against the tolerance of the file's type.

llama.cpp itself is not run here: llama-cpp-python is a source build that is not part of
brandvoice's dependencies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reload_check  # noqa: E402 - the plain script beside this one, not the brandvoice package

__all__ = ["main", "run_check"]

SYSTEM_PROMPT_KEY = "brandvoice.system_prompt"


def _metadata_text(path: Path, key: str) -> str:
    from gguf import GGUFReader

    field = GGUFReader(path).get_field(key)
    if field is None:
        raise reload_check.CheckFailed(f"{path.name} has no {key} metadata")
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def _transformers_reader(folder: Path, name: str) -> tuple[Any, Any, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32)
    return model.eval(), tokenizer, time.perf_counter() - started


def _agreement(model: Any, prompt: list[int], expected: list[int]) -> int:
    """Positions where the model's most likely next token is the expected reply's."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + expected[:-1]]), use_cache=False).logits
    ranked_first = logits[0, len(prompt) - 1 :].argmax(-1).tolist()
    return sum(a == b for a, b in zip(ranked_first, expected, strict=True))


def _check_transformers(folder: Path, name: str, checks: list[dict], system: str) -> dict:
    model, tokenizer, load_s = _transformers_reader(folder, name)
    results = []
    for check in checks:
        messages = reload_check.check_messages(system, check["prompt"])
        ids = reload_check.prompt_ids(tokenizer, messages)
        expected = check["token_ids"]
        greedy = reload_check.greedy_ids(model, ids, len(expected))
        results.append(
            {
                "prompt_ids_match": ids == check["prompt_ids"],
                "token_ids": greedy,
                "text": tokenizer.decode(greedy, skip_special_tokens=True),
                "agree": _agreement(model, ids, expected),
            }
        )
    return {"reader": _version("transformers"), "load_s": round(load_s, 2), "prompts": results}


def _version(package: str) -> str:
    from importlib.metadata import version

    return f"{package} {version(package)} (GGUF loader)"


def run_check(export: Path, threads: int) -> dict[str, Any]:
    """Check, load and decode the GGUF export at `export` (a zip or a folder)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="brandvoice-gguf-check-") as tmp:
        folder = reload_check._unpack(export, Path(tmp)) if export.is_file() else export
        manifest = reload_check.check_manifest(folder)
        name = manifest["gguf"]["file"]
        system = _metadata_text(folder / name, SYSTEM_PROMPT_KEY)
        if system != (folder / reload_check.SYSTEM_PROMPT_FILE).read_text(encoding="utf-8"):
            raise reload_check.CheckFailed(
                f"the system prompt in {name} differs from {reload_check.SYSTEM_PROMPT_FILE}"
            )
        checks = manifest["check"]["prompts"]
        return {"transformers": _check_transformers(folder, name, checks, system)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Read a GGUF export back and decode its prompts.")
    parser.add_argument("export", type=Path, help="the export: a .zip or a folder")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    args = parser.parse_args(argv)
    try:
        result = run_check(args.export, args.threads)
    except reload_check.CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
