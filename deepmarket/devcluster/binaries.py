"""Find or build the control-plane binaries: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl and kwok; and, for the real node, kubelet and kube-proxy (built from the
same wrapper module, only when asked for), CoreDNS (tools/coredns: the cluster's DNS) and
containerd with its runc shim and `ctr` (tools/containerd: a pinned 2.x, not the distribution's).

Order of preference, per binary:

1. ``$KUBEBUILDER_ASSETS/<name>`` — an explicit directory (the envtest convention), taken as is;
2. ``<name>`` on PATH, only when its ``--version`` reports the pinned minor version (the
   ``kubectl`` on PATH is often a cloud-SDK dispatcher of another version, so PATH is never
   trusted blindly);
3. the cache, ``~/.cache/deepmarket/k8s-<version>/``, when its ``--version`` matches exactly;
4. otherwise ``go build`` from the Go module proxy through the wrapper modules in ``tools/``
   (versions pinned by their go.mod/go.sum) into that cache.

Version probes are remembered per (path, size, mtime) so a warm lookup execs nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deepmarket.errors import UserError

NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
K8S_TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
# The real node's binaries: a separate `go build` of the same module, so a cluster without a
# real node never waits for them.
K8S_NODE_TOOLS = ("kubelet", "kube-proxy")
DNS_NAMES = ("coredns",)
# containerd pinned to a 2.x release: Debian's 1.6 lacks the CRI RuntimeConfig call the kubelet
# needs from 1.38 on. The shim must sit beside containerd (see realnode: first on its PATH).
CONTAINERD_NAMES = ("containerd", "containerd-shim-runc-v2", "ctr")
NODE_NAMES = K8S_NODE_TOOLS + DNS_NAMES + CONTAINERD_NAMES
ALL_NAMES = NAMES + NODE_NAMES

TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools"

_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")

Progress = Callable[[str], None]


class BinariesUnavailable(UserError):
    """Some binaries are missing and cannot be built here (no Go, or the build failed)."""


@dataclass(frozen=True)
class Group:
    """One `go build` invocation: a wrapper module and the binaries it produces."""

    module_dir: Path
    packages: tuple[str, ...]  # import paths, in the order of `names`
    names: tuple[str, ...]
    version: str  # the pinned version, as the binaries' --version should report it
    ldflags: str
    tags: str = ""  # go build -tags
    cgo: bool = True  # False: CGO_ENABLED=0 (static, needs no C toolchain or headers)


@dataclass
class Binaries:
    """Resolved binary paths and the version each reports."""

    paths: dict[str, Path]
    versions: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)  # name -> where it came from

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    def describe(self) -> list[str]:
        return [
            f"{name:<24} {self.versions.get(name, '?'):<10} {self.paths[name]}"
            f"  ({self.sources.get(name, '?')})"
            for name in ALL_NAMES
            if name in self.paths
        ]


# --- pure decisions -----------------------------------------------------------------------


def module_version(go_mod: str, module: str) -> str:
    """The version `go_mod` (text of a go.mod) requires for `module`."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if not match:
        raise BinariesUnavailable(f"tools go.mod does not require {module}")
    return match.group(1)


def parse_version(text: str) -> str | None:
    """The first x.y.z in a `--version` output, as `vX.Y.Z`."""
    match = _VERSION_RE.search(text)
    return "v{}.{}.{}".format(*match.groups()) if match else None


def same_minor(a: str | None, b: str) -> bool:
    if a is None:
        return False
    ma, mb = _VERSION_RE.search(a), _VERSION_RE.search(b)
    return bool(ma and mb and ma.groups()[:2] == mb.groups()[:2])


def k8s_ldflags(version: str, build_date: str) -> str:
    """The -X flags Kubernetes' own build (hack/lib/version.sh) sets, so --version is true;
    -s -w drop debug symbols as release builds do (a third of the size). Link-time only, so
    Go's compile cache is reused."""
    major, minor, _ = _VERSION_RE.search(version).groups()  # type: ignore[union-attr]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("gitCommit", ""),
            ("buildDate", build_date),
        ):
            flags.append(f"-X '{pkg}.{key}={value}'")
    return " ".join(flags)


