"""The home page at catalog scale: no layout shift, and facet counts that follow the filters.

Layout shift is measured by Chromium itself (the Performance API's `layout-shift` entries,
the figure Core Web Vitals report as CLS), on a 1,000-module sample catalog where the page is
long enough to be painted while it still loads.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sitekit import MKDOCS_YML, static_server

from deepmarket.site.build import build_site
from deepmarket.site.samplecat import write_catalog

pytestmark = pytest.mark.browser

CLS_OBSERVER = """
window.__shifts = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (!e.hadRecentInput) window.__shifts.push({value: e.value,
      sources: (e.sources || []).map(s => s.node ? (s.node.className || s.node.nodeName) : '?')});
  }
}).observe({type: 'layout-shift', buffered: true});
"""


@pytest.fixture(scope="module")
def big_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog-1000")
    modules = write_catalog(root, 1000)
    out = build_site(MKDOCS_YML, site_dir=root / "public", catalog=root, deploy_base_url="")
    with static_server(out) as (url, _):
        yield url, modules


@pytest.mark.parametrize(
    ("query", "viewport"),
    [
        ("", (1280, 900)),
        ("?category=trainable&tag=plants&sort=name", (1280, 900)),
        ("?text=coral", (1280, 900)),
        ("", (390, 844)),
        ("?library=PyTorch", (390, 844)),
    ],
    ids=["plain", "filtered", "text", "phone", "phone-filtered"],
)
def test_no_layout_shift_while_the_home_page_loads(browser, big_site, query, viewport):
    url, _ = big_site
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    try:
        context.add_init_script(CLS_OBSERVER)
        page = context.new_page()
        assert page.evaluate("PerformanceObserver.supportedEntryTypes.includes('layout-shift')")
        page.goto(url + query, wait_until="load")
        page.wait_for_selector("html:not(.dm-pending)", state="attached")
        # Let icons and late frames land, then read every shift since navigation started.
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))")
        shifts = page.evaluate("window.__shifts")
        assert shifts == [], f"layout shifts (CLS {sum(s['value'] for s in shifts):.4f}): {shifts}"
        assert page.is_visible(".dm-controls")
    finally:
        context.close()


def chip_counts(page, facet):
    return page.eval_on_selector_all(
        f'input[name="{facet}"]',
        "inputs => Object.fromEntries(inputs.map(i => [i.value,"
        " Number(i.parentNode.querySelector('.dm-chip__n').textContent)]))",
    )


def test_facet_counts_follow_the_active_filters(page, site_url, generated_site):
    modules = generated_site.modules
    page.goto(site_url)
    everything = Counter(lib for m in modules for lib in m["libraries"])
    assert chip_counts(page, "library") == dict(everything)

    page.click('label.dm-chip:has(input[name="category"][value="trainable"])')
    trainable = [m for m in modules if "trainable" in m["categories"]]
    # Other facets count within the filtered set; the category facet still counts them all,
    # so its chips say what choosing another category would show.
    expected_libs = Counter(lib for m in trainable for lib in m["libraries"])
    got = chip_counts(page, "library")
    assert got == {lib: expected_libs.get(lib, 0) for lib in everything}
    categories = Counter(c for m in modules for c in m["categories"])
    assert chip_counts(page, "category") == dict(categories)

    library = expected_libs.most_common(1)[0][0]
    page.click(f'label.dm-chip:has(input[name="library"][value="{library}"])')
    both = [m for m in trainable if library in m["libraries"]]
    with_library = [m for m in modules if library in m["libraries"]]
    assert chip_counts(page, "category") == {
        c: sum(1 for m in with_library if c in m["categories"]) for c in categories
    }
    assert chip_counts(page, "tag") == {
        t: sum(1 for m in both if t in m["tags"]) for t in chip_counts(page, "tag")
    }

    word = modules[3]["title"].split()[0].lower()
    page.fill("input[name=text]", word)
    matching = [
        m
        for m in trainable
        if word in " ".join([m["id"], m["title"], m["summary"], *m["tags"]]).lower()
    ]
    assert chip_counts(page, "library") == {
        lib: sum(1 for m in matching if lib in m["libraries"]) for lib in everything
    }
