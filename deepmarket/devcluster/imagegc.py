"""Keep the real node's image stores from growing without end: every module or operator
change makes a new image, and the old one stays behind in three places.

- the node's containerd (its root is a cache under ~/.cache/deepmarket/realnode): an
  image whose name moved to a new build keeps its content alive through the CRI plugin's
  `sha256:<id>` alias; `containerd_garbage` says which records to delete: deepmarket's own
  names (`localhost/deepmarket/...` and the catalog's names for the example modules) that the
  current bundle does not carry, and aliases no remaining name points at. Nothing else.
- the archives under ~/.cache/deepmarket/images: `archive_garbage` keeps the current ones and
  anything written lately (another checkout's build may be using it).
- podman's store, where `podman build` leaves the previous image and its build stages
  untagged: `podman_garbage` picks untagged images descending from deepmarket's own images
  (the local base, pause and rclone images are the roots), neither under a tag nor used by a
  container, and older than a grace period (a build running now owns the young ones).

The pure functions decide; `prune_*` run the commands and say what was freed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWN_PREFIX = "localhost/deepmarket/"
ARCHIVE_SUFFIXES = (".tar", ".partial")
GRACE_SECONDS = 30 * 60

Say = Callable[[str], None]


@dataclass(frozen=True)
class ImageRecord:
    """One containerd image record: its name and the manifest digest it points at."""

    name: str
    digest: str

    @property
    def alias(self) -> bool:
        """The CRI plugin's record named by the image ID (`sha256:<config digest>`)."""
        return self.name.startswith("sha256:")


# --- pure decisions -----------------------------------------------------------------------


def is_ours(name: str, catalog_names: Iterable[str]) -> bool:
    return name.startswith(OWN_PREFIX) or name in set(catalog_names)


def parse_ctr_containers(text: str) -> set[str]:
    """The images of `ctr containers ls` output (CONTAINER IMAGE RUNTIME)."""
    return {parts[1] for line in text.splitlines()[1:] if len(parts := line.split()) >= 2}


def parse_ctr_images(text: str) -> list[ImageRecord]:
    """`ctr images ls` output (REF TYPE DIGEST SIZE PLATFORMS LABELS) -> records."""
    records = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("sha256:"):
            records.append(ImageRecord(parts[0], parts[2]))
    return records


def containerd_garbage(
    records: Sequence[ImageRecord],
    current: Iterable[str],
    catalog_names: Iterable[str],
    in_use: Iterable[str] = (),
) -> list[str]:
    """Names to delete: our names the current bundle lacks (unless a container uses them),
    then aliases of content that no remaining name references. Foreign names (and their
    aliases) are always kept."""
    keep, catalog = set(current) | set(in_use), set(catalog_names)
    named = [r for r in records if not r.alias]
    stale = [r for r in named if is_ours(r.name, catalog) and r.name not in keep]
    kept = {r.digest for r in named if r not in stale}
    orphans = [r for r in records if r.alias and r.digest not in kept]
    return [r.name for r in stale] + [r.name for r in orphans]


def archive_garbage(
    files: Mapping[str, float], current: Iterable[str], now: float, grace: float = GRACE_SECONDS
) -> list[str]:
    """File names (name -> mtime) in the archives dir to delete: archives and partial saves
    that are not current and older than `grace`."""
    keep = set(current)
    return sorted(
        name
        for name, mtime in files.items()
        if name.endswith(ARCHIVE_SUFFIXES) and name not in keep and now - mtime > grace
    )


