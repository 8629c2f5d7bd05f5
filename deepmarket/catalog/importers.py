"""Convert metadata of the platforms deepmarket succeeds into a catalog entry.

- DEEP v1 `metadata.json` (deephdc/schema4apps): title, summary, description as a list of
  lines, free keywords, license, date_creation, sources{dockerfile_repo, docker_registry_repo,
  code, pre_trained_weights}, dataset_url, cite_url, training_files_url.
- AI4OS v2 `ai4-metadata.yml`/`.json` (ai4os/ai4-metadata 2.x): mostly our own field names;
  categories are "AI4 ..." labels; there is no licence and no runtime block.

Pure: a mapping (plus what the checkout around it says: its LICENSE, its entry points) comes
in, an `Imported` (module data plus notes on everything rewritten, dropped or guessed) comes
out. What cannot be guessed honestly raises `ImportRefused`, one line naming what to supply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from deepmarket.catalog import importclean as clean
from deepmarket.catalog.importmaps import (
    CATEGORIES_V1,
    CATEGORIES_V2,
    CONVENTIONAL_TAG_NAMESPACES,
    DATA_TYPE_NAMES,
    KEYWORD_MEANINGS,
    LIBRARY_ALIASES,
    LIBRARY_NAMES,
    LICENCE_ALIASES,
    LINK_ALIASES_V2,
    LINKS_V2,
    NOISE_KEYWORDS,
    RESOURCE_KEYS,
    TASK_NAMES,
)
from deepmarket.errors import UserError

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
TITLE_MAX, SUMMARY_MAX, DESCRIPTION_MAX = 80, 200, 20000
ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ImportRefused(UserError):
    """The file cannot become a valid entry without something only its author knows."""


@dataclass(frozen=True)
class Context:
    """What the checkout around a metadata file says about the module."""

    licence_text: str | None = None  # the LICENSE file's text
    licence_file: str = "LICENSE"
    sibling_licence: str | None = None  # `license` of a v1 metadata.json beside a v2 file
    entry_points: tuple[str, ...] = ()  # deepaas.v2.model names its packaging declares
    packaging_file: str = ""


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
    if "metadata_version" in meta or "categories" in meta or "tasks" in meta or "links" in meta:
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


def _text(value: Any, where: str, notes: list[str]) -> str:
    """A string field's value; anything else is dropped with a note."""
    if value is None or isinstance(value, str):
        return value or ""
    notes.append(f"{where}: {value!r} is not text; dropped")
    return ""


def split_image(value: str) -> tuple[str | None, str | None, str | None]:
    """(registry host or None for Docker Hub, repository, tag) of an image page URL or a
    reference: 'https://hub.docker.com/r/deephdc/x', 'deephdc/x', 'vllm/vllm-openai:latest'."""
    text = value.strip()
    host = None
    if "://" in text:
        parts = urlsplit(text)
        path = parts.path.strip("/")
        if parts.hostname in ("hub.docker.com", "registry.hub.docker.com", "docker.io"):
            path = re.sub(r"^(r|u|_|repository/docker)/", "", path)
            path = re.sub(r"/(tags|general)(/.*)?$", "", path)
        else:
            host = parts.hostname
    else:
        first, sep, rest = text.partition("/")
        if sep and ("." in first or ":" in first):
            host, path = (None if first in ("docker.io", "index.docker.io") else first), rest
        else:
            path = text
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    path = path.strip("/").lower()
    if host is None and path.startswith("library/"):
        path = path[len("library/") :]
    return host, (path or None), (tag or None)


def _id_from(name: str) -> str | None:
    name = name.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"\.git$", "", name)
    name = re.sub(r"^(uc-[a-z0-9]+-)?(deep-oc-|deep_oc_|deep-oc_|ai4os-|ai4-)", "", name)
    out = slug(name.replace("_", "-"))
    if out and not out[0].isalpha():
        out = slug("m-" + out)
    return out or None


