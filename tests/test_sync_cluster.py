"""GitOps against the real control plane: a real git repository served by `git http-backend`,
real HMAC-signed webhook deliveries, the operator as its own ServiceAccount, KWOK nodes.

Every broken-commit case (invalid YAML, schema errors, a listed module's folder gone, an empty
modules.yml, a deleted branch, an unreachable repository, a force-push, an empty render) must
leave every DeepModule in place — same uid, no delete in the audit log — with a reason in
status and an Event.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from catalog_factory import make_catalog, module_text, write_index, write_module
from gitrepos import GitHttpServer, bare_clone, commit_all, git, init_repo, need_git, push
from test_operator_cluster import SA_USER, Operator, socket_port
from test_operator_cluster import installed as installed

from deepmarket.cli import main as cli_main
from deepmarket.controller.sync.webhook import signature

pytestmark = pytest.mark.cluster

CS_PATH = "/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/catalogsources"
DM_PATH = "/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/deepmodules"
SECRET = "webhook-secret-for-tests"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    need_git()
    server = GitHttpServer(tmp_path_factory.mktemp("git-served"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sync_operator(installed, tmp_path_factory):
    work = tmp_path_factory.mktemp("sync-operator")
    with socket_port() as port:
        pass
    op = Operator(installed, work, "--webhook-listen", f"127.0.0.1:{port}",
                  "--git-cache", str(work / "git"), name="sync-operator")  # fmt: skip
    op.hook_port = port
    op.start()
    yield op
    op.stop()


class Catalog:
    """A catalog repository: a work tree we commit in, pushed to a bare repo the server serves."""

    def __init__(self, server: GitHttpServer, tmp: Path, name: str) -> None:
        self.server = server
        self.work = make_catalog(init_repo(tmp / f"{name}-work"), ["plants", "seeds"],
                                 deploy=("plants",))  # fmt: skip
        commit_all(self.work, "first catalog")
        self.bare = bare_clone(self.work, server.root / f"{name}.git")
        self.url = server.url(f"{name}.git")

    def commit(self, message: str, force: bool = False) -> str:
        commit_all(self.work, message)
        return push(self.work, self.bare, force=force)


def source_manifest(name: str, url: str, **spec) -> dict:
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "CatalogSource",
        "metadata": {"name": name},
        "spec": {"url": url, "interval": "10m", "webhook": {"secretRef": {"name": "hook"}},
                 **spec},
    }  # fmt: skip


def kapply(cluster, ns: str, *objs: dict) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


def hook_secret(cluster, ns: str) -> None:
    cluster.kubectl(
        "create", "secret", "generic", "hook", "-n", ns, f"--from-literal=secret={SECRET}"
    )


def cs_of(cluster, ns: str, name: str) -> dict:
    status, body = cluster.request("GET", CS_PATH.format(ns=ns) + f"/{name}")
    assert status == 200, body
    return body


def ready(cs: dict) -> dict:
    return next((c for c in cs.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})


def deepmodules(cluster, ns: str) -> dict[str, dict]:
    _, body = cluster.request("GET", DM_PATH.format(ns=ns))
    return {d["metadata"]["name"]: d for d in body["items"]}


def wait_attempted(cluster, ns: str, name: str, commit: str, reason: str) -> dict:
    """Until the source looked at `commit` and its Ready reason is `reason`."""
    got: dict = {}

    def done() -> bool:
        got.update(cs_of(cluster, ns, name))
        st = got.get("status", {})
        reconciling = {c["type"]: c for c in st.get("conditions", [])}.get("Reconciling", {})
        return (
            st.get("lastAttemptedRevision") == f"main@sha1:{commit}"
            and ready(got).get("reason") == reason
            and reconciling.get("status") == "False"  # not the status written mid-apply
        )

    try:
        cluster.wait_for(done, f"{ns}/{name} at {commit[:8]} with {reason}", timeout=90)
    except Exception as exc:
        raise AssertionError(
            f"{exc}; status was {json.dumps(got.get('status'), indent=1)}"
        ) from None
    return got


def deliver(port: int, ns: str, name: str, body: bytes, *, secret: str | None = SECRET,
            event: str = "push", delivery: str | None = None) -> tuple[int, dict]:  # fmt: skip
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4())}  # fmt: skip
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret.encode(), body)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/catalogsources/{ns}/{name}", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def push_event(after: str, ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": after,
                       "repository": {"full_name": "org/catalog"}}).encode()  # fmt: skip


def operator_writes(cluster, mark: int, ns: str, resources=("deepmodules", "catalogsources")):
    """The sync's write calls (DeepModules, CatalogSources) in `ns` since `mark`."""
    out = []
    for ev in cluster.audit_events(mark):
        if ev.get("stage") != "ResponseComplete" or ev.get("verb") not in WRITES:
            continue
        ref = ev.get("objectRef", {})
        if ev.get("user", {}).get("username") != SA_USER or ref.get("namespace") != ns:
            continue
        if ref.get("resource") == "deepmodules" and ref.get("subresource"):
            continue  # the DeepModule controller's status, not the sync's
        if ref.get("resource") in resources:
            out.append(f"{ev['verb']} {ref.get('resource')}/{ref.get('subresource', '')} "
                       f"{ref.get('name')}")  # fmt: skip
    return out


