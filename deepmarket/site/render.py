"""Pure rendering: catalog modules → the Markdown and HTML fragments of the marketplace.

Nothing here touches the file system or mkdocs. Every string that comes from a pull request
is escaped (plain fields) or rendered and sanitized with nh3 (Markdown fields), so raw HTML or
script in a module's metadata never reaches the browser as markup.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import markdown
import nh3
import yaml

from deepmarket.catalog.manifests import deepmodule_manifest, train_command, trainingrun_manifest
from deepmarket.catalog.model import Module

# Placeholders left in the generated Markdown and replaced by HTML after Markdown has run,
# so our markup never goes through (and can never be reinterpreted by) the Markdown parser.
SLOT = "<!--deepmarket:{}-->"
HOME_MARKER = "<!-- deepmarket:marketplace -->"

# Facets offered by the home page filters: (URL query key, label, module.yml field).
FACETS: tuple[tuple[str, str, str], ...] = (
    ("category", "Category", "categories"),
    ("task", "Task", "tasks"),
    ("library", "Library", "libraries"),
    ("data", "Data type", "data-type"),
    ("tag", "Tag", "tags"),
)

CATEGORY_LABELS = {
    "trainable": "Trainable",
    "inference": "Inference",
    "pre-trained": "Pre-trained",
    "tool": "Tool",
}

LINK_LABELS = (
    ("source_code", "Source code"),
    ("docker_image", "Container image"),
    ("documentation", "Documentation"),
    ("dataset", "Dataset"),
    ("weights", "Weights"),
    ("citation", "Citation"),
    ("base_model", "Base model"),
)

_SAFE_SCHEMES = ("https://", "http://")
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def esc(value: object) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def safe_url(url: object) -> str | None:
    """An http(s) URL fit for an href, or None: a `javascript:` URI is a valid URI too."""
    text = str(url or "").strip()
    return text if text.lower().startswith(_SAFE_SCHEMES) else None


class MarkdownRenderer:
    """Markdown → sanitized HTML. One instance is reused across modules (parser setup is slow)."""

    def __init__(self) -> None:
        self._md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"])

    def __call__(self, text: str, *, top: int = 3) -> str:
        self._md.reset()
        raw = self._md.convert(text or "")
        clean = nh3.clean(raw, link_rel="noopener noreferrer nofollow")
        return well_formed(shift_headings(clean, top))


_HEADING = re.compile(r"<(/?)h([1-6])\b")


def shift_headings(html_text: str, top: int) -> str:
    """Author headings nested under the page's own: the first becomes h`top`, none skips a level.

    A description's `#`/`##`/`###` would otherwise compete with the page's h1/h2 sections, and
    a jump (h2 to h4) breaks the outline screen readers navigate by (Nu: skipped heading level).
    """
    opened = [int(m.group(2)) for m in _HEADING.finditer(html_text) if not m.group(1)]
    if not opened:
        return html_text
    mapping: list[int] = []
    previous = top - 1
    base = opened[0]
    for level in opened:
        wanted = top + max(0, level - base)
        new = max(top, min(wanted, previous + 1, 6))
        mapping.append(new)
        previous = new
    levels = iter(mapping)
    current = [top]

    def replace(m: re.Match[str]) -> str:
        if not m.group(1):
            current[0] = next(levels)
        return f"<{m.group(1)}h{current[0]}"

    return _HEADING.sub(replace, html_text)


def well_formed(html_text: str) -> str:
    """What the sanitizer leaves that HTML still forbids: an image without alt (an author's
    image then reads as decorative), and a link whose unsafe href was removed (plain text)."""
    html_text = re.sub(r"<img\b(?![^>]*\balt=)", '<img alt=""', html_text)
    return re.sub(r"<a\b(?![^>]*\bhref=)[^>]*>(.*?)</a>", r"\1", html_text, flags=re.S)


def deploy_url(template: str, module_id: str) -> str:
    """Where a deployed module's DEEPaaS API lives, always ending in "/".

    `template` is the deployment base URL; `{id}` in it is replaced by the module id
    (e.g. `https://{id}.models.example.org`), otherwise `/<id>/` is appended
    (e.g. `https://models.example.org` → `https://models.example.org/<id>/`). The predict
    endpoint is then `<that>v2/models/<model>/predict/` and the spec `<that>swagger.json`.
    """
    base = template.strip()
    url = base.replace("{id}", module_id) if "{id}" in base else f"{base.rstrip('/')}/{module_id}"
    return url.rstrip("/") + "/"


def initials(title: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", title)
    return ("".join(w[0] for w in words[:2]) or "?").upper()


def hue(module_id: str) -> int:
    """A stable colour for a module's placeholder icon."""
    return int(hashlib.sha1(module_id.encode()).hexdigest()[:4], 16) % 360


