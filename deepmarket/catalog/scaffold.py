"""Adding modules to a catalog: the scaffold of `deepmarket new`, and appending to modules.yml.

Text in, text out; `deepmarket.cli` does the reading and writing.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from deepmarket.catalog.formats import suggest_id
from deepmarket.errors import UsageError, UserError

ID_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

MODULE_TEMPLATE = """\
# Metadata of the {id} module. Every field marked TODO holds a placeholder:
# replace it (and every your-org), then run `deepmarket validate`. Placeholders
# are warnings on your machine, so `deepmarket site serve` can preview the page,
# and errors in CI: a pull request that still has them cannot be merged.
# An icon.svg or icon.png beside this file is the module's icon (no key needed).
# Reference: schemas/module.schema.json (each field is described there).
id: {id}  # must stay equal to the directory name
title: {title}  # TODO: a short name, at most 80 characters
summary: TODO say in one line what {id} does.  # TODO: one line, at most 200 characters
description: |  # TODO: Markdown; what it does, what it was trained on, how to use it
  TODO: describe the module.
readme: README.md  # optional long description, shown on the module's page
links:
  source_code: https://github.com/your-org/{id}  # TODO: the module's code repository
  # Optional: docker_image, documentation, dataset, weights, citation, base_model (URLs)
libraries: [Other]  # TODO: TensorFlow, PyTorch, Keras, Scikit-learn, XGBoost, ..., Other
tasks: [Other]  # TODO: e.g. [Computer Vision, Classification]; the schema lists all
categories: [inference]  # TODO: any of trainable, inference, pre-trained, tool
data-type: [Other]  # TODO: Image, Text, Time Series, Tabular, Graph, Audio, Video, Other
tags: [{tag}]  # TODO: lowercase keywords for search
dates: {{created: {today}, updated: {today}}}
license: MIT  # TODO: the SPDX id of the module's licence (Apache-2.0, GPL-3.0-only, ...)
resources:  # what the operator requests by default
  inference: {{cpu: 1, memory_MB: 2048, gpu: 0}}
runtime:
  image: docker.io/your-org/{id}:0.1.0  # TODO: the image, pinned by a version tag or digest
  model: {model}  # TODO: the name of the module's deepaas.v2.model entry point
  port: 5000
  train: false  # true when `deepaas-cli train` works; then add 'trainable' to categories
"""

README_TEMPLATE = """\
# {title}

TODO: the long description of {id}: what it does, the data it was trained on, its accuracy,
how to call it (the inputs predict expects and what it returns) and how to train it.
"""


def check_new_id(module_id: str) -> None:
    """Refuse ids that cannot name a directory and a Kubernetes object (usage error)."""
    if len(module_id) > 63 or not ID_PATTERN.match(module_id):
        guess = suggest_id(module_id)
        fix = f"; e.g. {guess!r}" if guess and ID_PATTERN.match(guess) else ""
        raise UsageError(
            f"invalid module id {module_id!r}: use a DNS-1035 label (lowercase letters, digits "
            "and '-', starting with a letter, ending with a letter or digit, at most 63 "
            f"characters): it also names the module's Kubernetes Service{fix}"
        )


def module_scaffold(module_id: str, today: dt.date) -> dict[str, str]:
    """The files of a new module (relative path -> text): a valid module.yml and a README."""
    check_new_id(module_id)
    title = module_id.replace("-", " ").capitalize()
    values = {
        "id": module_id,
        "title": title,
        "tag": module_id if len(module_id) <= 40 else module_id[:40].rstrip("-"),
        "today": today.isoformat(),
        "model": module_id.replace("-", "_"),
    }
    return {
        "module.yml": MODULE_TEMPLATE.format(**values),
        "README.md": README_TEMPLATE.format(**values),
    }


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap the author's long lines
    yaml.preserve_quotes = True
    return yaml


def index_ids(text: str) -> list[str]:
    """Ids already listed in a modules.yml text (for refusing an existing id)."""
    data = _round_trip().load(text) if text.strip() else None
    items = data.get("modules") if isinstance(data, dict) else None
    return [str(i.get("id")) for i in items or [] if isinstance(i, dict)]


def append_to_index(text: str, module_id: str, *, deploy: bool = False) -> str:
    """modules.yml with `- id: <id>` appended, its comments, order and layout kept.

    An empty text starts a new index.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import YAMLError

    yaml = _round_trip()
    try:
        data = yaml.load(text) if text.strip() else None
    except YAMLError as exc:
        raise UserError(f"modules.yml is not valid YAML; fix it first ({exc.problem})") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise UserError("modules.yml must be a mapping with a 'modules' list; fix it first")
    modules = data.get("modules")
    if modules is None:
        modules = data["modules"] = CommentedSeq()
    if not isinstance(modules, list):
        raise UserError("modules.yml: 'modules' must be a list; fix it first")
    if isinstance(modules, CommentedSeq):
        modules.fa.set_block_style()  # `modules: []` grows into a block list
    entry = CommentedMap()
    entry["id"] = module_id
    entry["deploy"] = deploy
    modules.append(entry)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
