"""The operator's image and its install, without a cluster: what the image installs is what
the operator imports, the build context is only what the Dockerfile copies, the install keeps
the CRDs on uninstall, and the readiness endpoint answers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from deepmarket.controller import runner
from deepmarket.devcluster import images, nodeconfig
from deepmarket.devcluster.controlplane import free_ports

ROOT = Path(__file__).resolve().parents[1]
# What controller/Dockerfile copies from the repository (.dockerignore lets only these through).
CONTEXT = images.OPERATOR_CONTEXT


def _requirements() -> dict[str, str]:
    out = {}
    for line in (ROOT / "controller" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out[re.split(r"[\[<>=]", line, maxsplit=1)[0].lower()] = line
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_requirements_are_pyproject_dependencies_with_the_same_bounds():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {_norm(re.split(r"[\[<>=]", d, maxsplit=1)[0]): d for d in deps}
    for name, line in _requirements().items():
        # Extras may be dropped (a C speed-up without a wheel), never the bounds.
        assert re.sub(r"\[.*\]", "", declared.get(_norm(name), "")) == line, (
            f"{line!r} differs from pyproject.toml"
        )


def _closure(names: set[str]) -> set[str]:
    """Distributions `names` pull in (their requirements, transitively, extras included)."""
    seen: set[str] = set()
    todo = [_norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue  # an optional extra the image does not ask for
            todo.append(_norm(re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0]))
    return seen


def test_the_image_holds_every_package_the_operator_imports():
    # A fresh interpreter imports what `deepmarket controller run` imports, every resource's
    # setup and the catalog loader; every distribution that brings must be in the image.
    probe = (
        "import sys, json\n"
        "before = set(sys.modules)  # the interpreter's own start (site hooks)\n"
        "from importlib import metadata\n"
        "import deepmarket.cli, deepmarket.cli.controller_cmds\n"
        "from deepmarket.controller import runner\n"
        "import deepmarket.catalog, aiohttp.web\n"
        "from pathlib import Path\n"
        "deepmarket.catalog.load_catalog(Path(sys.argv[1]))\n"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "dists = metadata.packages_distributions()\n"
        "print(json.dumps(sorted({d for t in tops for d in dists.get(t, [])})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded = {_norm(d) for d in json.loads(out.stdout)} - {"deepmarket"}
    allowed = _closure(set(_requirements()))
    # Imported when present, not needed: ruamel.yaml falls back to its pure-Python parser.
    optional = {"ruamel-yaml-clibz"}
    missing = sorted(loaded - allowed - optional)
    assert missing == [], (
        f"the operator imports {missing}, which controller/requirements.txt does not install "
        "(add them there, with pyproject.toml's bounds)"
    )


def test_local_build_context_is_what_dockerignore_lets_through_on_github():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == set(CONTEXT)
    copied = set(
        re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "controller/Dockerfile").read_text(), re.M)
    )
    sources = {part for line in copied for part in line.split()}
    assert sources <= set(CONTEXT), sources


def test_dockerfile_takes_its_base_as_an_argument_and_runs_unprivileged():
    text = (ROOT / "controller" / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, re.M)  # as the local base
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${RCLONE}", "${BASE}", "${BASE}"]
    assert re.search(r"^ARG RCLONE=rclone/rclone:[0-9.]+$", text, re.M)  # a pinned public one
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert "requirements.txt" in text and "[test]" not in text


def _kustomize(directory: Path) -> list[dict]:
    from deepmarket.devcluster.binaries import cache_root

    kubectl = next(cache_root().glob("k8s-*/kubectl"), None)
    if kubectl is None:
        why = "kubectl is not built yet (`deepmarket dev binaries`)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    out = subprocess.run(
        [str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_uninstall_keeps_the_crds_by_policy():
    docs = _kustomize(ROOT / "controller")
    crds = {d["spec"]["group"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert crds == {"deepmarket.dev"}
    (policy,) = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"] == "deepmarket-keep-crds"
    ]
    assert "oldObject.spec.group == 'deepmarket.dev'" in json.dumps(policy["spec"])
    (binding,) = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicyBinding"
        and d["spec"]["policyName"] == "deepmarket-keep-crds"
    ]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_readyz_answers_what_ready_says_and_healthz_what_healthy_says():
    (port,) = free_ports(1)
    state = {"healthy": True, "ready": False}

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    async def main() -> list[int]:
        site = await runner.serve_liveness(
            f"http://127.0.0.1:{port}/healthz", lambda: state["healthy"], lambda: state["ready"]
        )
        try:
            seen = [
                await asyncio.to_thread(status, "/healthz"),
                await asyncio.to_thread(status, "/readyz"),
            ]
            state["ready"] = True
            seen.append(await asyncio.to_thread(status, "/readyz"))
            state["healthy"] = False
            seen.append(await asyncio.to_thread(status, "/healthz"))
            return seen
        finally:
            await site.cleanup()

    assert asyncio.run(main()) == [200, 503, 200, 503]


def test_operator_context_and_its_key(tmp_path):
    ctx = tmp_path / "ctx"
    images.operator_context(ROOT, ctx)
    assert sorted(p.name for p in ctx.iterdir()) == [
        "README.md",
        "controller",
        "deepmarket",
        "pyproject.toml",
    ]
    assert not list(ctx.rglob("__pycache__")) and not list(ctx.rglob("*.egg-info"))
    assert (ctx / "controller" / "Dockerfile").is_file()
    key = images.content_key(ctx, "base")
    (ctx / "deepmarket" / "controller" / "runner.py").write_text("# changed\n")
    assert images.content_key(ctx, "base") != key
    assert images.content_key(ctx, "other-base") != images.content_key(ctx, "base")


def test_dev_overlay_runs_the_local_image_on_the_real_node():
    docs = _kustomize(ROOT / "overlays" / "dev")
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == images.OPERATOR_IMAGE
    assert container["imagePullPolicy"] == "Never"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    placement = nodeconfig.placement()
    assert pod["nodeSelector"] == placement["nodeSelector"]
    assert [{k: v for k, v in t.items()} for t in pod["tolerations"]] == placement["tolerations"]
    assert deploy["spec"]["replicas"] == 2 and "--leader-elect" in container["args"]
    # Everything else is the production install, unchanged.
    base = _kustomize(ROOT / "controller")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in base) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in docs
    )
