"""`deepmarket dev up|down|status`: the embedded default cluster, outliving the CLI process.

Its processes run detached; their PIDs and command lines are recorded in a state file so a
later `down` (another process) stops exactly them. The kubeconfig lives at a known path:
``$DEEPMARKET_DEV_DIR`` or ``$XDG_STATE_HOME/deepmarket/dev`` (``~/.local/state/...``)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from deepmarket.devcluster import processes
from deepmarket.devcluster.binaries import Binaries
from deepmarket.devcluster.config import GPU_RESOURCE, NodeSpec, cpu_nodes, gpu_nodes
from deepmarket.devcluster.controlplane import (
    ControlPlane,
    admin_context,
    api_request,
    stop_recorded,
)
from deepmarket.devcluster.realnode import RealNode, host_ip
from deepmarket.errors import UserError

Say = Callable[[str], None]


def dev_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("DEEPMARKET_DEV_DIR"):
        return Path(env["DEEPMARKET_DEV_DIR"])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "deepmarket" / "dev"


def dev_nodes() -> list[NodeSpec]:
    """The demo's simulated fleet: 4 GPU nodes with 8 GPUs each and 2 CPU-only nodes."""
    return gpu_nodes(4, gpus=8) + cpu_nodes(2)


def kubeconfig_path(env: Mapping[str, str] = os.environ) -> Path:
    return dev_dir(env) / "kubeconfig"


