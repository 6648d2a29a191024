"""The Export tab: a run packaged for production, adapters brought in, votes as training data.

- Export: a run's LoRA adapter zip or merged model zip, with model card and manifest, verified in
  a fresh process before it is offered (`chatbot.export.export_run`), with a progress bar.
- Serve: the `brandvoice serve` and `vllm serve` commands for the chosen run.
- Import: an adapter zip trained elsewhere becomes a run of the brand (`chatbot.export.importing`).
- Preferences: the brand's Compare votes as DPO or KTO JSONL (`chatbot.feedback.preferences`).

Files are written to the workspace's `exports/` folder, the only workspace folder the app serves.
The handlers are plain functions over `Services`; `build` only lays them out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from chatbot.errors import BrandVoiceError
from chatbot.export import ExportResult, export_run, zip_adapter
from chatbot.export.base_model import DEFAULT_HUB_ID
from chatbot.export.importing import import_adapter
from chatbot.export.vllm_compat import max_lora_rank_for
from chatbot.feedback.preferences import export_votes
from chatbot.runs.jobs import Run, get_run, list_runs
from ui.errors import user_errors
from ui.services import Services
from ui.text import base_model_label, run_label
from ui.theme import empty_state

__all__ = [
    "ExportView",
    "FORMAT_CHOICES",
    "export_choices",
    "export_adapter",
    "export_package",
    "serving_text",
    "import_archive",
    "export_preferences",
    "build",
]

Progress = Callable[[str, int, int], None]

FORMAT_CHOICES: list[tuple[str, str]] = [
    ("Adapter zip: small, for PEFT or vLLM on the base model", "adapter"),
    ("Merged model zip: base + adapter in one bf16 model", "merged"),
    ("GGUF for llama.cpp and Ollama (F16), with a Modelfile", "gguf-f16"),
    ("GGUF, 8-bit (Q8_0): half the size", "gguf-q8_0"),
]
_BUTTON = {
    "adapter": "Create adapter zip",
    "merged": "Create merged model zip",
    "gguf-f16": "Create GGUF zip",
    "gguf-q8_0": "Create GGUF zip",
}
# Export stages in order, and how the progress bar names them.
_STAGES = {
    "loading": "Loading the tuned model",
    "reference": "Computing the check reply",
    "writing": "Writing the files",
    "verifying": "Checking the export in a fresh process",
}
_IMPORT_STAGES = {"checking": "Checking the archive", "extracting": "Extracting"}


@dataclass
class ExportView:
    run_choices: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    notice: str = ""


def _exportable(run: Run) -> bool:
    return run.state == "succeeded" and (run.run_dir / "adapter" / "adapter_config.json").exists()


def export_choices(services: Services, slug: str | None) -> ExportView:
    """The brand's runs that have an adapter to export, newest first."""
    if not slug:
        return ExportView(notice=empty_state("Nothing to export yet", "Prepare a brand first."))
    runs = [r for r in list_runs(services.workspace, slug) if _exportable(r)]
    if not runs:
        return ExportView(
            notice=empty_state(
                "No trained adapter yet",
                "When a training run finishes on the <b>Train</b> tab, its adapter can be "
                "exported here. You can also import an adapter zip below.",
            )
        )
    choices = [(run_label(r), r.id) for r in runs]
    return ExportView(run_choices=choices, run_id=runs[0].id)


def export_adapter(services: Services, run_id: str | None) -> tuple[Path, str]:
    """The run's raw adapter files, zipped unchecked (a quick copy; the tab uses export_package)."""
    if not run_id:
        raise BrandVoiceError("Choose a finished run to export.")
    run = get_run(services.workspace, run_id)
    out = services.exports_dir / f"{run.brand}-{run.id}-adapter.zip"
    path = zip_adapter(run.run_dir, out)
    size = path.stat().st_size / 1e6
    return path, (
        f"**{path.name}** ({size:.1f} MB): the LoRA adapter of run `{run.id}`, trained on the "
        f"{base_model_label(run.base_model)} base model. Load it with PEFT: "
        "`PeftModel.from_pretrained(base_model, unzipped_folder)`."
    )


def export_package(
    services: Services, run_id: str | None, fmt: str, progress: Progress | None = None
) -> tuple[Path, str]:
    """Export the run as a verified zip in the exports folder; returns (zip path, description)."""
    if not run_id:
        raise BrandVoiceError("Choose a finished run to export.")
    run = get_run(services.workspace, run_id)
    out = services.exports_dir / f"{run.brand}-{run.id}-{fmt}.zip"
    kind, _, quant = fmt.partition("-")  # "gguf-q8_0": a GGUF of that type
    extra = {"quant": quant} if quant else {}
    result = export_run(services.workspace, run.id, kind, out, progress=progress, **extra)
    return result.path, _describe_result(run, result)


