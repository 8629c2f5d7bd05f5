"""A real, local Kubernetes control plane: etcd + kube-apiserver on free 127.0.0.1 ports,
optionally kube-controller-manager, kube-scheduler and KWOK with fake (GPU) nodes.

    with ControlPlane(controllers=True, nodes=gpu_nodes(2)) as cp:
        cp.kubectl("get", "nodes")

Every process is started and stopped by PID; the temp dir is removed on stop, also when the
body raises or the run is interrupted. Children of a test run die with it even on `kill -9`
(PR_SET_PDEATHSIG), unless `die_with_parent=False` (what `deepmarket dev up` uses).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepmarket.devcluster import config, processes
from deepmarket.devcluster.binaries import Binaries, ensure_binaries
from deepmarket.devcluster.config import NodeSpec, Ports
from deepmarket.devcluster.pki import Pki, write_pki
from deepmarket.errors import UserError

TEMP_PREFIX = "deepmarket-cp-"
PORT_ATTEMPTS = 3
# Stop order: clients of the apiserver first, etcd last.
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(UserError):
    """A component failed to start or a call against the cluster failed."""


def sweep_orphans(tmp: Path) -> None:
    """Remove temp dirs of control planes whose Python process was killed -9 (its children
    died with it, but nothing could remove the directory)."""
    for path in tmp.glob(f"{TEMP_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not processes.alive(owner):
            shutil.rmtree(path, ignore_errors=True)


def admin_context(pki_dir: Path) -> ssl.SSLContext:
    """TLS context trusting the cluster's CA and presenting the admin client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return ctx


