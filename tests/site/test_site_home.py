"""The home page at catalog scale: no layout shift, and facet counts that follow the filters.

Layout shift is measured by Chromium itself (the Performance API's `layout-shift` entries,
the figure Core Web Vitals report as CLS), on a 1,000-module sample catalog where the page is
long enough to be painted while it still loads.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

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
def big_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog-1000")
    modules = write_catalog(root, 1000)
    out = build_site(MKDOCS_YML, site_dir=root / "public", catalog=root, deploy_base_url="")
    return out, modules


@pytest.fixture(scope="module")
def big_site(big_build):
    out, modules = big_build
    with static_server(out) as (url, _):
        yield url, modules


def home_in_pieces(out: Path) -> Iterator[bytes]:
    """The home page cut before every tag of its controls and count: each piece is sent alone."""
    page = (out / "index.html").read_bytes()
    cuts = []
    for first, last in [
        (b'<form class="dm-controls"', b'<div class="dm-facets">'),
        (b'<p class="dm-count"', b'<li class="dm-card"'),
    ]:
        start, end = page.index(first), page.index(last) + len(last)
        cuts += [start + m.start() for m in re.finditer(rb"<", page[start:end])]
    pos = 0
    for cut in [*cuts, len(page)]:
        yield page[pos:cut]
        pos = cut


@pytest.fixture(scope="module")
def trickled_site(big_build):
    """The big site, its home page sent in pieces with pauses between them: the browser paints
    every partial state of the controls, as it does by chance on a loaded machine."""
    out, _ = big_build

    class Trickle(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/":
                return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            for piece in home_in_pieces(out):
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(0.05)  # long enough for a frame to be painted in between
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Trickle, directory=str(out))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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


@pytest.mark.parametrize("query", ["", "?category=trainable&tag=plants&sort=name"])
def test_no_layout_shift_when_the_controls_are_painted_half_parsed(browser, trickled_site, query):
    # The sort <select> grew with each option and the Clear button, parsed last, pushed it aside.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.add_init_script(CLS_OBSERVER)
        page = context.new_page()
        page.goto(trickled_site + query, wait_until="load", timeout=120_000)
        page.wait_for_selector("html:not(.dm-pending)", state="attached")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))")
        shifts = page.evaluate("window.__shifts")
        assert shifts == [], f"layout shifts (CLS {sum(s['value'] for s in shifts):.4f}): {shifts}"
        assert page.is_visible(".dm-controls .dm-sort")
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
