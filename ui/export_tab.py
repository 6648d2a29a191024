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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from chatbot.service import (
    DEFAULT_HUB_ID,
    BrandVoiceError,
    ExportResult,
    Run,
    adapter_config,
    base_model_bytes,
    export_run,
    export_timings,
    export_votes,
    get_run,
    import_adapter,
    max_lora_rank_for,
    remember_export_time,
    usable_runs,
    zip_adapter,
)
from ui.errors import shown_in
from ui.services import Services
from ui.text import (
    base_model_label,
    duration_text,
    hardware_text,
    is_builtin,
    is_preview_sized,
    preview_note_html,
    run_label,
)
from ui.theme import empty_state

__all__ = [
    "ExportView",
    "FORMAT_CHOICES",
    "export_choices",
    "export_adapter",
    "export_package",
    "serving_text",
    "export_estimate",
    "going_live",
    "model_note",
    "import_archive",
    "export_preferences",
    "build",
]

Progress = Callable[[str, int, int], None]

FORMAT_CHOICES: list[tuple[str, str]] = [
    ("Small add-on (the usual choice): your voice, to put on the base model", "adapter"),
    ("Complete model: base model and voice in one, larger", "merged"),
    ("For Ollama on a laptop or server", "gguf-f16"),
    ("For Ollama, half the size (slightly less exact)", "gguf-q8_0"),
]
# How much longer than an adapter zip each format takes (merging, converting, reading back).
_FORMAT_WORK = {"adapter": 1.0, "merged": 1.6, "gguf-f16": 2.2, "gguf-q8_0": 2.4}
# Until this workspace has timed an export: fixed costs (starting the checking process, loading
# libraries) and time per GB of base model, each loaded twice (the check reply and the check).
_FIXED_S, _PER_GB_S = 90.0, 60.0
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


def export_choices(services: Services, slug: str | None) -> ExportView:
    """The brand's runs that have an adapter to export, newest first."""
    if not slug:
        return ExportView(notice=empty_state("Nothing to export yet", "Prepare a brand first."))
    runs = usable_runs(services.workspace, slug)
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