def _module_id(explicit: str | None, candidates: list[str | None]) -> str:
    if explicit:
        return explicit
    for candidate in candidates:
        if candidate and (found := _id_from(str(candidate))):
            return found
    raise ImportRefused("cannot derive a module id from the metadata; pass --id ID")


def normalise_licence(value: Any, where: str, notes: list[str]) -> str | None:
    """An SPDX id for what authors write as a licence ('Apache 2.0', 'mit')."""
    from deepmarket.catalog.formats import _spdx, check_spdx

    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    alias = LICENCE_ALIASES.get(text.lower()) or _spdx()[0].get(text.lower())
    if alias and alias != text:
        notes.append(f"{where} {text!r} written as the SPDX id {alias!r}")
        return alias
    if alias or check_spdx(text) is None:
        return text
    raise ImportRefused(
        f"{where} {text!r} is not an SPDX licence id; pass --license with its SPDX id "
        "(e.g. MIT, Apache-2.0)"
    )


def _licence(
    explicit: str | None, in_file: Any, context: Context, notes: list[str], fmt: str
) -> str:
    if explicit:
        return normalise_licence(explicit, "--license", notes) or explicit
    found = normalise_licence(in_file, "license", notes)
    if found:
        return found
    if context.licence_text:
        detected = clean.licence_from_text(context.licence_text)
        if detected:
            notes.append(f"license {detected!r} read from {context.licence_file}")
            return detected
    if context.sibling_licence:
        found = normalise_licence(context.sibling_licence, "metadata.json license", notes)
        if found:
            notes.append(f"license {found!r} taken from the DEEP metadata.json beside the file")
            return found
    what = "AI4OS v2 metadata has no licence field" if fmt == "v2" else "the metadata names none"
    if context.licence_text is None:
        extra = " and no LICENSE file lies beside it"
    elif not context.licence_text.strip():
        extra = f"; {context.licence_file} beside it is empty"
    else:
        extra = f"; {context.licence_file} is not a licence text deepmarket recognises"
    raise ImportRefused(f"license: {what}{extra}; pass --license SPDX-ID")


def _published_tag(tags: Any) -> str | None:
    """A tag from a v1 `docker_tags` list: a versioned CPU one first, never `latest`."""
    names = [str(t).strip() for t in tags or [] if str(t).strip() not in ("", "latest")]
    for name in names:
        if "cpu" in name and name != "cpu":
            return name
    return names[0] if names else None


def _runtime(
    mid: str,
    host: str | None,
    repo: str | None,
    tag: str | None,
    image: str | None,
    trainable: bool,
    model_hint: str | None,
    context: Context,
    notes: list[str],
) -> dict[str, Any]:
    if repo and host is None and "/" in repo and "-" in repo.split("/")[0]:
        fixed = repo.split("/")[0].replace("-", "") + "/" + repo.split("/", 1)[1]
        if fixed.split("/")[0] in CONVENTIONAL_TAG_NAMESPACES:
            notes.append(
                f"image {repo!r} read as {fixed!r}: Docker Hub namespaces hold no '-', so "
                f"{repo.split('/')[0]!r} (the GitHub organisation) cannot be one"
            )
            repo = fixed
    shown = (f"{host}/" if host else "") + (repo or "")
    if image:
        ref = image
    elif repo and tag and tag != "latest":
        ref = f"{shown}:{tag}"
    elif repo and host is None and repo.split("/")[0] in CONVENTIONAL_TAG_NAMESPACES:
        ref = f"{repo}:cpu"
        notes.append(
            f"runtime.image {ref!r}: tag 'cpu' assumed ({repo.split('/')[0]} images are "
            "published with cpu and gpu tags); pass --image to pin a version or digest"
        )
    elif repo:
        moving = f"{shown}:{tag}" if tag else shown
        raise ImportRefused(
            f"runtime.image: the metadata names {moving!r}, which is not pinned to a version; "
            f"pass --image {shown}:<version> (or @sha256:<digest>)"
        )
    else:
        raise ImportRefused(
            "runtime.image: the metadata names no container image; pass --image REGISTRY/NAME:TAG"
        )
    if len(context.entry_points) == 1:
        model = context.entry_points[0]
        notes.append(f"runtime.model {model!r} read from {context.packaging_file}")
    else:
        model = re.sub(r"[^A-Za-z0-9_.-]", "_", model_hint or mid.replace("-", "_"))[:100]
        model = model.lstrip("_.-") or mid.replace("-", "_")
        notes.append(
            f"runtime.model guessed as {model!r} (the package name): check it is the "
            "module's deepaas.v2.model entry-point name"
        )
    return {"image": ref, "model": model, "port": 5000, "train": trainable}