def icon_html(module: Module, icon_url: str | None, size: str) -> str:
    if icon_url:
        return f'<img class="dm-icon dm-icon--{size}" src="{esc(icon_url)}" alt="" loading="lazy">'
    return (
        f'<span class="dm-icon dm-icon--{size} dm-icon--placeholder" aria-hidden="true" '
        f'style="--dm-hue: {hue(module.id)}">{esc(initials(module.title))}</span>'
    )


def facet_values(module: Module, field: str) -> list[str]:
    return [str(v) for v in module.data.get(field, []) or []]


def updated(module: Module) -> str:
    dates = module.data.get("dates") or {}
    return str(dates.get("updated") or dates.get("created") or "")


def _tag_key(value: str) -> str:
    """What the tags page turns into an anchor id: 'Time Series' and 'time-series' collide."""
    return re.sub(r"[\s-]+", "-", value.strip().casefold())


@functools.cache
def _vocabulary() -> dict[str, str]:
    """The schema's own spellings of tasks, libraries, data types and categories, by tag key."""
    from deepmarket.catalog.schema import load_schema

    props = load_schema("module").get("properties", {})
    words = {}
    for field in ("tasks", "libraries", "data-type"):
        for value in props.get(field, {}).get("items", {}).get("enum", []):
            words[_tag_key(value)] = value
    for value in CATEGORY_LABELS.values():
        words[_tag_key(value)] = value
    return words


def page_tags(module: Module) -> list[str]:
    """Tags for the mkdocs-material tags plugin: every facet value, once, in facet order.

    A free tag that names a known task, library or data type ('audio', 'time-series') takes
    that spelling, so the tags page has one group (and one anchor id) for both.
    """
    seen: dict[str, str] = {}
    vocabulary = _vocabulary()
    for _, _, field in FACETS:
        for value in facet_values(module, field):
            label = CATEGORY_LABELS.get(value, value) if field == "categories" else value
            key = _tag_key(label)
            seen.setdefault(key, vocabulary.get(key, label.replace(" ", "-")))
    return list(seen.values())


def badges_html(module: Module, home_url: str) -> str:
    """The module's categories, libraries, tasks, data types and tags, each a link to the
    marketplace filtered on that value; then its licence."""
    parts = []
    for key, _, field in FACETS:
        kind = {"category": None, "data": "data"}.get(key, key)
        for value in facet_values(module, field):
            css = f"dm-badge--{esc(value)}" if kind is None else f"dm-badge--{kind}"
            label = CATEGORY_LABELS.get(value, value) if key == "category" else value
            href = f"{home_url}?{urlencode({key: value})}"
            parts.append(f'<a class="dm-badge {css}" href="{esc(href)}">{esc(label)}</a>')
    if module.data.get("license"):
        licence = esc(module.data["license"])
        parts.append(f'<span class="dm-badge dm-badge--license">{licence}</span>')
    return f'<div class="dm-badges">{"".join(parts)}</div>'


def card_html(module: Module, page_url: str, icon_url: str | None) -> str:
    """One marketplace card: a plain link without JavaScript, filterable with it.

    Lean on purpose (the home page holds every card): the filters read the facet attributes,
    the text filter reads the card's own text plus its tags, so nothing is written twice.
    """
    attrs = "".join(
        f' data-{key}="{esc("|".join(values))}"'
        for key, _, field in FACETS
        if (values := facet_values(module, field))
    )
    cats = "".join(
        f'<span class="dm-badge dm-badge--{esc(c)}">{esc(CATEGORY_LABELS.get(c, c))}</span>'
        for c in module.categories
    )
    meta = " · ".join(
        esc(v) for v in facet_values(module, "libraries") + facet_values(module, "tasks")
    )
    when = updated(module)
    return (
        f'<li class="dm-card" data-id="{esc(module.id)}"'
        + (f' data-updated="{esc(when)}"' if when else "")
        + f'{attrs}><a class="dm-card__link" href="{esc(page_url)}">'
        f"{icon_html(module, icon_url, 'card')}"
        f'<span class="dm-card__title">{esc(module.title)}</span>'
        f'<span class="dm-card__summary">{esc(module.summary)}</span>'
        f'<span class="dm-card__meta">{cats} {meta}</span>'
        + (
            f'<time class="dm-card__date" datetime="{esc(when)}">Updated {esc(when)}</time>'
            if when
            else ""
        )
        + "</a></li>"
    )


