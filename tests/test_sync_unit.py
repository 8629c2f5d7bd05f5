"""The catalog sync's pure parts and its git shell, with real git repositories (no cluster).

The catalog read from git objects must say exactly what `deepmarket validate` says on a
checkout of the same commit; the plan never touches what it does not own; the webhook judge
refuses everything not signed with the secret.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pygit2
import pytest
from catalog_factory import make_catalog, module_text, write_index, write_module
from gitrepos import bare_clone, commit_all, git, init_repo, need_git, push

from deepmarket.catalog import scan_catalog
from deepmarket.catalog.model import Catalog, Module
from deepmarket.controller.catalogstore import PENDING, CatalogStore, Synced
from deepmarket.controller.sync.git import GitProblem, Mirror
from deepmarket.controller.sync.gitcatalog import read_catalog
from deepmarket.controller.sync.plan import (
    APPROVE_ANNOTATION,
    REVISION_ANNOTATION,
    desired_deepmodule,
    plan_sync,
    revision_of,
)
from deepmarket.controller.sync.status import Result, next_status, status_changed
from deepmarket.controller.sync.syncer import parse_duration
from deepmarket.controller.sync.webhook import Deliveries, judge, parse_path, signature

SECRET = b"s3cret-for-tests"


@pytest.fixture(autouse=True)
def _git():
    need_git()


# --- reading the catalog at a commit ----------------------------------------------------------


def problems_of(work: Path) -> tuple[list[str], list[str]]:
    """(what the disk validator says, what the git reader says) about the committed tree."""
    commit = commit_all(work, "state")
    _, disk = scan_catalog(work)
    repo = pygit2.Repository(str(work))
    read = read_catalog(repo, commit)
    assert read.commit == commit
    return [str(p) for p in disk], [str(p) for p in read.problems]


BREAKAGES = {
    "valid": lambda root: None,
    "invalid YAML": lambda root: (root / "catalog/plants/module.yml").write_text("id: [plants\n"),
    "schema error": lambda root: write_module(root, "plants", module_text(license="'mit'")),
    "listed module's folder gone": lambda root: __import__("shutil").rmtree(root / "catalog/seeds"),
    "empty modules.yml": lambda root: (root / "modules.yml").write_text(""),
    "modules: [] with folders left": lambda root: (root / "modules.yml").write_text(
        "modules: []\n"
    ),
    "readme missing": lambda root: (root / "catalog/plants/README.md").unlink(),
    "icon symlink out of the module": lambda root: (
        (root / "catalog/plants/icon.svg").unlink(),
        (root / "catalog/plants/icon.svg").symlink_to("../seeds/icon.svg"),
    ),
    "icon symlink inside the module": lambda root: (
        (root / "catalog/plants/icon.svg").rename(root / "catalog/plants/real.svg"),
        (root / "catalog/plants/icon.svg").symlink_to("real.svg"),
    ),
    "module dir is a symlink": lambda root: (root / "catalog/plants2").symlink_to("plants"),
    "active svg icon": lambda root: (root / "catalog/plants/icon.svg").write_text(
        "<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    ),
    "deploy without inference": lambda root: (
        write_module(root, "seeds", module_text(id="seeds", categories="[trainable]")),
        write_index(root, ["plants", "seeds"], deploy=("seeds",)),
    ),
    "readme not utf-8": lambda root: (root / "catalog/plants/README.md").write_bytes(b"\xff\xfe"),
    "implicit icon beside module.yml": lambda root: write_module(
        root, "plants", module_text(id="plants", icon=None)
    ),
    "scaffolded module left as is": lambda root: scaffold(root, "fresh"),
}


def scaffold(root: Path, module_id: str) -> None:
    """What `deepmarket new` writes (TODO text: warnings, or errors where the schema says so)."""
    import datetime as dt

    from deepmarket.catalog.scaffold import append_to_index, module_scaffold

    for rel, text in module_scaffold(module_id, dt.date(2026, 1, 1)).items():
        target = root / "catalog" / module_id / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    index = root / "modules.yml"
    index.write_text(append_to_index(index.read_text(), module_id))


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_git_reader_says_what_the_validator_says(tmp_path, breakage):
    work = make_catalog(init_repo(tmp_path / "work"), ["plants", "seeds"], deploy=("plants",))
    BREAKAGES[breakage](work)
    disk, from_git = problems_of(work)
    assert from_git == disk
    valid = breakage in (
        "valid",
        "icon symlink inside the module",
        "implicit icon beside module.yml",
        "scaffolded module left as is",  # warnings only: deployable, `validate` in CI refuses
    )
    assert valid == (not [p for p in disk if " warning:" not in p])
    assert all(":" in p for p in from_git)


def test_git_reader_builds_the_catalog_at_the_commit_under_a_path(tmp_path):
    work = init_repo(tmp_path / "work")
    make_catalog(work / "cat", ["plants", "seeds"], deploy=("plants",))
    first = commit_all(work, "first")
    write_index(work / "cat", ["plants", "seeds"], deploy=("plants", "seeds"))
    commit_all(work, "second")
    repo = pygit2.Repository(str(work))
    read = read_catalog(repo, first, "cat")
    assert read.valid, read.problems
    assert [(m.id, m.deploy) for m in read.catalog] == [("plants", True), ("seeds", False)]
    assert read.catalog.get("plants").readme == "# Plants\n"
    assert read.catalog.get("plants").image == "deephdc/deep-oc-plants-classification-tf:1.2.0"
    # The working tree moved on: the commit, not the disk, is what was read.
    assert [m.deploy for m in read_catalog(repo, "HEAD", "cat").catalog] == [True, True]
    # Problems carry the repository path of the file.
    (work / "cat/catalog/seeds/module.yml").write_text("id: [\n")
    broken = read_catalog(repo, commit_all(work, "broken"), "cat")
    assert broken.problems[0].file == "cat/catalog/seeds/module.yml"
    missing = read_catalog(repo, first, "nowhere")
    assert [str(p) for p in missing.problems] == [
        "nowhere/: directory does not exist at this commit"
    ]


def test_the_module_cache_rereads_only_changed_directories(tmp_path):
    work = make_catalog(init_repo(tmp_path / "work"), ["plants", "seeds"], deploy=("plants",))
    repo = pygit2.Repository(str(work))
    cache: dict = {}
    first = read_catalog(repo, commit_all(work, "first"), ".", cache)
    assert first.valid and len(cache) == 2
    kept = {k[0]: v for k, v in cache.items()}
    write_module(work, "seeds", module_text(id="seeds", license="'mit'"))
    second = read_catalog(repo, commit_all(work, "second"), ".", cache)
    again = {k[0]: v for k, v in cache.items()}
    assert again["catalog/plants/module.yml"] is kept["catalog/plants/module.yml"]
    assert again["catalog/seeds/module.yml"] is not kept["catalog/seeds/module.yml"]
    fresh = read_catalog(repo, "HEAD")
    assert [str(p) for p in second.problems] == [str(p) for p in fresh.problems] != []
    (work / "catalog/seeds/README.md").write_text("# changed only the README\n")
    write_module(work, "seeds", module_text(id="seeds"))
    read_catalog(repo, commit_all(work, "third"), ".", cache)
    assert len(cache) == 2


# --- the git shell ------------------------------------------------------------------------------


def test_mirror_fetches_only_a_moved_branch_and_sees_force_pushes(tmp_path):
    work = make_catalog(init_repo(tmp_path / "work"), ["plants"], deploy=("plants",))
    first = commit_all(work, "first")
    bare = bare_clone(work, tmp_path / "remote.git")
    mirror = Mirror(tmp_path / "cache", "uid-1", f"file://{bare}", "main")
    assert mirror.fetch() == first and mirror.has(first)
    assert mirror.fetch() == first  # unchanged: no fetch at all
    (work / "README.txt").write_text("more\n")
    second = push(work, bare) if commit_all(work, "second") else None
    assert mirror.fetch() == second and mirror.descends(second, first)
    git(work, "reset", "-q", "--hard", first)
    (work / "other.txt").write_text("rewritten\n")
    commit_all(work, "rewritten")
    rewritten = push(work, bare, force=True)
    assert mirror.fetch() == rewritten
    assert not mirror.descends(rewritten, second)
    other = Mirror(tmp_path / "cache", "uid-1", f"file://{bare}", "gone")
    assert other.fetch() is None  # no such branch
    nowhere = Mirror(tmp_path / "cache", "uid-2", f"file://{tmp_path}/nothing.git", "main")
    with pytest.raises(GitProblem) as exc:
        nowhere.fetch()
    assert exc.value.reason == "FetchFailed" and "nothing.git" in exc.value.message


def test_mirror_stops_a_fetch_past_its_size_cap(tmp_path):
    work = init_repo(tmp_path / "work")
    (work / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    commit_all(work, "big")
    bare = bare_clone(work, tmp_path / "remote.git")
    mirror = Mirror(tmp_path / "cache", "u", f"file://{bare}", "main", max_bytes=256 * 1024)
    with pytest.raises(GitProblem) as exc:
        mirror.fetch()
    assert "exceeded 256" in exc.value.message


# --- the plan ------------------------------------------------------------------------------------


def module(mid: str, deploy: bool = True, image: str = "reg/img:1.0") -> Module:
    data = {"id": mid, "categories": ["inference"], "runtime": {"image": image}}
    return Module(id=mid, data=data, dir=Path(mid), deploy=deploy)


def source(**spec) -> dict:
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "CatalogSource",
        "metadata": {"name": "main", "namespace": "ns", "uid": "src-uid", "annotations": {}},
        "spec": {"url": "file:///x", **spec},
    }


def observed(obj: dict, uid: str = "dm-uid") -> dict:
    out = json.loads(json.dumps(obj))
    out["metadata"]["uid"] = uid
    out["metadata"]["resourceVersion"] = "7"
    out["spec"]["port"] = 5000  # something the apiserver or a person added: ignored
    return out


REV1 = revision_of("main", "1" * 40)
REV2 = revision_of("main", "2" * 40)


def test_plan_applies_what_is_missing_and_nothing_when_up_to_date():
    src = source()
    cat = Catalog(root=Path(), modules=[module("a"), module("b", deploy=False)])
    plan = plan_sync(cat, src, REV1, [])
    assert [o["metadata"]["name"] for o in plan.applies] == ["a"]
    (a,) = plan.applies
    assert a["spec"] == {"module": "a", "autoscaling": {"minReplicas": 1, "maxReplicas": 3,
                                                        "targetCPUUtilization": 80}}  # fmt: skip
    assert a["metadata"]["ownerReferences"][0]["uid"] == "src-uid"
    # A new revision that does not change module a: no write, its revision annotation stays.
    again = plan_sync(cat, src, REV2, [observed(a)])
    assert again.writes == 0 and again.inventory == ["a"]
    # A new image for a: re-applied with the new revision.
    cat2 = Catalog(root=Path(), modules=[module("a", image="reg/img:2.0")])
    bumped = plan_sync(cat2, src, REV2, [observed(a)])
    assert bumped.applies[0]["metadata"]["annotations"][REVISION_ANNOTATION] == REV2


def test_plan_never_touches_what_it_does_not_own():
    src = source()
    cat = Catalog(root=Path(), modules=[module("a")])
    mine = desired_deepmodule(module("gone"), src, REV1)
    copied_labels = observed(desired_deepmodule(module("lookalike"), src, REV1), "x")
    copied_labels["metadata"]["ownerReferences"] = []  # labels copied, no owner reference
    users = observed(desired_deepmodule(module("a"), src, REV1), "y")
    users["metadata"]["ownerReferences"] = [{"uid": "someone-else", "controller": True}]
    plan = plan_sync(cat, src, REV2, [observed(mine, "m"), copied_labels, users])
    assert plan.applies == [] and plan.conflicts == ["a"]
    assert [(p.name, p.verb) for p in plan.prunes] == [("gone", "delete")]


def test_prune_policy_and_mass_deletion_guard():
    owned = [observed(desired_deepmodule(module(n), source(), REV1), f"u{n}") for n in "abcd"]
    empty = Catalog(root=Path(), modules=[])
    one_left = Catalog(root=Path(), modules=[module(n) for n in "abc"])
    assert plan_sync(one_left, source(), REV2, owned).held is None  # one of four: fine
    held = plan_sync(empty, source(), REV2, owned)
    assert held.held and "would delete 4 of the 4" in held.held
    approved = source()
    approved["metadata"]["annotations"][APPROVE_ANNOTATION] = "2" * 12
    assert plan_sync(empty, approved, REV2, owned).held is None
    assert plan_sync(empty, source(prune={"maxDeletePercent": 100}), REV2, owned).held is None
    orphan = plan_sync(empty, source(prune={"policy": "Orphan"}), REV2, owned)
    assert orphan.held is None and {p.verb for p in orphan.prunes} == {"orphan"}


# --- status ------------------------------------------------------------------------------------


def test_status_is_unchanged_by_an_unchanged_outcome_and_keeps_the_last_good_revision():
    ok = Result("Succeeded", "applied", attempted=REV1, applied=REV1, inventory=("a",))
    first = next_status(None, ok, generation=1, now="2026-01-01T00:00:00Z", webhook_path="/h")
    again = next_status(first, ok, generation=1, now="2026-01-01T00:05:00Z", webhook_path="/h")
    assert not status_changed(first, again)
    bad = Result("InvalidCatalog", "broken", attempted=REV2)
    after = next_status(first, bad, generation=1, now="2026-01-01T00:06:00Z", webhook_path="/h")
    assert after["lastAppliedRevision"] == REV1 and after["lastAttemptedRevision"] == REV2
    cond = {c["type"]: c for c in after["conditions"]}
    assert cond["Ready"]["status"] == "False" and cond["Stalled"]["status"] == "True"
    assert [h["reason"] for h in after["history"]] == ["InvalidCatalog", "Succeeded"]
    assert after["inventory"] == ["a"]


# --- the webhook judge --------------------------------------------------------------------------


def push_body(ref: str = "refs/heads/main", after: str = "a" * 40) -> bytes:
    return json.dumps({"ref": ref, "before": "b" * 40, "after": after}).encode()


def headers(body: bytes, event: str = "push", secret: bytes = SECRET, **extra) -> dict:
    h = {"X-GitHub-Event": event, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
         "X-Hub-Signature-256": signature(secret, body)}  # fmt: skip
    h.update(extra)
    return h


def test_webhook_accepts_only_signed_pushes_to_the_branch():
    body = push_body()
    ok = judge(headers(body), body, SECRET, "main")
    assert (ok.status, ok.revision) == (202, "a" * 40)
    assert judge(headers(body, event="ping"), body, SECRET, "main").status == 200
    unsigned = headers(body)
    del unsigned["X-Hub-Signature-256"]
    assert judge(unsigned, body, SECRET, "main").status == 401
    # SHA-1 signatures are not accepted, even correct ones.
    import hashlib
    import hmac

    sha1 = {
        **unsigned,
        "X-Hub-Signature": "sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest(),
    }
    assert judge(sha1, body, SECRET, "main").status == 401
    assert judge(headers(body, secret=b"wrong"), body, SECRET, "main").status == 403
    tampered = push_body(after="c" * 40)
    assert judge(headers(body), tampered, SECRET, "main").status == 403
    other = push_body(ref="refs/heads/feature")
    verdict = judge(headers(other), other, SECRET, "main")
    assert verdict.status == 200 and verdict.revision is None
    assert judge(headers(body), body, None, "main").status == 503
    junk = b"payload=%7B%7D"
    assert judge(headers(junk), junk, SECRET, "main").status == 400
    deleted = push_body(after="0" * 40)
    assert judge(headers(deleted), deleted, SECRET, "main").revision == "0" * 40


def test_delivery_ids_are_remembered_boundedly_and_paths_parse():
    seen = Deliveries(size=2)
    assert seen.first_time("a") and not seen.first_time("a")
    assert seen.first_time("b") and seen.first_time("c") and seen.first_time("a")
    assert parse_path("/hooks/catalogsources/ns/name") == ("ns", "name")
    assert parse_path("/hooks/catalogsources/ns") is None
    assert parse_path("/other/ns/name") is None


def test_durations_and_the_catalog_store():
    assert parse_duration("1m30s", 0) == 90 and parse_duration("250ms", 0) == 0.25
    assert parse_duration(None, 60) == 60
    with pytest.raises(ValueError):
        parse_duration("5 minutes", 0)
    store = CatalogStore()
    changed = []
    cat = Catalog(root=Path(), modules=[module("a")])
    dm = {"metadata": {"namespace": "ns", "ownerReferences": [
        {"kind": "CatalogSource", "uid": "src-uid", "controller": True}]}}  # fmt: skip
    assert store.for_deepmodule(dm, None) is PENDING
    store.listeners.append(lambda ns, ids: changed.append((ns, ids)))
    store.put(Synced("ns", "main", "src-uid", REV1, cat))
    store.put(Synced("ns", "main", "src-uid", REV1, cat))
    store.notify()
    assert changed == [("ns", frozenset({"a"}))]
    cat2 = Catalog(root=Path(), modules=[module("a"), module("b")])
    store.put(Synced("ns", "main", "src-uid", REV2, cat2))
    store.notify()
    store.notify()
    assert changed[1:] == [("ns", frozenset({"b"}))]
    assert store.for_deepmodule(dm, None) is cat2
    assert store.for_deepmodule({"metadata": {"namespace": "ns"}}, None) is cat2
    assert store.for_deepmodule({"metadata": {"namespace": "other"}}, None) is None


# --- the demo's CatalogSource -------------------------------------------------------------------


def test_demo_points_a_catalog_source_at_the_checkout(tmp_path):
    from deepmarket import demo

    work = make_catalog(init_repo(tmp_path / "work"), ["plants", "seeds"], deploy=("plants",))
    (work / "sub").mkdir()
    commit_all(work, "catalog")
    url, branch, path = demo.git_location(work)
    assert (url, branch, path) == (work.resolve().as_uri(), "main", ".")
    assert demo.git_location(work / "sub")[2] == "sub"
    assert demo.git_location(tmp_path) is None
    cs = demo.catalog_source_manifest("deepmarket", url, branch, path)
    assert cs["spec"] == {"url": url, "branch": "main", "path": ".", "interval": "10s"}
    # What is committed is what gets deployed, not the working tree.
    write_index(work, ["plants", "seeds"], deploy=("plants", "seeds"))
    assert [m.id for m in demo.committed_modules(work, "main", ".")] == ["plants"]
    old = [{"metadata": {"name": "plants"}},
           {"metadata": {"name": "seeds", "ownerReferences": [{"uid": "x"}]}},
           {"metadata": {"name": "other"}}]  # fmt: skip
    assert demo.left_by_an_older_demo(old, ["plants", "seeds"]) == ["plants"]
