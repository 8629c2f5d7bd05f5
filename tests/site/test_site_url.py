"""`site_url` gives a real sitemap, canonical links, and a 404 page that works under a sub-path
at any depth, as a project site on GitHub Pages (https://org.github.io/market/) is served."""

from __future__ import annotations

import functools
import http.server
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sitekit import MKDOCS_YML

from deepmarket.site.build import build_site
from deepmarket.site.samplecat import write_catalog

SUB = "/market/"


class PagesLikeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; a missing path under /market/ gets /market/404.html, status 404."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        page = Path(self.directory, SUB.strip("/"), "404.html")
        if code == 404 and self.path.startswith(SUB) and page.is_file():
            body = page.read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().send_error(code, message, explain)


@pytest.fixture(scope="module")
def sub_path_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("sub-path")
    modules = write_catalog(root / "catalog", 4)
    handler = functools.partial(PagesLikeHandler, directory=str(root / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    base = f"http://127.0.0.1:{server.server_address[1]}{SUB}"
    out = build_site(
        MKDOCS_YML,
        site_dir=root / "www" / SUB.strip("/"),
        catalog=root / "catalog",
        deploy_base_url="",
        site_url=base,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, out, modules
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_sitemap_lists_every_page_with_absolute_urls(sub_path_site):
    base, out, modules = sub_path_site
    tree = ET.parse(out / "sitemap.xml")
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    entries = {
        url.findtext("s:loc", namespaces=ns): url.findtext("s:lastmod", namespaces=ns)
        for url in tree.getroot()
    }
    for m in modules:
        assert entries[f"{base}modules/{m['id']}/"] == m["dates"]["updated"]
    assert {f"{base}", f"{base}tags/", f"{base}publish/", f"{base}api/"} <= set(entries)
    assert all(loc.startswith(base) for loc in entries)


def test_every_page_names_its_canonical_url(sub_path_site):
    base, out, modules = sub_path_site
    for rel, url in [("index.html", base)] + [
        (f"modules/{m['id']}/index.html", f"{base}modules/{m['id']}/") for m in modules
    ]:
        html = (out / rel).read_text()
        assert f'<link rel="canonical" href="{url}">' in html, rel
        assert f'<meta property="og:url" content="{url}">' in html, rel


def test_without_site_url_there_is_no_wrong_sitemap(generated_site):
    assert not (generated_site.out / "sitemap.xml").exists()
    assert 'rel="canonical"' not in (generated_site.out / "index.html").read_text()


@pytest.mark.browser
def test_the_404_page_works_at_any_depth_under_the_sub_path(browser, sub_path_site):
    base, _, modules = sub_path_site
    context = browser.new_context()
    try:
        page = context.new_page()
        failed = []
        page.on(
            "response",
            lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        answer = page.goto(f"{base}no/such/deep/page/")
        assert answer.status == 404
        page.wait_for_load_state("networkidle")
        assert failed == [f"404 {base}no/such/deep/page/"]  # every asset of the page loaded
        sheets = page.evaluate("Array.from(document.styleSheets).map(s => s.href || '')")
        assert any(re.search(r"/market/assets/stylesheets/main\.\w+\.min\.css$", s) for s in sheets)
        assert page.is_visible(".md-header")
        page.click(".md-tabs__link >> text=Publish a module")
        assert page.url == f"{base}publish/"
        page.goto(f"{base}missing")
        page.click(".md-header__button.md-logo")
        assert page.url in (base, f"{base}.")
        assert re.search(modules[0]["id"], page.content())
    finally:
        context.close()
