"""Build small catalogs in temporary directories for the catalog tests (never the real one)."""

from __future__ import annotations

from pathlib import Path

VALID_MODULE = """\
id: {id}   # the directory name
title: {title}
summary: Classify plant species from a photo.
description: |
  A ResNet50 trained on PlantNet images.
readme: README.md
icon: icon.svg
links:
  source_code: https://github.com/deephdc/DEEP-OC-{id}-classification-tf
  docker_image: https://hub.docker.com/r/deephdc/deep-oc-plants-classification-tf
libraries: [TensorFlow]
tasks: [Computer Vision, Classification]
categories: [trainable, inference, pre-trained]
data-type: [Image]
tags: [plants, biodiversity]
dates: {{created: 2019-03-01, updated: 2024-05-10}}
license: MIT
doi: 10.5281/zenodo.1234567
resources:
  inference: {{cpu: 1, memory_MB: 2048, gpu: 0}}
  training: {{cpu: 4, memory_MB: 8192, gpu: 1, gpu_memory_MB: 8000, storage_MB: 20000}}
runtime:
  image: deephdc/deep-oc-plants-classification-tf:1.2.0
  model: plants
  port: 5000
  train: true
  check:
    predict:
      args: {{accept: application/json}}
      files: {{data: samples/seven.png}}
x-anything: {{free: form}}
"""


def valid_module(module_id: str) -> str:
    """The valid module.yml for `module_id`: its own title and repository (no duplicates)."""
    title = "Plant species classifier" if module_id == "plants" else f"{module_id} classifier"
    return VALID_MODULE.format(id=module_id, title=title.capitalize())


def write_module(root: Path, module_id: str, text: str | None = None) -> Path:
    """catalog/<id>/ with module.yml and the files it references."""
    d = root / "catalog" / module_id
    (d / "samples").mkdir(parents=True, exist_ok=True)
    (d / "README.md").write_text("# Plants\n")
    (d / "icon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (d / "samples" / "seven.png").write_bytes(b"\x89PNG\r\n")
    (d / "module.yml").write_text(text if text is not None else valid_module(module_id))
    return d / "module.yml"


def write_index(root: Path, ids: list[str], deploy: tuple[str, ...] = ()) -> Path:
    lines = ["# marketplace order", "modules:"]
    for module_id in ids:
        lines.append(f"  - id: {module_id}")
        lines.append(f"    deploy: {'true' if module_id in deploy else 'false'}")
    path = root / "modules.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_catalog(root: Path, ids: list[str], deploy: tuple[str, ...] = ()) -> Path:
    for module_id in ids:
        write_module(root, module_id)
    write_index(root, ids, deploy)
    return root


def module_text(**changes: str | None) -> str:
    """The valid module with top-level lines replaced (value None drops the key's line)."""
    lines = valid_module("plants").splitlines()
    out = []
    seen = set()
    for line in lines:
        key = line.split(":", 1)[0]
        if key in changes and not line.startswith(" "):
            seen.add(key)
            if changes[key] is not None:
                out.append(f"{key}: {changes[key]}")
            continue
        out.append(line)
    out += [f"{key}: {value}" for key, value in changes.items() if key not in seen]
    return "\n".join(out) + "\n"
