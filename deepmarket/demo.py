"""`deepmarket demo`: the whole platform on the embedded default, for a new user.

One command walks the path a module takes: the catalog is validated, the local control plane
(`deepmarket dev`) starts with its simulated GPU and CPU nodes, the operator reconciles a
`DeepModule` for every `deploy: true` module, the reference digits module is served for real
at the marketplace's try-it path, and the marketplace is served with that base URL.

Where the dev cluster has its real node (see `devcluster/realnode.py`), the modules whose images
are built locally (the digits module) run there in real pods, and the try-it path is a local
ingress (`deepmarket dev ingress`: 127.0.0.1 -> the module's Service, with CORS). Without it
the digits module is served on loopback by `deepmarket module serve` instead.

The decisions (which modules, what to apply, how to report status) are pure functions; `Demo`
is the shell that runs processes and polls. The operator, the module server and the site are
child processes with logs in `<dev dir>/demo/`; the cluster outlives the demo like
`deepmarket dev up` does, so a second run starts in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from deepmarket import API_GROUP, API_VERSION
from deepmarket.catalog.model import Catalog, Module
from deepmarket.controller.tenancy import RESTRICTED_LABELS
from deepmarket.errors import UserError

Say = Callable[[str], None]
LOOPBACK = "127.0.0.1"
TRY_MODULE = "digits-classifier"  # the reference module that really runs (examples/modules/digits)
STEPS = 5


# --- pure decisions ---------------------------------------------------------------------------


def deployed(catalog: Catalog) -> list[Module]:
    """The modules `modules.yml` marks `deploy: true`, in marketplace order."""
    return [m for m in catalog if m.deploy]


def namespace_manifest(namespace: str) -> dict[str, Any]:
    """The demo's namespace, enforcing the restricted Pod Security Standard."""
    meta = {"name": namespace, "labels": dict(RESTRICTED_LABELS)}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def apply_list(
    modules: Sequence[Module], namespace: str, real: Collection[str] = ()
) -> dict[str, Any]:
    """One `kubectl apply` document: the namespace and a DeepModule per deployed module; those
    in `real` are placed on the real node (its label and toleration)."""
    from deepmarket.catalog.manifests import deepmodule_manifest
    from deepmarket.devcluster.nodeconfig import placement

    items: list[dict[str, Any]] = [namespace_manifest(namespace)]
    for module in modules:
        manifest = deepmodule_manifest(module, namespace=namespace)
        if module.id in real:
            manifest["spec"]["podTemplate"] = {"spec": placement()}
        items.append(manifest)
    return {"apiVersion": "v1", "kind": "List", "items": items}


DEMO_SOURCE = "local-checkout"  # the CatalogSource that deploys the checkout's catalog
DEMO_INTERVAL = "10s"


