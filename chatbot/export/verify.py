"""Checking an export: a fresh process must reload it and reproduce the tuned model's reply.

`check_in_fresh_process` runs `reload_check.py` in a new, isolated interpreter and compares the
token ids it prints with the expected ones; `verify_export` does the same later from the ids an
export's manifest records. Either raises `ExportCheckError` with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chatbot.errors import BrandVoiceError
from chatbot.export import reload_check

__all__ = ["ExportCheckError", "ReloadCheck", "check_in_fresh_process", "verify_export"]


class ExportCheckError(BrandVoiceError):
    """An export failed its reload check (tampered, incomplete, or not reproducing the reply)."""


@dataclass(frozen=True)
class ReloadCheck:
    """The greedy reply a fresh process reproduced from the export."""

    prompt: str
    token_ids: list[int]
    text: str


def verify_export(
    export: Path, base_model: Path | str | None = None, *, timeout: float = 1800.0
) -> ReloadCheck:
    """Check an export again in a fresh process against the reply its manifest records.

    `base_model` is the base model's folder (adapter exports only). A GGUF export is read again
    by its independent readers and judged with its type's tolerance. Raises ExportCheckError when
    a file was changed, added or removed, or the reply differs.
    """
    manifest = _read_manifest(Path(export))
    check = manifest.get("check") or {}
    if manifest.get("format") == "gguf":
        from chatbot.export.gguf_export import judge, run_gguf_check

        judge(run_gguf_check(Path(export), timeout), check["prompts"], manifest["quantization"])
        return ReloadCheck(check["prompt"], list(check["token_ids"]), check.get("text", ""))
    expected = ReloadCheck(
        check.get("prompt", ""), list(check.get("token_ids", [])), check.get("text", "")
    )
    return check_in_fresh_process(Path(export), base_model, expected, timeout)


def check_in_fresh_process(
    export: Path, base: Path | str | None, expected: ReloadCheck, timeout: float
) -> ReloadCheck:
    """Run reload_check.py in a new, isolated interpreter (-I: brandvoice is not importable)."""
    cmd = [sys.executable, "-I", reload_check.__file__, str(export)]
    cmd += ["--threads", str(torch.get_num_threads())]
    if base is not None:
        cmd += ["--base", str(base)]
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "TQDM_DISABLE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ExportCheckError(f"The reload check of {export} took over {timeout:g}s.") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportCheckError(f"The export failed its reload check in a fresh process: {reason}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if got["token_ids"] != expected.token_ids:
        raise ExportCheckError(
            f"The export does not reproduce the tuned model: a fresh process replied "
            f"{got['text']!r} where the tuned model replies {expected.text!r} (first "
            f"{len(expected.token_ids)} greedy tokens, float32)."
        )
    return ReloadCheck(expected.prompt, got["token_ids"], got["text"])


def _read_manifest(export: Path) -> dict[str, Any]:
    try:
        if export.is_file():
            with zipfile.ZipFile(export) as zf:
                return json.loads(zf.read(reload_check.MANIFEST))
        return json.loads((export / reload_check.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ExportCheckError(f"{export} has no readable {reload_check.MANIFEST}: {exc}") from exc
