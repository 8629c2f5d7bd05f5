"""Pure rendering decisions: no mkdocs, no files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from deepmarket.catalog.model import Module
from deepmarket.site import api, render
from deepmarket.site.samplecat import module_data


def make_module(index: int = 0, **patch: object) -> Module:
    import random

    data = {**module_data(index, random.Random(index)), **patch}
    return Module(id=str(data["id"]), data=data, dir=Path("/nonexistent"))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("https://models.example.org", "https://models.example.org/plant/"),
        ("https://models.example.org/", "https://models.example.org/plant/"),
        ("https://example.org/deploy/", "https://example.org/deploy/plant/"),
        ("https://{id}.models.example.org", "https://plant.models.example.org/"),
        ("http://127.0.0.1:8080/m/{id}/api", "http://127.0.0.1:8080/m/plant/api/"),
    ],
)
def test_deploy_url(template, expected):
    assert render.deploy_url(template, "plant") == expected


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://a.org/x", True),
        ("HTTP://a.org", True),
        ("javascript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("data:text/html,<b>", False),
        ("", False),
        (None, False),
    ],
)
def test_safe_url(url, ok):
    assert (render.safe_url(url) is not None) is ok


def test_markdown_is_rendered_and_sanitized():
    md = render.MarkdownRenderer()
    out = md(
        "# Big\n\n**bold** [ok](https://a.org) [bad](javascript:alert(1))\n\n"
        "<script>alert(1)</script><img src=x onerror=alert(1)>\n\n| a |\n|---|\n| 1 |\n"
    )
    assert "<strong>bold</strong>" in out
    assert 'href="https://a.org"' in out
    assert "<table>" in out
    assert "<h3>Big</h3>" in out  # author headings sit under the page's own sections
    for bad in ("<script", "onerror", "javascript:"):
        assert bad not in out


def test_icon_safety():
    from deepmarket.catalog.icons import icon_is_safe

    assert icon_is_safe("i.png", b"<script>")  # raster files are inert in <img>
    assert icon_is_safe("i.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
    for active in (
        b"<svg><script>alert(1)</script></svg>",
        b'<svg onload="x()"/>',
        b"<svg><foreignObject/></svg>",
        b'<svg><a href="javascript:x()"/></svg>',
    ):
        assert not icon_is_safe("i.svg", active)


def test_page_markdown_front_matter_survives_hostile_titles():
    title = 'He said "hi" \\ <script>alert(1)</script> --- #'
    module = make_module(title=title, summary='a: b\n"quoted"')
    text = render.page_markdown(module)
    front = YAML(typ="safe").load(text.split("---\n")[1])
    assert front["title"] == render.esc(title)
    assert "<script>" not in front["title"]
    assert set(front["tags"]) >= {"Inference"}


def test_trainingrun_only_for_trainable_modules():
    assert "trainingrun.yaml" in render.page_markdown(
        make_module(
            categories=["trainable"], runtime={"image": "x/y:1", "model": "m", "train": True}
        )
    )
    assert "trainingrun.yaml" not in render.page_markdown(
        make_module(
            categories=["inference"], runtime={"image": "x/y:1", "model": "m", "train": False}
        )
    )


def test_fence_outlasts_backticks_in_the_body():
    block = render._fence("yaml", "a: ````x````")
    assert block.startswith("````` yaml") and block.rstrip().endswith("`````")


def test_facets_count_modules():
    modules = [make_module(i) for i in range(20)]
    by_key = {f.key: dict(f.counts) for f in render.facets(modules)}
    for key, _, field in render.FACETS:
        for value, n in by_key.get(key, {}).items():
            assert n == sum(value in m.data.get(field, []) for m in modules)
    assert next(iter(by_key["category"])) in render.CATEGORY_LABELS


def test_tryit_needs_base_url_and_deploy():
    deployed = Module(
        id="m",
        data={"categories": ["inference"], "runtime": {"model": "mm"}},
        dir=Path(),
        deploy=True,
    )
    html = render.tryit_html(deployed, "https://d.example.org")
    assert 'data-endpoint="https://d.example.org/m/"' in html and 'data-model="mm"' in html
    assert "DEEPMARKET_DEPLOY_BASE_URL" in render.tryit_html(deployed, None)
    not_deployed = Module(id="m", data=deployed.data, dir=Path(), deploy=False)
    assert "deploy: true" in render.tryit_html(not_deployed, "https://d.example.org")


def test_api_documents_follow_their_schema():
    from jsonschema import Draft202012Validator

    schema = api.schema()
    Draft202012Validator.check_schema(schema)
    modules = [make_module(i) for i in range(5)]
    entries = [api.summary_entry(m, f"modules/{m.id}/", None) for m in modules]
    index = json.loads(api.dumps(api.index_document(entries)))
    Draft202012Validator(schema).validate(index)
    module_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/module"}
    for module, entry in zip(modules, entries, strict=True):
        doc = json.loads(api.dumps(api.module_document(module, entry)))
        Draft202012Validator(module_schema).validate(doc)
        assert (doc["manifests"]["trainingrun"] is None) is (not module.trainable)


def test_author_headings_nest_under_the_page_and_never_skip_a_level():
    from deepmarket.site.render import MarkdownRenderer, shift_headings

    md = MarkdownRenderer()
    html = md("# Usage\n\n### Inputs\n\n## Training\n\n###### deep\n")
    assert [int(x) for x in re.findall(r"<h(\d)", html)] == [3, 4, 4, 5]
    assert html.count("</h4>") == 2 and "</h6>" not in html
    assert shift_headings("<h4>a</h4><h5>b</h5>", 3) == "<h3>a</h3><h4>b</h4>"
    assert shift_headings("<p>no headings</p>", 3) == "<p>no headings</p>"


def test_sanitized_markup_stays_valid_html():
    from deepmarket.site.render import MarkdownRenderer

    html = MarkdownRenderer()('<img src="x.png"> [bad](javascript:alert(1)) ![ok](y.png "t")')
    assert '<img alt="" src="x.png">' in html or '<img alt=""' in html
    assert "<a" not in html.replace("<a href", "") and "bad" in html
    assert 'alt="ok"' in html


def test_free_tags_take_the_vocabulary_spelling_so_tag_anchors_are_unique():
    from deepmarket.site.render import page_tags

    module = Module(
        id="m",
        data={"data-type": ["Audio", "Time Series"], "tags": ["audio", "time series", "birds"]},
        dir=Path(),
    )
    assert page_tags(module) == ["Audio", "Time Series", "birds"]
