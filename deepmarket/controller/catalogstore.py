"""The catalogs the operator resolves `spec.module` from (plain data shared by resources).

The catalog sync puts the last good revision of each CatalogSource here; the DeepModule
reconciler reads it. Neither imports the other: this store and `Catalog` are all they share.

Which catalog a DeepModule uses: the one of the CatalogSource that owns it; else the local
`--catalog` directory when the operator was given one; else the synced catalog of a
CatalogSource in its namespace (the first by name). A DeepModule owned by a source whose
catalog is not loaded yet (the operator just started and the sync has not run) gets `PENDING`:
its reconcile waits for the catalog instead of reporting it missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deepmarket.catalog.model import Catalog


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING: Any = _Pending()


@dataclass(frozen=True)
class Synced:
    namespace: str
    name: str
    uid: str
    revision: str
    catalog: Catalog


def changed_modules(before: Catalog | None, after: Catalog) -> set[str]:
    """Ids whose module.yml differs between two catalogs (all of `after`'s when no `before`)."""
    old = {m.id: m.data for m in before} if before is not None else {}
    new = {m.id: m.data for m in after}
    return {i for i in old.keys() | new.keys() if old.get(i) != new.get(i)}


class CatalogStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uid: dict[str, Synced] = {}
        # namespace → ids of modules that changed (or appeared, or went) since `notify`
        self._changed: dict[str, set[str]] = {}
        # Called by `notify`, on the event loop: (namespace, ids of the modules that changed).
        self.listeners: list[Callable[[str, frozenset[str]], None]] = []

    def put(self, synced: Synced) -> None:
        """Publish a catalog (from any thread); readers see it at once."""
        with self._lock:
            before = self._by_uid.get(synced.uid)
            self._by_uid[synced.uid] = synced
            if before is None or before.revision != synced.revision:
                ids = changed_modules(before.catalog if before else None, synced.catalog)
                if ids:
                    self._changed.setdefault(synced.namespace, set()).update(ids)

    def notify(self) -> None:
        """Tell the listeners which namespaces changed (call it on the event loop)."""
        with self._lock:
            changed, self._changed = self._changed, {}
        for namespace, ids in sorted(changed.items()):
            for listener in self.listeners:
                listener(namespace, frozenset(ids))

    def remove(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

    def get(self, uid: str) -> Synced | None:
        with self._lock:
            return self._by_uid.get(uid)

    def for_deepmodule(self, dm: Mapping[str, Any], local: Catalog | None) -> Catalog | None:
        meta = dm.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "CatalogSource" and ref.get("controller"):
                synced = self.get(str(ref.get("uid")))
                return synced.catalog if synced else PENDING
        if local is not None:
            return local
        with self._lock:
            here = [s for s in self._by_uid.values() if s.namespace == meta.get("namespace")]
        return min(here, key=lambda s: s.name).catalog if here else None
