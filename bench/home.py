"""What a visitor's browser pays for the marketplace's home page at catalog scale.

Builds the sample catalog (`deepmarket.site.samplecat`, default 1,000 modules), serves it on
loopback and loads the home page in Debian's Chromium through Playwright, cold cache, several
times. Prints, per size:

* HTML bytes (raw and gzip -6, what a static host sends compressed) and all bytes fetched
  before the load event;
* DOM nodes (elements) once the filters have initialised;
* DOMContentLoaded, load and "filters ready" (the count shows) in ms, median of --runs;
* cumulative layout shift (Performance API `layout-shift` entries, no input), plain and with a
  filter in the URL.

    .venv/bin/python bench/home.py                     # 1000 modules, 5 runs
    .venv/bin/python bench/home.py --sizes 100 1000 5000 --runs 3

Budget at 1,000 modules (README, "The home page at 1,000 modules", says why): HTML at most
100 kB gzipped and 1 MB raw, at most 10 DOM elements per card plus 1,500, everything fetched
before load at most 3 MB, load under 2 s on a developer machine, CLS 0. Figures, not asserts:
timing goals never live in tests (CLS is asserted, in tests/site/test_site_home.py).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "site"))

from sitekit import CHROMIUM, CHROMIUM_ARGS, MKDOCS_YML, static_server  # noqa: E402

from deepmarket.site.build import build_site  # noqa: E402
from deepmarket.site.samplecat import write_catalog  # noqa: E402

CLS_OBSERVER = """
window.__cls = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
}).observe({type: 'layout-shift', buffered: true});
"""

MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const bytes = performance.getEntriesByType('resource').reduce(
      (sum, r) => sum + (r.transferSize || r.encodedBodySize || 0), nav.transferSize || 0);
  return {
    nodes: document.getElementsByTagName('*').length,
    dcl: nav.domContentLoadedEventEnd,
    load: nav.loadEventEnd,
    bytes,
    cls: window.__cls,
  };
}"""


def measure(browser, url: str, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(CLS_OBSERVER)
        page = context.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_selector(".dm-controls:not([hidden])")
        page.wait_for_timeout(500)  # let late shifts (icons, fonts) be recorded
        samples.append(page.evaluate(MEASURE))
        context.close()
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    print(
        f"{'modules':>7} | {'HTML kB':>8} {'gzip kB':>8} {'fetched kB':>10} | {'DOM nodes':>9} |"
        f" {'DCL ms':>7} {'load ms':>8} | {'CLS':>6} {'CLS filtered':>12}"
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix="bench-home-") as tmp:
                root = Path(tmp)
                write_catalog(root, n)
                out = build_site(
                    MKDOCS_YML, site_dir=root / "public", catalog=root, deploy_base_url=""
                )
                html = (out / "index.html").read_bytes()
                with static_server(out) as (url, _):
                    plain = measure(browser, url, args.runs)
                    filtered = measure(browser, url + "?category=trainable&tag=plants", args.runs)
            print(
                f"{n:>7} | {len(html) / 1000:>8.0f} {len(gzip.compress(html, 6)) / 1000:>8.0f}"
                f" {plain['bytes'] / 1000:>10.0f} | {plain['nodes']:>9.0f} |"
                f" {plain['dcl']:>7.0f} {plain['load']:>8.0f} |"
                f" {plain['cls']:>6.3f} {filtered['cls']:>12.3f}",
                flush=True,
            )
        browser.close()


if __name__ == "__main__":
    main()