@dataclass(frozen=True)
class Facet:
    key: str
    label: str
    counts: list[tuple[str, int]]  # value, number of modules, in display order


def facets(modules: Iterable[Module]) -> list[Facet]:
    """Filter options with module counts. Categories keep their meaning order; others by count."""
    modules = list(modules)
    out = []
    for key, label, field in FACETS:
        counter = Counter(v for m in modules for v in facet_values(m, field))
        if key == "category":
            order = [c for c in CATEGORY_LABELS if c in counter] + sorted(
                c for c in counter if c not in CATEGORY_LABELS
            )
        else:
            order = sorted(counter, key=lambda v, c=counter: (-c[v], v.lower()))
        out.append(Facet(key, label, [(v, counter[v]) for v in order]))
    return [f for f in out if f.counts]


def marketplace_html(cards: list[str], facet_list: list[Facet]) -> str:
    """The home page's browser: controls (hidden without JavaScript) above the card grid.

    Every facet is a fieldset of checkboxes, always shown, in a box of fixed height (one
    scrolling row on phones, at most two wrapped rows otherwise): nothing opens, folds or
    grows while the page loads or when a shared link's filters are restored (CLS 0).
    """
    groups = []
    for facet in facet_list:
        chips = "".join(
            f'<label class="dm-chip">'
            f'<input type="checkbox" name="{esc(facet.key)}" value="{esc(v)}">'
            f"<span>{esc(CATEGORY_LABELS.get(v, v) if facet.key == 'category' else v)}"
            f' <span class="dm-chip__n">{n}</span></span></label>'
            for v, n in facet.counts
        )
        groups.append(
            f'<fieldset class="dm-facet" data-facet="{esc(facet.key)}">'
            f'<legend>{esc(facet.label)}</legend><div class="dm-chips">{chips}</div></fieldset>'
        )
    n = len(cards)
    return (
        '<div class="dm-market">'
        '<form class="dm-controls" role="search" aria-label="Filter modules"'
        f' style="--dm-digits: {len(str(n))}">'
        '<div class="dm-controls__row">'
        '<input class="dm-filter-text" type="search" name="text" placeholder="Filter modules…"'
        ' aria-label="Filter modules by text" autocomplete="off">'
        '<label class="dm-sort">Sort <select name="sort">'
        '<option value="">Catalog order</option><option value="name">Name</option>'
        '<option value="updated">Recently updated</option></select></label>'
        '<button type="button" class="dm-clear">Clear</button></div>'
        f'<div class="dm-facets">{"".join(groups)}</div></form>'
        f'<p class="dm-count" aria-live="polite"><span class="dm-count__n">{n}</span> '
        f'<span class="dm-count__of" hidden>of {n}</span> modules</p>'
        f'<ul class="dm-grid">{"".join(cards)}</ul>'
        '<p class="dm-empty" hidden>No module matches these filters.</p>'
        "</div>"
    )


def _yaml(data: Any) -> str:
    # PyYAML's C emitter (mkdocs already depends on PyYAML): ruamel's pure-Python one took
    # most of the plugin's time at catalog scale. Manifests are plain data, key order kept.
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


def _fence(lang: str, body: str, title: str = "") -> str:
    """A fenced code block whose fence cannot be closed early by the body's own backticks."""
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", body)), default=0) + 1)
    head = f"{ticks} {lang}" + (f' title="{title}"' if title else "")
    return f"{head}\n{body.rstrip()}\n{ticks}\n"


# Sections every module page repeats (manifests, commands): left out of the search index, which
# every visitor's browser downloads whole (4.3 MB at 1,000 modules before, most of it these).
NOT_SEARCHED = " { data-search-exclude }\n"


def page_markdown(module: Module) -> str:
    """The Markdown source of a module page: front matter, sections and code blocks.

    Titles in headings and front matter are escaped: mkdocs and its theme output page titles
    unescaped. The HTML parts are slots filled by `page_slots` after Markdown has run.
    """
    # JSON strings are valid YAML scalars, whatever characters the values hold.
    front = {
        "title": esc(module.title),
        "description": esc(module.summary),
        "tags": [esc(t) for t in page_tags(module)],
        "hide": ["navigation", "tags"],  # the header's badges link to filtered views instead
    }
    parts = [
        "---\n" + "".join(f"{k}: {json.dumps(v)}\n" for k, v in front.items()) + "---\n",
        SLOT.format("header"),
        "## Overview\n",
        SLOT.format("description"),
        "## Deploy for inference" + NOT_SEARCHED,
        "Apply this `DeepModule` to a cluster running the deepmarket operator "
        "(`kubectl apply -f deepmodule.yaml`); it serves the module's DEEPaaS API.\n",
        _fence("yaml", _yaml(deepmodule_manifest(module)), "deepmodule.yaml"),
    ]
    if module.trainable:
        parts += [
            "## Train on your data" + NOT_SEARCHED,
            *_train_parts(module),
        ]
    port = module.port
    parts += [
        "## Try it" + NOT_SEARCHED,
        SLOT.format("tryit"),
        "## Run it locally" + NOT_SEARCHED,
        "With deepmarket installed, from a checkout of the catalog:\n",
        _fence("bash", f"deepmarket module serve {module.id} --port 5000"),
        "Or with a container runtime, then open <http://127.0.0.1:5000/ui>:\n",
        _fence("bash", f"docker run --rm -p 5000:{port} {module.image}"),
        "## Details\n",
        SLOT.format("details"),
    ]
    return "\n".join(parts)