def podman_garbage(
    images: Sequence[Mapping[str, Any]], now: float, grace: float = GRACE_SECONDS
) -> list[str]:
    """IDs of untagged images descending from deepmarket's own, not under a tagged image,
    unused by containers and older than `grace`, children before their parents (`podman
    images -a --format json` entries: Id, ParentId, Names, History, Containers, Created)."""
    by_id = {i["Id"]: i for i in images}

    def parent(image: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return by_id.get(image.get("ParentId") or "")

    def chain(image: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        seen: list[Mapping[str, Any]] = []
        node: Mapping[str, Any] | None = image
        while node is not None and node not in seen:
            seen.append(node)
            node = parent(node)
        return seen

    def own_root(image: Mapping[str, Any]) -> bool:
        names = [*(image.get("Names") or []), *(image.get("History") or [])]
        return any(str(n).startswith(OWN_PREFIX) for n in names)

    protected = {a["Id"] for i in images if i.get("Names") for a in chain(i)}
    garbage = [
        i
        for i in images
        if not i.get("Names")
        and i["Id"] not in protected
        and not i.get("Containers")
        and now - float(i.get("Created") or now) > grace
        and any(own_root(a) for a in chain(i))
    ]
    # Deepest first: an image's children go before it.
    return [i["Id"] for i in sorted(garbage, key=lambda i: -len(chain(i)))]


# --- I/O -----------------------------------------------------------------------------------


def disk_usage(path: Path) -> int:
    """Bytes allocated under `path` (files only; links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_blocks * 512
            except OSError:
                continue
    return total


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def prune_containerd(
    ctr_command: Sequence[str],
    root: Path,
    current: Iterable[str],
    catalog_names: Iterable[str],
    say: Say,
) -> list[str]:
    """Delete the node's stale image records (containerd then collects their content);
    `ctr_command` is ctr with the node's socket and namespace (`realnode.ctr_command`)."""

    def ctr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ctr_command, *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    listed = ctr("images", "ls")
    if listed.returncode != 0:
        say(f"could not list the node's images: {listed.stderr.strip()}")
        return []
    containers = ctr("containers", "ls")
    if containers.returncode != 0:
        return []
    names = containerd_garbage(
        parse_ctr_images(listed.stdout),
        current,
        catalog_names,
        parse_ctr_containers(containers.stdout),
    )
    if not names:
        return []
    before = disk_usage(root)
    # --sync: return once containerd's garbage collector removed the content and snapshots.
    removed = ctr("images", "rm", "--sync", *names, timeout=600)
    if removed.returncode != 0:
        say(f"removing old images from the node failed: {removed.stderr.strip()}")
    freed = before - disk_usage(root)
    shown = [n for n in names if not n.startswith("sha256:")]
    say(
        f"removed {len(shown)} old image(s) from the node's containerd"
        f"{': ' + ', '.join(shown) if shown else ''} "
        f"({len(names) - len(shown)} ID record(s)); freed {mib(max(freed, 0))}"
    )
    return names


def prune_archives(
    cache: Path, current: Iterable[str], say: Say, grace: float = GRACE_SECONDS
) -> list[str]:
    files = {}
    for path in cache.iterdir() if cache.is_dir() else []:
        try:
            files[path.name] = path.stat().st_mtime
        except OSError:
            continue
    names = archive_garbage(files, current, time.time(), grace)
    freed = 0
    for name in names:
        path = cache / name
        try:
            freed += path.stat().st_size
            path.unlink()
        except OSError:
            continue
    if names:
        say(f"removed {len(names)} old archive(s) from {cache}; freed {mib(freed)}")
    return names


def prune_podman(say: Say) -> list[str]:
    listed = subprocess.run(
        ["podman", "images", "-a", "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if listed.returncode != 0:
        return []
    import json

    ids = podman_garbage(json.loads(listed.stdout or "[]"), time.time())
    if not ids:
        return []
    store = _podman_store()
    before = disk_usage(store) if store else 0
    # Children first, never forced: an image a container or another image still uses is
    # refused (and kept); podman goes on with the others.
    subprocess.run(["podman", "rmi", *ids], capture_output=True, timeout=900)
    after = subprocess.run(
        ["podman", "images", "-a", "-q", "--no-trunc"], capture_output=True, text=True, timeout=120
    ).stdout
    left = {line.strip().removeprefix("sha256:") for line in after.splitlines()}
    removed = [i for i in ids if i not in left]
    freed = before - disk_usage(store) if store else 0
    say(
        f"removed {len(removed)} untagged image(s) left by earlier builds from podman's store"
        + (f"; freed {mib(max(freed, 0))}" if store else "")
    )
    return removed


def _podman_store() -> Path | None:
    out = subprocess.run(
        ["podman", "info", "--format", "{{.Store.GraphRoot}}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    path = Path(out.stdout.strip())
    return path if out.returncode == 0 and path.is_dir() else None