def sync_now(cluster, ns: str, name: str, *extra: str) -> int:
    return cli_main(["sync", name, "-n", ns, "--kubeconfig", str(cluster.kubeconfig),
                     "--timeout", "90", *extra])  # fmt: skip


# --- tests ------------------------------------------------------------------------------------


def test_crd_teaches_and_refuses_bad_sources(installed):
    out = installed.kubectl("explain", "catalogsource.spec.prune.maxDeletePercent").stdout
    assert "Guard against mass deletion" in out
    assert "catalogsources" in installed.kubectl("api-resources", "--categories=deepmarket").stdout
    bad = [
        ({"url": "ftp://example.org/x.git"}, "spec.url"),
        ({"url": "https://example.org/x.git", "interval": "5s"}, "at least 10s"),
        ({"url": "http://example.org/x.git", "secretRef": {"name": "c"}}, "only sent over https"),
        ({"url": "https://example.org/x.git", "path": "../up"}, "inside the repository"),
    ]
    for spec, message in bad:
        obj = {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "CatalogSource",
               "metadata": {"name": "bad", "namespace": "default"}, "spec": spec}  # fmt: skip
        done = installed.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj),
                                 check=False)  # fmt: skip
        assert done.returncode != 0 and message in done.stderr, (spec, done.stderr)


