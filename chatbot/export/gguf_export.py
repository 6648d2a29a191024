"""Export a finished run as one GGUF file with an Ollama Modelfile, verified by a reader of its own.

`export_gguf` reads top to bottom: set up (run, brand, base, type), load the tuned model in float32
and merge the adapter into the unquantised base, compute the reference replies to a few brand
prompts, write the folder (GGUF, Modelfile, system prompt, brand.yaml, model card, manifest), then
have a fresh process read the GGUF back with transformers' GGUF loader (an implementation
brandvoice did not write: its own tensor mapping, q/k un-permutation and tokenizer rebuilt from the
file's metadata) and decode the same prompts. Only an export within tolerance is renamed into
place; a failed one leaves nothing behind and says why.

Tolerance, per type (16 greedy tokens per prompt, float32 on CPU):
- always: the reader's tokenizer must turn every prompt, rendered with the GGUF's own chat template
  and system prompt, into exactly the tuned model's prompt ids;
- f16: the reference is the merged model with its weights rounded to F16 exactly as stored; the
  reader's greedy tokens must equal it, every token of every prompt;
- q8_0: the reference is the unrounded merged model; fed the reference reply, the reader must rank
  its next token first at >= 90% of the positions, over all prompts (teacher-forced, so that one
  token that tips the other way does not derail the count).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chatbot.engine import GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.export import reload_check
from chatbot.export.archive import atomic_zip_path, zip_folder
from chatbot.export.gguf_file import (
    GgufFile,
    GgufSource,
    check_gguf_support,
    stop_token_ids,
    write_gguf,
)
from chatbot.export.ollama import check_template, go_template, modelfile, stop_strings, turn_format
from chatbot.export.package import (
    CHECK_PROMPT,
    ExportResult,
    Progress,
    _Job,
    _load_tuned,
    _no_progress,
    _setup,
    _stage,
    _staged,
    _write_card,
)
from chatbot.export.verify import ExportCheckError, ReloadCheck
from chatbot.storage import atomic_write_json, atomic_write_text
from chatbot.workspace import Workspace

__all__ = ["export_gguf", "GGUF_CHECK_PROMPTS", "TOLERANCE", "judge"]

GGUF_CHECK_PROMPTS: tuple[str, ...] = (
    CHECK_PROMPT,
    "My parcel hasn't arrived yet. What should I do?",
    "Can I return something I bought last week?",
)
TOLERANCE: dict[str, float] = {"f16": 1.0, "q8_0": 0.9}
"""Share of reference tokens the reader must rank first (f16 also: every greedy token equal)."""
_CHECK_SCRIPT = Path(reload_check.__file__).with_name("gguf_check.py")


@dataclass(frozen=True)
class _Reference:
    prompt: str
    prompt_text: str
    prompt_ids: list[int]
    token_ids: list[int]
    text: str

    def as_check(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "prompt_text": self.prompt_text,
            "prompt_ids": self.prompt_ids,
            "token_ids": self.token_ids,
            "text": self.text,
        }


def export_gguf(
    ws: Workspace,
    run_id: str,
    out: Path | None = None,
    quant: str = "f16",
    *,
    progress: Progress | None = None,
    check_tokens: int = 16,
    timeout: float = 1800.0,
) -> ExportResult:
    """Export run `run_id` as a verified GGUF (+ Modelfile) folder, or zip for `out` ending in .zip.

    Raises BrandVoiceError when the model or type cannot be written (saying what to do instead),
    and ExportCheckError when the reader does not reproduce the tuned model within tolerance (then
    no file of it is left, and an earlier export at `out` stays as it was).
    """
    say = progress or _no_progress
    job = _setup(ws, run_id, "gguf", out, check_tokens, quant)
    _check_supported(job, quant)
    with _stage(say, "loading"):
        model, tokenizer = _load_tuned(job)
        merged = model.merge_and_unload().eval()
    with _stage(say, "reference"):
        references, warnings = _references(merged, tokenizer, job, quant)
    with _staged(job.out) as folder:
        with _stage(say, "writing"):
            written = _write_files(job, merged, tokenizer, folder, quant)
            del merged, model
            _write_card(job, folder, _first(references), None, quant=quant)
            _write_gguf_manifest(job, folder, written, references)
        with _stage(say, "verifying"):
            verification = _verify(job, folder, quant, timeout)
            _write_card(job, folder, _first(references), None, quant=quant, verified=verification)
            files = _write_gguf_manifest(job, folder, written, references, verification)
            _zip_if_asked(job.out, folder)
    return ExportResult(
        job.out, "gguf", job.run.id, files, _first(references), None, warnings,
        quant=quant, verification=verification,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Setup and references
# ----------------------------------------------------------------------------------------------


def _check_supported(job: _Job, quant: str) -> None:
    """Refuse early (before any model is loaded) what cannot be written."""
    from transformers import AutoConfig

    check_gguf_support(AutoConfig.from_pretrained(job.base.folder), quant)


def _round_to_f16(model: Any) -> None:
    """Round every weight the GGUF stores as F16 (all but 1-D tensors) to F16, in place."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(param.to(torch.float16).to(torch.float32))


