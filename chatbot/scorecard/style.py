"""Does a reply sound like the brand? A small local classifier answers with P(brand).

Character n-grams (TF-IDF) catch what makes a voice recognisable at this scale: sign-offs,
greetings, favourite words, punctuation and casing habits. A logistic regression learns them from
the brand's training replies (the voice) against the base model's replies to training prompts
(what the model says before tuning), so P(brand) measures how far a reply moved from the base
model's habits towards the brand's. Held-out replies are never trained on. Classes are weighted to
balance, since the brand usually has many more replies than the base model is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatbot.errors import BrandVoiceError

__all__ = ["StyleClassifier", "MAX_POSITIVES"]

MAX_POSITIVES = 2000
"""More brand replies than this add little to the classifier and only cost time."""
_CV_FOLDS = 5


@dataclass
class StyleClassifier:
    """A fitted TF-IDF + logistic regression pipeline and what it was fitted on."""

    pipeline: Any
    positives: int
    negatives: int
    cv_accuracy: float | None

    @classmethod
    def fit(cls, brand: list[str], other: list[str], *, seed: int = 0) -> StyleClassifier:
        """Learn the brand's voice (`brand` replies) against another voice (`other` replies).

        Empty replies are kept: a model that answers with nothing has that habit too.
        """
        if len(brand) < 2 or len(other) < 2:
            raise BrandVoiceError(
                f"The style classifier needs at least 2 replies of each voice; it got {len(brand)} "
                f"brand replies and {len(other)} base-model replies. Add training conversations "
                "or raise the number of base-model replies (negatives)."
            )
        texts, labels = brand + other, [1] * len(brand) + [0] * len(other)
        pipeline = _pipeline(seed).fit(texts, labels)
        return cls(pipeline, len(brand), len(other), _cv_accuracy(texts, labels, seed))

    def p_brand(self, texts: list[str]) -> list[float]:
        """P(brand voice) of each text."""
        if not texts:
            return []
        column = list(self.pipeline.classes_).index(1)
        return [float(p[column]) for p in self.pipeline.predict_proba(texts)]


def _pipeline(seed: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        # Word-bounded character n-grams; case kept, since casing is part of a voice.
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=False, sublinear_tf=True),
        LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=seed),
    )


def _cv_accuracy(texts: list[str], labels: list[int], seed: int) -> float | None:
    """Balanced held-out accuracy within the training replies: do the two voices separate at all?"""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if min(labels.count(0), labels.count(1)) < _CV_FOLDS:
        return None
    folds = StratifiedKFold(n_splits=_CV_FOLDS, shuffle=True, random_state=seed)
    return float(
        cross_val_score(
            _pipeline(seed), texts, labels, cv=folds, scoring="balanced_accuracy"
        ).mean()
    )