def test_a_merge_deploys_through_the_webhook_and_forgeries_do_nothing(
    sync_operator, git_server, namespace, tmp_path
):
    cluster, port = sync_operator.cluster, sync_operator.hook_port
    repo = Catalog(git_server, tmp_path, "merge")
    first = push(repo.work, repo.bare)
    hook_secret(cluster, namespace)
    kapply(cluster, namespace, source_manifest("main", repo.url))
    cs = wait_attempted(cluster, namespace, "main", first, "Succeeded")
    assert cs["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert cs["status"]["inventory"] == ["plants"] and cs["status"]["modules"] == 1
    assert cs["status"]["webhookPath"] == f"/hooks/catalogsources/{namespace}/main"
    plants = deepmodules(cluster, namespace)["plants"]
    (owner,) = plants["metadata"]["ownerReferences"]
    assert owner["kind"] == "CatalogSource" and owner["uid"] == cs["metadata"]["uid"]
    assert plants["spec"]["module"] == "plants"
    # The DeepModule operator resolves spec.module from the synced catalog: its image.
    cluster.wait_for(
        lambda: (
            deepmodules(cluster, namespace)["plants"].get("status", {}).get("image")
            == "deephdc/deep-oc-plants-classification-tf:1.2.0"
        ),
        "plants resolved from the synced catalog",
        timeout=90,
    )
    table = cluster.kubectl("get", "catalogsources", "-n", namespace).stdout
    assert table.split()[:5] == ["NAME", "REVISION", "READY", "MODULES", "AGE"]

    # A merge that sets deploy: true on seeds, announced by a signed push.
    write_index(repo.work, ["plants", "seeds"], deploy=("plants", "seeds"))
    second = repo.commit("deploy seeds")
    body = push_event(second)
    mark = cluster.audit_mark()
    forged = [
        deliver(port, namespace, "main", body, secret=None),  # unsigned
        deliver(port, namespace, "main", body, secret="not-the-secret"),
        deliver(port, namespace, "main", push_event(second, "refs/heads/feature")),
        deliver(port, namespace, "nope", body),
    ]
    assert [s for s, _ in forged] == [401, 403, 200, 404], forged
    assert "refs/heads/feature" in forged[2][1]["message"]
    big = b"{" + b" " * (6 * 1024 * 1024) + b"}"
    assert deliver(port, namespace, "main", big)[0] == 413
    assert operator_writes(cluster, mark, namespace) == []
    assert "seeds" not in deepmodules(cluster, namespace)
    delivery = str(uuid.uuid4())
    status, answer = deliver(port, namespace, "main", body, delivery=delivery)
    assert status == 202, answer
    cs = wait_attempted(cluster, namespace, "main", second, "Succeeded")
    assert sorted(cs["status"]["inventory"]) == ["plants", "seeds"]
    assert "seeds" in deepmodules(cluster, namespace)
    assert deliver(port, namespace, "main", body, delivery=delivery) == (
        200, {"status": 200, "message": f"duplicate delivery {delivery}; ignored"})  # fmt: skip
    assert deliver(port, namespace, "main", b"{}", event="ping")[0] == 200

    # A new image tag on main rolls the running module out.
    write_module(repo.work, "plants",
                 module_text(id="plants").replace("tf:1.2.0", "tf:1.3.0"))  # fmt: skip
    third = repo.commit("plants 1.3.0")
    assert deliver(port, namespace, "main", push_event(third))[0] == 202
    wait_attempted(cluster, namespace, "main", third, "Succeeded")

    def rolled() -> bool:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/plants"
        _, dep = cluster.request("GET", path)
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return image == "deephdc/deep-oc-plants-classification-tf:1.3.0"

    cluster.wait_for(rolled, "plants rolled out to 1.3.0", timeout=90)
    seeds_uid = deepmodules(cluster, namespace)["seeds"]["metadata"]["uid"]

    # An unchanged revision costs no write: `deepmarket sync` twice, then polls.
    assert sync_now(cluster, namespace, "main") == 0
    mark = cluster.audit_mark()
    cluster.kubectl("patch", "catalogsource", "main", "-n", namespace, "--type=merge",
                    "-p", '{"spec": {"interval": "10s"}}')  # fmt: skip
    polls = len(git_server.requests)
    cluster.wait_for(lambda: len(git_server.requests) >= polls + 2, "two polls", timeout=60)
    assert operator_writes(cluster, mark, namespace, ("deepmodules", "catalogsources")) in (
        [],
        ["patch catalogsources/status main"],  # observedGeneration of the interval change
    )
    mark = cluster.audit_mark()
    polls = len(git_server.requests)
    cluster.wait_for(lambda: len(git_server.requests) >= polls + 2, "two more polls", timeout=60)
    assert operator_writes(cluster, mark, namespace) == []
    assert deepmodules(cluster, namespace)["seeds"]["metadata"]["uid"] == seeds_uid


def test_broken_commits_never_delete_anything(sync_operator, git_server, namespace, tmp_path):
    cluster, port = sync_operator.cluster, sync_operator.hook_port
    repo = Catalog(git_server, tmp_path, "broken")
    write_index(repo.work, ["plants", "seeds"], deploy=("plants", "seeds"))
    good = repo.commit("deploy both")
    hook_secret(cluster, namespace)
    # Someone's own DeepModule with copied labels: never ours to prune.
    lookalike = {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "DeepModule",
                 "metadata": {"name": "lookalike",
                              "labels": {"deepmarket.dev/catalog-source": "main"}},
                 "spec": {"image": "ghcr.io/example/plants:1.2.0"}}  # fmt: skip
    kapply(cluster, namespace, lookalike, source_manifest("main", repo.url))
    wait_attempted(cluster, namespace, "main", good, "Succeeded")
    uids = {n: d["metadata"]["uid"] for n, d in deepmodules(cluster, namespace).items()}
    assert set(uids) == {"plants", "seeds", "lookalike"}
    mark = cluster.audit_mark()

    def kept(expect_reason: str, commit: str | None, via_hook: bool = True) -> dict:
        if via_hook and commit:
            assert deliver(port, namespace, "main", push_event(commit))[0] == 202
        else:
            sync_now(cluster, namespace, "main")
        if commit:
            cs = wait_attempted(cluster, namespace, "main", commit, expect_reason)
        else:
            cluster.wait_for(lambda: ready(cs_of(cluster, namespace, "main")).get("reason")
                             == expect_reason, expect_reason, timeout=90)  # fmt: skip
            cs = cs_of(cluster, namespace, "main")
        assert cs["status"]["lastAppliedRevision"] == f"main@sha1:{good}", expect_reason
        now = {n: d["metadata"]["uid"] for n, d in deepmodules(cluster, namespace).items()}
        assert now == uids, expect_reason
        assert (
            ready(cs)["status"] == "False" and f"keeping main@sha1:{good}" in ready(cs)["message"]
        )
        return cs

    # Invalid YAML: the message keeps file:line:col and names the commit.
    (repo.work / "catalog/seeds/module.yml").write_text("id: [seeds\n")
    c = repo.commit("broken yaml")
    cs = kept("InvalidCatalog", c)
    assert f"main@sha1:{c}" in ready(cs)["message"]
    assert "catalog/seeds/module.yml:2:1:" in ready(cs)["message"]
    stalled = {x["type"]: x for x in cs["status"]["conditions"]}["Stalled"]
    assert stalled["status"] == "True"
    # A schema error.
    write_module(repo.work, "seeds", module_text(id="seeds", license="'mit'"))
    cs = kept("InvalidCatalog", repo.commit("bad licence"))
    assert "catalog/seeds/module.yml:17:10: license:" in ready(cs)["message"]
    # A listed module whose folder is gone.
    write_module(repo.work, "seeds", module_text(id="seeds"))
    shutil.rmtree(repo.work / "catalog/plants")
    cs = kept("InvalidCatalog", repo.commit("plants folder gone"))
    assert "no module directory catalog/plants/" in ready(cs)["message"]
    # An empty modules.yml.
    write_module(repo.work, "plants", module_text(id="plants"))
    (repo.work / "modules.yml").write_text("")
    kept("InvalidCatalog", repo.commit("empty index"))
    # An empty render: a valid catalog that deploys nothing — the mass-deletion guard holds it.
    write_index(repo.work, ["plants", "seeds"], deploy=())
    empty = repo.commit("undeploy everything")
    cs = kept("PruneHeld", empty)
    assert cs["status"]["heldRevision"] == empty
    # A force-push back to an older history.
    git(repo.work, "reset", "-q", "--hard", f"{good}~1")
    write_index(repo.work, ["plants", "seeds"], deploy=("plants", "seeds"))
    (repo.work / "NOTES.md").write_text("rewritten history\n")
    rewritten = repo.commit("rewritten", force=True)
    cs = kept("HistoryRewritten", rewritten)
    assert cs["status"]["heldRevision"] == rewritten
    # A deleted branch (the push event's after is all zeros).
    git(repo.bare, "update-ref", "-d", "refs/heads/main")
    assert deliver(port, namespace, "main", push_event("0" * 40))[0] == 202
    kept("BranchNotFound", None, via_hook=False)
    # An unreachable repository.
    git(repo.work, "push", "-q", str(repo.bare), f"{good}:refs/heads/main")
    moved = repo.bare.with_name("moved.git")
    repo.bare.rename(moved)
    cs = kept("FetchFailed", None, via_hook=False)
    moved.rename(repo.bare)
    events = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")[1]["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["kind"] == "CatalogSource"}
    assert {"InvalidCatalog", "PruneHeld", "HistoryRewritten", "BranchNotFound",
            "FetchFailed"} <= reasons  # fmt: skip
    deletes = [w for w in operator_writes(cluster, mark, namespace) if w.startswith("delete")]
    assert deletes == []

    # Back to the good commit: healthy again, nothing re-created.
    assert sync_now(cluster, namespace, "main") == 0
    # The force-pushed history is approved by a person, then applied.
    git(repo.work, "push", "-q", "--force", str(repo.bare), f"{rewritten}:refs/heads/main")
    kept("HistoryRewritten", rewritten)
    assert sync_now(cluster, namespace, "main", "--approve") == 0
    cs = cs_of(cluster, namespace, "main")
    assert cs["status"]["lastAppliedRevision"] == f"main@sha1:{rewritten}"
    assert "heldRevision" not in cs["status"]
    assert {n: d["metadata"]["uid"] for n, d in deepmodules(cluster, namespace).items()} == uids


