"""The plugin inside a real mkdocs build: generated catalogs, the real catalog, bad catalogs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from sitekit import MKDOCS_YML, REPO, XSS_ID

from deepmarket.errors import UserError
from deepmarket.site.build import build_site
from deepmarket.site.samplecat import write_catalog


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_a_page_and_a_card_per_module(generated_site):
    home = (generated_site.out / "index.html").read_text()
    cards = re.findall(r'<li class="dm-card" data-id="([^"]+)"', home)
    assert cards == [m["id"] for m in generated_site.modules]  # catalog order
    for module in generated_site.modules:
        page = generated_site.out / "modules" / module["id"] / "index.html"
        assert page.is_file(), module["id"]
    # Icons are published beside their page; modules without one get the placeholder.
    with_icon = [m["id"] for m in generated_site.modules if m.get("icon")]
    assert with_icon and all(
        (generated_site.out / f"modules/{i}/icon.svg").is_file() for i in with_icon
    )
    assert home.count("dm-icon--placeholder") == len(generated_site.modules) - len(with_icon)


def test_api_files_match_the_catalog_and_schema(generated_site):
    api = generated_site.out / "api"
    schema = json.loads((api / "schema.json").read_text())
    index = json.loads((api / "modules.json").read_text())
    Draft202012Validator(schema).validate(index)
    assert [m["id"] for m in index["modules"]] == [m["id"] for m in generated_site.modules]
    module_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/module"}
    for data in generated_site.modules:
        doc = json.loads((api / "modules" / f"{data['id']}.json").read_text())
        Draft202012Validator(module_schema).validate(doc)
        assert doc["metadata"]["title"] == data["title"]
        assert doc["trainable"] is data["runtime"]["train"]
        assert (generated_site.out / doc["page"] / "index.html").is_file()


def test_module_page_content(generated_site):
    data = next(m for m in generated_site.modules if m["runtime"]["train"])
    html = (generated_site.out / "modules" / data["id"] / "index.html").read_text()
    assert "deepmodule.yaml" in html and "trainingrun.yaml" in html
    assert f"deepmarket module serve {data['id']}" in text_of(html)
    assert data["links"]["source_code"] in html
    not_trainable = next(m for m in generated_site.modules if not m["runtime"]["train"])
    html = (generated_site.out / "modules" / not_trainable["id"] / "index.html").read_text()
    assert "deepmodule.yaml" in html and "trainingrun.yaml" not in html
    assert "DEEPMARKET_DEPLOY_BASE_URL" in html  # built without a deployment: how to get one


def test_xss_payload_is_inert_in_the_html(generated_site):
    html = (generated_site.out / "modules" / XSS_ID / "index.html").read_text()
    article = html[html.index("<article") : html.index("</article>")]
    assert "xssmarkerword" in article
    assert "<script" not in article
    assert not re.search(r"<[^>]+\son[a-z]+=", article)
    assert "javascript:" not in article.lower()
    assert "<iframe" not in article
    head = html[: html.index("</head>")]  # <title>, meta description, Open Graph tags
    assert '<script>alert("title")' not in head
    assert 'content="XSS &lt;script&gt;alert(&quot;title&quot;)' in head
    home = (generated_site.out / "index.html").read_text()
    assert '<script>alert("title")' not in home and "onerror=\"alert('summary')" not in home


def test_tag_pages_and_search_index(generated_site):
    tags = (generated_site.out / "tags" / "index.html").read_text()
    for library in {lib for m in generated_site.modules for lib in m["libraries"]}:
        assert library in tags
    index = json.loads((generated_site.out / "search" / "search_index.json").read_text())
    assert any("zq00007word" in doc["text"] for doc in index["docs"])


def break_a_module(root: Path) -> Path:
    write_catalog(root, 3)
    broken = next((root / "catalog").iterdir()) / "module.yml"
    data = json.loads(broken.read_text())
    del data["title"]
    broken.write_text(json.dumps(data, indent=2))
    return broken


def test_invalid_catalog_fails_the_build_with_the_validators_messages(tmp_path):
    broken = break_a_module(tmp_path)
    with pytest.raises(UserError) as exc:
        build_site(MKDOCS_YML, site_dir=tmp_path / "public", catalog=tmp_path)
    message = str(exc.value)
    assert str(broken.relative_to(tmp_path)) in message or str(broken) in message
    assert "title" in message
    assert not (tmp_path / "public" / "index.html").exists()


def test_a_bad_deploy_base_url_is_refused(generated_site, tmp_path):
    with pytest.raises(UserError, match="must start with http"):
        build_site(
            MKDOCS_YML,
            site_dir=tmp_path / "out",
            catalog=generated_site.catalog_root,
            deploy_base_url="models.example.org/{id}",
        )


def test_cli_reports_a_bad_catalog_in_one_line(tmp_path):
    broken = break_a_module(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmarket",
            "site",
            "build",
            "--catalog",
            str(tmp_path),
            "-d",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "deepmarket: error:" in line]
    assert len(errors) == 1, result.stderr
    assert broken.parent.name in result.stderr


def test_repository_catalog_builds_with_mkdocs_strict(tmp_path):
    """The real catalog through plain `mkdocs build --strict`, as CI and publishing run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPMARKET_")}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "public")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "public" / "api" / "modules.json").read_text())
    ids = [
        line.split(":", 1)[1].strip()
        for line in (REPO / "modules.yml").read_text().splitlines()
        if line.strip().startswith("- id:")
    ]
    assert [m["id"] for m in index["modules"]] == ids
    assert "WARNING" not in result.stderr


def test_site_dir_in_docs_dir_is_not_reused(generated_site):
    # Generated pages are virtual: nothing lands in the repository's docs directory.
    assert not (REPO / "site" / "modules").exists()
    assert not list(Path(REPO / "site").glob("api/*.json"))


def test_site_serve_serves_the_marketplace(generated_site, tmp_path):
    """`deepmarket site serve` (what `make run` ends with) answers with the home page."""
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepmarket",
                "site",
                "serve",
                "--port",
                str(port),
                "--catalog",
                str(generated_site.catalog_root),
            ],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    home = answer.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert home.count('class="dm-card"') == len(generated_site.modules)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_module_pages_carry_schema_org_jsonld(generated_site):
    for data in generated_site.modules:
        published = generated_site.out / "api" / "modules" / f"{data['id']}.jsonld"
        doc = json.loads(published.read_text())
        assert doc["@type"] == "SoftwareApplication" and doc["name"] == data["title"]
        html = (generated_site.out / "modules" / data["id"] / "index.html").read_text()
        head = html[: html.index("</head>")]
        found = re.search(r'<script type="application/ld\+json">(.*?)</script>', head)
        assert found, data["id"]
        assert json.loads(found.group(1)) == doc