def _package_hint(code_url: str | None) -> str | None:
    """The Python package name DEEP/AI4OS templates derive from the code repository."""
    if not code_url:
        return None
    name = urlsplit(code_url).path.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"\.git$", "", name)
    return name.replace("-", "_").lower() or None


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    first = {k: data[k] for k in ORDER if k in data}
    return first | {k: v for k, v in data.items() if k not in ORDER}


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _enum(value: Any, names: tuple[str, ...], aliases: dict[str, str] | None = None) -> str | None:
    text = " ".join(str(value).split()).lower()
    for name in names:
        if name.lower() == text:
            return name
    return (aliases or {}).get(text)


def _texts(meta: dict[str, Any], mid: str, notes: list[str]) -> tuple[str, str, str]:
    """Title, summary and description within the schema's limits, HTML turned to Markdown."""
    title = clean.one_line(meta.get("title"))
    description, html_notes = clean.description_text(meta.get("description"))
    notes.extend(html_notes)
    summary, summary_notes = clean.markdown_from_html(
        clean.one_line(meta.get("summary")), "summary"
    )
    summary = clean.one_line(summary)
    notes.extend(summary_notes)
    if not title:
        title = mid
        notes.append(f"title: empty in the metadata; set to the id {mid!r}")
    if len(title) > TITLE_MAX:
        short = clean.shorten(title, TITLE_MAX)
        notes.append(f"title: {len(title)} characters, shortened to {short!r}")
        title = short
    if not summary:
        summary = clean.first_sentence(description) or title
        notes.append("summary: empty in the metadata; set to the description's first sentence")
    if len(summary) > SUMMARY_MAX:
        if not description:
            description = summary
        summary = clean.shorten(summary, SUMMARY_MAX)
        notes.append(f"summary: longer than {SUMMARY_MAX} characters; shortened")
    if not description:
        description = summary
        notes.append("description: empty in the metadata; set to the summary")
    if len(description) > DESCRIPTION_MAX:
        description = clean.shorten(description, DESCRIPTION_MAX)
        notes.append(f"description: longer than {DESCRIPTION_MAX} characters; shortened")
    return title, summary, description + "\n"


def _links(pairs: list[tuple[str, str, Any]], notes: list[str]) -> dict[str, str]:
    """(our link name, where it came from, value) in priority order: the first good one wins."""
    links: dict[str, str] = {}
    for name, where, value in pairs:
        if name in links:
            continue
        url, dropped = clean.clean_url(value, where)
        notes.extend(dropped)
        if url:
            links[name] = url
            if where != f"links.{name}":
                notes.append(f"{where} mapped to links.{name}")
    return links


def _source_code(links: dict[str, str], fallback: str | None, notes: list[str]) -> None:
    if "source_code" in links:
        return
    if fallback:
        links["source_code"] = fallback
        notes.append("links.source_code: set to the repository the Dockerfile lives in")
        return
    raise ImportRefused(
        "links.source_code: the metadata names no code repository; add it to the metadata "
        "(sources.code or links.source_code)"
    )


def _docker_page(host: str | None, repo: str | None) -> str | None:
    if repo and host is None and "/" in repo:
        return f"https://hub.docker.com/r/{repo}"
    if repo and host:
        return f"https://{host}/{repo}"
    return None