def test_an_approved_empty_render_prunes_only_what_the_source_owns(
    sync_operator, git_server, namespace, tmp_path
):
    cluster = sync_operator.cluster
    repo = Catalog(git_server, tmp_path, "prune")
    write_index(repo.work, ["plants", "seeds"], deploy=("plants", "seeds"))
    good = repo.commit("deploy both")
    hook_secret(cluster, namespace)
    users = {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": "users-own"},
        "spec": {"image": "ghcr.io/example/x:1.0.0"},
    }
    kapply(cluster, namespace, users, source_manifest("main", repo.url))
    wait_attempted(cluster, namespace, "main", good, "Succeeded")
    # One of two undeployed: within the guard, deleted at once.
    write_index(repo.work, ["plants", "seeds"], deploy=("plants",))
    one = repo.commit("undeploy seeds")
    assert sync_now(cluster, namespace, "main") == 0
    cs = cs_of(cluster, namespace, "main")
    assert cs["status"]["lastAppliedRevision"] == f"main@sha1:{one}"
    cluster.wait_for(lambda: "seeds" not in deepmodules(cluster, namespace), "seeds pruned")
    # All undeployed with Orphan: plants keeps running, no longer owned.
    cluster.kubectl("patch", "catalogsource", "main", "-n", namespace, "--type=merge",
                    "-p", '{"spec": {"prune": {"policy": "Orphan"}}}')  # fmt: skip
    write_index(repo.work, ["plants", "seeds"], deploy=())
    repo.commit("undeploy all")
    assert sync_now(cluster, namespace, "main") == 0
    dms = deepmodules(cluster, namespace)
    assert set(dms) == {"plants", "users-own"}
    assert dms["plants"]["metadata"].get("ownerReferences", []) == []
    assert cs_of(cluster, namespace, "main")["status"]["inventory"] == []


