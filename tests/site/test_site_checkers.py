"""The marketplace through checkers nobody here wrote: axe-core and the W3C Nu Html Checker.

axe-core runs in Chromium over every kind of page, in the light and the dark scheme and on a
phone; no serious or critical violation may remain. The Nu Html Checker reads every page of a
built site; no error may remain but those the theme's own markup causes, listed below with the
upstream reason (and in the README, "Accessibility and HTML checks").
"""

from __future__ import annotations

import re

import pytest
from checkers import axe_run, axe_source, nu_check

# Nu errors that come from mkdocs-material's templates, not from anything deepmarket writes.
THEME_OWNED_NU = {
    r"Attribute “autocomplete” is only allowed when the input type is": (
        'mkdocs-material sets autocomplete="off" on its hidden checkbox toggles (drawer, '
        "search) so that browsers do not restore them on back-navigation"
    ),
    r"The value of the “for” attribute of the “label” element must be the ID of a non-hidden": (
        "mkdocs-material's table-of-contents title is a <label for=__toc>, whose checkbox it "
        "only renders for pages in the navigation (module pages are generated, not listed)"
    ),
}


def pages(site):
    modules = site.modules
    trainable = next(m for m in modules if "trainable" in m["categories"] and "icon" in m)
    plain = next(m for m in modules if "trainable" not in m["categories"] and "icon" not in m)
    library = trainable["libraries"][0]
    return [
        "",
        f"?category=trainable&library={library}",
        "?text=zzzz-nothing-matches",
        "?q=plants",  # the theme's search overlay, opened by its share link
        f"modules/{trainable['id']}/",
        f"modules/{plain['id']}/",
        "tags/",
        "api/",
        "publish/",
        "404.html",
    ]


@pytest.mark.browser
@pytest.mark.parametrize(
    ("scheme", "viewport"),
    [("light", (1280, 900)), ("dark", (1280, 900)), ("light", (390, 844))],
    ids=["light", "dark", "phone"],
)
def test_axe_finds_no_serious_violation(browser, site_url, generated_site, scheme, viewport):
    source = axe_source()
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, color_scheme=scheme
    )
    found = []
    try:
        page = context.new_page()
        for path in pages(generated_site):
            page.goto(site_url + path)
            page.wait_for_load_state("load")
            if path.startswith("?q="):
                page.wait_for_selector(".md-search-result__item")
            elif path.startswith("?"):
                page.wait_for_selector("html:not(.dm-pending)", state="attached")
            scheme_now = page.get_attribute("body", "data-md-color-scheme")
            assert scheme_now == ("slate" if scheme == "dark" else "default")
            for violation in axe_run(page, source):
                if violation["impact"] in ("serious", "critical"):
                    found += [
                        f"/{path} {violation['id']} ({violation['impact']}): {node['target']}: "
                        f"{node['summary']}"
                        for node in violation["nodes"]
                    ]
    finally:
        context.close()
    assert found == [], "\n".join(found)


def test_nu_html_checker_finds_no_error_of_ours(generated_site):
    files = sorted(generated_site.out.rglob("*.html"))
    assert len(files) > len(generated_site.modules)
    messages = nu_check(files)
    errors = [m for m in messages if m["type"] == "error"]
    ours = [
        f"{m['url'].split('/public/', 1)[-1]}:{m.get('lastLine')}: {m['message']} "
        f"[{m.get('extract', '').strip()}]"
        for m in errors
        if not any(re.search(pattern, m["message"]) for pattern in THEME_OWNED_NU)
    ]
    assert ours == [], "\n".join(ours)
    # Each theme-owned entry still occurs: the list (and the README's) stays true.
    for pattern in THEME_OWNED_NU:
        assert any(re.search(pattern, m["message"]) for m in errors), pattern