def catalog_source_manifest(namespace: str, url: str, branch: str, path: str) -> dict[str, Any]:
    """The CatalogSource that makes the operator — not the demo — deploy `deploy: true`
    modules from the checkout's own repository (what is committed on its branch)."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "CatalogSource",
        "metadata": {"name": DEMO_SOURCE, "namespace": namespace},
        "spec": {"url": url, "branch": branch, "path": path, "interval": DEMO_INTERVAL},
    }


def left_by_an_older_demo(items: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> list[str]:
    """DeepModules an earlier demo applied itself (no owner): the CatalogSource never takes
    over what it does not own, so they are replaced once."""
    return [
        i["metadata"]["name"]
        for i in items
        if i["metadata"]["name"] in ids and not i["metadata"].get("ownerReferences")
    ]


def git_location(root: Path) -> tuple[str, str, str] | None:
    """(file:// URL of the repository, its checked-out branch, the catalog's path in it), or
    None when `root` is not in a git work tree on a branch."""
    import pygit2

    found = pygit2.discover_repository(str(root))
    if not found:
        return None
    repo = pygit2.Repository(found)
    if repo.is_bare or repo.is_shallow or repo.head_is_detached or repo.head_is_unborn:
        return None  # (a shallow clone cannot be fetched from)
    if not repo.workdir:
        return None
    top = Path(repo.workdir).resolve()
    rel = root.resolve().relative_to(top).as_posix()
    return top.as_uri(), repo.head.shorthand, rel or "."


def committed_modules(root: Path, branch: str, path: str) -> list[Module]:
    """The `deploy: true` modules of the catalog committed on `branch` (what the operator will
    deploy), read from git objects as the operator reads them."""
    import pygit2

    from deepmarket.catalog.loader import CatalogInvalid
    from deepmarket.controller.sync.gitcatalog import read_catalog

    repo = pygit2.Repository(pygit2.discover_repository(str(root)))
    read = read_catalog(repo, f"refs/heads/{branch}", path)
    if not read.valid:
        raise CatalogInvalid(read.errors)
    return deployed(read.catalog)


OPERATOR_NS, OPERATOR_NAME = "deepmarket-system", "deepmarket-operator"  # overlays/dev
SERVED_REPO = "checkout"  # the checkout's repository, at http://<node gateway>:<port>/checkout


def host_operator_why(state: Mapping[str, Any] | None, checkout: bool) -> str | None:
    """None when the in-cluster operator (installed by `deepmarket dev up` on the real node)
    runs the demo; else why a host process does."""
    if not (state and state.get("real_node")):
        return "the dev cluster has no real node"
    if state.get("operator") != "in-cluster":
        return "`deepmarket dev up` could not install the in-cluster operator"
    if not checkout:
        return "not a git checkout on a branch: the in-cluster operator reads catalogs from git"
    return None


def real_modules(modules: Sequence[Module], local_images: Collection[str]) -> set[str]:
    """The modules whose image was built here, so they can run on the real node."""
    return {m.id for m in modules if m.image in local_images}


def module_base(base_url: str, module_id: str) -> str:
    """The marketplace's try-it scheme (the site's own function, so the two never differ)."""
    from deepmarket.site.render import deploy_url

    return deploy_url(base_url, module_id)


@dataclass(frozen=True)
class Row:
    module: str
    ready: str  # "True", or "False (Reason)", or "-" before the operator wrote status
    replicas: str  # "ready/wanted"
    url: str
    runs: str = "simulated"  # "real node" when its pods really run
    current: bool = True  # the status answers the DeepModule's latest spec (observedGeneration)

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"


def status_rows(items: Sequence[Mapping[str, Any]], real: Collection[str] = ()) -> list[Row]:
    """Summarise DeepModules (as the API returns them) into table rows; `real`: the names
    whose pods run on the real node."""
    rows = []
    for item in items:
        status = item.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready is None:
            text = "-"
        elif ready.get("status") == "True":
            text = "True"
        else:
            text = f"{ready.get('status')} ({ready.get('reason') or 'no reason'})"
        rows.append(
            Row(
                module=item["metadata"]["name"],
                ready=text,
                replicas=f"{status.get('readyReplicas') or 0}/{status.get('replicas') or 0}",
                url=status.get("externalURL") or status.get("url") or "-",
                runs="real node" if item["metadata"]["name"] in real else "simulated",
                current=int(status.get("observedGeneration") or 0)
                >= int(item["metadata"].get("generation") or 0),
            )
        )
    return rows


def settled(row: Row, base_url: str, external: bool = True) -> bool:
    """Ready for its latest spec, and reconciled by this run's operator: a DeepModule left by
    an earlier demo can be Ready with another run's `externalURL` until the new operator has
    passed over it, and the real node's placement (a later generation) keeps the Ready of the
    simulated pods until the operator has looked at it. `external=False`: the in-cluster
    operator, which sets no `externalURL` (the demo's ingress port changes per run)."""
    if not (row.is_ready and row.current):
        return False
    return not external or row.url == module_base(base_url, row.module)


def endpoints_only_on(slices: Sequence[Mapping[str, Any]], node: str) -> bool:
    """A Service's EndpointSlices list only ready endpoints on `node` (at least one): a
    DeepModule first rolled out on a simulated node keeps that pod's endpoint (a KWOK address
    nothing answers on) until the move to the real node has removed it."""
    endpoints = [e for s in slices for e in s.get("endpoints") or []]
    return bool(endpoints) and all(
        e.get("nodeName") == node and (e.get("conditions") or {}).get("ready") is not False
        for e in endpoints
    )


def not_ready_detail(items: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """`name: Reason: message` for every wanted DeepModule that is not Ready (or missing)."""
    by_name = {i["metadata"]["name"]: i for i in items}
    parts = []
    for name in names:
        item = by_name.get(name)
        if item is None:
            parts.append(f"{name}: not found")
            continue
        conds = (item.get("status") or {}).get("conditions") or []
        ready = next((c for c in conds if c.get("type") == "Ready"), None)
        if ready is None:
            parts.append(f"{name}: no status yet (is the operator running?)")
        elif ready.get("status") != "True":
            parts.append(f"{name}: {ready.get('reason')}: {ready.get('message', '')}".rstrip(": "))
    return "; ".join(parts)


def format_table(rows: Sequence[Row]) -> str:
    head = ("MODULE", "READY", "REPLICAS", "RUNS ON", "URL")
    cells = [head] + [(r.module, r.ready, r.replicas, r.runs, r.url) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c[i].ljust(widths[i]) for i in range(len(head) - 1)) + "  " + c[-1] for c in cells
    )


# --- the shell --------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    root: Path  # repository root: modules.yml, catalog/, controller/, mkdocs.yml
    site_port: int = 8000  # 0: any free port
    module_port: int = 5000  # 0: any free port
    namespace: str = "deepmarket"
    once: bool = False
    ready_timeout: float = 180.0
    serve_timeout: float = 300.0
    real_node: bool = True  # False: `--no-real-node`, every pod simulated
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)  # DEEPMARKET_DEV_DIR…