def test_credentials_come_from_a_secret_and_never_show(
    installed, sync_operator, namespace, tmp_path
):
    cluster = sync_operator.cluster
    need_git()
    (tmp_path / "served").mkdir()
    server = GitHttpServer(tmp_path / "served", auth=("reader", "pa55-w0rd-never-shown"))
    try:
        repo = Catalog(server, tmp_path, "private")
        first = push(repo.work, repo.bare)
        hook_secret(cluster, namespace)
        cluster.kubectl("create", "secret", "generic", "git", "-n", namespace,
                        "--from-literal=username=reader",
                        "--from-literal=password=wrong-password-never-shown")  # fmt: skip
        kapply(cluster, namespace, source_manifest("private", repo.url, secretRef={"name": "git"}))
        cluster.wait_for(lambda: ready(cs_of(cluster, namespace, "private")).get("reason")
                         == "FetchFailed", "credentials refused", timeout=90)  # fmt: skip
        cs = cs_of(cluster, namespace, "private")
        assert "refused the credentials" in ready(cs)["message"]
        assert "wrong-password" not in json.dumps(cs) and "wrong-password" not in (
            sync_operator.log.read_text()
        )
        good = base64.b64encode(b"pa55-w0rd-never-shown").decode()
        cluster.kubectl("patch", "secret", "git", "-n", namespace, "--type=merge",
                        "-p", json.dumps({"data": {"password": good}}))  # fmt: skip
        assert sync_now(cluster, namespace, "private") == 0
        cs = wait_attempted(cluster, namespace, "private", first, "Succeeded")
        assert "pa55" not in json.dumps(cs) and "pa55" not in sync_operator.log.read_text()
    finally:
        server.stop()


