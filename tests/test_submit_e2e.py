"""From `deepmarket new` to a running module, in one test, with no one touching the cluster:

new → fill → `deepmarket submit` to the GitHub stand-in (fork, branch, pull request) → the
pull request's checks, run as validate.yml runs them → a maintainer merges on the stand-in →
the stand-in's HMAC-signed `push` webhook → the operator's catalog sync (CatalogSource) →
the DeepModule is Ready on the dev cluster (KWOK nodes) → the marketplace rebuilt from the
merged main lists the module.
"""

from __future__ import annotations

import json
import time

import github3
import pytest
from test_operator_cluster import installed as installed
from test_sync_cluster import (
    SECRET,
    cs_of,
    deepmodules,
    hook_secret,
    kapply,
    source_manifest,
    wait_attempted,
)
from test_sync_cluster import sync_operator as sync_operator

from deepmarket.cli import main
from tests.submit_helpers import (
    AUTHOR_TOKEN,
    MAINTAINER_TOKEN,
    fill_module,
    git,
    make_world,
    run_review_step,
)

pytestmark = pytest.mark.cluster

MODULE = "leaf-spotter"


def _condition(dm: dict, kind: str) -> dict:
    return next((c for c in dm.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def test_new_submit_review_merge_webhook_sync_ready_and_listed(
    sync_operator, namespace, tmp_path, monkeypatch
):
    cluster, port = sync_operator.cluster, sync_operator.hook_port
    world = make_world(tmp_path, with_site=True)
    standin, upstream = world.standin, world.upstream
    try:
        # The platform follows the catalog's main branch; its webhook comes from "GitHub".
        hook_secret(cluster, namespace)
        kapply(cluster, namespace, source_manifest("catalog", standin.clone_url(upstream)))
        first = standin.branch_sha(upstream, "main")
        wait_attempted(cluster, namespace, "catalog", first, "Succeeded")
        assert set(deepmodules(cluster, namespace)) == {"digits-classifier"}
        standin.add_webhook(
            upstream, f"http://127.0.0.1:{port}/hooks/catalogsources/{namespace}/catalog", SECRET
        )

        # The author: two commands, the second after filling in the module.
        monkeypatch.chdir(world.work)
        monkeypatch.setenv("GITHUB_TOKEN", AUTHOR_TOKEN)
        assert main(["new", MODULE]) == 0
        fill_module(world.work, MODULE)
        index = world.work / "modules.yml"
        index.write_text(
            index.read_text().replace(
                f"- id: {MODULE}\n    deploy: false", f"- id: {MODULE}\n    deploy: true"
            )
        )
        assert main(["submit", MODULE]) == 0
        (pull,) = standin.pulls["deepmarket/catalog"]
        assert (
            pull.head_repo.full_name == "alice/catalog" and "| Deploy on merge | yes" in pull.body
        )

        # The pull request's checks: validate.yml's review step, on the pull request's head.
        checkout = tmp_path / "pr"
        git(tmp_path, "clone", "--quiet", standin.clone_url(upstream), str(checkout))
        git(checkout, "fetch", "--quiet", "origin", f"refs/pull/{pull.number}/head:pr")
        git(checkout, "checkout", "--quiet", "pr")
        rc, output, _, comment = run_review_step(checkout, first, tmp_path)
        assert rc == 0, output
        assert f"✅ `{MODULE}`: valid; its marketplace page builds" in comment.read_text()

        # The maintainer merges; GitHub (the stand-in) sends the signed push webhook.
        maintainer = github3.GitHubEnterprise(standin.url, token=MAINTAINER_TOKEN)
        assert maintainer.pull_request("deepmarket", "catalog", pull.number).merge()
        merged = standin.branch_sha(upstream, "main")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            standin.deliveries and standin.deliveries[-1].status is not None
        ):
            time.sleep(0.1)
        (delivery,) = standin.deliveries
        assert delivery.status == 202, delivery  # the operator's receiver accepted it

        # The operator syncs that revision (the CatalogSource polls only every 10 minutes:
        # this is the webhook) and the new DeepModule becomes Ready on the KWOK nodes.
        cs = wait_attempted(cluster, namespace, "catalog", merged, "Succeeded")
        assert cs["status"]["lastAppliedRevision"] == f"main@sha1:{merged}"
        assert sorted(cs["status"]["inventory"]) == ["digits-classifier", MODULE]

        def ready() -> bool:
            dm = deepmodules(cluster, namespace).get(MODULE)
            return bool(dm) and _condition(dm, "Ready").get("status") == "True"

        cluster.wait_for(ready, f"DeepModule {MODULE} Ready", timeout=180)
        dm = deepmodules(cluster, namespace)[MODULE]
        assert dm["status"]["image"] == f"ghcr.io/alice-lab/{MODULE}:1.0.0"
        (owner,) = dm["metadata"]["ownerReferences"]
        assert owner["kind"] == "CatalogSource"
        assert owner["uid"] == cs_of(cluster, namespace, "catalog")["metadata"]["uid"]

        # The marketplace, rebuilt from the merged main, lists the module.
        site_src = tmp_path / "main"
        git(tmp_path, "clone", "--quiet", standin.clone_url(upstream), str(site_src))
        out = tmp_path / "public"
        monkeypatch.chdir(site_src)
        monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
        assert main(["site", "build", "-d", str(out)]) == 0
        listed = json.loads((out / "api" / "modules.json").read_text())
        ids = {m["id"] for m in (listed["modules"] if isinstance(listed, dict) else listed)}
        assert MODULE in ids
        assert (out / "modules" / MODULE / "index.html").is_file()
    finally:
        standin.stop()
    assert not standin.crashes, standin.crashes[0]
