"""The marketplace in a real Chromium: cards, filters, search, manifests, XSS, no-JS fallback.

Every expected set of modules is computed from the generated catalog.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
from ruamel.yaml import YAML
from sitekit import ARTIFACTS, MKDOCS_YML, REPO, XSS_ID, static_server

from deepmarket.catalog import load_catalog
from deepmarket.catalog.manifests import deepmodule_manifest, trainingrun_manifest
from deepmarket.site.build import build_site

pytestmark = pytest.mark.browser


def visible_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        ".dm-card:not([hidden])", "cards => cards.map(c => c.dataset.id)"
    )


def full_screenshot(page, name: str) -> None:
    """Scroll through once so lazy icons load, then save a full-page artefact."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_load_state("networkidle")
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_home_shows_one_card_per_module(page, site_url, generated_site):
    page.goto(site_url)
    expected = [m["id"] for m in generated_site.modules]
    assert visible_ids(page) == expected
    assert page.inner_text(".dm-count__n") == str(len(expected))
    assert page.is_visible(".dm-controls")
    full_screenshot(page, "site-home.png")


def test_filters_combine_and_live_in_the_url(page, site_url, generated_site):
    modules = generated_site.modules
    trainable = [m for m in modules if "trainable" in m["categories"]]
    library, _ = Counter(lib for m in trainable for lib in m["libraries"]).most_common(1)[0]
    expected = [m["id"] for m in trainable if library in m["libraries"]]
    assert 0 < len(expected) < len(modules)

    page.goto(site_url)
    page.click('label.dm-chip:has(input[name="category"][value="trainable"])')
    page.click(f'label.dm-chip:has(input[name="library"][value="{library}"])')
    assert visible_ids(page) == expected
    assert page.inner_text(".dm-count__n") == str(len(expected))
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"category": ["trainable"], "library": [library]}

    page.select_option("select[name=sort]", "name")
    by_name = sorted((m for m in modules if m["id"] in expected), key=lambda m: m["title"].lower())
    assert visible_ids(page) == [m["id"] for m in by_name]

    shared = page.url
    page.goto("about:blank")
    page.goto(shared)  # a shared link restores the same view
    assert visible_ids(page) == [m["id"] for m in by_name]
    assert page.is_checked(f'input[name="library"][value="{library}"]')
    assert page.is_checked('input[name="category"][value="trainable"]')
    assert page.input_value("select[name=sort]") == "name"

    page.click(".dm-clear")
    assert visible_ids(page) == [m["id"] for m in modules]
    assert urlsplit(page.url).query == ""


def test_text_filter_and_recently_updated(page, site_url, generated_site):
    target = generated_site.modules[7]
    page.goto(site_url)
    page.fill("input[name=text]", target["title"].upper())
    assert visible_ids(page) == [target["id"]]
    page.fill("input[name=text]", "")
    page.select_option("select[name=sort]", "updated")
    newest_first = sorted(generated_site.modules, key=lambda m: m["dates"]["updated"], reverse=True)
    assert visible_ids(page)[:5] == [m["id"] for m in newest_first][:5]


def test_search_finds_a_module_by_a_word_of_its_description(page, site_url, generated_site):
    target = generated_site.modules[11]
    word = f"zq{11:05d}word"
    assert word in target["description"]
    page.goto(site_url)
    page.click(".md-search__input")
    page.keyboard.type(word)  # material's search reacts to key events, not to fill()
    hit = page.wait_for_selector(f'.md-search-result__item a[href*="modules/{target["id"]}/"]')
    assert hit is not None


def test_module_page_manifests_parse_as_yaml(page, site_url, generated_site):
    catalog = load_catalog(generated_site.catalog_root)
    module = next(m for m in catalog if m.trainable and m.icon is None)
    page.goto(f"{site_url}modules/{module.id}/")
    blocks = {}
    for block in page.query_selector_all(".highlight"):
        title = block.query_selector(".filename")
        if title:
            blocks[title.inner_text().strip()] = block.query_selector("code").inner_text()
    yaml = YAML(typ="safe")
    assert yaml.load(blocks["deepmodule.yaml"]) == deepmodule_manifest(module)
    assert yaml.load(blocks["trainingrun.yaml"]) == trainingrun_manifest(module)
    assert page.inner_text("h1") == module.title
    full_screenshot(page, "site-module.png")  # scrolls: the theme adds copy buttons lazily
    snippets = page.locator("pre > code").count()
    assert snippets >= 4
    page.wait_for_function(f"document.querySelectorAll('.md-code__button').length >= {snippets}")


def test_xss_payload_does_not_execute(page, site_url, browser):
    page.goto(f"{site_url}modules/{XSS_ID}/")
    assert "xssmarkerword" in page.inner_text("article")
    page.hover(".dm-description")
    page.evaluate(  # poke everything the payload could have hooked an inline handler on
        """() => document.querySelectorAll('article *').forEach(el =>
            ['mouseover', 'load', 'error', 'focus'].forEach(t => el.dispatchEvent(new Event(t))))"""
    )
    probe = page.evaluate(
        """() => ({
            flag: window.__xss === undefined ? null : String(window.__xss),
            handlers: Array.from(document.querySelectorAll('article *')).flatMap(el =>
                Array.from(el.attributes).filter(a => /^on/i.test(a.name)
                    || /javascript:/i.test(a.value)).map(a => el.tagName + ' ' + a.name)),
            scripts: document.querySelectorAll('article script, article iframe').length,
        })"""
    )
    assert probe == {"flag": None, "handlers": [], "scripts": 0}
    page.goto(site_url)
    assert page.evaluate("window.__xss === undefined")
    # The page fixture fails the test if any dialog (alert) opened on either page.


def test_without_javascript_the_home_page_is_a_list_of_links(browser, site_url, generated_site):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site_url)
        assert not page.is_visible(".dm-controls")
        hrefs = page.eval_on_selector_all(".dm-card a", "as => as.map(a => a.href)")
        assert len(hrefs) == len(generated_site.modules)
        page.goto(hrefs[0])
        assert page.inner_text("h1") == generated_site.modules[0]["title"]
    finally:
        context.close()


@pytest.fixture(scope="module")
def catalog_site(tmp_path_factory):
    """The repository's own catalog, built as `make run` shows it."""
    out = build_site(
        MKDOCS_YML, site_dir=tmp_path_factory.mktemp("catalog-site"), deploy_base_url=""
    )
    with static_server(out) as (url, _):
        yield url


def test_repository_catalog_cards_and_icons(page, catalog_site):
    catalog = load_catalog(REPO)
    page.goto(catalog_site)
    assert visible_ids(page) == [m.id for m in catalog]
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_load_state("networkidle")
    broken = page.eval_on_selector_all(
        ".dm-card img.dm-icon",
        "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)",
    )
    assert broken == []
    with_icon = page.locator(".dm-card img.dm-icon").count()
    assert with_icon == sum(1 for m in catalog if m.icon is not None)
    full_screenshot(page, "site-catalog-home.png")
    first = catalog.modules[0]
    page.goto(f"{catalog_site}modules/{first.id}/")
    assert page.inner_text("h1") == first.title
    full_screenshot(page, "site-catalog-module.png")
