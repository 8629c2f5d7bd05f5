"""What `deepmarket dev images` and the real node remove from their image stores: only
deepmarket's own images that nothing current uses, never anything else."""

from __future__ import annotations

from deepmarket.devcluster.imagegc import (
    ImageRecord,
    archive_garbage,
    containerd_garbage,
    parse_ctr_containers,
    parse_ctr_images,
    podman_garbage,
)

CATALOG = {"ghcr.io/deepmarket/digits-classifier:1.0.0"}
ROWS = [
    ("ghcr.io/deepmarket/digits-classifier:1.0.0", "sha256:d1"),
    ("localhost/deepmarket/operator:dev", "sha256:op2"),
    ("localhost/deepmarket/python:3.11-bookworm", "sha256:base"),
    ("localhost/deepmarket/old-module:1", "sha256:old"),
    ("example.org/someone/else:1", "sha256:foreign"),
    # the CRI plugin's records named by image ID, pointing at the same manifests
    ("sha256:cfg-d1", "sha256:d1"),
    ("sha256:cfg-op1", "sha256:op1"),
    ("sha256:cfg-op2", "sha256:op2"),
    ("sha256:cfg-old", "sha256:old"),
    ("sha256:cfg-foreign", "sha256:foreign"),
]
# as `ctr images ls` prints them
CTR_LS = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n" + "".join(
    f"{ref}  application/vnd.docker.distribution.manifest.v2+json  {digest}  5.0 MiB  "
    "linux/amd64  io.cri-containerd.image=managed\n"
    for ref, digest in ROWS
)
CURRENT = [
    "localhost/deepmarket/pause:1",
    "localhost/deepmarket/python:3.11-bookworm",
    "localhost/deepmarket/operator:dev",
    "ghcr.io/deepmarket/digits-classifier:1.0.0",
]


def test_the_node_drops_replaced_images_and_their_id_records_but_nothing_foreign():
    records = parse_ctr_images(CTR_LS)
    assert ImageRecord("localhost/deepmarket/operator:dev", "sha256:op2") in records
    assert len(records) == 10
    assert containerd_garbage(records, CURRENT, CATALOG) == [
        "localhost/deepmarket/old-module:1",  # ours, no longer in the bundle
        "sha256:cfg-op1",  # the operator build the tag moved away from
        "sha256:cfg-old",
    ]
    # Nothing current: every name of ours goes, the foreign image and its ID stay.
    gone = containerd_garbage(records, [], CATALOG)
    assert "example.org/someone/else:1" not in gone and "sha256:cfg-foreign" not in gone
    assert "ghcr.io/deepmarket/digits-classifier:1.0.0" in gone  # a catalog name is ours
    # An ID record that a foreign name shares content with is kept.
    shared = [*records, ImageRecord("docker.io/library/mine:1", "sha256:old")]
    assert "sha256:cfg-old" not in containerd_garbage(shared, CURRENT, CATALOG)
    assert containerd_garbage(records, [r.name for r in records], CATALOG) == ["sha256:cfg-op1"]
    # An image a container runs stays, whatever the bundle says.
    used = parse_ctr_containers(
        "CONTAINER IMAGE RUNTIME\nabc localhost/deepmarket/old-module:1 io.containerd.runc.v2\n"
    )
    assert used == {"localhost/deepmarket/old-module:1"}
    assert containerd_garbage(records, CURRENT, CATALOG, used) == ["sha256:cfg-op1"]


def test_old_archives_go_once_they_are_neither_current_nor_fresh():
    now = 10_000.0
    files = {
        "operator_dev-new.tar": now - 5000,
        "operator_dev-old.tar": now - 5000,
        "operator_dev-other-checkout.tar": now - 60,  # another build, minutes ago
        "python-base-oldrecipe.tar": now - 9000,
        "node-images-old.partial": now - 9000,  # a killed save
        "rclone-abc.stamp": now - 9000,  # not an archive
    }
    assert archive_garbage(files, {"operator_dev-new.tar"}, now) == [
        "node-images-old.partial",
        "operator_dev-old.tar",
        "python-base-oldrecipe.tar",
    ]


def image(id_: str, parent: str = "", names=(), history=(), created=0.0, containers=0) -> dict:
    return {
        "Id": id_,
        "ParentId": parent,
        "Names": list(names),
        "History": list(history),
        "Created": created,
        "Containers": containers,
    }


def test_podman_drops_untagged_builds_from_the_local_base_only():
    now = 100_000.0
    old = now - 7200
    images = [
        image("base", names=["localhost/deepmarket/python:3.11-bookworm"], created=old),
        # the current operator: tagged, and its ancestors are its layer cache
        image("op-step", "base", created=old),
        image("op", "op-step", names=["localhost/deepmarket/operator:dev"], created=old),
        # an earlier operator build and its build stage: untagged leftovers
        image("build-1", "base", created=old),
        image("build-2", "build-1", created=old),
        image("op-old", "base", history=["localhost/deepmarket/operator:dev"], created=old),
        # a build running now, and a leftover a container still uses
        image("fresh", "base", created=now - 60),
        image("in-use", "base", created=old, containers=1),
        # an old base image (recipe changed): untagged, no parent, ours by its history
        image("base-old", history=["localhost/deepmarket/python:3.11-bookworm"], created=old),
        # someone else's images, tagged or not
        image("theirs", names=["docker.io/library/debian:12"], created=old),
        image("theirs-dangling", "theirs", created=old),
        image("orphan", created=old),
    ]
    garbage = podman_garbage(images, now)
    assert set(garbage) == {"build-1", "build-2", "op-old", "base-old"}
    assert garbage.index("build-2") < garbage.index("build-1")  # children first