def test_a_commit_in_a_local_checkout_is_deployed_by_polling(sync_operator, namespace, tmp_path):
    """What `make run` does: a CatalogSource on the checkout's own repository (file://)."""
    cluster = sync_operator.cluster
    need_git()
    work = make_catalog(init_repo(tmp_path / "checkout"), ["plants", "seeds"], deploy=("plants",))
    first = commit_all(work, "catalog")
    source = source_manifest("local", work.as_uri(), interval="10s")
    del source["spec"]["webhook"]
    kapply(cluster, namespace, source)
    wait_attempted(cluster, namespace, "local", first, "Succeeded")
    write_index(work, ["plants", "seeds"], deploy=("plants", "seeds"))
    (work / "catalog/plants/README.md").write_text("# uncommitted edits are not deployed\n")
    git(work, "add", "modules.yml")
    git(work, "commit", "-q", "-m", "deploy seeds")
    second = git(work, "rev-parse", "HEAD")
    cs = wait_attempted(cluster, namespace, "local", second, "Succeeded")  # by the poll alone
    assert sorted(cs["status"]["inventory"]) == ["plants", "seeds"]


def test_a_users_deepmodule_of_the_same_name_is_left_alone(
    sync_operator, git_server, namespace, tmp_path
):
    cluster = sync_operator.cluster
    repo = Catalog(git_server, tmp_path, "conflict")
    write_index(repo.work, ["plants", "seeds"], deploy=("plants", "seeds"))
    good = repo.commit("deploy both")
    hook_secret(cluster, namespace)
    users = {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": "seeds"},
        "spec": {"image": "ghcr.io/example/users-seeds:2.0.0"},
    }
    kapply(cluster, namespace, users, source_manifest("main", repo.url))
    cs = wait_attempted(cluster, namespace, "main", good, "Conflict")
    assert "seeds" in ready(cs)["message"] and cs["status"]["inventory"] == ["plants"]
    seeds = deepmodules(cluster, namespace)["seeds"]
    assert seeds["spec"] == {"image": "ghcr.io/example/users-seeds:2.0.0"}
    assert not seeds["metadata"].get("ownerReferences")
    assert "deepmarket.dev/catalog-source" not in (seeds["metadata"].get("labels") or {})


def test_a_restarted_operator_resolves_from_the_last_good_revision(
    sync_operator, git_server, namespace, tmp_path
):
    """In a cluster there is no local directory: after a restart, while the branch's tip is
    broken, the DeepModules keep resolving from the last applied revision's catalog."""
    cluster = sync_operator.cluster
    repo = Catalog(git_server, tmp_path, "restart")
    good = push(repo.work, repo.bare)
    hook_secret(cluster, namespace)
    kapply(cluster, namespace, source_manifest("main", repo.url))
    wait_attempted(cluster, namespace, "main", good, "Succeeded")
    image = "deephdc/deep-oc-plants-classification-tf:1.2.0"

    def plants_ready() -> bool:
        status = deepmodules(cluster, namespace)["plants"].get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions", [])}
        return status.get("image") == image and conds.get("Ready", {}).get("status") == "True"

    cluster.wait_for(plants_ready, "plants Ready", timeout=90)
    write_module(repo.work, "plants", module_text(id="plants", license="'mit'"))
    broken = repo.commit("broken")
    assert sync_now(cluster, namespace, "main") == 1
    wait_attempted(cluster, namespace, "main", broken, "InvalidCatalog")
    before = deepmodules(cluster, namespace)["plants"]["status"]
    sync_operator.stop()
    shutil.rmtree(sync_operator.workdir / "git", ignore_errors=True)  # a new pod: no mirror
    sync_operator.start()
    assert sync_now(cluster, namespace, "main") == 1  # still broken, still kept
    cluster.wait_for(plants_ready, "plants still Ready from the last good revision", timeout=60)
    after = deepmodules(cluster, namespace)["plants"]["status"]
    ready_of = {c["type"]: c for c in after["conditions"]}["Ready"]
    was = {c["type"]: c for c in before["conditions"]}["Ready"]
    assert ready_of["lastTransitionTime"] == was["lastTransitionTime"]
    assert "CatalogUnavailable" not in sync_operator.tail(200)
    # The catalog really is there (not merely waited for): a deleted child comes back, built
    # from the last good revision's image.
    cluster.kubectl("delete", "deployment", "plants", "-n", namespace, "--wait=true")

    def recreated() -> bool:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/plants"
        status, dep = cluster.request("GET", path)
        return status == 200 and dep["spec"]["template"]["spec"]["containers"][0]["image"] == image

    cluster.wait_for(recreated, "plants' Deployment rebuilt from the last good revision", 90)
