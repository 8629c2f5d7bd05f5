"""Benchmark: what deepmarket's admission policies add to creating DeepModules.

1,000 DeepModule creates with the ValidatingAdmissionPolicies of controller/policies/ bound,
and 1,000 without, on one etcd + kube-apiserver, by a non-admin user (client certificate) whose
requests take every path the policies have: a podTemplate (so the `authorizer` pod-rights check
and the pod-security rules run), a Secret reference, and a namespace limited to listed
registries. The two conditions alternate in rounds (bindings removed and put back, each change
confirmed by a dry-run probe) so drift on a shared machine hits both alike.

Prints mean and p50/p99 latency per create, one client at a time and eight at once, and the
ratio with/without.

    .venv/bin/python bench/admission.py [--count 1000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from deepmarket.devcluster.binaries import ensure_binaries
from deepmarket.devcluster.controlplane import ControlPlane
from deepmarket.devcluster.pki import issue_user

ROOT = Path(__file__).resolve().parents[1]
DM = "/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/deepmodules"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
USER = "bench-user"


def spec() -> dict:
    return {
        "image": "ghcr.io/deepmarket/bench:1.0.0",
        "resources": {"cpu": "500m", "memory": "1Gi"},
        "envFrom": [{"secretRef": {"name": "webdav"}}],
        "podTemplate": {
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "containers": [{"name": "deepaas", "env": [{"name": "X", "value": "1"}]}],
            }
        },
    }


class Client:
    """One kept-alive TLS connection per thread, authenticated as the bench user."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port, self.ctx = port, ctx
        self.local = threading.local()

    def post(self, path: str, body: dict) -> tuple[int, str]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.ctx, timeout=60
            )
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")


def policy_docs() -> list[dict]:
    docs = []
    for path in sorted((ROOT / "controller" / "policies").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def setup(cp: ControlPlane) -> Client:
    cp.kubectl("apply", "--server-side", "-f", str(ROOT / "controller/crds/deepmodules.yaml"))
    cp.kubectl("wait", "--for=condition=Established", "crd/deepmodules.deepmarket.dev")
    cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": policy_docs()}))  # fmt: skip
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "bench-team"},
        "rules": [
            {"apiGroups": ["deepmarket.dev"], "resources": ["deepmodules"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "bench-team"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "bench-team"},
        "subjects": [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}],
    }  # fmt: skip
    cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [role, binding]}))  # fmt: skip
    assert cp.pki is not None and cp.ports is not None
    cert, key = issue_user(cp.pki, USER)
    ctx = ssl.create_default_context(cafile=str(cp.pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    return Client(cp.ports.apiserver, ctx)


def namespace(cp: ControlPlane, name: str) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
          "annotations": {"deepmarket.dev/allowed-registries": "ghcr.io/deepmarket"}}}  # fmt: skip
    status, body = cp.request("POST", "/api/v1/namespaces", ns)
    if status != 201:
        raise RuntimeError(f"namespace {name}: {status} {body}")


def set_bound(cp: ControlPlane, client: Client, bound: bool) -> None:
    """Bind or unbind every policy, then wait until a probe shows the change in force."""
    bindings = [d for d in policy_docs() if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    for b in bindings:
        if bound:
            cp.request("POST", BINDINGS, b)
        else:
            cp.request("DELETE", f"{BINDINGS}/{b['metadata']['name']}")
    hostile = {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "DeepModule",
               "metadata": {"name": "probe"},
               "spec": {**spec(), "podTemplate": {"spec": {"hostNetwork": True}}}}  # fmt: skip
    path = DM.format(ns="probe") + "?dryRun=All"
    cp.wait_for(
        lambda: (client.post(path, hostile)[0] == 201) != bound,
        f"policies {'bound' if bound else 'unbound'}",
    )


def creates(client: Client, ns: str, count: int, parallel: int) -> list[float]:
    """Latency (s) of `count` creates, `parallel` clients at a time; every one must succeed."""

    def one(i: int) -> float:
        body = {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "DeepModule",
                "metadata": {"name": f"m{i}"}, "spec": spec()}  # fmt: skip
        t0 = time.perf_counter()
        status, text = client.post(DM.format(ns=ns), body)
        took = time.perf_counter() - t0
        if status != 201:
            raise RuntimeError(f"create m{i} in {ns}: {status} {text[:300]}")
        return took

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(count)))


def summary(samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return (
        f"mean {statistics.fmean(s) * 1000:6.2f} ms  p50 {statistics.median(s) * 1000:6.2f} ms  "
        f"p99 {p99 * 1000:6.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="creates per condition and mode")
    parser.add_argument("--rounds", type=int, default=4, help="alternations per condition")
    args = parser.parse_args()
    per_round = max(1, args.count // args.rounds)
    with ControlPlane(binaries=ensure_binaries(), progress=lambda m: print(f"  … {m}")) as cp:
        client = setup(cp)
        namespace(cp, "probe")
        results: dict[tuple[str, int], list[float]] = {}
        for parallel in (1, 8):
            for r in range(args.rounds):
                for bound in (False, True) if r % 2 == 0 else (True, False):
                    set_bound(cp, client, bound)
                    label = "with" if bound else "without"
                    ns = f"{label}-p{parallel}-r{r}"
                    namespace(cp, ns)
                    results.setdefault((label, parallel), []).extend(
                        creates(client, ns, per_round, parallel)
                    )
        n = per_round * args.rounds
        print(f"\nDeepModule creates by a non-admin user, {n} per line (etcd + kube-apiserver):")
        for parallel in (1, 8):
            without, with_ = results[("without", parallel)], results[("with", parallel)]
            ratio = statistics.fmean(with_) / statistics.fmean(without)
            p50 = statistics.median(with_) / statistics.median(without)
            print(f"  {parallel} client(s), without policies: {summary(without)}")
            print(f"  {parallel} client(s), with policies:    {summary(with_)}")
            print(f"  {parallel} client(s), ratio with/without: mean {ratio:.2f}x, p50 {p50:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
