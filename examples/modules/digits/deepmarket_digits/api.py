"""The DEEPaaS v2 entry point (`deepaas.v2.model` name `digits`).

DEEPaaS calls these functions: `get_metadata`, `warm`, `get_predict_args`, `predict`,
`get_train_args`, `train`, and reads `schema` to validate JSON answers. Predict and train run
in DEEPaaS's spawned worker processes, so what they raise must survive pickling: that is why
bad input is reported with `InputRejected` below rather than a plain aiohttp exception.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from marshmallow import fields, validate

from deepmarket_digits import __version__, classifier, images, store

MODEL_NAME = "digits"
JSON = "application/json"
PNG = "image/png"

# Response of a JSON predict call; DEEPaaS validates every answer against it and publishes it
# in /swagger.json, where `deepmarket module check` reads it back.
schema = {
    "status": fields.Str(required=True, metadata={"description": "OK"}),
    "label": fields.Int(required=True, metadata={"description": "The predicted digit"}),
    "confidence": fields.Float(required=True, metadata={"description": "Its probability"}),
    "probabilities": fields.List(
        fields.Nested(
            {
                "label": fields.Int(required=True),
                "probability": fields.Float(required=True),
            }
        ),
        required=True,
        metadata={"description": "Probability of every digit, most likely first"},
    ),
}


class InputRejected(web.HTTPClientError):
    """A 4xx with a JSON `{"message": ...}` body that survives the trip between processes."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"message": message}), content_type=JSON)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.status_code))


_loaded: dict[str, Any] = {"classifier": None, "stamp": None}


def _weights_path() -> Path:
    return store.model_dir() / store.WEIGHTS_FILE


def ensure_weights() -> Path:
    """Train the pre-trained weights (bundled data, fixed seed) when the directory has none."""
    path = _weights_path()
    if not path.exists():
        features, labels = classifier.bundled_dataset()
        model, metrics = classifier.fit(features, labels, source="scikit-learn digits")
        try:
            store.write_json(path.with_name(store.METRICS_FILE), metrics)
            store.write_json(path, model.to_json())
        except OSError as exc:
            # e.g. an operator mounted an empty, read-only weights volume: say so at warm-up.
            raise RuntimeError(
                f"{path} does not exist and {path.parent} cannot be written "
                f"({exc.strerror}); mount a directory holding weights.json, or a writable "
                f"one, at ${store.ENV_VAR}"
            ) from None
    return path


def current_classifier() -> classifier.Classifier:
    """The classifier for the weights on disk now; re-read when a training replaced them."""
    path = ensure_weights()
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    if _loaded["stamp"] != stamp:
        _loaded["classifier"] = classifier.Classifier.from_json(store.read_json(path))
        _loaded["stamp"] = stamp
    return _loaded["classifier"]


def get_metadata() -> dict[str, Any]:
    metrics_path = store.model_dir() / store.METRICS_FILE
    metrics = store.read_json(metrics_path) if metrics_path.exists() else {}
    return {
        "name": MODEL_NAME,
        "description": (
            "Classifies a picture of one handwritten digit (0-9) with logistic regression on "
            "8x8 pixels; pre-trained on scikit-learn's bundled digits data, retrainable on "
            "a directory of labelled images."
        ),
        "author": "The deepmarket authors",
        "license": "Apache-2.0",
        "version": __version__,
        "url": "https://github.com/deepmarket/deepmarket/tree/main/examples/modules/digits",
        "weights_dir": str(store.model_dir()),
        "accuracy": metrics.get("accuracy"),
    }


def warm() -> None:
    current_classifier()


def get_predict_args() -> dict[str, fields.Field]:
    # A fresh dict each call: DEEPaaS mutates the `accept` field it is given.
    return {
        "data": fields.Field(
            required=True,
            metadata={
                "type": "file",
                "location": "form",
                "description": "A PNG or JPEG of one digit (light on dark or dark on light).",
            },
        ),
        "accept": fields.Str(
            load_default=JSON,
            validate=validate.OneOf([JSON, PNG]),
            metadata={
                "location": "headers",
                "description": "application/json: label and probabilities; "
                "image/png: a bar chart of the probabilities.",
            },
        ),
    }


