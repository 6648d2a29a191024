"""Export: a finished run packaged for production, and the raw adapter zip.

`export_run` writes a verified LoRA adapter zip or merged model (model card, manifest, reload check
in a fresh process); `verify_export` checks an export again; `zip_adapter` zips a run's raw adapter
files. What goes into a package is decided in `package`, the card's wording in `card`, the check a
fresh process runs in `reload_check` and how its answer is judged in `verify`. The way back in is
here too, since it reads the same bundle: `importing` turns an adapter zip trained elsewhere into a
run, and `vllm_compat` checks an adapter against vLLM's LoRA limits for both directions.
"""

from chatbot.export.archive import ADAPTER_FILE_SUFFIXES, TOKENIZER_FILES, zip_adapter
from chatbot.export.package import (
    CHECK_PROMPT,
    CHECK_TOKENS,
    FORMATS,
    ExportFormat,
    ExportResult,
    default_export_path,
    export_run,
)
from chatbot.export.verify import ExportCheckError, ReloadCheck, verify_export

__all__ = [
    "ADAPTER_FILE_SUFFIXES",
    "TOKENIZER_FILES",
    "zip_adapter",
    "CHECK_PROMPT",
    "CHECK_TOKENS",
    "FORMATS",
    "ExportCheckError",
    "ExportFormat",
    "ExportResult",
    "ReloadCheck",
    "default_export_path",
    "export_run",
    "verify_export",
]