def _train_parts(module: Module) -> list[str]:
    """How to train: the data layout, the `deepmarket train` command, the manifest."""
    parts = []
    if module.train_data:
        parts += ["**Your data.** Put a folder in WebDAV/Nextcloud laid out like this:\n",
                  esc(module.train_data.strip()) + "\n"]  # fmt: skip
    parts += [
        "**Train it** with your Nextcloud user and an app password in "
        "`DEEPMARKET_WEBDAV_USER` / `DEEPMARKET_WEBDAV_PASSWORD` (or give an rclone remote, "
        "`--data myremote:datasets/x`); the model lands in `<output>/<run name>/` with "
        "`SHA256SUMS`, and `deepmarket promote <run name>` serves it:\n",
        _fence("bash", train_command(module)),
        "Or apply this `TrainingRun`, with the credentials in the `webdav-credentials` Secret "
        "(keys `RCLONE_WEBDAV_USER`, `RCLONE_WEBDAV_PASS` from `rclone obscure`):\n",
        _fence("yaml", _yaml(trainingrun_manifest(module)), "trainingrun.yaml"),
    ]
    if module.train_args:

        def cell(value: object) -> str:
            return esc(str(value)).replace("|", "\\|").replace("\n", " ")

        rows = "".join(
            f"| `{cell(name)}` | {cell(arg.get('type', ''))} | {cell(arg.get('default', ''))} "
            f"| {cell(arg.get('description', ''))} |\n"
            for name, arg in module.train_args.items()
        )
        parts.append("| argument | type | default | what it does |\n| --- | --- | --- | --- |\n"
                     + rows)  # fmt: skip
    return parts


def _links_html(module: Module) -> str:
    links = module.data.get("links") or {}
    items = []
    for key, label in LINK_LABELS:
        url = safe_url(links.get(key))
        if url:
            items.append(f'<li><a href="{esc(url)}" rel="noopener nofollow">{esc(label)}</a></li>')
    doi = module.data.get("doi")
    if doi:
        url = "https://doi.org/" + str(doi)
        items.append(f'<li>DOI <a href="{esc(url)}" rel="noopener nofollow">{esc(doi)}</a></li>')
    return f'<ul class="dm-links">{"".join(items)}</ul>' if items else ""


_RESOURCE_ROWS = (
    ("cpu", "CPU cores", ""),
    ("memory_MB", "Memory", " MB"),
    ("gpu", "GPUs", ""),
    ("gpu_memory_MB", "GPU memory", " MB"),
    ("storage_MB", "Storage", " MB"),
)