def read_state(env: Mapping[str, str] = os.environ) -> dict | None:
    try:
        return json.loads((dev_dir(env) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def running(state: dict | None) -> bool:
    """Every recorded process still runs the recorded binary."""
    if not state or not state.get("pids"):
        return False
    commands = state.get("commands", {})
    return all(
        processes.alive(pid)
        and bool(commands.get(name))
        and processes.cmdline(pid)[:1] == commands[name][:1]
        for name, pid in state["pids"].items()
    )


def _readiness(state: dict) -> str:
    """What the apiserver says: readyz, Ready nodes and their GPUs."""
    try:
        ctx = admin_context(Path(state["workdir"]) / "pki")
        ready = api_request(state["server"], ctx, "GET", "/readyz", timeout=5)[0] == 200
        status, body = api_request(state["server"], ctx, "GET", "/api/v1/nodes", timeout=5)
    except (OSError, ValueError) as exc:
        return f"apiserver unreachable: {exc}"
    if status != 200:
        return f"apiserver answers {status}"
    nodes = [
        n
        for n in body["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    ]
    gpus = sum(int(n["status"].get("allocatable", {}).get(GPU_RESOURCE, 0)) for n in nodes)
    return f"{'ready' if ready else 'NOT ready'}, {len(nodes)} nodes Ready, {gpus} GPUs"


def export_line(env: Mapping[str, str] = os.environ) -> str:
    return f"export KUBECONFIG={kubeconfig_path(env)}"


def _real_node_plan(say: Say, env: Mapping[str, str]) -> tuple[Binaries, Path, str] | None:
    """Node binaries, images and the operator's build (its archive's name) when this machine
    can run the real node, else None (said in one line, with how to fix it)."""
    from deepmarket.devcluster import images, realnode
    from deepmarket.devcluster.binaries import NODE_NAMES, BinariesUnavailable, ensure_binaries

    why = realnode.missing_prerequisites()
    if not why:
        realnode.recover(say)
        other = realnode.read_record()
        if other is not None:
            why = [f"another cluster's real node runs on this machine (dir {other['base']})"]
    if why:
        say(f"no real node (pods stay simulated): {'; '.join(why)}")
        return None
    try:
        node_binaries = ensure_binaries(say, env=env, names=NODE_NAMES)
        built = images.build_all(say, env)
        archive = images.bundle(built, images.images_dir(env))
    except (BinariesUnavailable, images.ImagesUnavailable) as exc:
        say(f"no real node (pods stay simulated): {exc}")
        return None
    operator = next(b.archive.name for b in built if b.name == images.OPERATOR_IMAGE)
    return node_binaries, archive, operator


@contextlib.contextmanager
def state_lock(home: Path) -> Iterator[None]:
    """One `up` or `down` at a time per state directory: two at once would start two control
    planes over one state file, or remove the one the other is starting."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(
                f"another `deepmarket dev up` or `down` (pid {holder}) is using {home}; wait "
                "for it to finish, or set DEEPMARKET_DEV_DIR to run a second dev cluster"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(say: Say, env: Mapping[str, str] = os.environ, real_node: bool = True) -> int:
    with state_lock(dev_dir(env)):
        return _up(say, env, real_node)


def _up(say: Say, env: Mapping[str, str] = os.environ, real_node: bool = True) -> int:
    home = dev_dir(env)
    state = read_state(env)
    if running(state):
        say(f"the dev cluster already runs at {state['server']}")  # type: ignore[index]
        print(export_line(env))
        return 0
    if state:
        say("cleaning up a dev cluster that is no longer complete")
        _stop_real_node(home)
        stop_recorded(state)
    shutil.rmtree(home / "cluster", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    plan = _real_node_plan(say, env) if real_node else None
    nodes = dev_nodes()
    say(
        f"starting etcd, kube-apiserver, controller-manager, scheduler and kwok with "
        f"{len(nodes)} fake nodes ({sum(n.gpus for n in nodes)} GPUs)"
    )
    cp = ControlPlane(
        workdir=home / "cluster",
        controllers=True,
        nodes=nodes,
        die_with_parent=False,
        progress=say,
        node_ip=host_ip() if plan else None,
        audit_log=True,  # who wrote what: <dev dir>/cluster/audit.log
    )
    cp.start()
    real = False
    if plan:
        from deepmarket.devcluster.images import PAUSE_IMAGE

        say("starting the real node: containerd, kubelet, kube-proxy")
        node = RealNode(
            cp,
            images=[plan[1]],
            pause_image=PAUSE_IMAGE,
            binaries=plan[0],
            die_with_parent=False,
            progress=say,
        )
        try:
            node.start()
            node.detach()
            real = True
        except UserError as exc:
            say(f"no real node (pods stay simulated): {exc}")
    operator = (
        "in-cluster"
        if real and plan and install_operator(cp.kubectl_path, cp.kubeconfig, say, build=plan[2])
        else ""
    )
    recorded = cp.detach()
    recorded["real_node"] = real
    recorded["operator"] = operator
    (home / "state.json").write_text(json.dumps(recorded, indent=1))
    # The well-known path: a copy, so `down` removing cluster/ never leaves a dangling link.
    kubeconfig_path(env).write_text(cp.kubeconfig.read_text())
    say(f"dev cluster up at {recorded['server']}; logs in {home / 'cluster' / 'logs'}")
    say(f"try: {cp.kubectl_path} --kubeconfig {kubeconfig_path(env)} get nodes")
    print(export_line(env))
    return 0


OVERLAY = Path(__file__).resolve().parents[2] / "overlays" / "dev"
OPERATOR_DEPLOYMENT = ("deepmarket-system", "deepmarket-operator")


def install_operator(
    kubectl: Path, kubeconfig: Path, say: Say, timeout: float = 300, build: str = ""
) -> bool:
    """`kubectl apply -k overlays/dev` (the operator's image, built locally, on the real node)
    and wait until its pods are Ready; `build` (the image's archive) is recorded on the
    Deployment, so `deepmarket demo` knows which code runs. False, said in one line, when it
    does not come up: the cluster stays usable and the demo runs a host process instead."""
    import subprocess

    from deepmarket.devcluster.images import OPERATOR_BUILD_ANNOTATION

    def kubectl_run(*args: str, limit: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
            capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    ns, name = OPERATOR_DEPLOYMENT
    say(f"installing the operator: kubectl apply -k {OVERLAY.relative_to(OVERLAY.parents[1])}")
    steps = (
        ("apply", "--server-side", "--force-conflicts", "-k", str(OVERLAY)),
        ("annotate", "--overwrite", "-n", ns, f"deployment/{name}",
         f"{OPERATOR_BUILD_ANNOTATION}={build}"),
        ("rollout", "status", "-n", ns, f"deployment/{name}", f"--timeout={timeout:.0f}s"),
    )  # fmt: skip
    for args in steps:
        try:
            done = kubectl_run(*args, limit=timeout + 30)
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] if done else ["timed out"]
            say(
                f"the in-cluster operator did not come up ({'; '.join(why)}); see `kubectl -n {ns} "
                "describe pods`. The demo runs it as a host process instead"
            )
            return False
    say(f"operator running in the cluster: {ns}/{name}, 2 replicas Ready (leader election)")
    return True


def down(say: Say, env: Mapping[str, str] = os.environ) -> int:
    with state_lock(dev_dir(env)):
        return _down(say, env)


def _down(say: Say, env: Mapping[str, str] = os.environ) -> int:
    home = dev_dir(env)
    state = read_state(env)
    if not state:
        say("no dev cluster is recorded; nothing to stop")
        return 0
    if _stop_real_node(home):
        say("real node stopped; its processes, mounts, bridge, iptables chains and cgroups removed")
    stopped = stop_recorded(state)
    shutil.rmtree(home / "cluster", ignore_errors=True)
    for name in ("state.json", "kubeconfig"):
        (home / name).unlink(missing_ok=True)
    say(f"dev cluster stopped ({', '.join(stopped) or 'nothing was running'}); data removed")
    return 0


def _stop_real_node(home: Path) -> bool:
    """Tear down the real node recorded for this dev cluster (none: False)."""
    from deepmarket.devcluster import realnode

    record = realnode.read_record()
    if not record or record.get("cluster") != str(home / "cluster"):
        return False
    with realnode._host_lock():
        problems = realnode.teardown(record)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return True


def status(env: Mapping[str, str] = os.environ) -> int:
    state = read_state(env)
    if not running(state):
        print("dev cluster: not running (start it with `deepmarket dev up`)")
        return 3
    assert state is not None
    print(f"dev cluster: running at {state['server']} ({_readiness(state)})")
    for name, pid in state["pids"].items():
        print(f"  {name:<24} pid {pid:<8} rss {processes.rss_kib(pid) / 1024:.0f} MiB")
    from deepmarket.devcluster import realnode

    record = realnode.read_record()
    if state.get("real_node") and record:
        for name, pid in record.get("pids", {}).items():
            alive = "" if processes.alive(pid) else " (not running)"
            print(f"  {name:<24} pid {pid:<8} rss {processes.rss_kib(pid) / 1024:.0f} MiB{alive}")
    print(export_line(env))
    return 0
