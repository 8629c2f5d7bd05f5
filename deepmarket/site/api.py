"""The marketplace's machine-readable index: the same data the pages show, as JSON.

`api/modules.json` lists every module (the fields the home page filters on); `api/modules/<id>.json`
holds one module's full metadata and its manifests. Both are described by `api/schema.json`
(`api_schema.json` beside this file), so other tools can rely on the shape.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from deepmarket.catalog.manifests import deepmodule_manifest, trainingrun_manifest
from deepmarket.catalog.model import Module
from deepmarket.site.render import updated

API_VERSION = 1
SCHEMA_PATH = "api/schema.json"
INDEX_PATH = "api/modules.json"


def module_path(module_id: str) -> str:
    return f"api/modules/{module_id}.json"


def schema() -> dict[str, Any]:
    return json.loads(resources.files("deepmarket.site").joinpath("api_schema.json").read_text())


def summary_entry(module: Module, page: str, icon: str | None) -> dict[str, Any]:
    """One module in the index; `page`, `icon` and `api` are URLs relative to the site root."""
    data = module.data
    return {
        "id": module.id,
        "title": module.title,
        "summary": module.summary,
        "categories": module.categories,
        "tasks": list(data.get("tasks", [])),
        "libraries": list(data.get("libraries", [])),
        "data_types": list(data.get("data-type", [])),
        "tags": list(data.get("tags", [])),
        "license": data.get("license"),
        "updated": updated(module) or None,
        "trainable": module.trainable,
        "deploy": module.deploy,
        "image": module.image,
        "model": module.model_name,
        "page": page,
        "icon": icon,
        "api": module_path(module.id),
    }


def index_document(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": "schema.json",  # relative to api/modules.json
        "version": API_VERSION,
        "count": len(entries),
        "modules": entries,
    }


def module_document(module: Module, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "../schema.json",
        "version": API_VERSION,
        **entry,
        "metadata": module.data,
        "manifests": {
            "deepmodule": deepmodule_manifest(module),
            "trainingrun": trainingrun_manifest(module) if module.trainable else None,
        },
    }


def dumps(document: dict[str, Any]) -> str:
    # default=str: dates stay ISO strings even if a loader hands over date objects.
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
