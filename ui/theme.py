"""The app's look: theme, style sheet, header and empty-state snippets.

Fonts are the ones bundled with Gradio, so the page never fetches anything from a font CDN.
"""

from __future__ import annotations

import html

import gradio as gr
from gradio.themes.utils import fonts

__all__ = ["make_theme", "CSS", "header_html", "empty_state", "table", "PRODUCT_NAME"]

PRODUCT_NAME = "brandvoice"


def make_theme() -> gr.themes.Base:
    return gr.themes.Soft(
        primary_hue="teal",
        secondary_hue="amber",
        neutral_hue="slate",
        radius_size="md",
        font=(fonts.LocalFont("IBM Plex Sans", weights=(400, 600)), "ui-sans-serif", "sans-serif"),
        font_mono=(fonts.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"),
    ).set(
        body_background_fill="*neutral_50",
        block_label_background_fill="transparent",
        block_label_text_color="*neutral_600",
        block_label_text_weight="600",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        button_primary_text_color="white",
        button_cancel_background_fill="#fef2f2",
        button_cancel_background_fill_hover="#fee2e2",
        button_cancel_text_color="#b91c1c",
        button_cancel_border_color="#fecaca",
    )


CSS = """
.gradio-container { width: 100% !important; max-width: 1240px !important;
  margin: 0 auto !important; }
.bv-logo-col { min-width: 320px; }
.bv-table table, .bv-table td, .bv-table th, .bv-table .cell-wrap, .bv-table span {
  font-family: var(--font) !important; }
.bv-badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 13px;
  font-weight: 600; vertical-align: middle; margin-right: 8px; }
.bv-badge.ok { background: #dcfce7; color: #166534; }
.bv-badge.bad { background: #fee2e2; color: #991b1b; }
#bv-header { align-items: center; padding: 10px 4px 6px; border-bottom: 1px solid #e2e8f0;
  margin-bottom: 6px; }
.bv-title { display: flex; align-items: baseline; gap: 14px; }
.bv-logo { font-size: 26px; font-weight: 700; letter-spacing: -0.02em; color: #0f766e; }
.bv-logo span { color: #b45309; }
.bv-tagline { color: #64748b; font-size: 14px; }
.bv-brand { font-size: 15px; color: #334155; margin-top: 2px; }
.bv-brand b { color: #0f172a; }
.bv-empty { border: 1.5px dashed #cbd5e1; border-radius: 12px; padding: 28px 24px;
  text-align: center; color: #475569; background: #ffffff; }
.bv-empty h3 { margin: 0 0 6px; color: #0f172a; font-size: 17px; }
.bv-empty p { margin: 0 auto; max-width: 560px; }
.bv-hint { color: #64748b; font-size: 13px; }
.bv-card { background: #ffffff; border: 1px solid #e2e8f0; border-radius: 12px; padding: 12px; }
.bv-progress { margin: 6px 0 4px; }
.bv-progress .bar { height: 14px; border-radius: 7px; background: #e2e8f0; overflow: hidden; }
.bv-progress .fill { height: 100%; background: linear-gradient(90deg, #14b8a6, #0f766e);
  transition: width .6s ease; }
.bv-progress .meta { display: flex; justify-content: space-between; flex-wrap: wrap; gap: 8px;
  font-size: 13px; color: #475569; margin-top: 6px; }
.bv-state { display: inline-block; padding: 1px 10px; border-radius: 999px; font-size: 12px;
  font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
.bv-state.running, .bv-state.queued { background: #ccfbf1; color: #115e59; }
.bv-state.succeeded { background: #dcfce7; color: #166534; }
.bv-state.failed { background: #fee2e2; color: #991b1b; }
.bv-state.cancelled { background: #fef3c7; color: #92400e; }
.bv-run-head { display: flex; align-items: center; gap: 10px; font-size: 15px; }
.bv-run-error { color: #991b1b; margin-top: 6px; font-size: 14px; }
.bv-votes button { min-width: 0 !important; }
.bv-pane-title { font-weight: 600; font-size: 15px; color: #0f172a; padding: 2px 4px; }
.bv-reveal { font-size: 15px; }
.bv-problem { border: 1px solid #fecaca; background: #fef2f2; color: #7f1d1d; border-radius: 10px;
  padding: 10px 12px; font-size: 14px; }
.bv-good { border: 1px solid #bbf7d0; background: #f0fdf4; color: #14532d; border-radius: 10px;
  padding: 10px 12px; font-size: 14px; }
.bv-note { border: 1px solid #fde68a; background: #fffbeb; color: #78350f; border-radius: 10px;
  padding: 10px 12px; font-size: 14px; }
.bv-prompt { white-space: pre-wrap; overflow-wrap: anywhere; background: #f8fafc;
  border: 1px solid #e2e8f0; border-radius: 8px; padding: 8px 10px; font-size: 13px; }
.bv-wrap .cm-content, .bv-wrap .cm-line { white-space: pre-wrap !important;
  overflow-wrap: anywhere !important; word-break: break-word; }
"""


def header_html(brand_name: str | None) -> str:
    brand = (
        f"Brand: <b>{html.escape(brand_name)}</b>"
        if brand_name
        else "No brand yet: start on the <b>Brand</b> tab."
    )
    return (
        '<div class="bv-title"><div class="bv-logo">brand<span>voice</span></div>'
        '<div class="bv-tagline">Your brand\'s voice, as a chatbot</div></div>'
        f'<div class="bv-brand">{brand}</div>'
    )


def empty_state(title: str, body_html: str) -> str:
    """A friendly placeholder for a panel with nothing to show yet (`body_html` is trusted)."""
    return f'<div class="bv-empty"><h3>{html.escape(title)}</h3><p>{body_html}</p></div>'


def table(headers: list[str], **kwargs: object) -> gr.Dataframe:
    """A read-only report table in the app's style."""
    return gr.Dataframe(
        headers=headers, interactive=False, wrap=True, elem_classes="bv-table", **kwargs
    )
