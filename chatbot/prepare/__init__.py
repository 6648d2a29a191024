"""Preparing a brand: conversation files and a style guide in, clean and redacted brand data out.

`pipeline` runs the stage top to bottom (read, deduplicate, redact, validate, split, write);
`validation` says what in the data would train badly; `privacy` finds and replaces personal data.
The stage's module is `pipeline`, not `prepare`, so `from chatbot.prepare import prepare` is the
function.
"""

from chatbot.prepare.pipeline import PrepareResult, prepare, split_train_eval

__all__ = ["PrepareResult", "prepare", "split_train_eval"]
