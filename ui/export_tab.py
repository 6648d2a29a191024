"""The Export tab: download a finished run's LoRA adapter as a zip.

Zips are written to the workspace's `exports/` folder, the only workspace folder the app serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from chatbot.errors import BrandVoiceError
from chatbot.export import zip_adapter
from chatbot.jobs import Run, get_run, list_runs
from ui.errors import user_errors
from ui.services import Services
from ui.text import base_model_label, run_label
from ui.theme import empty_state

__all__ = ["ExportView", "export_choices", "export_adapter", "build"]


@dataclass
class ExportView:
    run_choices: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    notice: str = ""


def _exportable(run: Run) -> bool:
    return run.state == "succeeded" and (run.run_dir / "adapter" / "adapter_config.json").exists()


def export_choices(services: Services, slug: str | None) -> ExportView:
    """The brand's runs that have an adapter to download, newest first."""
    if not slug:
        return ExportView(notice=empty_state("Nothing to export yet", "Prepare a brand first."))
    runs = [r for r in list_runs(services.workspace, slug) if _exportable(r)]
    if not runs:
        return ExportView(
            notice=empty_state(
                "No trained adapter yet",
                "When a training run finishes on the <b>Train</b> tab, its adapter can be "
                "downloaded here.",
            )
        )
    choices = [(run_label(r), r.id) for r in runs]
    return ExportView(run_choices=choices, run_id=runs[0].id)


def export_adapter(services: Services, run_id: str | None) -> tuple[Path, str]:
    """Zip the run's adapter into the exports folder; returns (zip path, description)."""
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


def _show(view: ExportView) -> tuple:
    has = bool(view.run_choices)
    return (
        gr.update(choices=view.run_choices, value=view.run_id),
        gr.update(value=view.notice, visible=not has),
        gr.update(visible=has),
        gr.update(value=None, visible=False),
        "",
    )


def _describe() -> str:
    return (
        "#### Download the adapter\n"
        "The adapter holds what training learned: a few megabytes of LoRA weights that sit on "
        "top of the base model. The zip contains the weights (`adapter_model.safetensors`), "
        "their settings (`adapter_config.json`) and the tokenizer files, nothing else."
    )


def build(services: Services, brand: gr.Dropdown, tab: gr.Tab) -> None:
    """Lay out the Export tab inside `tab`; `brand` is the app-wide brand picker."""
    notice = gr.HTML(export_choices(services, None).notice)
    with gr.Row(visible=False, equal_height=False) as panel:
        with gr.Column(scale=1, elem_classes="bv-card"):
            gr.Markdown(_describe())
            run = gr.Dropdown(label="Trained run", choices=[], interactive=True)
            make = gr.Button("Create adapter zip", variant="primary")
        with gr.Column(scale=1):
            file = gr.File(
                label="Your download", interactive=False, visible=False, elem_classes="bv-download"
            )
            info = gr.Markdown()
    refresh = user_errors(lambda slug: _show(export_choices(services, slug)))
    outputs = [run, notice, panel, file, info]
    brand.change(refresh, brand, outputs, show_progress="hidden")
    tab.select(refresh, brand, outputs, show_progress="hidden")

    def on_export(run_id: str | None) -> tuple:
        path, text = export_adapter(services, run_id)
        return gr.update(value=str(path), visible=True), text

    make.click(user_errors(on_export), run, [file, info])