def export_estimate(services: Services, run_id: str | None, fmt: str) -> str:
    """How long an export will take, said before it starts (an estimate, and labelled one)."""
    if not run_id:
        return ""
    run = get_run(services.workspace, run_id)
    size = base_model_bytes(run.base_model)
    measured = export_timings(services.exports_dir).get(fmt)
    if isinstance(measured, dict) and measured.get("seconds"):
        was_gb = float(measured.get("gb") or 0)
        scale = (size / 1e9) / was_gb if size and was_gb else 1.0
        seconds = float(measured["seconds"]) * max(scale, 0.5)
        basis = "from the last export of this kind on this machine"
    else:
        gb = (size or 2e9) / 1e9
        seconds = (_FIXED_S + _PER_GB_S * 2 * gb) * _FORMAT_WORK.get(fmt, 1.0)
        basis = "from the base model's size" if size else "a rough guess: base model size unknown"
    return (
        f'<div class="bv-hint">Estimated time: <b>about {duration_text(seconds)}</b> ({basis}). '
        "The file is checked by loading it again before it is offered, which takes most of "
        "that time. You can use the other tabs meanwhile.</div>"
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
    started = time.monotonic()
    result = export_run(services.workspace, run.id, kind, out, progress=progress, **extra)
    remember_export_time(
        services.exports_dir, fmt, time.monotonic() - started, base_model_bytes(run.base_model)
    )
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
    what = (
        "your brand's voice (an add-on to the base model)"
        if result.format == "adapter"
        else ("the complete tuned model")
    )
    how = (
        "Load it with PEFT: `PeftModel.from_pretrained(base_model, unzipped_folder)`."
        if result.format == "adapter"
        else "Load it with transformers: `AutoModelForCausalLM.from_pretrained(unzipped_folder)`."
    )
    lines = [
        f"✓ **{result.path.name}** ({size:.1f} MB) is ready: {what}, checked by loading it "
        "again. The steps below say what to do with it.",
        "",
        f"<details><summary>Details</summary>\n\nThe {result.format} of run `{run.id}`, trained "
        f"on the {base_model_label(run.base_model)} base model. {how} A fresh process loaded it "
        f"and reproduced the tuned model's first {len(result.check.token_ids)} greedy tokens. "
        "`manifest.json` holds every file's SHA-256; `README.md` is the model card.\n\n"
        "</details>",
    ]
    lines += [f"- ⚠ {warning}" for warning in result.warnings]
    return "\n".join(lines)


def going_live(services: Services, run_id: str | None, fmt: str = "adapter") -> tuple[str, str]:
    """The three steps to hand the model to whoever runs the chatbot: (steps markdown, command).

    The command is the one they run, for the chosen format; it is shown in a copyable box.
    """
    if not run_id:
        return "", ""
    run = get_run(services.workspace, run_id)
    hub = DEFAULT_HUB_ID if is_builtin(run.base_model) else run.base_model
    folder = f"{run.brand}-voice"
    zip_name = f"{run.brand}-{run.id}-{fmt}.zip"
    hardware = hardware_text(run.base_model) or "see the model's own page for its memory needs"
    if fmt.startswith("gguf"):
        command = f"unzip {zip_name} -d {folder} && cd {folder}\n"
        command += f"ollama create {run.brand} -f Modelfile\nollama run {run.brand}"
        files = f"`{zip_name}` (the model, with its instructions built in)"
        needs = "[Ollama](https://ollama.com) installed"
    elif fmt == "merged":
        command = (
            f"unzip {zip_name} -d {folder}\nvllm serve ./{folder} --served-model-name {run.brand}"
        )
        files = f"`{zip_name}` (the complete model)"
        needs = "vLLM installed"
    else:
        config = adapter_config(run)
        rank = max_lora_rank_for(int(config.get("r") or 0)) or 16
        command = (
            f"unzip {zip_name} -d {folder}\n"
            f"vllm serve {hub} --enable-lora \\\n"
            f"  --lora-modules {run.brand}=./{folder} --max-lora-rank {rank}"
        )
        fetched = (
            "a folder on this machine: copy it across too"
            if Path(hub).is_absolute()
            else "downloaded by the command"
        )
        files = f"`{zip_name}` (your voice) and the base model `{hub}` ({fetched})"
        needs = "vLLM installed"
    steps = (
        "#### Going live, in three steps\n"
        f"1. **Download** {files} with the button above.\n"
        "2. **Hand it to whoever runs your chatbot** (your developer or IT), with this note: "
        f"*the base model is `{hub}`; it needs {hardware}; send the text of "
        "`system_prompt.txt` from the zip as the first (system) message of every chat.*\n"
        f"3. **They run this command** on that machine ({needs}); the chatbot then answers "
        f"in your voice under the model name `{run.brand}`:"
    )
    return steps, command


def model_note(services: Services, run_id: str | None) -> str:
    """The honest note on the built-in preview model, for runs trained on it."""
    if not run_id:
        return ""
    return (
        preview_note_html()
        if is_preview_sized(get_run(services.workspace, run_id).base_model)
        else ""
    )


def serving_text(services: Services, run_id: str | None) -> str:
    """How to serve the run: brandvoice's own API, and vLLM with the exported adapter."""
    if not run_id:
        return ""
    run = get_run(services.workspace, run_id)
    base = DEFAULT_HUB_ID if run.base_model in ("", "default") else run.base_model
    config = adapter_config(run)
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
    steps, command = going_live(services, view.run_id)
    return (
        gr.update(choices=view.run_choices, value=view.run_id),
        gr.update(value=view.notice, visible=not has),
        gr.update(visible=has),
        gr.update(value=None, visible=False),
        "",
        serving_text(services, view.run_id),
        export_estimate(services, view.run_id, "adapter"),
        steps,
        gr.update(value=command, visible=bool(command)),
        model_note(services, view.run_id),
        gr.update(value="adapter"),
        "",
    )


def _describe() -> str:
    return (
        "#### Hand over your brand's voice\n"
        "Training made a small add-on to the base model that holds your brand's voice. Pick "
        "what to create; each file is checked by loading it again before it is offered."
    )


def _reporter(progress: gr.Progress, stages: dict[str, str]) -> Progress:
    """A (stage, done, total) callback that moves one bar across the stages, in order."""
    order = list(stages)

    def report(stage: str, done: int, total: int) -> None:
        index = order.index(stage) if stage in order else 0
        progress((index + done / max(total, 1)) / len(order), desc=stages.get(stage, stage))

    return report


@dataclass
class _Panel:
    panel: gr.Row
    run: gr.Dropdown
    fmt: gr.Radio
    make: gr.Button
    estimate: gr.HTML
    problem: gr.Markdown
    file: gr.File
    info: gr.Markdown
    steps: gr.Markdown
    command: gr.Code
    note: gr.HTML
    serving: gr.Markdown


def _export_panel() -> _Panel:
    with gr.Row(visible=False, equal_height=False) as panel:
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(_describe())
            run = gr.Dropdown(label="Trained model", choices=[], interactive=True)
            fmt = gr.Radio(FORMAT_CHOICES, value="adapter", label="What to create")
            estimate = gr.HTML("")
            make = gr.Button(_BUTTON["adapter"], variant="primary")
            problem = gr.Markdown(elem_id="bv-export-problem")
            note = gr.HTML("", elem_id="bv-export-model-note")
        with gr.Column(scale=1):
            file = gr.File(
                label="Your download", interactive=False, visible=False, elem_classes="bv-download"
            )
            info = gr.Markdown(elem_id="bv-export-info")
            steps = gr.Markdown()
            command = gr.Code(
                label="Command (copy with the button at its top right)",
                language="shell",
                interactive=False,
                visible=False,
                wrap_lines=True,
                elem_id="bv-golive-command",
            )
            with gr.Accordion("Details: other ways to serve it", open=False):
                serving = gr.Markdown()
    return _Panel(
        panel, run, fmt, make, estimate, problem, file, info, steps, command, note, serving
    )


def _import_and_votes() -> tuple:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(
                "#### Bring in a voice trained elsewhere\nAn adapter zip made by brandvoice or "
                "by your developers becomes a trained model of the selected brand."
            )
            archive = gr.File(label="Adapter zip", file_types=[".zip"], type="filepath")
            load = gr.Button("Import adapter")
            imported = gr.Markdown()
            with gr.Accordion("Details", open=False):
                gr.Markdown(
                    "A PEFT LoRA adapter (`adapter_model.safetensors` + `adapter_config.json`). "
                    "Pickled `.bin` weights are refused: they can run code when loaded.",
                    elem_classes="bv-hint",
                )
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(
                "#### Your votes, for your developers\nThe choices you made on Compare, as a "
                "file developers can train on further. Personal data is replaced."
            )
            kind = gr.Radio(
                [("Pairs: better vs worse reply", "dpo"), ("Each reply marked good or bad", "kto")],
                value="dpo",
                label="Format",
            )
            votes = gr.Button("Create votes file")
            votes_file = gr.File(label="Votes file", interactive=False, visible=False)
            votes_info = gr.Markdown()
            with gr.Accordion("Details", open=False):
                gr.Markdown(
                    "JSON Lines in TRL's conversational format: pairs for `DPOTrainer` (ties and "
                    "both-bad left out), single replies for `KTOTrainer`.",
                    elem_classes="bv-hint",
                )
    return archive, load, imported, kind, votes, votes_file, votes_info


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Export tab inside `tab`; `brand` is the app-wide brand picker."""
    notice = gr.HTML(export_choices(services, None).notice)
    p = _export_panel()
    archive, load, imported, kind, votes, votes_file, votes_info = _import_and_votes()
    quiet: dict = {"show_progress": "hidden"}

    outputs = [
        p.run,
        notice,
        p.panel,
        p.file,
        p.info,
        p.serving,
        p.estimate,
        p.steps,
        p.command,
        p.note,
        p.fmt,
        p.problem,
    ]
    refresh = shown_in(
        lambda slug: _show(export_choices(services, slug), services),
        outputs=len(outputs),
        at=len(outputs) - 1,
    )
    brand.change(refresh, brand, outputs, **quiet)
    tab.select(refresh, brand, outputs, **quiet)

    def on_choice(run_id: str | None, chosen: str) -> tuple:
        steps, command = going_live(services, run_id, chosen)
        return (
            serving_text(services, run_id),
            export_estimate(services, run_id, chosen),
            steps,
            gr.update(value=command, visible=bool(command)),
            model_note(services, run_id),
            gr.update(value=_BUTTON.get(chosen, _BUTTON["adapter"])),
            "",
        )

    choice_outputs = [p.serving, p.estimate, p.steps, p.command, p.note, p.make, p.problem]
    for trigger in (p.run.input, p.fmt.change):
        trigger(
            shown_in(on_choice, outputs=len(choice_outputs), at=len(choice_outputs) - 1),
            [p.run, p.fmt],
            choice_outputs,
            **quiet,
        )

    def on_export(run_id: str | None, chosen: str, progress=gr.Progress()) -> tuple:  # noqa: B008
        path, text = export_package(services, run_id, chosen, _reporter(progress, _STAGES))
        return (
            gr.update(value=str(path), visible=True),
            text,
            export_estimate(services, run_id, chosen),
            "",
        )

    make_outputs = [p.file, p.info, p.estimate, p.problem]
    p.make.click(
        shown_in(on_export, outputs=4, at=3), [p.run, p.fmt], make_outputs, concurrency_id="export"
    )

    def on_import(slug: str | None, upload: str | None, progress=gr.Progress()) -> tuple:  # noqa: B008
        owner, text = import_archive(services, slug, upload, _reporter(progress, _IMPORT_STAGES))
        if owner != slug:
            text += f"\n\nPick **{owner}** in the brand list to see it."
        return (*_show(export_choices(services, slug), services)[:3], text)

    load.click(
        shown_in(on_import, outputs=4, at=3), [brand, archive], [p.run, notice, p.panel, imported]
    )

    def on_votes(slug: str | None, chosen: str) -> tuple:
        path, text = export_preferences(services, slug, chosen)
        return gr.update(value=str(path), visible=True), text

    votes.click(shown_in(on_votes, outputs=2, at=1), [brand, kind], [votes_file, votes_info])