def _doi(values: list[Any], notes: list[str]) -> str | None:
    for value in values:
        if not value:
            continue
        text = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", "", str(value).strip(), flags=re.I)
        if re.match(r"^10\.\d{4,9}/\S+$", text):
            return text
        notes.append(f"doi: {value!r} is not a DOI; dropped")
    return None


def _dates(created: Any, updated: Any, notes: list[str]) -> dict[str, str] | None:
    out = {}
    for key, value in (("created", created), ("updated", updated)):
        if value in (None, ""):
            continue
        day = clean.iso_date(value)
        if day is None:
            notes.append(f"dates.{key}: {value!r} is not a date; dropped")
        else:
            out[key] = day
    if "created" in out and "updated" in out and out["updated"] < out["created"]:
        notes.append("dates.updated is before dates.created; dropped")
        del out["updated"]
    return out or None


def _resources(value: Any, notes: list[str]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for phase in ("inference", "training"):
        numbers = value.get(phase)
        if not isinstance(numbers, dict):
            continue
        kept = {}
        for key, number in numbers.items():
            kinds = RESOURCE_KEYS.get(str(key))
            if kinds is None or isinstance(number, bool) or not isinstance(number, kinds):
                notes.append(f"resources.{phase}.{key}: {number!r} not mapped")
            elif number < 0 or (key in ("cpu", "memory_MB") and number == 0):
                notes.append(f"resources.{phase}.{key}: {number!r} is not a usable amount; dropped")
            else:
                kept[str(key)] = number
        if kept:
            out[phase] = kept
    for phase in value:
        if phase not in ("inference", "training"):
            notes.append(f"resources.{phase}: not mapped")
    return out or None


@dataclass
class _Facets:
    libraries: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    data_types: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # what AI4OS tags suggest, used only where the file leaves a field empty
    hints: dict[str, list[str]] = field(default_factory=dict)

    def keyword(self, keyword: Any, notes: list[str], where: str) -> None:
        """A DEEP v1 keyword (or an AI4OS tag) read for what it says about the module."""
        if not isinstance(keyword, (str, int, float)) or isinstance(keyword, bool):
            notes.append(f"{where} {keyword!r} is not a word; dropped")
            return
        raw = str(keyword).strip()
        word = " ".join(raw.lower().split())
        if not word:
            return
        prefix, sep, rest = word.partition("/")
        if sep and prefix in ("library", "deprecated", "category", "task"):
            if prefix == "library":
                lib = _enum(rest, LIBRARY_NAMES, LIBRARY_ALIASES)
                self.libraries.append(lib or "Other")
                tag = None if lib and lib != "Other" else clean.tag_of(rest)
                if tag:
                    self.tags.append(tag)
                mapped = f"library {lib or 'Other'}" + (f" and tag {tag!r}" if tag else "")
                notes.append(f"{where} {raw!r} read as {mapped}")
                return
            if prefix == "deprecated":
                self.tags.append("deprecated")
                category = CATEGORIES_V1.get(rest)
                if category:
                    self.categories.append(category)
                notes.append(
                    f"{where} {raw!r} read as tag 'deprecated'"
                    + (f" and category {category}" if category else "")
                )
                return
            word = rest
        if word in NOISE_KEYWORDS:
            notes.append(f"{where} {raw!r} dropped (it described DEEP's packaging)")
            return
        tasks, types = KEYWORD_MEANINGS.get(word, ((), ()))
        lib = _enum(word, LIBRARY_NAMES[:-1], LIBRARY_ALIASES)
        if where != "keyword":  # an AI4OS tag: the file's own fields come first
            for key, found in (("libraries", [lib] if lib else []), ("tasks", tasks)):
                self.hints.setdefault(key, []).extend(found)
            self.hints.setdefault("data-type", []).extend(types)
        else:
            if lib is not None:
                self.libraries.append(lib)
                return
            if word in CATEGORIES_V1:
                self.categories.append(CATEGORIES_V1[word])
                if word != CATEGORIES_V1[word]:
                    notes.append(f"{where} {raw!r} read as category {CATEGORIES_V1[word]}")
                return
            self.tasks += tasks
            self.data_types += types
        tag = clean.tag_of(raw)
        if tag:
            self.tags.append(tag)
            if tag != raw:
                notes.append(f"{where} {raw!r} written as tag {tag!r}")
        else:
            notes.append(f"{where} {raw!r} dropped (no letters or digits)")

    def use_hints(self, notes: list[str]) -> None:
        """Fill fields an AI4OS file leaves empty from what its tags say."""
        for key, attr in (
            ("libraries", "libraries"),
            ("tasks", "tasks"),
            ("data-type", "data_types"),
        ):
            found = _unique(self.hints.get(key, []))
            if not getattr(self, attr) and found:
                setattr(self, attr, found)
                notes.append(f"{key}: empty in the metadata; set to {found} from the tags")

    def defaults(self, notes: list[str]) -> None:
        for attr, what in (("libraries", "library"), ("tasks", "task")):
            if not getattr(self, attr) or getattr(self, attr) == []:
                setattr(self, attr, ["Other"])
                notes.append(f"{attr}: the metadata names no {what}; set to [Other]")
        if len(set(self.libraries)) > 1 and "Other" in self.libraries:
            self.libraries = [x for x in self.libraries if x != "Other"]
        if len(set(self.tasks)) > 1 and "Other" in self.tasks:
            self.tasks = [x for x in self.tasks if x != "Other"]
        if not self.categories:
            self.categories = ["inference"]
            notes.append("categories: none named; set to [inference]")


def _enum_list(
    values: Any, names: tuple[str, ...], field_name: str, facets: _Facets, notes: list[str]
) -> list[str]:
    out = []
    if isinstance(values, str):
        values = [values]
    for value in values or []:
        name = _enum(value, names, LIBRARY_ALIASES if field_name == "libraries" else None)
        if name:
            out.append(name)
            if name != value:
                notes.append(f"{field_name}: {value!r} written as {name!r}")
        else:
            tag = clean.tag_of(str(value))
            if tag:
                facets.tags.append(tag)
            notes.append(
                f"{field_name}: {value!r} is not one of the known values; kept as tag {tag!r}"
            )
    return out


def from_deep_v1(
    meta: dict[str, Any],
    *,
    module_id: str | None = None,
    image: str | None = None,
    licence: str | None = None,
    context: Context = Context(),
) -> Imported:
    """A DEEP v1 metadata.json as a catalog entry."""
    notes: list[str] = []
    sources = meta.get("sources") if isinstance(meta.get("sources"), dict) else {}
    host, repo, tag = split_image(
        _text(sources.get("docker_registry_repo"), "sources.docker_registry_repo", notes)
    )
    mid = _module_id(
        module_id, [repo, sources.get("dockerfile_repo"), sources.get("code"), meta.get("title")]
    )
    title, summary, description = _texts(meta, mid, notes)

    facets = _Facets()
    keywords = meta.get("keywords") or []
    for keyword in keywords if isinstance(keywords, list) else [keywords]:
        facets.keyword(keyword, notes, "keyword")
    facets.defaults(notes)

    links = _links(
        [
            ("source_code", "sources.code", sources.get("code")),
            ("documentation", "sources.dockerfile_repo", None),
            ("weights", "sources.pre_trained_weights", sources.get("pre_trained_weights")),
            ("weights", "training_files_url", meta.get("training_files_url")),
            ("weights", "sources.training_files_url", sources.get("training_files_url")),
            ("dataset", "dataset_url", meta.get("dataset_url")),
            ("dataset", "sources.dataset_url", sources.get("dataset_url")),
            ("citation", "cite_url", meta.get("cite_url")),
            ("citation", "sources.cite_url", sources.get("cite_url")),
        ],
        notes,
    )
    dockerfile_repo, _ = clean.clean_url(sources.get("dockerfile_repo"), "sources.dockerfile_repo")
    _source_code(links, dockerfile_repo, notes)
    page = _docker_page(host, repo)
    if page:
        links["docker_image"] = page
    if dockerfile_repo and dockerfile_repo != links["source_code"]:
        links["x-dockerfile_repo"] = dockerfile_repo

    data: dict[str, Any] = {
        "id": mid,
        "title": title,
        "summary": summary,
        "description": description,
        "links": _ordered_links(links),
        "libraries": _unique(facets.libraries),
        "tasks": _unique(facets.tasks),
        "categories": _unique(facets.categories),
    }
    if facets.data_types:
        data["data-type"] = _unique(facets.data_types)
    if facets.tags:
        data["tags"] = _unique(facets.tags)
    dates = _dates(meta.get("date_creation"), None, notes)
    if dates:
        data["dates"] = dates
    data["license"] = _licence(licence, meta.get("license"), context, notes, "v1")
    doi = _doi([sources.get("zenodo_doi"), meta.get("doi")], notes)
    if doi:
        data["doi"] = doi
    published = _published_tag(meta.get("docker_tags") or sources.get("docker_tags"))
    if published and not tag and not image:
        tag = published
        notes.append(f"runtime.image tag {tag!r} chosen from docker_tags")
    data["runtime"] = _runtime(
        mid,
        host,
        repo,
        tag,
        image,
        "trainable" in facets.categories,
        _package_hint(sources.get("code")),
        context,
        notes,
    )
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
        "training_files_url",
        "doi",
        "docker_tags",
    }
    for key in meta:
        if key not in known:
            notes.append(f"not mapped: {key} (no deepmarket equivalent)")
    for key in sources:
        if key not in (
            "code",
            "dockerfile_repo",
            "docker_registry_repo",
            "pre_trained_weights",
            "training_files_url",
            "dataset_url",
            "cite_url",
            "zenodo_doi",
            "docker_tags",
        ):
            notes.append(f"not mapped: sources.{key}")
    return Imported(mid, _ordered(data), notes)


