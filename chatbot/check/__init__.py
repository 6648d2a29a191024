"""Checking any text against the brand: a calibrated 0-100 score, sentence by sentence, with fixes.

A run's tuned model knows the brand's voice, so it can say how on-brand a draft reply, e-mail or
help article is. The score (`score`) adds three parts: how much likelier the text is under the
tuned model than under the base model (`likelihood`), the style classifier's verdict
(`chatbot.scorecard.style`) and the brand's rules (`chatbot.brand.rule_check`). It is calibrated per
run on the brand's own held-out replies against the base model's (`calibration`), so 80 means "reads
like the brand's typical reply". `DraftChecker` (`checker`) checks one text and adds rule-made
fixes (`chatbot.brand.rule_fix`) and the tuned model's own reply; `batch` audits a folder or CSV.
"""

from chatbot.check.batch import Draft, check_drafts, read_drafts, write_report
from chatbot.check.calibration import Calibration
from chatbot.check.checker import DraftCheck, DraftChecker, SentenceCheck, verdict_of
from chatbot.check.score import WEIGHTS, Anchor, BrandScore, Part, brand_score

__all__ = [
    "WEIGHTS",
    "Anchor",
    "BrandScore",
    "Calibration",
    "Draft",
    "DraftCheck",
    "DraftChecker",
    "Part",
    "SentenceCheck",
    "brand_score",
    "check_drafts",
    "read_drafts",
    "verdict_of",
    "write_report",
]
