"""One real node beside the simulated ones: containerd 2.x (built from tools/containerd) +
runc (Debian), the kubelet and kube-proxy (built from tools/k8s), joined to a running
`ControlPlane` started with `node_ip=host_ip()`; and the cluster's DNS, CoreDNS
(tools/coredns), behind the `kube-dns` Service.

CoreDNS runs as a host process beside the kubelet, not as a pod: it is started and stopped by
PID with the node, it needs no image, and from the host it reaches the host's own resolver
(even a loopback stub such as systemd-resolved's 127.0.0.53, which pods cannot reach; pods
have no route to the outside either, their bridge does no NAT). It listens on the node's
address on a free port, answers only the node's pods and this host, and the `kube-dns` Service
(no selector) points at it through an EndpointSlice, so kube-proxy carries pods' queries to
10.0.0.10:53 there.

    with ControlPlane(controllers=True, node_ip=host_ip()) as cp, RealNode(cp, images=[...]):
        ...  # pods tolerating the node's taint and selecting its label really run

Only one real node runs on a machine at a time (kube-proxy owns the host's KUBE-* chains). A
record at /run/deepmarket/realnode.json says whose it is, which processes it runs and what the
host looked like before; `teardown()` undoes exactly that, also for a node whose owner was
killed with -9 (the next start, `deepmarket dev down` or `recover()` finds the record).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmarket.devcluster import hoststate, nodeconfig, processes
from deepmarket.devcluster.binaries import NODE_NAMES, Binaries, cache_root, ensure_binaries
from deepmarket.devcluster.config import kubeconfig
from deepmarket.devcluster.controlplane import ControlPlane, ControlPlaneError, free_ports
from deepmarket.devcluster.nodeconfig import NodePlan, NodePorts
from deepmarket.devcluster.pki import write_client_cert
from deepmarket.errors import UserError

RUN_DIR = Path("/run/deepmarket")
RECORD = RUN_DIR / "realnode.json"
LOCK = RUN_DIR / "realnode.lock"
STOP_ORDER = ("coredns", "kube-proxy", "kubelet", "containerd")
# containerd, its shim and ctr are no host tools: a pinned build (binaries.CONTAINERD_NAMES).
HOST_TOOLS = ("runc", "iptables", "ip6tables", "unshare", "mount", "ip")
_MNT_DETACH = 2
# containerd's root under ~/.cache/deepmarket/realnode (it outlives the node). 2.x has a root
# of its own: 1.6's root (`containerd`) stays as it was for checkouts that still run 1.6, and
# 2.x never migrates a metadata database an older containerd then cannot read.
CONTAINERD_ROOT = "containerd2"

Say = Callable[[str], None]


class RealNodeUnavailable(UserError):
    """This machine cannot run the real node (says why and how to fix it)."""


class RealNodeBusy(RealNodeUnavailable):
    """Another cluster's real node runs on this machine."""


# --- what the machine offers --------------------------------------------------------------


def host_ip() -> str:
    """The address of the interface holding the default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))  # TEST-NET-2: routed by the default route
        return s.getsockname()[0]


def gateway(pod_cidr: str) -> str:
    """The node bridge's address on the host (the CNI bridge's gateway): what its pods reach
    the host at, e.g. a git server the demo serves the checkout's repository from."""
    return str(next(ipaddress.ip_network(pod_cidr).hosts()))


def missing_prerequisites() -> list[str]:
    """Why this machine cannot run a real node; empty when it can."""
    why = []
    if platform.system() != "Linux":
        return [f"the real node needs Linux (this is {platform.system()})"]
    if os.geteuid() != 0:
        why.append("the real node needs root (containerd, the kubelet and iptables do)")
    tools = [t for t in HOST_TOOLS if not shutil.which(t)]
    if not (nodeconfig.CNI_BIN_DIR / "bridge").exists():
        tools.append(f"CNI plugins in {nodeconfig.CNI_BIN_DIR}")
    if tools:
        why.append(
            f"missing {', '.join(tools)}: run `bash scripts/install-system-deps.sh` "
            "(Debian: runc containernetworking-plugins iptables)"
        )
    if not _has_overlayfs():
        why.append("the kernel lacks overlayfs (containerd's snapshotter)")
    return why