def _ordered_links(links: dict[str, str]) -> dict[str, str]:
    order = (*LINKS_V2, "x-dockerfile_repo")
    return {k: links[k] for k in order if k in links} | {
        k: v for k, v in links.items() if k not in order
    }


def from_ai4os_v2(
    meta: dict[str, Any],
    *,
    module_id: str | None = None,
    image: str | None = None,
    licence: str | None = None,
    context: Context = Context(),
) -> Imported:
    """An AI4OS v2 ai4-metadata file as a catalog entry."""
    notes: list[str] = []
    version = str(meta.get("metadata_version", ""))
    if version and not version.startswith("2."):
        notes.append(f"metadata_version {version} is not 2.x; mapped as 2.x")
    links_in = meta.get("links") if isinstance(meta.get("links"), dict) else {}
    host, repo, tag = split_image(_text(links_in.get("docker_image"), "links.docker_image", notes))
    if tag:
        notes.append(f"links.docker_image: tag {tag!r} kept out of the image page and id")
    mid = _module_id(module_id, [repo, links_in.get("source_code"), meta.get("title")])
    title, summary, description = _texts(meta, mid, notes)

    pairs = [
        (name, f"links.{name}", links_in.get(name)) for name in LINKS_V2 if name != "docker_image"
    ]
    pairs += [
        (target, f"links.{alias}", links_in.get(alias)) for alias, target in LINK_ALIASES_V2.items()
    ]
    for top in ("dataset_url", "cite_url", "training_files_url"):
        if meta.get(top):
            pairs.append((LINK_ALIASES_V2[top], top, meta.get(top)))
    links = _links(pairs, notes)
    _source_code(links, None, notes)
    page = _docker_page(host, repo)
    if page:
        links["docker_image"] = page
        if links_in.get("docker_image") != page:
            notes.append(f"links.docker_image {links_in.get('docker_image')!r} written as {page!r}")

    facets = _Facets()
    facets.libraries = _enum_list(meta.get("libraries"), LIBRARY_NAMES, "libraries", facets, notes)
    facets.tasks = _enum_list(meta.get("tasks"), TASK_NAMES, "tasks", facets, notes)
    facets.data_types = _enum_list(
        meta.get("data-type", meta.get("data_type")), DATA_TYPE_NAMES, "data-type", facets, notes
    )
    for label in meta.get("categories") or []:
        key = " ".join(str(label).lower().split())
        category = CATEGORIES_V2.get(key)
        if category:
            facets.categories.append(category)
            if str(label) not in ("AI4 pre trained", "AI4 trainable", "AI4 inference", "AI4 tools"):
                notes.append(f"category {label!r} read as {category}")
        else:
            notes.append(f"category {label!r} has no deepmarket equivalent; dropped")
    tags = meta.get("tags") or []
    for value in tags if isinstance(tags, list) else [tags]:
        facets.keyword(value, notes, "tag")
    facets.use_hints(notes)
    facets.defaults(notes)

    data: dict[str, Any] = {
        "id": mid,
        "title": title,
        "summary": summary,
        "description": description,
        "links": _ordered_links(links),
        "libraries": _unique(facets.libraries),
        "tasks": _unique(facets.tasks),
        "categories": _unique(facets.categories),
    }
    if facets.data_types:
        data["data-type"] = _unique(facets.data_types)
    if facets.tags:
        data["tags"] = _unique(facets.tags)
    raw_dates = meta.get("dates") if isinstance(meta.get("dates"), dict) else {}
    dates = _dates(raw_dates.get("created"), raw_dates.get("updated"), notes)
    if dates:
        data["dates"] = dates
    data["license"] = _licence(licence, meta.get("license"), context, notes, "v2")
    doi = _doi([meta.get("doi"), links_in.get("zenodo_doi")], notes)
    if doi:
        data["doi"] = doi
    resources = _resources(meta.get("resources"), notes)
    if resources:
        data["resources"] = resources
    data["runtime"] = _runtime(
        mid,
        host,
        repo,
        tag,
        image,
        "trainable" in facets.categories,
        _package_hint(links.get("source_code")),
        context,
        notes,
    )
    for key in links_in:
        if key not in LINKS_V2 and key not in LINK_ALIASES_V2 and key != "zenodo_doi":
            why = " (it names the template, not the module)" if key == "ai4_template" else ""
            notes.append(f"not mapped: links.{key}{why}")
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
        "data_type",
        "dates",
        "doi",
        "resources",
        "license",
        "dataset_url",
        "cite_url",
        "training_files_url",
    }
    for key in meta:
        if key not in known:
            hint = ""
            if key.replace("s", "d", 1) == "data-type" or key in ("datatype", "data-types"):
                hint = " (a misspelt data-type? fix it in the source)"
            notes.append(f"not mapped: {key} (no deepmarket equivalent){hint}")
    return Imported(mid, _ordered(data), notes)


def convert(
    meta: Any,
    *,
    module_id: str | None = None,
    image: str | None = None,
    licence: str | None = None,
    context: Context = Context(),
) -> Imported:
    """Detect the format and convert."""
    kind = detect(meta)
    convert_fn = from_deep_v1 if kind == "v1" else from_ai4os_v2
    return convert_fn(meta, module_id=module_id, image=image, licence=licence, context=context)


def module_yaml(imported: Imported, source: str, *, draft_problems: list[str] | None = None) -> str:
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
    header = ""
    if draft_problems is not None:
        header = (
            f"{DRAFT_MARK} this entry does not validate yet; fix these, then run "
            "`deepmarket validate`:\n" + "\n".join(f"- {p}" for p in draft_problems) + "\n"
        )
    header += f"Imported from {source} by `deepmarket import`."
    if imported.notes:
        header += " Review:\n" + "\n".join(f"- {n}" for n in imported.notes)
    doc.yaml_set_start_comment(header)
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


DRAFT_MARK = "DRAFT (deepmarket import --draft):"