def _describe_gguf(run: Run, result: ExportResult) -> str:
    size = result.path.stat().st_size / 1e6
    check = result.verification.get("transformers", {})
    return (
        f"**{result.path.name}** ({size:.1f} MB): run `{run.id}` as one GGUF file "
        f"({result.quant.upper()}) with an Ollama `Modelfile`. Unzip it, then in its folder: "
        f"`ollama create {run.brand} -f Modelfile` and `ollama run {run.brand}`.\n\n"
        f"✓ Verified: read back by {check.get('reader', 'an independent reader')}, which "
        f"reproduced {check.get('agreement', 0):.0%} of the tuned model's check tokens "
        f"({result.verification.get('tolerance', '')}). `manifest.json` holds every file's "
        "SHA-256; `README.md` is the model card."
    )


def _describe_result(run: Run, result: ExportResult) -> str:
    if result.format == "gguf":
        return _describe_gguf(run, result)
    size = result.path.stat().st_size / 1e6
    what = "LoRA adapter" if result.format == "adapter" else "merged model (bf16 safetensors)"
    how = (
        "Load it with PEFT: `PeftModel.from_pretrained(base_model, unzipped_folder)`."
        if result.format == "adapter"
        else "Load it with transformers: `AutoModelForCausalLM.from_pretrained(unzipped_folder)`."
    )
    lines = [
        f"**{result.path.name}** ({size:.1f} MB): the {what} of run `{run.id}`, trained on the "
        f"{base_model_label(run.base_model)} base model. {how}",
        "",
        f"✓ Verified: a fresh process loaded it and reproduced the tuned model's first "
        f"{len(result.check.token_ids)} greedy tokens. `manifest.json` holds every file's "
        "SHA-256; `README.md` is the model card.",
    ]
    lines += [f"- ⚠ {warning}" for warning in result.warnings]
    return "\n".join(lines)


def serving_text(services: Services, run_id: str | None) -> str:
    """How to serve the run: brandvoice's own API, and vLLM with the exported adapter."""
    if not run_id:
        return ""
    run = get_run(services.workspace, run_id)
    base = DEFAULT_HUB_ID if run.base_model in ("", "default") else run.base_model
    config = json.loads((run.run_dir / "adapter" / "adapter_config.json").read_text("utf-8"))
    rank = max_lora_rank_for(int(config.get("r") or 0)) or "R"
    return (
        "#### Serve it\n"
        "An OpenAI-compatible API on this machine (model name "
        f"`{run.brand}`):\n\n```bash\nbrandvoice serve --run {run.id}\n```\n"
        "Or vLLM on a GPU server, with the adapter zip unzipped to a folder:\n\n"
        f"```bash\nvllm serve {base} --enable-lora \\\n"
        f"  --lora-modules {run.brand}=ADAPTER_FOLDER --max-lora-rank {rank}\n```"
    )


def import_archive(
    services: Services, slug: str | None, archive: str | None, progress: Progress | None = None
) -> tuple[str, str]:
    """Import an uploaded adapter zip into the brand (or the one its brand.yaml names).

    Returns (the run's brand slug, a message).
    """
    if not archive:
        raise BrandVoiceError("Choose an adapter zip to import.")
    result = import_adapter(services.workspace, Path(archive), slug or None, progress=progress)
    run = result.run
    lines = [
        f"Imported as run `{run.id}` of **{run.brand}**, on the "
        f"{base_model_label(run.base_model)} base model. Chat with it on the **Compare** tab."
    ]
    if result.ignored:
        lines.append(f"Left out (not needed): {', '.join(result.ignored)}.")
    lines += [f"- ⚠ {warning}" for warning in result.warnings]
    return run.brand, "\n\n".join(lines)


def export_preferences(
    services: Services, slug: str | None, kind: str, run_id: str | None = None
) -> tuple[Path, str]:
    """The brand's votes as DPO or KTO JSONL in the exports folder; returns (path, description)."""
    if not slug:
        raise BrandVoiceError("Prepare a brand and vote on the Compare tab first.")
    out = services.exports_dir / f"{slug}-votes-{kind}.jsonl"
    result = export_votes(services.workspace, slug, out, kind, run_id=run_id)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items()))
    redacted = ", ".join(f"{n} {what}" for what, n in sorted(result.redacted.items()))
    trainer = "DPOTrainer" if kind == "dpo" else "KTOTrainer"
    return result.path, (
        f"**{result.path.name}**: {result.rows} rows from {result.votes} votes, in TRL's "
        f"conversational format for `{trainer}`."
        + (f" Left out: {skipped}." if skipped else "")
        + f" Personal data replaced: {redacted or 'none found'}."
    )


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------


