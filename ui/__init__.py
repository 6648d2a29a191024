"""brandvoice in the browser: a Gradio app built over the same functions the CLI uses.

`build_app(services)` returns the gr.Blocks; `launch(services)` serves it with safe defaults.
One module per tab (brand, train, compare, export); their handlers are plain functions of a
`Services`, so tests drive them with a fake chat engine.
"""

from ui.app import build_app, launch
from ui.services import ChatBackend, EngineFactory, Services

__all__ = ["build_app", "launch", "Services", "ChatBackend", "EngineFactory"]