def _has_overlayfs() -> bool:
    """overlayfs is registered, or is a module the kernel loads on the first mount (Ubuntu
    builds it as one; it shows in /proc/filesystems only once something used it)."""
    if "overlay" in Path("/proc/filesystems").read_text():
        return True
    modules = Path("/lib/modules") / platform.release()
    return any(modules.glob("kernel/fs/overlayfs/overlay.ko*")) or "overlay.ko" in (
        _read(modules / "modules.builtin") or ""
    )


def _host_networks() -> list[str]:
    out = subprocess.run(
        ["ip", "-o", "route", "show", "table", "all"], capture_output=True, text=True, timeout=10
    ).stdout
    nets = [line.split()[0] for line in out.splitlines() if line and line.split()[0][0].isdigit()]
    addrs = subprocess.run(
        ["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=10
    ).stdout
    nets += [line.split()[3] for line in addrs.splitlines() if len(line.split()) > 3]
    return nets


def free_dns_port(ip: str, attempts: int = 20) -> int:
    """A port free for both UDP and TCP on `ip` right now (DNS answers on both)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((ip, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((ip, port))
                except OSError:
                    continue
                return port
    raise ControlPlaneError(f"no port free for both UDP and TCP on {ip} after {attempts} tries")


def _nofile_limit() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1_000_000 if hard == resource.RLIM_INFINITY else min(hard, 1_000_000)


# --- the host-wide record ------------------------------------------------------------------


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_record() -> dict | None:
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None


def _write_record(record: dict) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    tmp = RECORD.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(RECORD)


def _owner_alive(record: dict) -> bool:
    """The record's owner still runs: the process that started it, or (for `dev up`, which
    exits) its kubelet or containerd, while its apiserver answers."""
    owner = record.get("owner_pid")
    if owner:  # a test run or bench: the node lives and dies with it
        return processes.alive(owner) and record.get("owner_start") == _start_time(owner)
    # `dev up`'s node outlives the command; once its cluster is gone (the apiserver stopped)
    # it serves no one: stale too.
    return _apiserver_answers(record.get("server", "")) and any(
        _runs(record, name) for name in ("kubelet", "containerd")
    )


def _apiserver_answers(server: str) -> bool:
    host, _, port = server.removeprefix("https://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except (OSError, ValueError):
        return False


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _runs(record: dict, name: str) -> bool:
    pid = record.get("pids", {}).get(name)
    command = record.get("commands", {}).get(name) or [""]
    return bool(pid) and processes.alive(pid) and processes.cmdline(pid)[:1] == command[:1]


def recover(say: Say | None = None) -> bool:
    """Tear down a recorded node whose owner is gone (killed -9). True if one was cleaned."""
    with _host_lock():
        record = read_record()
        if record is None or _owner_alive(record):
            return False
        (say or (lambda _m: None))("cleaning up a real node left by a killed process")
        teardown(record)
        return True


def ctr_command(record: dict) -> list[str]:
    """`ctr` talking to the recorded node's containerd in the CRI's namespace (the pinned ctr
    the node was started with; a record from before it was pinned names none)."""
    return [record.get("ctr") or "ctr", "-a", record["socket"], "-n", "k8s.io"]


def import_images(record: dict, archives: Sequence[Path]) -> bool:
    """Import `archives` into a running node's containerd (False when it does not run)."""
    if not _runs(record, "containerd"):
        return False
    for archive in archives:
        out = subprocess.run(
            [*ctr_command(record), "images", "import", str(archive)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise ControlPlaneError(f"importing {archive} failed: {out.stderr.strip()}")
    return True


def prune_images(record: dict, current: Iterable[str], say: Say) -> list[str]:
    """Delete the running node's images that `current` (the tags just imported) replaced:
    only deepmarket's own names and orphaned ID records (see imagegc)."""
    from deepmarket.devcluster import imagegc, images

    if not _runs(record, "containerd"):
        return []
    root = Path(record.get("containerd_root") or record["base"])
    return imagegc.prune_containerd(ctr_command(record), root, current, images.catalog_names(), say)


def wait_until_free(timeout: float = 900, say: Say | None = None) -> None:
    """Wait (bounded) until no other real node runs on this machine; a dead one is cleaned."""
    deadline = time.monotonic() + timeout
    while read_record() is not None and not recover(say):
        if time.monotonic() > deadline:
            raise RealNodeBusy(
                f"another real node kept this machine busy for {timeout:.0f}s "
                f"({(read_record() or {}).get('base')})"
            )
        time.sleep(2)


# --- teardown (also for records of killed owners) -----------------------------------------


def _signal_matching(predicate: Callable[[list[str]], bool], sig: int) -> list[int]:
    hit = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            cmd = processes.cmdline(pid)
            if cmd and predicate(cmd):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                hit.append(pid)
    return hit


def _kill_pod_processes() -> None:
    """Every process in a kubepods cgroup is a container's (the node's alone: one at a time)."""
    for directory in hoststate.cgroup_dirs():
        with contextlib.suppress(OSError):
            for pid in (Path(directory) / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)


def _umount(path: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.umount2(path.encode(), _MNT_DETACH)


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def teardown(record: dict) -> list[str]:
    """Undo everything `record` says the node created; returns what could not be undone."""
    problems: list[str] = []
    base = Path(record["base"])
    socket_path = record.get("socket", "")
    # 1. The node's processes, by PID, only while they still run the recorded binary.
    for name in STOP_ORDER:
        if _runs(record, name):
            processes.terminate(record["pids"][name], grace=10)
    # 2. Containers and their shims (children of no one once containerd is gone).
    _kill_pod_processes()
    shims = _signal_matching(
        lambda cmd: "containerd-shim" in cmd[0] and socket_path in cmd, signal.SIGKILL
    )
    _wait(lambda: not any(processes.alive(p) for p in shims), 10)
    # 3. Mounts under the node's dir and the network namespaces it made.
    before = hoststate.Snapshot.from_json(record["before"])
    for _attempt in range(3):
        stale = hoststate.mounts_to_undo(
            hoststate.read_mounts(),
            before.mounts,
            [base, hoststate.NETNS_DIR, Path(record.get("containerd_root") or base)],
        )
        if not stale:
            break
        for point in stale:
            _umount(point)
    netns = hoststate.NETNS_DIR
    for entry in list(netns.iterdir()) if netns.is_dir() else []:
        if entry.name not in before.netns and entry.name.startswith("cni-"):
            with contextlib.suppress(OSError):
                entry.unlink()

    # 4. cgroups: empty now, removed deepest first (a dying task can hold one a moment).
    def cgroups_gone() -> bool:
        for directory in hoststate.cgroup_dirs():
            if directory not in before.cgroups:
                with contextlib.suppress(OSError):
                    Path(directory).rmdir()
        return not [d for d in hoststate.cgroup_dirs() if d not in before.cgroups]

    if not _wait(cgroups_gone, 15):
        problems.append(f"cgroups left: {hoststate.cgroup_dirs()[:5]}")
    # 5. The bridge (its veths went with the network namespaces).
    bridge = record.get("bridge")
    if bridge and bridge not in before.links and Path(f"/sys/class/net/{bridge}").exists():
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)
    # 6. iptables: the chains kube-proxy, the kubelet and CNI added, and the jumps into them.
    now = hoststate.read_iptables()
    for family, tool in hoststate.FAMILIES.items():
        for step in hoststate.iptables_undo(before.iptables.get(family, {}), now.get(family, {})):
            subprocess.run([tool, "-w", "5", *step], capture_output=True, timeout=30)
    leftover = hoststate.read_iptables()
    for family in hoststate.FAMILIES:
        if hoststate.iptables_undo(before.iptables.get(family, {}), leftover.get(family, {})):
            problems.append(f"{family} iptables chains left")
    # 7. Sysctls the CNI bridge turned on (IP forwarding), back to their old values.
    for key, value in before.sysctls.items():
        if hoststate.read_sysctl(key) != value:
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text(value)
    # 8. Fixed paths that did not exist before, and the node's own dir.
    for path, existed in before.paths.items():
        if not existed and os.path.lexists(path):
            _umount_under(path)
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    if record.get("run_dir"):
        shutil.rmtree(record["run_dir"], ignore_errors=True)
    if base.exists():
        problems.append(f"{base} could not be removed")
    with contextlib.suppress(OSError):
        if (read_record() or {}).get("base") == str(base):
            RECORD.unlink()
    return problems


def _umount_under(path: str) -> None:
    for point in hoststate.mounts_to_undo(hoststate.read_mounts(), [], [Path(path)]):
        _umount(point)


# --- the node ------------------------------------------------------------------------------


class RealNode:
    """See the module docstring. `start()`/`stop()` or use it as a context manager."""

    def __init__(
        self,
        cp: ControlPlane,
        *,
        images: Sequence[Path] = (),
        pause_image: str,
        binaries: Binaries | None = None,
        die_with_parent: bool = True,
        progress: Say | None = None,
        timeout: float = 180.0,
        wait_busy: float = 0.0,
    ) -> None:
        if not cp.node_ip:
            raise ControlPlaneError("the control plane must be started with node_ip=host_ip()")
        self.cp = cp
        self.images = list(images)
        self.pause_image = pause_image
        self.binaries = binaries
        self.die_with_parent = die_with_parent
        self.say = progress or (lambda _m: None)
        self.timeout = timeout
        self.wait_busy = wait_busy
        self.procs: dict[str, subprocess.Popen] = {}
        self.record: dict[str, Any] = {}
        self.plan: NodePlan | None = None
        # seconds since containerd was started, per milestone (bench/realnode.py prints them)
        self.timings: dict[str, float] = {}

    @property
    def name(self) -> str:
        return nodeconfig.NODE_NAME

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_path(self, name: str) -> Path:
        assert self.plan is not None
        return self.plan.base / "logs" / f"{name}.log"

    def start(self) -> RealNode:
        why = missing_prerequisites()
        if why:
            raise RealNodeUnavailable("; ".join(why))
        if self.binaries is None:
            self.binaries = ensure_binaries(self.say, names=NODE_NAMES)
        self._claim()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _claim(self) -> None:
        """Take the host's one real-node slot (waiting up to `wait_busy` seconds for it)."""
        deadline = time.monotonic() + self.wait_busy
        told = False
        while True:
            recover(self.say)
            with _host_lock():
                other = read_record()
                if other is None:
                    self._begin()
                    return
            if time.monotonic() > deadline:
                raise RealNodeBusy(
                    f"another cluster's real node runs on this machine (dir {other['base']}, "
                    f"owner pid {other.get('owner_pid')}); stop it with `deepmarket dev down` "
                    "or wait for its tests to end"
                )
            if not told:
                self.say("waiting for another cluster's real node on this machine to stop")
                told = True
            time.sleep(2)

    def _begin(self) -> None:
        """Under the host lock: snapshot the host and write the record before changing it."""
        tag = hashlib.sha256(str(self.cp.workdir).encode()).hexdigest()[:10]
        base = nodeconfig.NODES_DIR / tag
        k = free_ports(5)
        node_ip = self.cp.node_ip or host_ip()
        resolv = _read(Path("/etc/resolv.conf")) or ""
        self.plan = NodePlan(
            base=base,
            node_ip=node_ip,
            pod_cidr=nodeconfig.choose_pod_cidr(_host_networks()),
            ports=NodePorts(*k[:4], dns=free_dns_port(node_ip), dns_ready=k[4]),
            resolv_conf=nodeconfig.kubelet_resolv_conf(
                resolv, Path(nodeconfig.SYSTEMD_RESOLV_CONF).exists()
            ),
            upstreams=nodeconfig.dns_upstreams(resolv, node_ip),
            runc=shutil.which("runc") or "/usr/sbin/runc",
            ca_cert=self.cp.workdir / "pki" / "ca.crt",
            run_dir=RUN_DIR / f"node-{tag}",
            containerd_root=cache_root() / "realnode" / CONTAINERD_ROOT,
            max_open_files=_nofile_limit(),
        )
        before = hoststate.snapshot(nodeconfig.FIXED_PATHS)
        if before.cgroups:
            raise RealNodeUnavailable(
                f"this machine already runs pods of another kubelet ({before.cgroups[-1]}); "
                "the dev cluster's real node cannot share it (use --no-real-node)"
            )
        self.record = {
            "base": str(base),
            "cluster": str(self.cp.workdir),
            "owner_pid": os.getpid(),
            "owner_start": _start_time(os.getpid()),
            "socket": str(self.plan.socket),
            "ctr": str(self.binaries["ctr"]) if self.binaries else "ctr",
            "run_dir": str(self.plan.run_dir),
            "containerd_root": str(self.plan.containerd_root),
            "bridge": self.plan.bridge,
            "pod_cidr": self.plan.pod_cidr,
            "dns": {
                "service_ip": nodeconfig.DNS_SERVICE_IP,
                "listen": f"{node_ip}:{self.plan.ports.dns}",
                "ready": f"127.0.0.1:{self.plan.ports.dns_ready}",
                "upstreams": list(self.plan.upstreams),
            },
            "node": self.plan.name,
            "server": self.cp.server,
            "pids": {},
            "commands": {},
            "before": before.to_json(),
        }
        _write_record(self.record)

    def _spawn(
        self, name: str, cmd: list[str], recorded: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.procs[name] = processes.spawn(
            cmd, self.log_path(name), die_with_parent=self.die_with_parent, env=env
        )
        self.record["pids"][name] = self.procs[name].pid
        self.record["commands"][name] = recorded
        _write_record(self.record)

    def _start(self) -> None:
        plan, cp, binaries = self.plan, self.cp, self.binaries
        assert plan is not None and binaries is not None and cp.pki is not None
        t0 = time.monotonic()
        for sub in ("logs", "containerd", "kubelet", "kubelet-pki", "sysctl", "pod-logs"):
            (plan.base / sub).mkdir(parents=True, exist_ok=True)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        plan.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (plan.cni_conf_dir / "10-deepmarket.conflist").write_text(
            json.dumps(nodeconfig.cni_conflist(plan), indent=1)
        )
        # Identities: the kubelet as system:node:<name> (Node authorizer), kube-proxy as
        # system:kube-proxy (bound to system:node-proxier by the bootstrap policy).
        write_client_cert(cp.pki, "kubelet", f"system:node:{plan.name}", "system:nodes")
        write_client_cert(cp.pki, "kube-proxy", "system:kube-proxy")
        write_client_cert(cp.pki, "coredns", nodeconfig.DNS_USER)
        kubeconfigs = {}
        for who in ("kubelet", "kube-proxy", "coredns"):
            path = plan.base / f"{who}.kubeconfig"
            path.write_text(json.dumps(kubeconfig(cp.server, cp.pki, component=who)))
            kubeconfigs[who] = path

        config = plan.base / "containerd.toml"
        config.write_text(nodeconfig.containerd_config(plan, self.pause_image))
        cmd = [str(binaries["containerd"]), f"--config={config}"]
        self._spawn("containerd", cmd, cmd, env=containerd_env(binaries, os.environ))
        t0 = time.monotonic()
        self._wait(lambda: self._ctr("version").returncode == 0, "containerd")
        self.timings["containerd answers"] = time.monotonic() - t0
        self.say(f"containerd answers ({time.monotonic() - t0:.1f}s)")
        # CoreDNS needs only the apiserver: it syncs while the images load and the kubelet
        # starts.
        self._start_dns(kubeconfigs["coredns"])
        marker = (plan.containerd_root or plan.base) / "deepmarket-imported.txt"
        imported = False
        for image in self.images:
            if _read(marker) == image.name:
                continue  # containerd's root (a cache) holds these images already
            started = time.monotonic()
            marker.unlink(missing_ok=True)
            out = self._ctr("images", "import", str(image), timeout=900)
            if out.returncode != 0:
                raise ControlPlaneError(f"importing {image} into containerd failed: {out.stderr}")
            marker.write_text(image.name)
            imported = True
            self.say(f"imported {image.name} ({time.monotonic() - started:.1f}s)")
        self.timings["images imported"] = time.monotonic() - t0
        if imported:
            # The root outlives the node: drop what the new images replaced.
            from deepmarket.devcluster.images import archive_tags

            tags = [tag for image in self.images for tag in archive_tags(image)]
            prune_images(self.record, tags, self.say)

        # The kubelet, in a mount namespace that shows it the sysctl values it wants. Its root
        # dir is a shared mount first, so the volumes it mounts there reach containerd.
        for key, value in nodeconfig.KUBELET_SYSCTLS.items():
            (plan.sysctl_dir / key.replace("/", "_")).write_text(value + "\n")
        root = str(plan.kubelet_root)
        if root not in hoststate.read_mounts():
            subprocess.run(["mount", "--bind", root, root], check=True, timeout=30)
        subprocess.run(["mount", "--make-rshared", root], check=True, timeout=30)
        kubelet_config = plan.base / "kubelet.json"
        kubelet_config.write_text(nodeconfig.to_json(nodeconfig.kubelet_config(plan)))
        kubelet = nodeconfig.kubelet_args(
            plan, binaries["kubelet"], kubelet_config, kubeconfigs["kubelet"]
        )
        self._spawn("kubelet", nodeconfig.namespaced_command(plan, kubelet), kubelet)
        self._wait(self._node_ready, f"node {plan.name} Ready")
        self.timings["node Ready"] = time.monotonic() - t0
        self.say(f"node {plan.name} Ready ({time.monotonic() - t0:.1f}s)")

        proxy_config = plan.base / "kube-proxy.json"
        proxy_config.write_text(
            nodeconfig.to_json(nodeconfig.kube_proxy_config(plan, kubeconfigs["kube-proxy"]))
        )
        cmd = [str(binaries["kube-proxy"]), f"--config={proxy_config}", "--v=1"]
        self._spawn("kube-proxy", cmd, cmd)
        self._wait(self._proxy_synced, "kube-proxy's first sync")
        self.timings["kube-proxy synced"] = time.monotonic() - t0
        self._wait(self._dns_ready, "CoreDNS's first sync with the apiserver")
        self.timings["DNS ready"] = time.monotonic() - t0
        self.say(
            f"kube-proxy synced, cluster DNS at {nodeconfig.DNS_SERVICE_IP}; real node up in "
            f"{time.monotonic() - t0:.1f}s"
        )

    def _start_dns(self, kubeconfig_path: Path) -> None:
        """The kube-dns Service, its EndpointSlice and CoreDNS's RBAC (server-side applied,
        so a restart finds them as it left them), then CoreDNS itself."""
        plan, cp, binaries = self.plan, self.cp, self.binaries
        assert plan is not None and binaries is not None
        for obj in nodeconfig.dns_objects(plan):
            status, body = cp.request(
                "PATCH",
                _object_path(obj) + "?fieldManager=deepmarket-realnode&force=true",
                obj,
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            if status not in (200, 201):
                raise ControlPlaneError(
                    f"creating {obj['kind']} {obj['metadata']['name']} for the cluster DNS "
                    f"failed ({status}): {body}"
                )
        corefile = plan.base / "Corefile"
        corefile.write_text(nodeconfig.corefile(plan, kubeconfig_path))
        cmd = nodeconfig.coredns_args(binaries["coredns"], corefile)
        self._spawn("coredns", cmd, cmd)

    def _ctr(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        assert self.plan is not None
        return subprocess.run(
            [*ctr_command(self.record), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _node_ready(self) -> bool:
        status, body = self.cp.request("GET", f"/api/v1/nodes/{self.name}")
        return status == 200 and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in body.get("status", {}).get("conditions", [])
        )

    def _proxy_synced(self) -> bool:
        assert self.plan is not None
        return _answers_ok(f"http://127.0.0.1:{self.plan.ports.proxy_healthz}/healthz")

    def _dns_ready(self) -> bool:
        assert self.plan is not None
        return _answers_ok(f"http://127.0.0.1:{self.plan.ports.dns_ready}/ready")

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode} while waiting for {what}; "
                        f"see {self.log_path(name)}:\n{_tail(self.log_path(name))}"
                    )
            with contextlib.suppress(OSError, ValueError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.timeout:.0f}s waiting for {what}; logs in "
                    f"{self.log_path('kubelet').parent}"
                )
            time.sleep(0.2)

    def detach(self) -> dict:
        """Forget the processes (they keep running, e.g. after `dev up` exits); the host
        record stays, so `teardown(read_record())` stops them later."""
        self.record["owner_pid"] = None
        _write_record(self.record)
        self.procs = {}
        return self.record

    def stop(self) -> list[str]:
        """Stop the node and undo its changes to the host. Returns what could not be undone."""
        if not self.record:
            return []
        with _host_lock():
            problems = teardown(self.record)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs = {}
        self.record = {}
        return problems


def containerd_env(binaries: Binaries, env: Mapping[str, str]) -> dict[str, str]:
    """containerd's environment: the pinned runc shim's dir first on PATH. containerd looks the
    shim up on PATH before its own dir, and a distribution's older shim may be there."""
    shim_dir = str(binaries["containerd-shim-runc-v2"].parent)
    path = env.get("PATH") or os.defpath
    return {**env, "PATH": f"{shim_dir}{os.pathsep}{path}"}


def _object_path(obj: dict) -> str:
    """The REST path of one object (the few kinds `nodeconfig.dns_objects` returns)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    plural = {
        "Service": "services",
        "EndpointSlice": "endpointslices",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
    }[obj["kind"]]
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{prefix}{ns}/{plural}/{meta['name']}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _answers_ok(url: str) -> bool:
    """Whether a local health endpoint answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
