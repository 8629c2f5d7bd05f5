"""Catalog entries in other platforms' formats.

- AI4OS v2 `ai4-metadata.yml` (ai4os/ai4-metadata 2.x; what `ai4-metadata validate` checks):
  our field names mostly are theirs; categories become "AI4 …" labels, `tags` is required,
  `dates` needs both dates, resource numbers are integers, and they have no licence or
  runtime fields (those stay with us).
- schema.org JSON-LD: a `SoftwareApplication` with the properties search engines read, for
  the marketplace's module pages and `api/modules/<id>.jsonld`.

Pure: a `Module` in, data or text out.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from deepmarket.catalog.model import Module

AI4OS_VERSION = "2.0.0"  # accepted by every 2.x schema of ai4-metadata
CATEGORIES_AI4OS = {
    "pre-trained": "AI4 pre trained",
    "trainable": "AI4 trainable",
    "inference": "AI4 inference",
    "tool": "AI4 tools",
}
AI4OS_LINKS = (
    "source_code",
    "docker_image",
    "documentation",
    "dataset",
    "weights",
    "citation",
    "base_model",
)
AI4OS_RESOURCES = (
    "cpu",
    "gpu",
    "memory_MB",
    "gpu_memory_MB",
    "gpu_compute_capability",
    "storage_MB",
)


def ai4os_v2(module: Module) -> dict[str, Any]:
    """The entry as AI4OS v2 metadata."""
    data = module.data
    out: dict[str, Any] = {
        "metadata_version": AI4OS_VERSION,
        "title": data["title"],
        "summary": data["summary"],
        "description": str(data.get("description", "")).rstrip("\n"),
    }
    if data.get("doi"):
        out["doi"] = data["doi"]
    links = data.get("links", {})
    out["links"] = {k: links[k] for k in AI4OS_LINKS if links.get(k)}
    dates = data.get("dates") or {}
    if dates.get("created") and dates.get("updated"):  # AI4OS wants both or none
        out["dates"] = {"created": str(dates["created"]), "updated": str(dates["updated"])}
    out["tags"] = list(data.get("tags", []))
    out["tasks"] = list(data.get("tasks", []))
    out["categories"] = [CATEGORIES_AI4OS[c] for c in data.get("categories", [])]
    out["libraries"] = list(data.get("libraries", []))
    if data.get("data-type"):
        out["data-type"] = list(data["data-type"])
    resources = {}
    for phase in ("inference", "training"):
        numbers = module.resources(phase)
        kept = {}
        for key in AI4OS_RESOURCES:
            if key in numbers:
                value = numbers[key]
                # AI4OS counts whole CPUs: a fraction asks for the next whole one
                kept[key] = value if key == "gpu_compute_capability" else math.ceil(value)
        if kept:
            resources[phase] = kept
    if resources:
        out["resources"] = resources
    return out


def ai4os_v2_yaml(module: Module) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    data = ai4os_v2(module)
    if "\n" in data["description"]:
        data["description"] = LiteralScalarString(data["description"])
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    out.write(f"# {module.id}: exported from the deepmarket catalog by `deepmarket export`\n")
    yaml.dump(data, out)
    return out.getvalue()


def spdx_url(licence: str) -> str | None:
    """The SPDX page of a single licence id (an expression has no one page)."""
    if not licence or any(op in licence.split() for op in ("AND", "OR", "WITH")):
        return None
    return f"https://spdx.org/licenses/{licence.strip('()')}.html"


def jsonld(module: Module, page_url: str | None = None) -> dict[str, Any]:
    """schema.org SoftwareApplication for one module. `page_url` is the absolute URL of
    its marketplace page, when the site knows its own address."""
    data = module.data
    links = data.get("links", {})
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "SoftwareApplication",
        "name": module.title,
        "identifier": module.id,
        "description": module.summary,
        "abstract": str(data.get("description", "")).strip(),
        "applicationCategory": "DeveloperApplication",
        "applicationSubCategory": "Machine learning model",
        "operatingSystem": "Linux (OCI container image)",
        "keywords": list(
            dict.fromkeys(
                [
                    *data.get("tasks", []),
                    *data.get("data-type", []),
                    *data.get("libraries", []),
                    *data.get("tags", []),
                ]
            )
        ),
        "codeRepository": links.get("source_code"),
        "softwareHelp": (
            {"@type": "CreativeWork", "url": links["documentation"]}
            if links.get("documentation")
            else None
        ),
        "installUrl": links.get("docker_image"),
        "license": spdx_url(str(data.get("license", ""))),
        "datePublished": (data.get("dates") or {}).get("created"),
        "dateModified": (data.get("dates") or {}).get("updated"),
        "citation": links.get("citation"),
        "isBasedOn": links.get("base_model"),
        "offers": {"@type": "Offer", "price": "0", "priceCurrency": "EUR"},
    }
    if page_url:
        doc["@id"] = page_url
        doc["url"] = page_url
    if data.get("doi"):
        doc["sameAs"] = f"https://doi.org/{data['doi']}"
        doc["identifier"] = [
            module.id,
            {"@type": "PropertyValue", "propertyID": "DOI", "value": data["doi"]},
        ]
    if links.get("dataset"):  # what it was trained on is what it is based on too
        doc["isBasedOn"] = [x for x in (links.get("base_model"), links["dataset"]) if x]
    return {k: v for k, v in doc.items() if v not in (None, "", [])}


def jsonld_text(module: Module, page_url: str | None = None) -> str:
    return json.dumps(jsonld(module, page_url or None), indent=2, ensure_ascii=False) + "\n"


def jsonld_script(module: Module, page_url: str | None = None) -> str:
    """The JSON-LD as a <script> element for a page's HTML; '<' is escaped so no string in
    the metadata can close the element."""
    text = json.dumps(jsonld(module, page_url or None), ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/ld+json">{text}</script>'