def _pick_port(port: int, flag: str) -> int:
    from deepmarket.modules.serve import ensure_port_free

    return ensure_port_free(LOOPBACK, port, flag, " (0 takes any free port)")


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


class Demo:
    def __init__(self, cfg: DemoConfig, say: Say) -> None:
        self.cfg = cfg
        self.say = say
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.step = 0
        self.in_cluster = False  # the in-cluster operator runs the demo (not a host process)
        self.git_server: Any = None  # serves the checkout's repository to its pods

    # progress -------------------------------------------------------------------------------

    def _step(self, text: str) -> None:
        self.step += 1
        self.say(f"[{self.step}/{STEPS}] {text}")

    def _elapsed(self, started: float) -> str:
        return f"{time.monotonic() - started:.1f}s"

    # child processes ----------------------------------------------------------------------

    def host_operator_reason(self, state: Mapping[str, Any] | None, why: str) -> str:
        """A host process runs the demo (`why`): it reads this checkout's catalog directly.
        An in-cluster one that `deepmarket dev up` installed is scaled to 0 meanwhile, so
        exactly one operator acts."""
        if not (state and state.get("operator") == "in-cluster"):
            return f"host process ({why})"
        ns, name = OPERATOR_NS, OPERATOR_NAME
        self._kubectl("scale", "-n", ns, f"deployment/{name}", "--replicas=0")
        # Gone, not only Terminating: a leader still shutting down could write beside ours.
        deadline = time.monotonic() + 90
        selector = f"app.kubernetes.io/name={name}"
        while self._kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "name").strip():
            if time.monotonic() > deadline:
                raise UserError(f"the in-cluster operator's pods in {ns} did not stop in 90 s")
            time.sleep(1)
        return (
            f"host process ({why}); the in-cluster one ({ns}/{name}) is scaled to 0 meanwhile "
            f"(`kubectl -n {ns} scale deployment/{name} --replicas=2` brings it back)"
        )

    def use_in_cluster_operator(self) -> str:
        """The operator `deepmarket dev up` installed runs the demo: rolled onto this
        checkout's code when its image was built from other code, scaled back to 2 replicas
        when an older demo scaled it to 0, and Ready with a leader. Says which pod leads."""
        from deepmarket.devcluster import images, realnode

        ns, name = OPERATOR_NS, OPERATOR_NAME
        built = images.operator_image(lambda m: self.say(f"    {m}"), self.cfg.env, self.cfg.root)
        deploy = json.loads(self._kubectl("get", "-n", ns, f"deployment/{name}", "-o", "json"))
        annotations = deploy["metadata"].get("annotations") or {}
        if annotations.get(images.OPERATOR_BUILD_ANNOTATION) != built.archive.name:
            record = realnode.read_record()
            if not (record and realnode.import_images(record, [built.archive])):
                raise UserError(
                    "the real node's containerd does not run, so this checkout's operator image "
                    "cannot be imported; `deepmarket dev down` then `deepmarket dev up` restarts it"
                )
            self.say(
                "    operator image rebuilt from this checkout: rolling the in-cluster operator"
            )
            self._kubectl("rollout", "restart", "-n", ns, f"deployment/{name}")
            self._kubectl("annotate", "--overwrite", "-n", ns, f"deployment/{name}",
                          f"{images.OPERATOR_BUILD_ANNOTATION}={built.archive.name}")  # fmt: skip
        if not deploy["spec"].get("replicas"):  # an older demo scaled it to 0
            self._kubectl("scale", "-n", ns, f"deployment/{name}", "--replicas=2")
        self._kubectl("rollout", "status", "-n", ns, f"deployment/{name}", "--timeout=300s")
        leader = self._wait_leader()
        replicas = json.loads(self._kubectl("get", "-n", ns, f"deployment/{name}", "-o", "json"))[
            "spec"
        ]["replicas"]
        return f"in the cluster ({replicas} replicas, leader {leader})"

    def _wait_leader(self, timeout: float = 120.0) -> str:
        """The pod holding the operator's Lease, once one of the Deployment's live pods does."""
        from deepmarket.devcluster.controlplane import api_request

        ns, name = OPERATOR_NS, OPERATOR_NAME
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        pods = f"/api/v1/namespaces/{ns}/pods?labelSelector=app.kubernetes.io%2Fname%3D{name}"
        deadline = time.monotonic() + timeout
        while True:
            server, ctx = self._state["server"], self._context()
            status, body = api_request(server, ctx, "GET", lease)
            holder = (body.get("spec") or {}).get("holderIdentity") if status == 200 else None
            status, body = api_request(server, ctx, "GET", pods)
            live = {
                p["metadata"]["name"]
                for p in (body.get("items", []) if status == 200 else [])
                if not p["metadata"].get("deletionTimestamp")
            }
            if holder and holder in live:
                return holder
            if time.monotonic() > deadline:
                raise UserError(
                    f"no pod of {ns}/{name} took the operator's Lease within {timeout:.0f}s; "
                    f"see `kubectl -n {ns} logs deployment/{name}`"
                )
            time.sleep(0.5)

    def serve_checkout(self, top: Path) -> str:
        """This checkout's git repository over git's smart HTTP (read-only), bound to the real
        node bridge's gateway, where the operator's pods reach the host: the URL for the
        CatalogSource, fetched the way a GitOps source on GitHub is."""
        from deepmarket.devcluster import realnode
        from deepmarket.devcluster.gitserve import GitHttpServer

        record = realnode.read_record()
        if not record or not record.get("pod_cidr"):
            raise UserError("the real node's record is missing; `deepmarket dev status` says why")
        host = realnode.gateway(record["pod_cidr"])
        self.git_server = GitHttpServer(top, host=host, repos={SERVED_REPO: top}, read_only=True)
        url = self.git_server.url(SERVED_REPO)
        self.say(
            f"    serving this checkout's git repository read-only at {url} (git http-backend)"
        )
        return url

    def operator_log(self) -> str:
        """Where the operator's log is, and how it ends."""
        if not self.in_cluster:
            log = self.logs.get("operator")
            return f"the operator's log {log} ends: {_tail(log)}" if log else "(no operator log)"
        ns, name = OPERATOR_NS, OPERATOR_NAME
        try:
            tail = self._kubectl("logs", "-n", ns, f"deployment/{name}", "--tail=3")
        except UserError as exc:
            tail = str(exc)
        return f"`kubectl -n {ns} logs deployment/{name}` ends: {' | '.join(tail.splitlines())}"

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen:
        from deepmarket.devcluster import processes

        log = self.log_dir / f"{name.split()[0]}.log"
        with log.open("a") as out:  # appended: an earlier run's failure stays readable
            out.write(f"--- deepmarket demo, {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        proc = processes.spawn(
            [sys.executable, "-m", "deepmarket", *args], log, die_with_parent=True
        )
        self.procs[name] = proc
        self.logs[name] = log
        self.say(f"    started {name} (pid {proc.pid}, log {log})")
        return proc

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise UserError(
                    f"the {name} stopped (exit {code}); its log {self.logs[name]} ends: "
                    f"{_tail(self.logs[name])}"
                )

    def _wait_http(self, name: str, url: str, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            status, body = _get(url)
            if status == 200:
                return body
            if time.monotonic() > deadline:
                raise UserError(
                    f"the {name} did not answer {url} within {timeout:.0f}s (last status "
                    f"{status or 'no answer'}); see {self.logs[name]}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop our children, newest first (the site, the module, then the operator), and the
        git server (its CatalogSource is suspended first: nothing to fetch from until the next
        demo, whose apply resumes it)."""
        from deepmarket.devcluster import processes

        if self.git_server is not None:
            self.say(f"    stopping the git server ({self.git_server.url(SERVED_REPO)})")
            manifest = catalog_source_manifest(self.cfg.namespace, *self._source)
            manifest["spec"]["suspend"] = True
            try:
                self._kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                              stdin=json.dumps(manifest))  # fmt: skip
            except (UserError, OSError, subprocess.TimeoutExpired) as exc:
                self.say(f"    could not suspend CatalogSource {DEMO_SOURCE}: {exc}")
            self.git_server.stop()
            self.git_server = None

        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                self.say(f"    stopping {name} (pid {proc.pid})")
                # kopf may take its whole exit timeout when the apiserver is slow.
                processes.terminate(proc.pid, proc, grace=20.0)
        self.procs.clear()

    # the steps ------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.bring_up()
            if self.cfg.once:
                self.say("demo checks passed; --once: stopping the demo's processes")
                return 0
            return self.serve_forever()
        finally:
            self.stop()
            self.say(
                "the dev cluster keeps running (DeepModules stay in namespace "
                f"{self.cfg.namespace}); `deepmarket dev down` stops it and deletes its data"
            )

    def bring_up(self) -> None:
        from deepmarket.catalog import load_catalog
        from deepmarket.devcluster import devenv
        from deepmarket.devcluster.binaries import ensure_binaries
        from deepmarket.modules import targets

        cfg, root = self.cfg, self.cfg.root
        env = cfg.env
        started = time.monotonic()

        # 1. catalog, binaries, cluster
        self._step(f"validating the catalog in {root}")
        if not (root / "modules.yml").is_file():
            raise UserError(f"{root}: no modules.yml; run the demo from the repository root")
        catalog = load_catalog(root)
        modules = deployed(catalog)
        self.say(
            f"    {len(catalog)} modules valid; deploy: true: "
            f"{', '.join(m.id for m in modules) or 'none'}"
        )
        if catalog.get(TRY_MODULE) is None:
            raise UserError(f"the catalog has no {TRY_MODULE!r}; the demo serves it for try-it")
        model = targets.resolve(TRY_MODULE, root, targets.installed_models()).model
        site_port = _pick_port(cfg.site_port, "--site-port")
        module_port = _pick_port(cfg.module_port, "--module-port")
        self.site_url = f"http://{LOOPBACK}:{site_port}"
        self.base_url = f"http://{LOOPBACK}:{module_port}"
        self.say("    Kubernetes binaries (a first build from source takes ~15 min; cached after)")
        binaries = ensure_binaries(lambda m: self.say(f"    {m}"), env=env)
        self.kubectl = binaries["kubectl"]
        self.say("    dev cluster (`deepmarket dev up`; already running is fine)")
        devenv.up(lambda m: self.say(f"    {m}"), env=env, real_node=cfg.real_node)
        state = devenv.read_state(env)
        if not devenv.running(state):
            raise UserError("the dev cluster did not stay up; `deepmarket dev status` says why")
        self.kubeconfig = devenv.kubeconfig_path(env)
        self.log_dir = devenv.dev_dir(env) / "demo"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._state = state
        self.real: set[str] = set()
        if state and state.get("real_node"):
            from deepmarket.devcluster import images

            local = {n for m in images.module_images(root) for n in m.names}
            self.real = real_modules(modules, local)
            self.say(
                f"    real node: {', '.join(sorted(self.real)) or 'no module'} runs in real "
                "pods; the others stay on the simulated nodes"
            )

        # 2. CRDs and the operator
        self._step("installing the CRDs from controller/crds and starting the operator")
        self._kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(root / "controller" / "crds")
        )
        self._kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            f"crd/deepmodules.{API_GROUP}",
            f"crd/trainingruns.{API_GROUP}",
            f"crd/catalogsources.{API_GROUP}",
        )
        # kopf, watching one namespace, lists namespaces and served resources once at start
        # and ignores what its watches' initial listings show: a namespace or CRD that appears
        # in between is never served. So both exist, and are discoverable, before it starts.
        self._kubectl(
            "apply", "--server-side", "-f", "-", stdin=json.dumps(namespace_manifest(cfg.namespace))
        )
        self.wait_discoverable()
        where = git_location(root)
        why = host_operator_why(state, where is not None)
        if why is None:
            self.in_cluster = True
            self.operator_where = self.use_in_cluster_operator()
        else:
            self.operator_where = self.host_operator_reason(state, why)
        self.say(f"    operator: {self.operator_where}")
        if not self.in_cluster:
            self.spawn_operator()

        # 3. DeepModules: the operator deploys them from a CatalogSource on this checkout
        modules = self.deploy(modules, where)
        rows = self.wait_ready([m.id for m in modules])
        print(format_table(rows), flush=True)
        print(f"operator: {self.operator_where}", flush=True)
        self.finish(started, model, site_port, module_port)

    def spawn_operator(self) -> None:
        """The operator as a process on this machine, reading this checkout's catalog."""
        from deepmarket.devcluster import devenv

        cfg, root, env = self.cfg, self.cfg.root, self.cfg.env
        self._spawn(
            "operator",
            [
                "controller",
                "run",
                "--kubeconfig",
                str(self.kubeconfig),
                "--catalog",
                str(root),
                "--namespace",
                cfg.namespace,
                "--ingress-base",
                self.base_url,
                "--git-cache",
                str(devenv.dev_dir(env) / "git"),
            ],
        )

    def finish(self, started: float, model: str, site_port: int, module_port: int) -> None:
        cfg, root = self.cfg, self.cfg.root

        # 4. the digits module, for real
        self._step(f"serving {TRY_MODULE} for real at {module_base(self.base_url, TRY_MODULE)}")
        prefix = "/" + TRY_MODULE
        if TRY_MODULE in self.real:
            self.serve_from_cluster(prefix, module_port, model)
        else:
            self.serve_on_loopback(prefix, module_port, model)

        # 5. the marketplace
        self._step(f"building and serving the marketplace at {self.site_url}/ (try-it on)")
        self._spawn(
            "site",
            [
                "site",
                "serve",
                "-f",
                str(root / "mkdocs.yml"),
                "--catalog",
                str(root),
                "--port",
                str(site_port),
                "--base-url",
                self.base_url,
            ],
        )
        page = self._wait_http("site", f"{self.site_url}/modules/{TRY_MODULE}/", cfg.serve_timeout)
        api = module_base(self.base_url, TRY_MODULE)
        if api.encode() not in page:
            raise UserError(
                f"the marketplace page of {TRY_MODULE} does not call {api}; see {self.logs['site']}"
            )
        self.say(f"    marketplace ready; everything up in {self._elapsed(started)}")
        self.summary()

    def deploy(
        self, modules: Sequence[Module], where: tuple[str, str, str] | None
    ) -> Sequence[Module]:
        """Get the `deploy: true` modules deployed; the ones to wait for."""
        cfg = self.cfg
        if where is None:  # not a git checkout (an unpacked archive): apply them directly
            self._step(f"applying {len(modules)} DeepModules into namespace {cfg.namespace}")
            listed = apply_list(modules, cfg.namespace, self.real)
            self._kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                          stdin=json.dumps(listed))  # fmt: skip
            return modules
        url, branch, path = where
        if self.in_cluster:  # its pods fetch over HTTP what a host process reads from disk
            url = self.serve_checkout(Path(unquote(urlsplit(url).path)))
        self._source = (url, branch, path)
        committed = committed_modules(cfg.root, branch, path)
        if [m.id for m in committed] != [m.id for m in modules]:
            self.say(
                f"    note: uncommitted changes differ from {branch}; the operator deploys what "
                f"is committed: {', '.join(m.id for m in committed) or 'none'}"
            )
        modules = committed
        self._step(
            f"CatalogSource {DEMO_SOURCE}: the operator deploys the {len(modules)} "
            f"`deploy: true` modules committed on {branch} of {url}"
        )
        stale = left_by_an_older_demo(self._deepmodules(), [m.id for m in modules])
        if stale:
            self.say(f"    replacing DeepModules an older demo applied itself: {', '.join(stale)}")
            self._kubectl("delete", "-n", cfg.namespace, "deepmodules", *stale, "--wait=true")
        manifest = catalog_source_manifest(cfg.namespace, url, branch, path)
        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                      stdin=json.dumps(manifest))  # fmt: skip
        self.say(
            f"    commit a change to modules.yml on {branch}: it is deployed within "
            f"{DEMO_INTERVAL} (`deepmarket sync {DEMO_SOURCE} -n {cfg.namespace}` at once)"
        )
        self.place_on_real_node([m.id for m in modules if m.id in self.real])
        return modules

    def place_on_real_node(self, names: Sequence[str], timeout: float = 120.0) -> None:
        """Give the synced DeepModules of `names` the real node's placement (podTemplate), as
        the demo's own field manager: the CatalogSource's applies never own or undo it."""
        from deepmarket.devcluster.nodeconfig import placement

        deadline = time.monotonic() + timeout
        missing = set(names)
        while missing:
            self._check_alive()
            missing -= {i["metadata"]["name"] for i in self._deepmodules()}
            if missing and time.monotonic() > deadline:
                raise UserError(
                    f"the CatalogSource did not create {', '.join(sorted(missing))} within "
                    f"{timeout:.0f}s; {self.operator_log()}"
                )
            if missing:
                time.sleep(0.5)
        for name in names:
            patch = {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "DeepModule",
                "metadata": {"name": name, "namespace": self.cfg.namespace},
                "spec": {"podTemplate": {"spec": placement()}},
            }
            self._kubectl("apply", "--server-side", "--field-manager=deepmarket-demo", "-f", "-",
                          stdin=json.dumps(patch))  # fmt: skip
            self.say(f"    {name}: placed on the real node")

    def serve_from_cluster(self, prefix: str, module_port: int, model: str) -> None:
        """The module's real pod answers through its Service; a local ingress gives it the
        try-it path and CORS. `module check` passes on both URLs."""
        from deepmarket.devcluster.controlplane import api_request

        path = f"/api/v1/namespaces/{self.cfg.namespace}/services/{TRY_MODULE}"
        status, svc = api_request(self._state["server"], self._context(), "GET", path)
        if status != 200:
            raise UserError(f"the Service of {TRY_MODULE} is missing ({status}): {svc}")
        in_cluster = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
        self.wait_served_from_real_node(in_cluster)
        self.check_module(in_cluster + "/", model)
        self._spawn(
            "ingress",
            [
                "dev",
                "ingress",
                "--port",
                str(module_port),
                "--route",
                f"{prefix}={in_cluster}",
                "--cors-origin",
                self.site_url,
            ],
        )
        api = module_base(self.base_url, TRY_MODULE)
        self._wait_http("ingress", api + "v2/models/", self.cfg.serve_timeout)
        self.check_module(api, model)

    def wait_served_from_real_node(self, in_cluster: str, answers: int = 5) -> None:
        """Wait until the Service reaches only the real pod: its EndpointSlices list nothing
        else, then kube-proxy has programmed that (`answers` DEEPaaS answers in a row, where
        a stale rule to a simulated pod's address gets whatever the host's network says)."""
        from deepmarket.devcluster.controlplane import api_request
        from deepmarket.devcluster.nodeconfig import NODE_NAME

        path = (
            f"/apis/discovery.k8s.io/v1/namespaces/{self.cfg.namespace}/endpointslices"
            f"?labelSelector=kubernetes.io%2Fservice-name%3D{TRY_MODULE}"
        )
        deadline = time.monotonic() + self.cfg.serve_timeout
        started, in_a_row, last = time.monotonic(), 0, "no answer yet"
        while in_a_row < answers:
            self._check_alive()
            status, body = api_request(self._state["server"], self._context(), "GET", path)
            slices = body.get("items", []) if status == 200 else []
            if not endpoints_only_on(slices, NODE_NAME):
                in_a_row, last = 0, f"endpoints not only on {NODE_NAME} yet"
            else:
                code, answer = _get(in_cluster + "/v2/", timeout=2.0)
                in_a_row = in_a_row + 1 if code == 200 else 0
                last = f"GET /v2/ answered {code or 'nothing'}: {answer[:80]!r}"
            if in_a_row >= answers:
                break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the Service of {TRY_MODULE} ({in_cluster}) does not reach its pod on the "
                    f"real node after {self.cfg.serve_timeout:.0f}s: {last}; see "
                    f"{Path(self._state['workdir']) / 'logs'}"
                )
            time.sleep(0.2)
        self.say(
            f"    {TRY_MODULE}: its Service answers from the real node ({self._elapsed(started)})"
        )

    def serve_on_loopback(self, prefix: str, module_port: int, model: str) -> None:
        """No real node: `module serve` runs the module on this machine instead."""
        root = self.cfg.root
        self._spawn(
            "module server",
            [
                "module",
                "serve",
                TRY_MODULE,
                "--root",
                str(root),
                "--port",
                str(module_port),
                "--cors-origin",
                self.site_url,
                "--path-prefix",
                prefix,
            ],
        )
        api = module_base(self.base_url, TRY_MODULE)
        self._wait_http("module server", api + "v2/models/", self.cfg.serve_timeout)
        self.check_module(api, model)

    def _kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise UserError(
                f"kubectl {' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout}"
            )
        return done.stdout

    def _context(self) -> Any:
        from deepmarket.devcluster.controlplane import admin_context

        if not hasattr(self, "_ctx"):
            self._ctx = admin_context(Path(self._state["workdir"]) / "pki")
        return self._ctx

    def _deepmodules(self) -> list[dict[str, Any]]:
        from deepmarket.devcluster.controlplane import api_request

        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.cfg.namespace}/deepmodules"
        try:
            status, body = api_request(self._state["server"], self._context(), "GET", path)
        except OSError as exc:
            raise UserError(f"the dev cluster's apiserver does not answer: {exc}") from None
        if status != 200:
            raise UserError(f"listing DeepModules answered {status}: {body}")
        return list(body.get("items", []))

    def wait_discoverable(self, timeout: float = 60.0) -> None:
        """Wait until API discovery lists DeepModules (it lags a CRD's Established) and their
        storage answers (a fresh CRD's list answers 429 "storage is (re)initializing" a while,
        and kopf gives a watch up after a few such retries)."""
        from deepmarket.devcluster.controlplane import api_request

        deadline = time.monotonic() + timeout
        group = f"/apis/{API_GROUP}/{API_VERSION}"
        while True:
            server, ctx = self._state["server"], self._context()
            status, body = api_request(server, ctx, "GET", group)
            names = {r.get("name") for r in body.get("resources", [])} if status == 200 else set()
            if {"deepmodules", "catalogsources"} <= names:
                status, _ = api_request(server, ctx, "GET", f"{group}/deepmodules?limit=1")
                if status == 200:
                    return
            if time.monotonic() > deadline:
                raise UserError(
                    f"the apiserver does not serve deepmodules.{API_GROUP}/{API_VERSION} "
                    f"{timeout:.0f}s after the CRD was installed; see "
                    f"{Path(self._state['workdir']) / 'logs'}"
                )
            time.sleep(0.2)

    def wait_ready(self, names: Sequence[str]) -> list[Row]:
        """Poll until every wanted DeepModule is Ready, printing each change."""
        deadline = time.monotonic() + self.cfg.ready_timeout
        started, last = time.monotonic(), ""
        wanted = set(names)
        while True:
            self._check_alive()
            items = [i for i in self._deepmodules() if i["metadata"]["name"] in wanted]
            rows = status_rows(items)
            rows = status_rows(items, self._on_real_node(wanted) if self.real else ())
            ready = sum(settled(r, self.base_url, external=not self.in_cluster) for r in rows)
            line = f"    {ready}/{len(wanted)} Ready"
            if line != last:
                self.say(f"{line} ({self._elapsed(started)})")
                last = line
            if ready == len(wanted):
                return rows
            if time.monotonic() > deadline:
                detail = not_ready_detail(items, sorted(wanted)) or (
                    "Ready, but the operator has not yet reconciled the latest spec "
                    "or updated status.externalURL"
                )
                raise UserError(
                    f"DeepModules not Ready after {self.cfg.ready_timeout:.0f}s: "
                    f"{detail}; {self.operator_log()}"
                )
            time.sleep(0.5)

    def _on_real_node(self, names: Collection[str]) -> set[str]:
        """The DeepModules with a pod on the real node (what the table's RUNS ON says)."""
        from deepmarket.controller import INSTANCE_LABEL
        from deepmarket.devcluster.controlplane import api_request
        from deepmarket.devcluster.nodeconfig import NODE_NAME

        path = f"/api/v1/namespaces/{self.cfg.namespace}/pods?fieldSelector=spec.nodeName%3D"
        status, body = api_request(self._state["server"], self._context(), "GET", path + NODE_NAME)
        if status != 200:
            return set()
        on_node = {p["metadata"].get("labels", {}).get(INSTANCE_LABEL) for p in body["items"]}
        return {n for n in names if n in on_node}

    def check_module(self, api: str, model: str) -> None:
        """`deepmarket module check` through the served try-it path, with the catalog sample."""
        from deepmarket.modules import checker, report

        sample, expected = checker.sample_from_catalog(self.cfg.root, TRY_MODULE)
        checks = checker.run_checks(api, sample=sample, expected_model=expected or model)
        if not report.passed(checks):
            raise UserError(
                f"{TRY_MODULE} at {api} fails `deepmarket module check`:\n"
                + report.as_text(api, checks)
            )
        self.say(f"    `module check` through {api}: {len(checks)} checks passed")

    def summary(self) -> None:
        api = module_base(self.base_url, TRY_MODULE)
        lines = [
            "",
            "deepmarket demo is up:",
            f"  marketplace  {self.site_url}/",
            f"  try it       {self.site_url}/modules/{TRY_MODULE}/",
            f"  digits API   {api}  (OpenAPI spec: {api}swagger.json)",
            f"  cluster      export KUBECONFIG={self.kubeconfig}",
            f"               {self.kubectl} get deepmodules -n {self.cfg.namespace}",
            f"  logs         {self.log_dir}/",
            f"  operator     {self.operator_where}",
            (
                f"{', '.join(sorted(self.real))} run in real pods on the real node (RUNS ON); "
                "pods on the simulated (KWOK) nodes only pretend to run."
                if self.real
                else "Pods on the simulated (KWOK) nodes only pretend to run; "
                f"{TRY_MODULE} also runs for real above."
            ),
        ]
        print("\n".join(lines), flush=True)

    def serve_forever(self) -> int:
        self.say(
            "Ctrl-C (or SIGTERM) stops the demo's processes (operator: "
            f"{'the in-cluster one keeps running' if self.in_cluster else 'this host process'}); "
            "the cluster keeps running"
        )
        try:
            while True:
                self._check_alive()
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.say("stopping the demo")
            return 0


def run(cfg: DemoConfig, say: Say) -> int:
    return Demo(cfg, say).run()