def build_groups(tools_dir: Path = TOOLS_DIR, build_date: str = "") -> list[Group]:
    """The three wrapper modules and what each builds, with versions read from their go.mod."""
    k8s = module_version((tools_dir / "k8s" / "go.mod").read_text(), "k8s.io/kubernetes")
    etcd = module_version((tools_dir / "etcd" / "go.mod").read_text(), "go.etcd.io/etcd/server/v3")
    kwok = module_version((tools_dir / "kwok" / "go.mod").read_text(), "sigs.k8s.io/kwok")
    coredns = module_version(
        (tools_dir / "coredns" / "go.mod").read_text(), "github.com/coredns/coredns"
    )
    containerd = module_version(
        (tools_dir / "containerd" / "go.mod").read_text(), "github.com/containerd/containerd/v2"
    )
    ctrd_version = "github.com/containerd/containerd/v2/version"
    # etcd and kwok first: small, and they do not wait on the long Kubernetes build.
    return [
        Group(
            tools_dir / "etcd",
            (".",),
            ("etcd",),
            etcd,
            f"-s -w -X 'go.etcd.io/etcd/api/v3/version.GitSHA={etcd} (go module)'",
        ),
        Group(
            tools_dir / "kwok",
            ("sigs.k8s.io/kwok/cmd/kwok",),
            ("kwok",),
            kwok,
            f"-s -w -X 'sigs.k8s.io/kwok/pkg/consts.Version={kwok.removeprefix('v')}'",
        ),
        Group(
            tools_dir / "k8s",
            tuple(f"k8s.io/kubernetes/cmd/{n}" for n in K8S_TOOLS),
            K8S_TOOLS,
            k8s,
            k8s_ldflags(k8s, build_date),
        ),
        Group(
            tools_dir / "k8s",
            tuple(f"k8s.io/kubernetes/cmd/{n}" for n in K8S_NODE_TOOLS),
            K8S_NODE_TOOLS,
            k8s,
            k8s_ldflags(k8s, build_date),
        ),
        # CoreDNS reports its version from a constant (coremain.CoreVersion).
        Group(tools_dir / "coredns", (".",), DNS_NAMES, coredns, "-s -w"),
        # No cgo: the btrfs snapshotter (C headers) is left out, the node uses overlayfs.
        Group(
            tools_dir / "containerd",
            tuple(f"github.com/containerd/containerd/v2/cmd/{n}" for n in CONTAINERD_NAMES),
            CONTAINERD_NAMES,
            containerd,
            f"-s -w -X '{ctrd_version}.Version={containerd.removeprefix('v')}' "
            f"-X '{ctrd_version}.Revision=go-module'",
            tags="no_btrfs",
            cgo=False,
        ),
    ]


def pinned_versions(tools_dir: Path = TOOLS_DIR) -> dict[str, str]:
    return {name: g.version for g in build_groups(tools_dir) for name in g.names}


def version_command(name: str) -> list[str]:
    if name == "coredns":
        return ["-version"]
    if name == "containerd-shim-runc-v2":
        return ["-v"]
    return ["version", "--client"] if name == "kubectl" else ["--version"]


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepmarket"


def cache_dir(env: Mapping[str, str] = os.environ, tools_dir: Path = TOOLS_DIR) -> Path:
    return cache_root(env) / f"k8s-{pinned_versions(tools_dir)['kube-apiserver']}"


# --- probing ------------------------------------------------------------------------------


