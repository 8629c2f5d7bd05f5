"""The model: multinomial logistic regression on 8x8 digit images (64 features, 0..16).

scikit-learn fits it; inference is one matrix product in numpy, so serving needs no pickle
and no scikit-learn import. Everything is seeded: the same data and arguments give the same
weights, which is how the shipped pre-trained weights are reproduced (`warm` trains them on
scikit-learn's bundled digits when the weights directory is empty).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

SEED = 20190301
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 500
TEST_FRACTION = 0.2
FEATURES = 64
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Classifier:
    classes: tuple[int, ...]
    coef: np.ndarray  # (classes, 64), on features scaled to 0..1
    intercept: np.ndarray  # (classes,)
    info: dict[str, Any]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for rows of 64 features in 0..16 (the digits data's scale)."""
        logits = (np.atleast_2d(features) / 16.0) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "classes": list(self.classes),
            "coef": self.coef.round(10).tolist(),
            "intercept": self.intercept.round(10).tolist(),
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Classifier:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported weights format {data.get('format')!r}")
        coef = np.asarray(data["coef"], dtype=float)
        intercept = np.asarray(data["intercept"], dtype=float)
        classes = tuple(int(c) for c in data["classes"])
        if coef.shape != (len(classes), FEATURES) or intercept.shape != (len(classes),):
            raise ValueError(f"weights have shape {coef.shape}, expected ({len(classes)}, 64)")
        return cls(classes, coef, intercept, dict(data.get("info", {})))


def bundled_dataset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (UCI), shipped inside scikit-learn: no download."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data.astype(float), digits.target.astype(int)


def _split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Stratified train/test indices, or None when some class has too few examples."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2 or counts.min() < 2 or len(labels) * TEST_FRACTION < len(counts):
        return None
    indices = np.arange(len(labels))
    train, test = train_test_split(
        indices, test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    return train, test


def fit(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    C: float = DEFAULT_C,  # scikit-learn's name for the inverse regularisation strength
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = SEED,
    source: str = "",
) -> tuple[Classifier, dict[str, Any]]:
    """Fit on a held-in split, report accuracy on the held-out split (when there is one)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        raise ValueError("training needs examples of at least two digits")
    started = time.perf_counter()
    split = _split(labels, seed)
    train_idx, test_idx = split if split else (np.arange(len(labels)), np.arange(len(labels)))
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    model.fit(features[train_idx] / 16.0, labels[train_idx])
    classifier = Classifier(
        classes=tuple(int(c) for c in model.classes_),
        coef=np.asarray(model.coef_, dtype=float),
        intercept=np.asarray(model.intercept_, dtype=float),
        info={"C": C, "max_iter": max_iter, "seed": seed, "source": source},
    )
    predicted = np.asarray(classifier.classes)[
        classifier.probabilities(features[test_idx]).argmax(axis=1)
    ]
    metrics = {
        "accuracy": round(float((predicted == labels[test_idx]).mean()), 4),
        "evaluated_on": "held-out 20% split" if split else "training data (too few examples)",
        "train_samples": len(train_idx),
        "test_samples": len(test_idx),
        "classes": list(classifier.classes),
        "iterations": int(np.max(model.n_iter_)),
        "seconds": round(time.perf_counter() - started, 3),
        **classifier.info,
    }
    return classifier, metrics
