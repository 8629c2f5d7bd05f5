"""Convert metadata of the platforms deepmarket succeeds into a catalog entry.

- DEEP v1 `metadata.json` (deephdc/schema4apps): title, summary, description as a list of
  lines, free keywords, license, date_creation, sources{dockerfile_repo, docker_registry_repo,
  code, pre_trained_weights}, dataset_url, cite_url.
- AI4OS v2 `ai4-metadata.yml`/`.json` (ai4os/ai4-metadata 2.x): mostly our own field names;
  categories are "AI4 ..." labels; there is no licence and no runtime block.

Pure: a mapping comes in, an `Imported` (module data plus notes on everything that was not
mapped or had to be guessed) comes out. Nothing is dropped without a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from deepmarket.errors import UserError

LIBRARIES = {
    "tensorflow": "TensorFlow",
    "tf": "TensorFlow",
    "pytorch": "PyTorch",
    "torch": "PyTorch",
    "keras": "Keras",
    "scikit-learn": "Scikit-learn",
    "sklearn": "Scikit-learn",
    "xgboost": "XGBoost",
    "lightgbm": "LightGBM",
    "catboost": "CatBoost",
}
CATEGORIES_V1 = {
    "trainable": "trainable",
    "inference": "inference",
    "pre-trained": "pre-trained",
    "pretrained": "pre-trained",
    "tool": "tool",
    "tools": "tool",
}
CATEGORIES_V2 = {
    "AI4 pre trained": "pre-trained",
    "AI4 trainable": "trainable",
    "AI4 inference": "inference",
    "AI4 tools": "tool",
}
# DEEP v1 keywords that name a task or a data type (the rest become tags)
TASK_KEYWORDS = {
    "image classification": ["Computer Vision", "Classification"],
    "classification": ["Classification"],
    "object detection": ["Computer Vision"],
    "segmentation": ["Computer Vision"],
    "semantic segmentation": ["Computer Vision"],
    "computer vision": ["Computer Vision"],
    "pose estimation": ["Computer Vision"],
    "super-resolution": ["Computer Vision", "Generative Models"],
    "style transfer": ["Computer Vision", "Generative Models"],
    "nlp": ["Natural Language Processing"],
    "natural language processing": ["Natural Language Processing"],
    "speech recognition": ["Natural Language Processing"],
    "time series": ["Time Series"],
    "time-series": ["Time Series"],
    "anomaly detection": ["Anomaly Detection"],
    "regression": ["Regression"],
    "clustering": ["Clustering"],
    "transfer learning": ["Transfer Learning"],
}
DATA_KEYWORDS = {
    "image": "Image",
    "images": "Image",
    "audio": "Audio",
    "sound": "Audio",
    "video": "Video",
    "text": "Text",
    "tabular": "Tabular",
    "graph": "Graph",
    "time series": "Time Series",
}
# Keywords that described DEEP's build and serving, not the module
NOISE_KEYWORDS = {"docker", "api-v2", "deepaas", "deep-oc"}
LICENCE_ALIASES = {
    "apache 2.0": "Apache-2.0",
    "apache2": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "gplv3": "GPL-3.0-only",
    "gpl3": "GPL-3.0-only",
    "gplv2": "GPL-2.0-only",
    "agplv3": "AGPL-3.0-only",
    "bsd-3": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-2": "BSD-2-Clause",
    "mit license": "MIT",
}
LINKS_V2 = (
    "source_code",
    "docker_image",
    "documentation",
    "dataset",
    "weights",
    "citation",
    "base_model",
)
ORDER = (
    "id",
    "title",
    "summary",
    "description",
    "links",
    "libraries",
    "tasks",
    "categories",
    "data-type",
    "tags",
    "dates",
    "license",
    "doi",
    "resources",
    "runtime",
)


@dataclass
class Imported:
    """A converted entry: `data` is module.yml's content; `notes` say what needs a human."""

    id: str
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def detect(meta: Any) -> str:
    """'v1' or 'v2', from the fields only one of the two formats has."""
    if not isinstance(meta, dict):
        raise UserError("the metadata file must hold a mapping (a JSON object)")
    if "metadata_version" in meta or "categories" in meta or "tasks" in meta:
        return "v2"
    if "sources" in meta or "date_creation" in meta or "keywords" in meta:
        return "v1"
    raise UserError(
        "cannot tell the metadata format: expected a DEEP v1 metadata.json (sources, "
        "keywords) or an AI4OS v2 ai4-metadata file (metadata_version, categories)"
    )