def _references(
    merged: Any, tokenizer: Any, job: _Job, quant: str
) -> tuple[list[_Reference], list[str]]:
    """The tuned replies the reader must reproduce, and a warning if F16 rounding changed one."""
    exact = [_reference(merged, tokenizer, job, prompt) for prompt in GGUF_CHECK_PROMPTS]
    if quant != "f16":
        return exact, []
    _round_to_f16(merged)
    rounded = [_reference(merged, tokenizer, job, prompt) for prompt in GGUF_CHECK_PROMPTS]
    changed = [r.prompt for r, e in zip(rounded, exact, strict=True) if r.token_ids != e.token_ids]
    warnings = (
        [
            f"F16 rounding of the merged weights changed the greedy reply to {len(changed)} of "
            f"{len(exact)} check prompts (first: {changed[0]!r}); the GGUF was verified against "
            "the rounded weights."
        ]
        if changed
        else []
    )
    return rounded, warnings


def _reference(model: Any, tokenizer: Any, job: _Job, prompt: str) -> _Reference:
    messages = reload_check.check_messages(job.setup.tuned_system_prompt, prompt)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    tokens = reload_check.greedy_ids(model, ids, job.n_tokens)
    return _Reference(prompt, text, ids, tokens, tokenizer.decode(tokens, skip_special_tokens=True))


def _first(references: list[_Reference]) -> ReloadCheck:
    return ReloadCheck(references[0].prompt, references[0].token_ids, references[0].text)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def gguf_file_name(job: _Job, quant: str) -> str:
    return f"{job.run.brand}-{quant}.gguf"


def _write_files(job: _Job, merged: Any, tokenizer: Any, folder: Path, quant: str) -> GgufFile:
    """The GGUF, the Modelfile, the system prompt and brand.yaml."""
    import shutil

    source = GgufSource(
        name=f"{job.run.brand} ({job.run.id})",
        system_prompt=job.setup.tuned_system_prompt,
        base_model=job.base.name,
        license=job.base.license if not job.base.license.startswith("not recorded") else "",
        extra={"brand": job.profile.name, "run_id": job.run.id},
    )
    written = write_gguf(merged, tokenizer, folder / gguf_file_name(job, quant), quant, source)
    atomic_write_text(folder / "Modelfile", _modelfile(job, tokenizer, merged, written))
    atomic_write_text(folder / reload_check.SYSTEM_PROMPT_FILE, job.setup.tuned_system_prompt)
    shutil.copyfile(job.brand_yaml, folder / "brand.yaml")
    return written


def _modelfile(job: _Job, tokenizer: Any, model: Any, written: GgufFile) -> str:
    fmt = turn_format(tokenizer)
    template = go_template(fmt)
    problems = check_template(template, tokenizer, job.setup.tuned_system_prompt)
    if problems:
        raise BrandVoiceError(
            "brandvoice could not write an Ollama template equivalent to this model's chat "
            f"template: {problems[0]}"
        )
    chat = GenerationSettings()
    sampling = {
        "temperature": chat.temperature,
        "top_p": chat.top_p,
        "repeat_penalty": chat.repetition_penalty,
        "num_predict": chat.max_new_tokens,
    }
    header = (
        f"{job.profile.name}: brand voice chat model (run {job.run.id}), made by brandvoice.\n"
        f"ollama create {job.run.brand} -f Modelfile && ollama run {job.run.brand}"
    )
    return modelfile(
        gguf_name=written.path.name,
        template=template,
        system_prompt=job.setup.tuned_system_prompt,
        stops=stop_strings(tokenizer, stop_token_ids(tokenizer, model), fmt),
        sampling=sampling,
        header=header,
    )


