"""Generated catalogs for the site's tests and benchmark: valid, varied, deterministic.

`write_catalog(root, n)` writes `modules.yml` and `catalog/<id>/module.yml` for `n` modules that
follow the module.yml format, with a spread of categories, tasks, libraries, data types and
tags so every filter has something to do. Same `seed`, same catalog.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

LIBRARIES = ["TensorFlow", "PyTorch", "Keras", "Scikit-learn", "XGBoost", "LightGBM", "CatBoost"]
TASKS = [
    "Computer Vision",
    "Natural Language Processing",
    "Time Series",
    "Anomaly Detection",
    "Regression",
    "Classification",
    "Clustering",
    "Generative Models",
]
DATA_TYPES = ["Image", "Text", "Time Series", "Tabular", "Audio", "Video"]
TAGS = [
    "plants",
    "biodiversity",
    "medical",
    "satellite",
    "climate",
    "speech",
    "sentiment",
    "segmentation",
    "detection",
    "forecasting",
    "physics",
    "agriculture",
    "ocean",
    "audio",
]
SUBJECTS = [
    "plant species",
    "bird songs",
    "retinal scans",
    "sea surface temperature",
    "crop yield",
    "galaxy shapes",
    "traffic flow",
    "handwritten digits",
    "news sentiment",
    "wildfire smoke",
    "coral reefs",
    "seismic events",
    "protein folds",
    "river levels",
    "solar flares",
]
LICENSES = ["MIT", "Apache-2.0", "BSD-3-Clause", "GPL-3.0-only", "CC-BY-4.0"]
WORDS = [
    "robust",
    "calibrated",
    "lightweight",
    "accurate",
    "multiscale",
    "federated",
    "sparse",
    "transformer",
    "ensemble",
    "convolutional",
    "bayesian",
    "streaming",
]


def icon_svg(index: int) -> str:
    """A small abstract icon, so generated catalogs have modules with and without icons."""
    hue = (index * 47) % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" rx="14" fill="hsl({hue},60%,92%)"/>'
        f'<circle cx="24" cy="26" r="12" fill="hsl({hue},65%,50%)"/>'
        f'<rect x="30" y="30" width="22" height="22" rx="5" fill="hsl({(hue + 60) % 360},60%,45%)"'
        ' opacity="0.85"/></svg>'
    )


def module_data(index: int, rng: random.Random) -> dict[str, Any]:
    subject = SUBJECTS[index % len(SUBJECTS)]
    module_id = f"{subject.replace(' ', '-')}-{index:05d}"
    trainable = rng.random() < 0.6
    categories = ["inference"]
    if trainable:
        categories.insert(0, "trainable")
    if rng.random() < 0.7:
        categories.append("pre-trained")
    created = date(2019, 1, 1) + timedelta(days=rng.randrange(1500))
    updated = created + timedelta(days=rng.randrange(600))
    word = WORDS[rng.randrange(len(WORDS))]
    data: dict[str, Any] = {
        "id": module_id,
        "title": f"{subject.capitalize()} {word} model {index}",
        "summary": f"A {word} model for {subject}, ready to deploy and to retrain on your data.",
        "description": (
            f"Analyses **{subject}** with a {word} architecture.\n\n"
            f"- trained on a public {subject} dataset\n- unique word: zq{index:05d}word\n\n"
            "Upload a file to get predictions, or retrain it on your own labelled data."
        ),
        "links": {
            "source_code": f"https://github.com/example/{module_id}",
            "docker_image": f"https://hub.docker.com/r/example/{module_id}",
        },
        "libraries": rng.sample(LIBRARIES, rng.choice([1, 1, 2])),
        "tasks": rng.sample(TASKS, rng.choice([1, 2])),
        "categories": categories,
        "data-type": rng.sample(DATA_TYPES, 1),
        "tags": sorted(rng.sample(TAGS, rng.choice([1, 2, 3]))),
        "dates": {"created": created.isoformat(), "updated": updated.isoformat()},
        "license": LICENSES[rng.randrange(len(LICENSES))],
        "resources": {"inference": {"cpu": 1, "memory_MB": 2048, "gpu": 0}},
        "runtime": {
            "image": f"example/{module_id}:1.{index % 10}.0",
            "model": module_id.replace("-", "_"),
            "port": 5000,
            "train": trainable,
        },
    }
    if trainable:
        data["resources"]["training"] = {
            "cpu": 4,
            "memory_MB": 8192,
            "gpu": 1,
            "gpu_memory_MB": 8000,
            "storage_MB": 20000,
        }
    return data


def write_catalog(
    root: Path,
    n: int,
    *,
    seed: int = 7,
    overrides: dict[str, dict[str, Any]] | None = None,
    deploy: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Write a catalog of `n` modules under `root`; returns their module.yml data.

    `overrides` maps a module id (or `#<index>`) to top-level keys that replace the generated
    ones; `deploy` lists ids marked `deploy: true` in modules.yml.
    """
    rng = random.Random(seed)
    overrides = overrides or {}
    modules = []
    for index in range(n):
        data = module_data(index, rng)
        patch = overrides.get(data["id"]) or overrides.get(f"#{index}") or {}
        data = {**data, **patch}
        module_dir = root / "catalog" / data["id"]
        module_dir.mkdir(parents=True, exist_ok=True)
        if index % 3 == 0 and "icon" not in patch:
            (module_dir / "icon.svg").write_text(icon_svg(index))
            data["icon"] = "icon.svg"
        # JSON is YAML: no serializer quirks, and every string is quoted.
        (module_dir / "module.yml").write_text(json.dumps(data, indent=2, ensure_ascii=False))
        modules.append(data)
    lines = ["modules:"] + [
        f"  - id: {m['id']}\n    deploy: {str(m['id'] in deploy).lower()}" for m in modules
    ]
    (root / "modules.yml").write_text("\n".join(lines) + "\n")
    return modules