def slug(text: str, limit: int = 63) -> str:
    """Lowercase DNS-1123-style slug of free text."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:limit].rstrip("-")


def _tag(text: str) -> str | None:
    tag = re.sub(r"[^a-z0-9+. _-]+", "", text.lower().strip())
    tag = re.sub(r"([-_.+ ])[-_.+ ]+", r"\1", tag).strip("-_.+ ")
    return tag[:40].rstrip("-_.+ ") or None


def _image_repo(url_or_ref: str) -> str | None:
    """'https://hub.docker.com/r/deephdc/x' or 'deephdc/x' -> 'deephdc/x'."""
    if "://" not in url_or_ref:
        return url_or_ref.strip() or None
    parts = urlsplit(url_or_ref)
    path = parts.path.strip("/")
    if parts.hostname in ("hub.docker.com", "registry.hub.docker.com"):
        path = re.sub(r"^(r|_)/", "", path)
        path = re.sub(r"/tags.*$", "", path)
        return path or None
    if parts.hostname:
        return f"{parts.hostname}/{path}" if path else None
    return None


def _module_id(explicit: str | None, candidates: list[str | None]) -> str:
    if explicit:
        return explicit
    for candidate in candidates:
        if candidate:
            name = candidate.rstrip("/").rsplit("/", 1)[-1]
            name = re.sub(r"^(deep-oc-|deep_oc_|ai4os-|ai4-)", "", name.lower())
            if slug(name):
                return slug(name)
    raise UserError("cannot derive a module id from the metadata; pass --id")


def _licence(value: Any, notes: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    alias = LICENCE_ALIASES.get(value.strip().lower())
    if alias:
        notes.append(f"license {value!r} written as the SPDX id {alias!r}")
        return alias
    return value.strip()


def _runtime(
    module_id: str, repo: str | None, image: str | None, trainable: bool, notes: list[str]
) -> dict[str, Any]:
    if image:
        ref = image
    elif repo:
        ref = repo
        notes.append(
            f"runtime.image {repo!r} has no version: pass --image {repo}:<tag> "
            "(or a @sha256 digest)"
        )
    else:
        ref = f"docker.io/your-org/{module_id}:0.1.0"
        notes.append("runtime.image: the metadata names no image; pass --image REF")
    model = module_id.replace("-", "_")
    notes.append(
        f"runtime.model guessed as {model!r}: set it to the module's deepaas.v2.model "
        "entry-point name"
    )
    return {"image": ref, "model": model, "port": 5000, "train": trainable}


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    first = {k: data[k] for k in ORDER if k in data}
    return first | {k: v for k, v in data.items() if k not in ORDER}


def from_deep_v1(
    meta: dict[str, Any],
    *,
    module_id: str | None = None,
    image: str | None = None,
    licence: str | None = None,
) -> Imported:
    """A DEEP v1 metadata.json as a catalog entry."""
    notes: list[str] = []
    sources = meta.get("sources") if isinstance(meta.get("sources"), dict) else {}
    registry_repo = sources.get("docker_registry_repo")
    repo = _image_repo(registry_repo) if registry_repo else None
    mid = _module_id(
        module_id, [repo, sources.get("dockerfile_repo"), sources.get("code"), meta.get("title")]
    )
    description = meta.get("description", "")
    if isinstance(description, list):
        description = "\n".join(str(line) for line in description)
    description = str(description).strip() + "\n"

    libraries: list[str] = []
    tasks: list[str] = []
    categories: list[str] = []
    data_types: list[str] = []
    tags: list[str] = []
    for keyword in meta.get("keywords") or []:
        word = str(keyword).strip().lower()
        if word in LIBRARIES:
            libraries.append(LIBRARIES[word])
        elif word in CATEGORIES_V1:
            categories.append(CATEGORIES_V1[word])
        elif word in NOISE_KEYWORDS:
            notes.append(f"keyword {keyword!r} dropped (it described DEEP's packaging)")
            continue
        if word in TASK_KEYWORDS:
            tasks += TASK_KEYWORDS[word]
        if word in DATA_KEYWORDS:
            data_types.append(DATA_KEYWORDS[word])
        if word not in LIBRARIES and word not in CATEGORIES_V1:
            tag = _tag(str(keyword))
            if tag:
                tags.append(tag)
    if not libraries:
        libraries = ["Other"]
        notes.append("libraries: no library among the keywords; set to [Other]")
    if not tasks:
        tasks = ["Other"]
        notes.append("tasks: no task among the keywords; set to [Other]")
    if not categories:
        categories = ["inference"]
        notes.append("categories: none among the keywords; set to [inference]")

    links: dict[str, Any] = {}
    code = sources.get("code") or sources.get("dockerfile_repo")
    if code:
        links["source_code"] = code
    else:
        notes.append("links.source_code: the metadata names no code repository")
    if repo and "/" in repo and "." not in repo.split("/")[0]:
        links["docker_image"] = f"https://hub.docker.com/r/{repo}"
    if sources.get("pre_trained_weights"):
        links["weights"] = sources["pre_trained_weights"]
    if meta.get("dataset_url"):
        links["dataset"] = meta["dataset_url"]
    if meta.get("cite_url"):
        links["citation"] = meta["cite_url"]
    if sources.get("dockerfile_repo") and sources.get("code"):
        links["x-dockerfile_repo"] = sources["dockerfile_repo"]

    data: dict[str, Any] = {
        "id": mid,
        "title": str(meta.get("title", mid)),
        "summary": " ".join(str(meta.get("summary", "")).split()),
        "description": description,
        "links": links,
        "libraries": _unique(libraries),
        "tasks": _unique(tasks),
        "categories": _unique(categories),
    }
    if data_types:
        data["data-type"] = _unique(data_types)
    if tags:
        data["tags"] = _unique(tags)
    if meta.get("date_creation"):
        data["dates"] = {"created": str(meta["date_creation"])}
    lic = licence or _licence(meta.get("license"), notes)
    if lic:
        data["license"] = lic
    else:
        notes.append("license: the metadata names none; pass --license SPDX-ID")
    data["runtime"] = _runtime(mid, repo, image, "trainable" in categories, notes)
    known = {
        "title",
        "summary",
        "description",
        "keywords",
        "license",
        "date_creation",
        "sources",
        "dataset_url",
        "cite_url",
    }
    for key in meta:
        if key not in known:
            notes.append(f"not mapped: {key} (no deepmarket equivalent)")
    for key in sources:
        if key not in ("code", "dockerfile_repo", "docker_registry_repo", "pre_trained_weights"):
            notes.append(f"not mapped: sources.{key}")
    return Imported(mid, _ordered(data), notes)


def from_ai4os_v2(
    meta: dict[str, Any],
    *,
    module_id: str | None = None,
    image: str | None = None,
    licence: str | None = None,
) -> Imported:
    """An AI4OS v2 ai4-metadata file as a catalog entry."""
    notes: list[str] = []
    version = str(meta.get("metadata_version", ""))
    if version and not version.startswith("2."):
        notes.append(f"metadata_version {version} is not 2.x; mapped as 2.x")
    links_in = meta.get("links") if isinstance(meta.get("links"), dict) else {}
    repo = _image_repo(links_in["docker_image"]) if links_in.get("docker_image") else None
    mid = _module_id(module_id, [repo, links_in.get("source_code"), meta.get("title")])

    links = {k: links_in[k] for k in LINKS_V2 if links_in.get(k)}
    data: dict[str, Any] = {
        "id": mid,
        "title": str(meta.get("title", mid)),
        "summary": " ".join(str(meta.get("summary", "")).split()),
        "description": str(meta.get("description", "")).strip() + "\n",
        "links": links,
    }
    for key in ("libraries", "tasks", "data-type"):
        if meta.get(key):
            data[key] = list(meta[key])
    categories = []
    for label in meta.get("categories") or []:
        if label in CATEGORIES_V2:
            categories.append(CATEGORIES_V2[label])
        else:
            notes.append(f"category {label!r} has no deepmarket equivalent; dropped")
    if not categories:
        categories = ["inference"]
        notes.append("categories: none could be mapped; set to [inference]")
    data["categories"] = _unique(categories)
    tags = [t for t in (_tag(str(x)) for x in meta.get("tags") or []) if t]
    if tags:
        data["tags"] = _unique(tags)
    if isinstance(meta.get("dates"), dict):
        data["dates"] = {k: str(v) for k, v in meta["dates"].items() if k in ("created", "updated")}
    lic = licence or _licence(meta.get("license"), notes)
    if lic:
        data["license"] = lic
    else:
        notes.append("license: AI4OS v2 metadata has no licence field; pass --license SPDX-ID")
    doi = meta.get("doi") or links_in.get("zenodo_doi")
    if doi:
        data["doi"] = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:)", "", str(doi), flags=re.I)
    if isinstance(meta.get("resources"), dict):
        data["resources"] = {
            k: dict(v)
            for k, v in meta["resources"].items()
            if k in ("inference", "training") and isinstance(v, dict)
        }
    data["runtime"] = _runtime(mid, repo, image, "trainable" in categories, notes)
    for key in links_in:
        if key not in LINKS_V2 and key != "zenodo_doi":
            notes.append(f"not mapped: links.{key}")
    known = {
        "metadata_version",
        "title",
        "summary",
        "description",
        "links",
        "libraries",
        "tasks",
        "categories",
        "tags",
        "data-type",
        "dates",
        "doi",
        "resources",
        "license",
    }
    for key in meta:
        if key not in known:
            notes.append(f"not mapped: {key} (no deepmarket equivalent)")
    return Imported(mid, _ordered(data), notes)


def convert(
    meta: Any, *, module_id: str | None = None, image: str | None = None, licence: str | None = None
) -> Imported:
    """Detect the format and convert."""
    kind = detect(meta)
    convert_fn = from_deep_v1 if kind == "v1" else from_ai4os_v2
    return convert_fn(meta, module_id=module_id, image=image, licence=licence)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def module_yaml(imported: Imported, source: str) -> str:
    """module.yml text for an imported entry, with a header saying where it came from."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString

    def styled(value: Any, depth: int) -> Any:
        if isinstance(value, dict):
            m = CommentedMap((k, styled(v, depth + 1)) for k, v in value.items())
            if depth >= 1 and all(not isinstance(v, (dict, list)) for v in value.values()):
                m.fa.set_flow_style()
            return m
        if isinstance(value, list):
            s = CommentedSeq(styled(v, depth + 1) for v in value)
            s.fa.set_flow_style()
            return s
        if isinstance(value, str) and "\n" in value:
            return LiteralScalarString(value)
        return value

    doc = styled(imported.data, 0)
    for key in ("links", "runtime"):
        if key in doc:
            doc[key].fa.set_block_style()
    header = f"Imported from {source} by `deepmarket import`."
    if imported.notes:
        header += " Review:\n" + "\n".join(f"- {n}" for n in imported.notes)
    doc.yaml_set_start_comment(header)
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