def api_request(
    server: str,
    context: ssl.SSLContext,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """One HTTPS call to an apiserver; returns (status, decoded JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Accept": "application/json", **(headers or {})}
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(server + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, context=context, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel says are free right now on 127.0.0.1."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ControlPlane:
    """See the module docstring. `start()`/`stop()` or use it as a context manager."""

    def __init__(
        self,
        *,
        binaries: Binaries | None = None,
        workdir: Path | None = None,
        controllers: bool = False,
        kwok: bool = False,
        nodes: Sequence[NodeSpec] = (),
        audit_log: bool = False,
        die_with_parent: bool = True,
        progress: Callable[[str], None] | None = None,
        timeout: float = 120.0,
        apiserver_args: Sequence[str] = (),
        node_ip: str | None = None,
    ) -> None:
        self.binaries = binaries
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path()
        self.controllers = controllers
        self.kwok = kwok or bool(nodes)
        self.nodes = list(nodes)
        self.audit = audit_log
        self.die_with_parent = die_with_parent
        self.say = progress or (lambda _msg: None)
        self.timeout = timeout
        self.apiserver_extra = list(apiserver_args)  # e.g. --enable-admission-plugins=…
        self.node_ip = node_ip  # set when a real node joins (see realnode.py)
        self.procs: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}
        self.ports: Ports | None = None
        self.pki: Pki | None = None
        self._ssl: ssl.SSLContext | None = None
        self._local = threading.local()
        self._started = False

    # --- what callers use -------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def kubectl_path(self) -> Path:
        assert self.binaries is not None
        return self.binaries["kubectl"]

    @property
    def server(self) -> str:
        assert self.ports is not None
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def audit_log(self) -> Path:
        """JSON lines, one Metadata-level event per write call (when `audit_log=True`).

        `user.username` says who wrote: `deepmarket-admin` (this object, `kubeconfig`,
        `kubectl`), `system:kube-controller-manager`, `system:kube-scheduler` or `kwok`."""
        return self.workdir / "audit.log"

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the cache's kubectl against this cluster."""
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed (exit {result.returncode}): "
                f"{result.stderr.strip()}"
            )
        return result

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, Any]:
        """One call to the apiserver as the admin; returns (status, decoded JSON or text).

        Keeps one TLS connection per thread alive: polling loops and bulk creates would
        otherwise pay a handshake per call."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                assert self.ports is not None
                conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.ports.apiserver, context=self._context(), timeout=timeout
                )
                self._local.conn = conn
            try:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                # A kept-alive connection the server closed (e.g. after an apiserver
                # restart) gets one retry on a fresh one; a fresh one failing is real.
                if fresh or attempt == 2:
                    raise
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for this cluster (imported lazily)."""
        from kubernetes import config as kube_config

        return kube_config.new_client_from_config(config_file=str(self.kubeconfig))

    def audit_mark(self) -> int:
        """A position in the audit log; pass it to `audit_events` to see only later calls."""
        try:
            return self.audit_log.stat().st_size
        except FileNotFoundError:
            return 0

    def audit_events(self, since: int = 0) -> list[dict]:
        try:
            with self.audit_log.open("rb") as f:
                f.seek(since)
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self._started:
            return self
        self._started = True
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start()
                return self
            except ControlPlaneError:
                # Free ports are picked, then bound by the binaries: another cluster starting
                # at the same moment can take one in between. Then start over on new ports.
                if attempt == PORT_ATTEMPTS or not self._port_taken():
                    self.stop()
                    raise
                self.say("a port was taken by another process meanwhile; retrying on new ports")
                self._reset(attempt)
            except BaseException:
                self.stop()
                raise
        return self

    def _port_taken(self) -> bool:
        logs = self.workdir / "logs"
        return any(
            "address already in use" in log.read_text(errors="replace")
            for log in (logs.glob("*.log") if logs.is_dir() else [])
        )

    def _reset(self, attempt: int) -> None:
        own = self._own_dir
        self._own_dir = False  # keep the dir for the next attempt
        self.stop()
        self._own_dir = own
        for sub in ("etcd", "apiserver-certs", "pki"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        # Keep the failed attempt's logs apart, so the next attempt is judged on its own.
        (self.workdir / "logs").rename(self.workdir / f"logs-attempt-{attempt}")
        self._ssl = None
        self._local = threading.local()

    def _start(self) -> None:
        t0 = time.monotonic()
        if self.binaries is None:
            self.binaries = ensure_binaries(self.say)
        if self._own_dir and self.workdir == Path():
            sweep_orphans(Path(tempfile.gettempdir()))
            self.workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            (self.workdir / "owner.pid").write_text(str(os.getpid()))
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.ports = Ports(*free_ports(6))
        self.pki = write_pki(
            self.workdir / "pki", extra_ips=(self.node_ip,) if self.node_ip else ()
        )
        self.kubeconfig.write_text(json.dumps(config.kubeconfig(self.server, self.pki), indent=1))
        audit_policy = audit_log = None
        if self.audit:
            audit_policy = self.workdir / "audit-policy.json"
            audit_policy.write_text(json.dumps(config.audit_policy()))
            audit_log = self.audit_log

        # etcd and the apiserver start together: the apiserver retries until etcd answers.
        self._spawn("etcd", config.etcd_args(self.workdir / "etcd", self.ports))
        self._spawn(
            "kube-apiserver",
            config.apiserver_args(
                self.pki,
                self.ports,
                self.workdir / "apiserver-certs",
                audit_policy,
                audit_log,
                self.node_ip,
            )
            + self.apiserver_extra,
        )
        self._wait_ready()
        self.say(f"kube-apiserver ready at {self.server} ({time.monotonic() - t0:.1f}s)")
        if self.controllers:
            self._spawn(
                "kube-controller-manager",
                config.controller_manager_args(
                    self._component_kubeconfig("kube-controller-manager"), self.pki, self.ports
                ),
            )
            sched_config = self.workdir / "scheduler.json"
            sched_kubeconfig = self._component_kubeconfig("kube-scheduler")
            sched_config.write_text(json.dumps(config.scheduler_config(sched_kubeconfig)))
            self._spawn(
                "kube-scheduler", config.scheduler_args(sched_config, sched_kubeconfig, self.ports)
            )
        if self.kwok:
            kwok_config = self.workdir / "kwok.yaml"
            kwok_config.write_text("\n---\n".join(json.dumps(s) for s in config.kwok_stages()))
            self._spawn(
                "kwok",
                config.kwok_args(self._component_kubeconfig("kwok"), kwok_config, self.ports),
            )
        if self.nodes:
            self.add_nodes(self.nodes)
        if self.controllers:
            # The service-account controller runs: pods can be created in "default".
            self.wait_for(
                lambda: (
                    self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0]
                    == 200
                ),
                "the default service account (kube-controller-manager)",
            )
            self.wait_for(
                lambda: self._healthy(self.ports.scheduler),  # type: ignore[union-attr]
                "kube-scheduler /healthz",
            )
        self.say(f"control plane up in {time.monotonic() - t0:.1f}s")

    def add_nodes(self, specs: Sequence[NodeSpec]) -> None:
        """Create fake nodes and wait until KWOK reports them Ready."""
        for spec in specs:
            status, body = self.request("POST", "/api/v1/nodes", config.node_manifest(spec))
            if status not in (201, 409):
                raise ControlPlaneError(f"creating node {spec.name} failed ({status}): {body}")
        names = {s.name for s in specs}

        def all_ready() -> bool:
            status, body = self.request("GET", "/api/v1/nodes")
            if status != 200:
                return False
            ready = {
                n["metadata"]["name"]
                for n in body["items"]
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            }
            return names <= ready

        self.wait_for(all_ready, f"{len(names)} fake nodes Ready (kwok)")

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver with SIGKILL and start it again on the same port and etcd."""
        proc = self.procs.pop("kube-apiserver")
        proc.kill()
        proc.wait()
        self._spawn("kube-apiserver", self.commands["kube-apiserver"][1:])
        self._wait_ready()

    def detach(self) -> dict:
        """Forget the processes (they keep running) and return what `stop_recorded` needs."""
        state = {
            "pids": self.pids,
            "commands": self.commands,
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
        }
        self.procs = {}
        self._own_dir = False
        return state

    def stop(self) -> None:
        """Stop every process by PID (dependants first) and remove an owned temp dir."""
        for name in reversed(ORDER):
            proc = self.procs.pop(name, None)
            if proc is not None:
                processes.terminate(proc.pid, proc, grace=5)
        if self._own_dir and self.workdir != Path():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- internals ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.binaries is not None
        cmd = [str(self.binaries[name]), *args]
        self.commands[name] = cmd
        # The parent-death signal fires when the *thread* that forked exits: only ask for it
        # from the main thread, or a cluster started in a worker thread would die with it.
        tie = self.die_with_parent and threading.current_thread() is threading.main_thread()
        self.procs[name] = processes.spawn(cmd, self.log_path(name), die_with_parent=tie)

    def _component_kubeconfig(self, component: str) -> Path:
        assert self.pki is not None
        path = self.workdir / f"{component}.kubeconfig"
        path.write_text(json.dumps(config.kubeconfig(self.server, self.pki, component=component)))
        return path

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            assert self.pki is not None
            self._ssl = admin_context(self.pki.ca_cert.parent)
        return self._ssl

    def _healthy(self, port: int) -> bool:
        ctx = ssl._create_unverified_context()  # component serving certs are self-signed
        try:
            url = f"https://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _wait_ready(self) -> None:
        def ready() -> bool:
            try:
                return self.request("GET", "/readyz", timeout=2)[0] == 200
            except (OSError, urllib.error.URLError, http.client.HTTPException):
                return False

        self.wait_for(ready, "kube-apiserver /readyz")

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Poll `check` (backing off to 0.5 s) until true; fail early if a component died."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.02
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode} while waiting for {what}; "
                        f"last lines of {self.log_path(name)}:\n{self._tail(name)}"
                    )
            with contextlib.suppress(
                OSError, urllib.error.URLError, http.client.HTTPException, ValueError
            ):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {limit:.0f}s waiting for {what}; logs in "
                    f"{self.workdir / 'logs'}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_recorded(state: dict, grace: float = 10.0) -> list[str]:
    """Stop processes recorded by `ControlPlane.detach()` in another process's lifetime.

    A PID is only signalled while its command line still names the recorded binary, so a
    recycled PID belonging to something else is never touched. Returns what was stopped."""
    stopped = []
    pids: dict[str, int] = state.get("pids", {})
    commands: dict[str, list[str]] = state.get("commands", {})
    for name in reversed(ORDER):
        pid = pids.get(name)
        if pid is None or not processes.alive(pid):
            continue
        running = processes.cmdline(pid)
        expected = (commands.get(name) or [""])[0]
        if not expected or not running or running[0] != expected:
            print(f"not stopping pid {pid}: it is no longer {name}", file=sys.stderr)
            continue
        processes.terminate(pid, grace=grace)
        stopped.append(name)
    return stopped
