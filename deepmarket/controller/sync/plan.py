"""What a valid catalog revision asks of the cluster (pure).

`plan_sync` takes the validated catalog, the CatalogSource and every DeepModule in its
namespace, and answers which DeepModules to apply, which to prune (delete or orphan, per the
policy), which names it may not touch, and whether the mass-deletion guard holds the revision.

Ownership is decided by the owner reference alone: a DeepModule is ours when its controller
reference carries this CatalogSource's uid. Labels are informational — anyone can copy a label,
so nothing that only looks like ours is ever updated or deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deepmarket import API_GROUP, API_VERSION
from deepmarket.catalog.model import Catalog, Module
from deepmarket.controller.compare import contains, content_hash
from deepmarket.controller.ownership import controller_reference

API = f"{API_GROUP}/{API_VERSION}"
KIND = "CatalogSource"
SOURCE_LABEL = f"{API_GROUP}/catalog-source"
REVISION_ANNOTATION = f"{API_GROUP}/catalog-revision"
DIGEST_ANNOTATION = f"{API_GROUP}/module-digest"
APPROVE_ANNOTATION = f"{API_GROUP}/approve-revision"
REQUESTED_AT_ANNOTATION = f"{API_GROUP}/requested-at"
REQUESTED_REVISION_ANNOTATION = f"{API_GROUP}/requested-revision"
DEFAULT_MAX_DELETE_PERCENT = 50
DEFAULT_AUTOSCALING = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilization": 80}


def revision_of(branch: str, commit: str) -> str:
    """Flux's revision notation: `main@sha1:<40 hex>`."""
    return f"{branch}@sha1:{commit}"


def commit_of(revision: str | None) -> str | None:
    """The commit id of a `branch@sha1:<hex>` revision (None for anything else)."""
    if not revision or "@sha1:" not in revision:
        return None
    return revision.rsplit("@sha1:", 1)[1] or None


def approved(source: Mapping[str, Any], commit: str) -> bool:
    """Whether the CatalogSource's approve annotation names `commit` (full id, a prefix of at
    least 7 characters, or a `branch@sha1:` revision)."""
    note = ((source.get("metadata") or {}).get("annotations") or {}).get(APPROVE_ANNOTATION, "")
    note = (commit_of(note) or note).strip().lower()
    return len(note) >= 7 and commit.startswith(note)


def module_digest(module: Module) -> str:
    """What of a module changes the service it runs: a new digest rolls its DeepModule out."""
    data = module.data
    return content_hash(
        {
            "runtime": data.get("runtime"),
            "inference": (data.get("resources") or {}).get("inference"),
        }
    )


def owner_reference(source: Mapping[str, Any]) -> dict[str, Any]:
    # Not blocking: deleting the source must not wait on its modules' foreground deletion.
    return controller_reference(source, KIND, block_owner_deletion=False)


def desired_deepmodule(module: Module, source: Mapping[str, Any], revision: str) -> dict[str, Any]:
    """The DeepModule a `deploy: true` module gets. The spec names only the catalog module: the
    operator resolves image, model, port and resources from the synced catalog, so a new image
    tag on main rolls out without a spec change."""
    meta = source["metadata"]
    return {
        "apiVersion": API,
        "kind": "DeepModule",
        "metadata": {
            "name": module.id,
            "namespace": meta["namespace"],
            "labels": {SOURCE_LABEL: meta["name"]},
            "annotations": {
                REVISION_ANNOTATION: revision,
                DIGEST_ANNOTATION: module_digest(module),
            },
            "ownerReferences": [owner_reference(source)],
        },
        "spec": {"module": module.id, "autoscaling": dict(DEFAULT_AUTOSCALING)},
    }


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def up_to_date(observed: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Everything we set is there; the revision annotation only moves when the module did."""
    want = dict(desired)
    meta = dict(want["metadata"])
    meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != REVISION_ANNOTATION}
    want["metadata"] = meta
    return contains(dict(observed), want)


@dataclass(frozen=True)
class Prune:
    name: str
    uid: str
    verb: str  # "delete" or "orphan"
    owner_index: int = 0  # where our reference sits in metadata.ownerReferences (for orphan)


@dataclass
class SyncPlan:
    namespace: str = ""
    applies: list[dict[str, Any]] = field(default_factory=list)
    prunes: list[Prune] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # wanted names held by someone else
    inventory: list[str] = field(default_factory=list)  # what we own once the plan is done
    held: str | None = None  # why the whole revision waits for approval (None: go ahead)

    @property
    def writes(self) -> int:
        return len(self.applies) + len(self.prunes)


def prune_limit(owned: int, max_percent: int) -> int:
    """How many of `owned` modules one revision may prune without approval (at least one)."""
    return max(1, owned * max_percent // 100)


def plan_sync(
    catalog: Catalog,
    source: Mapping[str, Any],
    revision: str,
    observed: Iterable[Mapping[str, Any]],
) -> SyncPlan:
    """The writes that bring the namespace to `revision` of a valid catalog (see module doc)."""
    spec = source.get("spec") or {}
    uid = source["metadata"]["uid"]
    prune_spec = spec.get("prune") or {}
    policy = prune_spec.get("policy", "Delete")
    max_percent = int(prune_spec.get("maxDeletePercent", DEFAULT_MAX_DELETE_PERCENT))
    by_name = {o["metadata"]["name"]: o for o in observed}
    plan = SyncPlan(namespace=source["metadata"]["namespace"])
    wanted: set[str] = set()
    for module in catalog:
        if not module.deploy:
            continue
        wanted.add(module.id)
        desired = desired_deepmodule(module, source, revision)
        have = by_name.get(module.id)
        if have is not None and not owned_by(have, uid):
            plan.conflicts.append(module.id)
            continue
        plan.inventory.append(module.id)
        if have is not None and have["metadata"].get("deletionTimestamp"):
            continue  # being deleted: re-created once it is gone (its DELETED event kicks us)
        if have is None or not up_to_date(have, desired):
            plan.applies.append(desired)
    owned = [o for o in by_name.values() if owned_by(o, uid)]
    for obj in sorted(owned, key=lambda o: o["metadata"]["name"]):
        meta = obj["metadata"]
        if meta["name"] in wanted or meta.get("deletionTimestamp"):
            continue
        if policy == "Orphan":
            refs = meta.get("ownerReferences") or []
            index = next(i for i, r in enumerate(refs) if r.get("uid") == uid)
            plan.prunes.append(Prune(meta["name"], meta["uid"], "orphan", index))
        else:
            plan.prunes.append(Prune(meta["name"], meta["uid"], "delete"))
    limit = prune_limit(len(owned), max_percent)
    deletions = sum(p.verb == "delete" for p in plan.prunes)
    if deletions > limit and not approved(source, commit_of(revision) or ""):
        names = ", ".join(p.name for p in plan.prunes if p.verb == "delete")
        plan.held = (
            f"revision {revision} would delete {deletions} of the {len(owned)} DeepModules this "
            f"source deployed ({names}); more than spec.prune.maxDeletePercent "
            f"({max_percent}%) allows at once. If that is intended, approve it with "
            f"`deepmarket sync {source['metadata']['name']} --approve` (annotation "
            f"{APPROVE_ANNOTATION}={commit_of(revision)})"
        )
    return plan
