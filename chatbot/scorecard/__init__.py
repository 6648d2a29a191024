"""The brand scorecard: does the tuned model speak in the brand's voice, and by how much?

Four systems answer the brand's held-out conversations: the base model ("base"), the base model
with the brand's style prompt ("prompted"), the same with k of the brand's example exchanges from
the training split ("fewshot", the strongest prompt) and the tuned adapter ("tuned"). The
scorecard measures

- likelihood: NLL and perplexity per assistant token of the brand's real held-out replies;
- generated replies to every held-out customer turn, kept for side-by-side reading;
- the brand's rules (brand.yaml) on those replies: pass rate per rule and system;
- style: P(brand voice) of each reply from a small local classifier;
- readability (Flesch) and length, next to the brand's own replies;
- blind votes cast in the Compare tab for the run.

`verdict()` says whether tuning beat the best prompt and whether to ship the adapter.
`evaluate()` returns a `Scorecard`; `write_report()` writes scorecard.json and a self-contained
scorecard.html into the run folder; `compare_scorecards()` lists what a newer run does worse.
"""

from chatbot.scorecard.card import (
    REFERENCE,
    SYSTEMS,
    Scorecard,
    ScorecardSettings,
    load_scorecard,
)
from chatbot.scorecard.compare import Regression, comparability, compare_scorecards
from chatbot.scorecard.evaluate import Progress, evaluate
from chatbot.scorecard.report import (
    ReportFiles,
    charts_html,
    examples_html,
    headlines,
    summary_rows,
    write_report,
)
from chatbot.scorecard.verdict import Verdict, verdict

__all__ = [
    "SYSTEMS",
    "REFERENCE",
    "Progress",
    "Scorecard",
    "ScorecardSettings",
    "Regression",
    "ReportFiles",
    "evaluate",
    "write_report",
    "load_scorecard",
    "compare_scorecards",
    "comparability",
    "summary_rows",
    "headlines",
    "charts_html",
    "examples_html",
    "Verdict",
    "verdict",
]