def _show(view: ExportView, services: Services) -> tuple:
    has = bool(view.run_choices)
    return (
        gr.update(choices=view.run_choices, value=view.run_id),
        gr.update(value=view.notice, visible=not has),
        gr.update(visible=has),
        gr.update(value=None, visible=False),
        "",
        serving_text(services, view.run_id),
    )


def _describe() -> str:
    return (
        "#### Export for production\n"
        "The adapter holds what training learned: a few megabytes of LoRA weights that sit on "
        "top of the base model. Each export carries the weights, the tokenizer with its chat "
        "template, the system prompt the model was trained with, `brand.yaml`, a model card and "
        "a manifest of SHA-256 hashes, and is checked in a fresh process before it is offered."
    )


def _reporter(progress: gr.Progress, stages: dict[str, str]) -> Progress:
    """A (stage, done, total) callback that moves one bar across the stages, in order."""
    order = list(stages)

    def report(stage: str, done: int, total: int) -> None:
        index = order.index(stage) if stage in order else 0
        progress((index + done / max(total, 1)) / len(order), desc=stages.get(stage, stage))

    return report


def _export_panel() -> tuple:
    with gr.Row(visible=False, equal_height=False) as panel:
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(_describe())
            run = gr.Dropdown(label="Trained run", choices=[], interactive=True)
            fmt = gr.Radio(FORMAT_CHOICES, value="adapter", label="What to export")
            make = gr.Button(_BUTTON["adapter"], variant="primary")
        with gr.Column(scale=1):
            file = gr.File(
                label="Your download", interactive=False, visible=False, elem_classes="bv-download"
            )
            info = gr.Markdown()
            serving = gr.Markdown()
    return panel, run, fmt, make, file, info, serving


def _import_and_votes() -> tuple:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(
                "#### Import an adapter\nA PEFT LoRA adapter zip trained elsewhere "
                "(`adapter_model.safetensors` + `adapter_config.json`; pickled `.bin` files are "
                "refused) becomes a run of the selected brand."
            )
            archive = gr.File(label="Adapter zip", file_types=[".zip"], type="filepath")
            load = gr.Button("Import adapter")
            imported = gr.Markdown()
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(
                "#### Preference data from your votes\nThe Compare tab's votes as training data "
                "for TRL: DPO (chosen vs rejected; ties and both-bad left out) or KTO (each reply "
                "marked good or bad). Personal data is redacted."
            )
            kind = gr.Radio([("DPO", "dpo"), ("KTO", "kto")], value="dpo", label="Format")
            votes = gr.Button("Create preference file")
            votes_file = gr.File(label="Preference data", interactive=False, visible=False)
            votes_info = gr.Markdown()
    return archive, load, imported, kind, votes, votes_file, votes_info


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Export tab inside `tab`; `brand` is the app-wide brand picker."""
    notice = gr.HTML(export_choices(services, None).notice)
    panel, run, fmt, make, file, info, serving = _export_panel()
    archive, load, imported, kind, votes, votes_file, votes_info = _import_and_votes()

    refresh = user_errors(lambda slug: _show(export_choices(services, slug), services))
    outputs = [run, notice, panel, file, info, serving]
    brand.change(refresh, brand, outputs, show_progress="hidden")
    tab.select(refresh, brand, outputs, show_progress="hidden")
    run.change(
        user_errors(lambda run_id: serving_text(services, run_id)),
        run,
        serving,
        show_progress="hidden",
    )
    fmt.change(lambda f: gr.update(value=_BUTTON.get(f, _BUTTON["adapter"])), fmt, make)

    def on_export(run_id: str | None, chosen: str, progress=gr.Progress()) -> tuple:  # noqa: B008
        path, text = export_package(services, run_id, chosen, _reporter(progress, _STAGES))
        return gr.update(value=str(path), visible=True), text

    make.click(user_errors(on_export), [run, fmt], [file, info], concurrency_id="export")

    def on_import(slug: str | None, upload: str | None, progress=gr.Progress()) -> tuple:  # noqa: B008
        owner, text = import_archive(services, slug, upload, _reporter(progress, _IMPORT_STAGES))
        if owner != slug:
            text += f"\n\nPick **{owner}** in the brand list to see it."
        return (*_show(export_choices(services, slug), services)[:3], text)

    load.click(user_errors(on_import), [brand, archive], [run, notice, panel, imported])

    def on_votes(slug: str | None, chosen: str) -> tuple:
        path, text = export_preferences(services, slug, chosen)
        return gr.update(value=str(path), visible=True), text

    votes.click(user_errors(on_votes), [brand, kind], [votes_file, votes_info])