def _write_gguf_manifest(
    job: _Job,
    folder: Path,
    written: GgufFile,
    references: list[_Reference],
    verification: dict[str, Any] | None = None,
) -> dict[str, str]:
    """manifest.json: every file's SHA-256, the GGUF's facts, the replies to reproduce and (once
    checked) the verification result."""
    from chatbot.export.package import _manifest_base

    manifest = _manifest_base(job, folder)
    manifest["quantization"] = written.quant
    manifest["gguf"] = {
        "file": written.path.name,
        "tensor_types": written.tensor_types,
        "pre_tokenizer": written.pre_tokenizer,
        "stop_token_ids": written.stop_token_ids,
        "system_prompt_key": "brandvoice.system_prompt",
    }
    manifest["check"] = {
        "prompt": references[0].prompt,
        "system_prompt_file": reload_check.SYSTEM_PROMPT_FILE,
        "max_new_tokens": len(references[0].token_ids),
        "decoding": "greedy argmax, float32, CPU",
        "reference": (
            "merged weights rounded to F16 as stored" if written.quant == "f16" else
            "merged weights in float32 (before quantization)"
        ),
        "tolerance": _tolerance_text(written.quant),
        "token_ids": references[0].token_ids,
        "text": references[0].text,
        "prompts": [r.as_check() for r in references],
    }  # fmt: skip
    if verification is not None:
        manifest["verification"] = verification
    atomic_write_json(folder / reload_check.MANIFEST, manifest)
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def _tolerance_text(quant: str) -> str:
    if quant == "f16":
        return "every greedy token identical to the reference, for every prompt"
    return (
        f"the reference's next token ranked first at >= {TOLERANCE[quant]:.0%} of the positions "
        "(teacher-forced), over all prompts"
    )


# ----------------------------------------------------------------------------------------------
# Verifying
# ----------------------------------------------------------------------------------------------


def _verify(job: _Job, folder: Path, quant: str, timeout: float) -> dict[str, Any]:
    """Run gguf_check.py on the staged folder in a fresh process and judge its answer."""
    result = run_gguf_check(folder, timeout)
    manifest = json.loads((folder / reload_check.MANIFEST).read_text(encoding="utf-8"))
    return judge(result, manifest["check"]["prompts"], quant)


def run_gguf_check(export: Path, timeout: float) -> dict[str, Any]:
    """The JSON that gguf_check.py prints for `export` (run with `python -I`)."""
    cmd = [sys.executable, "-I", str(_CHECK_SCRIPT), str(export)]
    cmd += ["--threads", str(torch.get_num_threads())]
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
        raise ExportCheckError(f"The GGUF check of {export} took over {timeout:g}s.") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportCheckError(f"The GGUF failed its check in a fresh process: {reason}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def judge(result: dict[str, Any], expected: list[dict[str, Any]], quant: str) -> dict[str, Any]:
    """The verification record, or ExportCheckError naming the first reader out of tolerance."""
    reader = result["transformers"]
    summary = _summary(reader, expected)
    problem = _out_of_tolerance(reader, expected, summary, quant == "f16", TOLERANCE[quant])
    if problem:
        raise ExportCheckError(f"The GGUF failed its check ({reader['reader']}): {problem}.")
    return {"quantization": quant, "passed": True, "tolerance": _tolerance_text(quant),
            "transformers": summary}  # fmt: skip


def _summary(reader: dict[str, Any], expected: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(len(e["token_ids"]) for e in expected)
    agree = sum(p["agree"] for p in reader["prompts"])
    identical = sum(
        p["token_ids"] == e["token_ids"] for p, e in zip(reader["prompts"], expected, strict=True)
    )
    return {
        "reader": reader["reader"],
        "load_s": reader["load_s"],
        "prompts": len(expected),
        "identical_replies": identical,
        "agreement": round(agree / max(total, 1), 4),
        "agree_tokens": agree,
        "tokens": total,
    }


def _out_of_tolerance(
    reader: dict[str, Any],
    expected: list[dict[str, Any]],
    summary: dict[str, Any],
    exact: bool,
    share: float,
) -> str:
    for got, want in zip(reader["prompts"], expected, strict=True):
        if not got["prompt_ids_match"]:
            return (
                f"it tokenizes the chat prompt for {want['prompt']!r} differently from the "
                "tuned model's tokenizer"
            )
        if exact and got["token_ids"] != want["token_ids"]:
            return (
                f"replied {got.get('text', got['token_ids'])!r} to {want['prompt']!r} where the "
                f"tuned model replies {want['text']!r} (first {len(want['token_ids'])} greedy "
                "tokens must be identical for f16)"
            )
    if summary["agreement"] < share:
        return (
            f"ranks the tuned model's next token first at only {summary['agreement']:.0%} of "
            f"{summary['tokens']} positions (needs {share:.0%})"
        )
    return ""


def _zip_if_asked(out: Path, folder: Path) -> None:
    """For a .zip target, zip the verified folder into place (the folder is a temporary one)."""
    if out.suffix == ".zip":
        with atomic_zip_path(out) as tmp:
            zip_folder(folder, tmp)