class _Probes:
    """Remembers what `--version` printed for a file, keyed by path, size and mtime."""

    def __init__(self, memo: Path) -> None:
        self.memo = memo
        try:
            self.data: dict[str, list] = json.loads(memo.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def version(self, name: str, path: Path) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = str(path.resolve())
        hit = self.data.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        try:
            out = subprocess.run(
                [str(path), *version_command(name)],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
            version = parse_version(out.stdout + out.stderr) if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            version = None
        self.data[key] = [st.st_size, st.st_mtime_ns, version]
        self.dirty = True
        return version

    def save(self) -> None:
        if self.dirty:
            with contextlib.suppress(OSError):
                self.memo.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.memo.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(self.data, indent=1))
                tmp.replace(self.memo)


def find_binaries(
    env: Mapping[str, str] = os.environ,
    tools_dir: Path = TOOLS_DIR,
    names: tuple[str, ...] = NAMES,
) -> tuple[Binaries, list[str], list[str]]:
    """Look everywhere but build nothing. Returns (found, missing names, notes)."""
    pinned = pinned_versions(tools_dir)
    cache = cache_dir(env, tools_dir)
    probes = _Probes(cache / "probed.json")
    found = Binaries({}, {}, {})
    missing: list[str] = []
    notes: list[str] = []
    assets = env.get("KUBEBUILDER_ASSETS")
    for name in names:
        want = pinned[name]
        if assets and (Path(assets) / name).is_file():
            path = Path(assets) / name
            found.paths[name], found.sources[name] = path, "KUBEBUILDER_ASSETS"
            found.versions[name] = probes.version(name, path) or "unknown"
            continue
        on_path = shutil.which(name, path=env.get("PATH"))
        if on_path:
            got = probes.version(name, Path(on_path))
            if same_minor(got, want):
                found.paths[name], found.versions[name] = Path(on_path), got or want
                found.sources[name] = "PATH"
                continue
            notes.append(f"ignored {on_path}: it reports {got or 'no version'}, need {want}")
        cached = cache / name
        if cached.is_file():
            got = probes.version(name, cached)
            if got == want:
                found.paths[name], found.versions[name] = cached, got
                found.sources[name] = "cache"
                continue
            notes.append(f"stale {cached}: it reports {got or 'no version'}, need {want}")
        missing.append(name)
    probes.save()
    return found, missing, notes


# --- building -----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize builds between processes (several test sessions may start at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go() -> str | None:
    return shutil.which("go")


def _run_go_build(group: Group, out_dir: Path, progress: Progress) -> None:
    go = _go()
    assert go is not None
    # -buildvcs=false: the binaries do not depend on this repository's git state.
    base = [go, "build", "-v", "-buildvcs=false", "-ldflags", group.ldflags]
    if group.tags:
        base += ["-tags", group.tags]
    if group.packages == (".",):
        cmd = [*base, "-o", str(out_dir / group.names[0])]
    else:
        cmd = [*base, "-o", f"{out_dir}/", *group.packages]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=group.module_dir,
        env=None if group.cgo else {**os.environ, "CGO_ENABLED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    tail: list[str] = []
    count = 0
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(15):
            elapsed = int(time.monotonic() - started)
            progress(
                f"  … {', '.join(group.names)}: {count} packages compiled, "
                f"{elapsed // 60}m{elapsed % 60:02d}s"
            )

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            count += 1
            tail = [*tail[-39:], line.rstrip()]
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        done.set()
    if rc != 0:
        detail = "\n".join(line for line in tail if line.strip())
        raise BinariesUnavailable(
            f"go build of {', '.join(group.names)} in {group.module_dir} failed (exit {rc}):\n"
            f"{detail}"
        )


def ensure_binaries(
    progress: Progress | None = None,
    env: Mapping[str, str] = os.environ,
    tools_dir: Path = TOOLS_DIR,
    build: bool = True,
    names: tuple[str, ...] = NAMES,
) -> Binaries:
    """Return the `names` binaries, building the missing ones into the cache (unless `build`
    is off)."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    found, missing, notes = find_binaries(env, tools_dir, names)
    if not missing:
        return found
    cache = cache_dir(env, tools_dir)
    if not build or _go() is None:
        raise BinariesUnavailable(
            f"{', '.join(missing)} not found (looked in $KUBEBUILDER_ASSETS, on PATH and in "
            f"{cache}); install Go >= 1.26 (https://go.dev/dl/) and run "
            "`deepmarket dev binaries` to build them from the Go module proxy, or set "
            "KUBEBUILDER_ASSETS to a directory that holds them"
        )
    for note in notes:
        say(note)
    with _locked(cache.parent / f"{cache.name}.lock"):
        # Another process may have built them while we waited for the lock.
        found, missing, _ = find_binaries(env, tools_dir, names)
        if not missing:
            return found
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        groups = [g for g in build_groups(tools_dir, stamp) if set(g.names) & set(missing)]
        # Builds only run under the lock: any staging dir left here is from a killed build.
        for stale in cache.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = cache / f".build-{os.getpid()}"
        staging.mkdir(parents=True)
        try:
            for group in groups:
                hint = {
                    K8S_TOOLS: "; a cold build takes ~15 min on 2 cores, later builds reuse "
                    "Go's cache",
                    K8S_NODE_TOOLS: "; ~2 min once the control plane's build filled Go's cache",
                    DNS_NAMES: "; ~2 min, sharing the Kubernetes client in Go's cache",
                    CONTAINERD_NAMES: "; ~3 min cold on 2 cores",
                }.get(group.names, "")
                say(
                    f"building {', '.join(group.names)} {group.version} with go build "
                    f"(module {group.module_dir.relative_to(tools_dir.parent)}){hint}"
                )
                started = time.monotonic()
                _run_go_build(group, staging, say)
                probes = _Probes(staging / "probed.json")
                for name in group.names:
                    got = probes.version(name, staging / name)
                    if got != group.version:
                        raise BinariesUnavailable(
                            f"built {name} reports version {got}, expected {group.version}"
                        )
                    (staging / name).replace(cache / name)
                say(f"built {', '.join(group.names)} in {time.monotonic() - started:.0f}s")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        found, missing, _ = find_binaries(env, tools_dir, names)
    if missing:
        raise BinariesUnavailable(f"{', '.join(missing)} still missing after the build")
    return found


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.is_dir() else 0
