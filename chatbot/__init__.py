"""brandvoice engine: brand data in, a fine-tuned voice out. Never imports gradio."""

__version__ = "0.1.0"