def _resources_html(module: Module) -> str:
    inference, training = module.resources("inference"), module.resources("training")
    if not inference and not training:
        return "<p>The module declares no resource needs; the operator's defaults apply.</p>"
    cols = [("Inference", inference)] + ([("Training", training)] if module.trainable else [])
    head = "".join(f"<th>{c}</th>" for c, _ in cols)
    rows = []
    for key, label, unit in _RESOURCE_ROWS:
        if any(key in r for _, r in cols):
            cells = "".join(f"<td>{esc(r[key]) + unit if key in r else '–'}</td>" for _, r in cols)
            rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    return (
        f'<table><thead><tr><th scope="col">Resource</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _facts_html(module: Module) -> str:
    dates = module.data.get("dates") or {}
    facts = [("Module id", f"<code>{esc(module.id)}</code>")]
    facts.append(("Image", f"<code>{esc(module.image)}</code>"))
    facts.append(("DEEPaaS model", f"<code>{esc(module.model_name)}</code>"))
    if module.data.get("license"):
        facts.append(("Licence", esc(module.data["license"])))
    for key in ("created", "updated"):
        if dates.get(key):
            facts.append((key.capitalize(), f"<time>{esc(dates[key])}</time>"))
    if module.deploy:
        facts.append(("Platform", "Deployed for inference from the catalog's main branch"))
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    return f"<table><tbody>{rows}</tbody></table>"


def tryit_html(module: Module, base_template: str | None) -> str:
    """The try-it form's mount point, or how to get the module deployed when it cannot be."""
    if base_template and module.deploy and module.inference:
        url = deploy_url(base_template, module.id)
        return (
            f'<div class="dm-tryit" data-endpoint="{esc(url)}"'
            f' data-model="{esc(module.model_name)}">'
            f'<p class="dm-tryit__status">Loading the live API description from '
            f"<code>{esc(url)}swagger.json</code>…</p>"
            "<noscript><p>The try-it form needs JavaScript.</p></noscript></div>"
        )
    if not module.inference:
        return "<p>This module is not meant for inference, so there is nothing to try here.</p>"
    if base_template:
        why = (
            "This marketplace has a deployment, but this module is not deployed on it: set "
            f"<code>deploy: true</code> for <code>{esc(module.id)}</code> in "
            "<code>modules.yml</code> with a pull request and it is deployed when merged."
        )
    else:
        why = (
            "This build of the marketplace has no deployment to call. Deploy the module with the "
            "manifest above, or run it locally as below, then open its Swagger UI at "
            "<code>/ui</code>. Sites built with <code>DEEPMARKET_DEPLOY_BASE_URL</code> show a "
            "form here that calls the deployed module."
        )
    return f'<div class="admonition info"><p class="admonition-title">Try it</p><p>{why}</p></div>'


def without_title(markdown_text: str) -> str:
    """A README's leading `# Title` repeats the page's own heading: drop it."""
    lines = markdown_text.lstrip("\n").split("\n", 1)
    if lines[0].startswith("# "):
        return lines[1] if len(lines) > 1 else ""
    return markdown_text


def page_slots(
    module: Module,
    *,
    render_md: MarkdownRenderer,
    icon_url: str | None,
    home_url: str,
    base_template: str | None,
) -> dict[str, str]:
    """HTML for each slot of `page_markdown`, keyed by the slot's full placeholder text."""
    header = (
        f'<a class="dm-back" href="{esc(home_url)}">← All modules</a>'
        f'<div class="dm-hero">{icon_html(module, icon_url, "hero")}<div>'
        f'<h1 class="dm-hero__title">{esc(module.title)}</h1>'
        f'<p class="dm-hero__summary">{esc(module.summary)}</p>{badges_html(module, home_url)}'
        "</div></div>"
    )
    description = render_md(str(module.data.get("description", "")))
    if module.readme:
        readme = render_md(without_title(module.readme))
        description += f'<div class="dm-readme">{readme}</div>'
    details = _facts_html(module) + "<h3>Resources</h3>" + _resources_html(module)
    links = _links_html(module)
    if links:
        details += "<h3>Links</h3>" + links
    return {
        SLOT.format("header"): header,
        SLOT.format("description"): f'<div class="dm-description">{description}</div>',
        SLOT.format("tryit"): tryit_html(module, base_template),
        SLOT.format("details"): details,
    }


def fill_slots(content: str, slots: dict[str, str]) -> str:
    for marker, value in slots.items():
        content = content.replace(marker, value, 1)
    return content


def error_panel(problems: list[str]) -> str:
    """What `deepmarket site serve` shows on every page while the catalog cannot be loaded."""
    items = []
    for text in problems:
        where, sep, rest = text.partition(": ")
        if sep and re.match(r"^[^\s]+:\d+(:\d+)?$|^[^\s]+\.(yml|md)$", where):
            items.append(f"<li><code>{esc(where)}</code> {esc(rest)}</li>")
        else:
            items.append(f"<li>{esc(text)}</li>")
    n = len(problems)
    return (
        '<div class="dm-build-error" role="alert">'
        f"<p><strong>The catalog has {n} problem{'s' if n != 1 else ''}.</strong> "
        "This preview shows the last version that loaded. Fix "
        f"{'it' if n == 1 else 'them'} and save: the page reloads by itself.</p>"
        f"<ul>{''.join(items)}</ul></div>"
    )


def with_error_panel(page_html: str, problems: list[str]) -> str:
    """The page with the error panel first inside its main content (or its body)."""
    panel = error_panel(problems)
    for anchor in ('<article class="md-content__inner md-typeset">', "<body"):
        at = page_html.find(anchor)
        if at >= 0:
            end = page_html.index(">", at) + 1
            return page_html[:end] + panel + page_html[end:]
    return panel + page_html
