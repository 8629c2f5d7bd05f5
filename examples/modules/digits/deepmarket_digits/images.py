"""Uploads in, pictures out: decode an image into the model's 64 features, draw the PNG chart.

Pure functions over bytes/arrays; the API layer maps `BadImage` to an HTTP 4xx.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

MAX_UPLOAD_BYTES = 4 * 1024 * 1024
MAX_PIXELS = 4096 * 4096  # checked before decoding: no decompression bombs


class BadImage(ValueError):
    """An upload the model cannot use; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def features_from_bytes(data: bytes) -> np.ndarray:
    """64 features in 0..16, ink high, like scikit-learn's digits (8x8, white on black)."""
    if not data:
        raise BadImage("the uploaded file is empty; send a PNG or JPEG of one digit")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadImage(
            f"the uploaded file is {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES}", 413
        )
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage(
            f"the uploaded file ({len(data)} bytes) is not an image Pillow can read; "
            "send a PNG or JPEG of one digit"
        ) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise BadImage(f"the image is {width}x{height} pixels; the limit is {MAX_PIXELS}", 413)
    try:
        gray = np.asarray(image.convert("L"), dtype=float)
    except (OSError, ValueError) as exc:
        raise BadImage(f"the image could not be decoded: {exc}") from None
    return features_from_gray(gray)


def features_from_file(path: str | Path) -> np.ndarray:
    return features_from_bytes(Path(path).read_bytes())


def features_from_gray(gray: np.ndarray) -> np.ndarray:
    """Shrink a grayscale picture to 8x8 and scale its ink to 0..16."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark ink on a light background: flip to the data set's polarity
        gray = 255.0 - gray
    small = Image.fromarray(gray.clip(0, 255).astype(np.uint8)).resize((8, 8), Image.BOX)
    values = np.asarray(small, dtype=float)
    peak = values.max()
    if peak <= 0:
        raise BadImage("the image is blank; it should show one digit")
    return (values * (16.0 / peak)).reshape(64)


def digit_png(features: np.ndarray, scale: int = 4) -> bytes:
    """A digits-data row (64 values 0..16) as a PNG, white on black, `scale` pixels a cell."""
    pixels = (np.asarray(features, dtype=float).reshape(8, 8) * (255.0 / 16.0)).round()
    image = Image.fromarray(pixels.astype(np.uint8)).resize((8 * scale, 8 * scale), Image.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def chart_png(classes: tuple[int, ...], probabilities: np.ndarray) -> bytes:
    """A bar chart of class probabilities; the predicted class is drawn in a stronger colour."""
    bar, gap, top, bottom = 24, 8, 10, 22
    width, height = len(classes) * (bar + gap) + gap, 160
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    best = int(np.argmax(probabilities))
    span = height - top - bottom
    for i, (label, p) in enumerate(zip(classes, probabilities, strict=True)):
        x = gap + i * (bar + gap)
        y = top + span * (1.0 - float(p))
        colour = "#1f6feb" if i == best else "#9ec1f7"
        draw.rectangle([x, y, x + bar, height - bottom], fill=colour)
        draw.text((x + bar // 2 - 3, height - bottom + 5), str(label), fill="black")
    draw.line([0, height - bottom, width, height - bottom], fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
