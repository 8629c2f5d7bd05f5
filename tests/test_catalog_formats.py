"""The string formats deepmarket enforces (the reference validators only annotate them)."""

from __future__ import annotations

import pytest

from deepmarket.catalog.formats import (
    check_date,
    check_doi,
    check_pinned_image,
    check_spdx,
    check_uri,
    parse_image,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "ref",
    [
        "deephdc/deep-oc-plants-classification-tf:1.2.0",
        "ai4oshub/ai4os-image-classification-tf:gpu",
        "ghcr.io/ai4os/demo-app:v2.0.1-cpu",
        "localhost:5000/demo:1",
        "registry.example.org:5000/team/sub/model_x:2024.05",
        f"ubuntu@{DIGEST}",
        f"docker.io/library/ubuntu:latest@{DIGEST}",
    ],
)
def test_pinned_images(ref):
    assert check_pinned_image(ref) is None


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("deephdc/plants", "is not pinned"),
        ("deephdc/plants:latest", "'latest'"),
        ("Deephdc/plants:1", "lowercase"),
        ("deephdc/plants:1 2", "no spaces"),
        ("deephdc/plants:-bad", "invalid tag"),
        ("deephdc/plants@sha256:abc", "malformed digest"),
        ("exa_mple.org/x/y:1", "invalid registry host"),
        ("deephdc//plants:1", "lowercase"),
        ("", "lowercase"),
    ],
)
def test_unpinned_or_malformed_images(ref, reason):
    message = check_pinned_image(ref)
    assert message is not None and reason in message, message


def test_parse_image_splits_the_parts():
    assert parse_image("ghcr.io/a/b:1.0") == ("ghcr.io", "a/b", "1.0", None)
    assert parse_image("b") == ("docker.io", "b", None, None)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("MIT", True),
        ("Apache-2.0", True),
        ("GPL-3.0-only", True),
        ("GPL-3.0", True),  # deprecated ids stay valid SPDX ids
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", True),
        ("(MIT OR Apache-2.0) AND BSD-3-Clause", True),
        ("LicenseRef-proprietary", True),
        ("Apache-2.0+", True),
        ("mit", False),
        ("MIT or Apache-2.0", False),
        ("MIT OR", False),
        ("(MIT", False),
        ("MIT)", False),
        ("MIT Apache-2.0", False),
        ("MIT WITH Nope-exception", False),
        ("Proprietary", False),
        ("", False),
    ],
)
def test_spdx(value, ok):
    assert (check_spdx(value) is None) is ok, check_spdx(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://github.com/deephdc/x", True),
        ("http://www.image-net.org/challenges/LSVRC/", True),
        ("https://api.cloud.ifca.es:8080/swift/v1/x.tar.xz", True),
        ("https://[::1]:8080/x", True),
        ("github.com/deephdc/x", False),
        ("https://", False),
        ("https://exa mple.org", False),
        ("https://bad_host.org/x", False),
        ("https://x.org:notaport/", False),
    ],
)
def test_uri(value, ok):
    assert (check_uri(value) is None) is ok, check_uri(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("2024-02-29", True), ("2023-02-29", False), ("2024-2-1", False), ("24-01-01", False)],
)
def test_date(value, ok):
    assert (check_date(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("10.5281/zenodo.1234567", True),
        ("10.1007/s10462-020-09882-3", True),
        ("doi:10.5281/zenodo.1", False),
        ("https://doi.org/10.5281/zenodo.1", False),
        ("10.12/x", False),
    ],
)
def test_doi(value, ok):
    assert (check_doi(value) is None) is ok