def predict(**kwargs: Any) -> dict[str, Any] | io.BytesIO:
    upload = kwargs.get("data")
    if upload is None or not getattr(upload, "filename", None):
        raise InputRejected("no image: send the picture as the multipart form field 'data'")
    try:
        features = images.features_from_file(upload.filename)
    except images.BadImage as exc:
        raise InputRejected(str(exc), exc.status) from None
    finally:
        _discard_upload(upload.filename)
    model = current_classifier()
    probabilities = model.probabilities(features)[0]
    if kwargs.get("accept") == PNG:
        return io.BytesIO(images.chart_png(model.classes, probabilities))
    order = np.argsort(-probabilities)
    return {
        "status": "OK",
        "label": int(model.classes[order[0]]),
        "confidence": round(float(probabilities[order[0]]), 6),
        "probabilities": [
            {"label": int(model.classes[i]), "probability": round(float(probabilities[i]), 6)}
            for i in order
        ],
    }


def _discard_upload(path: str) -> None:
    """DEEPaaS hands the temporary upload over to the module and never deletes it."""
    if Path(path).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
        with contextlib.suppress(OSError):
            Path(path).unlink()


def get_train_args() -> dict[str, fields.Field]:
    return {
        "data_dir": fields.Str(
            load_default="",
            metadata={
                "description": "Directory with one sub-directory per digit (0 ... 9) holding "
                "images of it. Empty: scikit-learn's bundled digits.",
            },
        ),
        "C": fields.Float(
            load_default=classifier.DEFAULT_C,
            validate=validate.Range(min=1e-6, max=1e6),
            metadata={"description": "Inverse regularisation strength (larger: less)."},
        ),
        "max_iter": fields.Int(
            load_default=classifier.DEFAULT_MAX_ITER,
            validate=validate.Range(min=1, max=100000),
            metadata={"description": "Maximum optimiser iterations."},
        ),
        "seed": fields.Int(
            load_default=classifier.SEED, metadata={"description": "Random seed (split, solver)."}
        ),
    }


def train(**kwargs: Any) -> dict[str, Any]:
    """Fit new weights, write them and their metrics to the weights directory, return metrics."""
    data_dir = str(kwargs.get("data_dir") or "").strip()
    store.report_progress(percent=0)
    if data_dir:
        features, labels = load_labelled_images(Path(data_dir))
        source = data_dir
    else:
        features, labels = classifier.bundled_dataset()
        source = "scikit-learn digits"
    store.report_progress(percent=20, metrics={"images": float(len(labels))})
    model, metrics = classifier.fit(
        features,
        labels,
        C=float(kwargs.get("C", classifier.DEFAULT_C)),
        max_iter=int(kwargs.get("max_iter", classifier.DEFAULT_MAX_ITER)),
        seed=int(kwargs.get("seed", classifier.SEED)),
        source=source,
    )
    target = _weights_path()
    store.write_json(target.with_name(store.METRICS_FILE), metrics)
    store.write_json(target, model.to_json())
    store.report_progress(percent=100, metrics={"accuracy": float(metrics["accuracy"])})
    return {**metrics, "weights": str(target)}


def load_labelled_images(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `root/<digit>/<image>`; say which file is wrong rather than skipping it."""
    if not root.is_dir():
        raise ValueError(f"data_dir {root} is not a directory")
    rows, labels = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if not label_dir.name.isdigit() or len(label_dir.name) != 1:
            raise ValueError(f"{label_dir}: sub-directories must be named 0 ... 9")
        for image in sorted(p for p in label_dir.iterdir() if p.is_file()):
            try:
                rows.append(images.features_from_file(image))
            except images.BadImage as exc:
                raise ValueError(f"{image}: {exc}") from None
            labels.append(int(label_dir.name))
    if not rows:
        raise ValueError(f"data_dir {root} has no images in sub-directories 0 ... 9")
    return np.vstack(rows), np.asarray(labels)
