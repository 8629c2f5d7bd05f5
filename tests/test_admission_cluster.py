"""Multi-team safety on the real apiserver, under real identities.

The ValidatingAdmissionPolicies in controller/policies/ are installed with
`kubectl apply -k controller/`; people authenticate with client certificates signed by the
cluster's CA (CN = user, O = group), so RBAC and the policies' `authorizer` checks see them
exactly as they would see a person with a kubeconfig. The operator runs as its own
ServiceAccount. Team quotas are written by `deepmarket admin quota`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from test_operator_cluster import Operator, condition, dm_of

from deepmarket.cli import main
from deepmarket.devcluster.controlplane import api_request
from deepmarket.devcluster.pki import issue_user

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
DM = "/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/deepmodules"
IMAGE = "ghcr.io/deepmarket/plants:1.2.0"
OPT_IN = "deepmarket.dev/privileged-pods"
REGISTRIES = "deepmarket.dev/allowed-registries"
MERGE = {"Content-Type": "application/merge-patch+json"}


class Person:
    """Someone with a client certificate: every call is authenticated as them."""

    def __init__(self, cluster, user: str, groups: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.user = user
        cert, key = issue_user(cluster.pki, user, groups)
        self.ctx = ssl.create_default_context(cafile=str(cluster.pki.ca_cert))
        self.ctx.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        return api_request(self.cluster.server, self.ctx, method, path, body, headers, timeout=30)

    def create_dm(self, ns: str, name: str, **spec) -> tuple[int, dict]:
        return self.request("POST", DM.format(ns=ns), deepmodule(name, **spec))

    def admits(self, ns: str, **spec) -> bool:
        """Whether a DeepModule with this spec would be admitted now (dry run, nothing kept)."""
        status, _ = self.request(
            "POST", DM.format(ns=ns) + "?dryRun=All", deepmodule("probe", **spec)
        )
        return status == 201


class Admin(Person):
    """The cluster admin (system:masters), through the control plane's own admin client."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.user = "deepmarket-admin"

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        return self.cluster.request(method, path, body, headers=headers, timeout=30)


def deepmodule(name: str, **spec) -> dict:
    spec.setdefault("image", IMAGE)
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": name},
        "spec": spec,
    }


def template(**pod_spec) -> dict:
    return {"spec": pod_spec}


def bind(cluster, ns: str, name: str, role: str, *, user=None, group=None, kind="ClusterRole"):
    subject = {"kind": "User" if user else "Group", "name": user or group,
               "apiGroup": "rbac.authorization.k8s.io"}  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [subject],
    }
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
    status, body = cluster.request("POST", path, binding)
    assert status == 201, body


def label_namespace(cluster, ns: str, labels=None, annotations=None) -> None:
    meta = {"labels": labels or {}, "annotations": annotations or {}}
    status, body = cluster.request("PATCH", f"/api/v1/namespaces/{ns}", {"metadata": meta},
                                   headers=MERGE)  # fmt: skip
    assert status == 200, body


def refused(status: int, body: dict) -> str:
    """The policy's own message from a refusal (the apiserver prefixes what was denied)."""
    assert status in (403, 422), f"expected a refusal, got {status}: {body}"
    return body["message"].split(" denied request: ", 1)[-1]


def policy_active(cluster, ns: str) -> bool:
    """The policies are enforced: a privileged podTemplate is refused (dry run, nothing kept)."""
    dm = deepmodule("probe", podTemplate=template(hostNetwork=True))
    status, _ = cluster.request("POST", DM.format(ns=ns) + "?dryRun=All", dm)
    return status in (403, 422)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(cluster):
    """`kubectl apply -k controller/`: CRDs, RBAC, the operator and the admission policies."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "controller"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/deepmodules.deepmarket.dev",
        "crd/trainingruns.deepmarket.dev", "crd/catalogsources.deepmarket.dev",
    )  # fmt: skip
    cluster.kubectl(
        "scale", "-n", "deepmarket-system", "deployment/deepmarket-operator", "--replicas=0"
    )
    cluster.wait_for(lambda: policy_active(cluster, "default"), "admission policies enforced")
    return cluster


@pytest.fixture(scope="module")
def operator(installed, tmp_path_factory):
    op = Operator(installed, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture
def team(installed, namespace):
    """A namespace with alice (may manage DeepModules, not pods: the `deepmarket-edit`
    ClusterRole on its own) and bob (group team-ml, bound to `edit`: pods too)."""
    bind(installed, namespace, "alice-deepmodules", "deepmarket-edit", user="alice")
    bind(installed, namespace, "team-ml-edit", "edit", group="team-ml")
    alice = Person(installed, "alice")
    bob = Person(installed, "bob", ("team-ml",))
    # RBAC caches settle (and `edit` aggregates deepmarket-edit) before the tests rely on them.
    installed.wait_for(
        lambda: (
            alice.request("GET", DM.format(ns=namespace))[0] == 200
            and bob.request("GET", DM.format(ns=namespace))[0] == 200
        ),
        "alice and bob may list DeepModules",
    )
    return namespace, alice, bob, Admin(installed)


# --- who may shape the operator's pods --------------------------------------------------------


def test_podtemplate_needs_the_right_to_create_pods(team):
    ns, alice, bob, _ = team
    pod_rights = template(nodeSelector={"disk": "ssd"})
    msg = refused(*alice.create_dm(ns, "tuned", podTemplate=pod_rights))
    assert "spec.podTemplate" in msg
    assert 'user "alice" may not create pods in namespace ' + ns in msg
    # Her DeepModule rights are real: the same module without podTemplate is admitted.
    assert alice.create_dm(ns, "plain")[0] == 201
    # bob may create pods (through his group's `edit`): his podTemplate is admitted.
    status, body = bob.create_dm(ns, "tuned", podTemplate=pod_rights)
    assert status == 201, body
    # alice may still scale bob's module (its podTemplate unchanged) ...
    path = DM.format(ns=ns) + "/tuned"
    status, body = alice.request("PATCH", path, {"spec": {"replicas": 2}}, MERGE)
    assert status == 200, body
    # ... but not rewrite its podTemplate.
    changed = {"spec": {"podTemplate": template(nodeSelector={"disk": "nvme"})}}
    assert "spec.podTemplate" in refused(*alice.request("PATCH", path, changed, MERGE))
    # Nothing refused was stored.
    assert dm_of(alice.cluster, ns, "tuned")["spec"]["podTemplate"] == pod_rights


def test_secret_references_need_the_right_to_read_them(team, installed):
    ns, alice, bob, _ = team
    env_from = [{"secretRef": {"name": "webdav"}}]
    msg = refused(*alice.create_dm(ns, "creds", envFrom=env_from))
    assert 'Secret "webdav"' in msg and 'user "alice"' in msg
    assert "get on secrets/webdav" in msg
    weights = {"url": "https://dav.example.org/w/", "secretRef": "webdav"}
    assert 'Secret "webdav"' in refused(*alice.create_dm(ns, "w", weights=weights))
    # An admin grants alice that one Secret: now she may hand it to her module.
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "read-webdav"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["webdav"],
                   "verbs": ["get"]}],
    }  # fmt: skip
    roles = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"
    assert installed.request("POST", roles, role)[0] == 201
    bind(installed, ns, "alice-webdav", "read-webdav", user="alice", kind="Role")
    installed.wait_for(lambda: alice.admits(ns, envFrom=env_from), "alice's grant in force")
    assert alice.create_dm(ns, "creds", envFrom=env_from)[0] == 201
    # Another Secret is still not hers.
    other = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "admin-token", "key": "t"}}}]
    assert 'Secret "admin-token"' in refused(*alice.create_dm(ns, "tok", env=other))
    # bob may create pods, so he may reference any Secret of the namespace (as in a pod).
    assert bob.create_dm(ns, "tok", env=other)[0] == 201


def test_catalogsource_secrets_and_local_urls(team, installed):
    """A CatalogSource makes the operator use a Secret as git credentials (sent to the URL the
    requester chose) and read file:// paths on its own disk: both need the requester's rights."""
    ns, alice, _, admin = team
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "catalogs"},
        "rules": [{"apiGroups": ["deepmarket.dev"], "resources": ["catalogsources"],
                   "verbs": ["create", "get"]}],
    }  # fmt: skip
    roles = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"
    assert installed.request("POST", roles, role)[0] == 201
    bind(installed, ns, "alice-catalogs", "catalogs", user="alice", kind="Role")
    path = f"/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/catalogsources?dryRun=All"

    def source(**spec) -> dict:
        spec.setdefault("url", "https://git.example.org/team/catalog.git")
        return {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "CatalogSource",
                "metadata": {"name": "main"}, "spec": spec}  # fmt: skip

    installed.wait_for(lambda: alice.request("POST", path, source())[0] == 201, "alice's role")
    msg = refused(*alice.request("POST", path, source(secretRef={"name": "admin-git"})))
    assert 'Secret "admin-git"' in msg and "get on secrets/admin-git" in msg
    hook = source(webhook={"secretRef": {"name": "hook"}})
    assert 'Secret "hook"' in refused(*alice.request("POST", path, hook))
    local = source(url="file:///var/run/secrets/kubernetes.io/serviceaccount")
    msg = refused(*alice.request("POST", path, local))
    assert msg.startswith("spec.url: a file:// URL reads the deepmarket operator's own disk")
    assert 'user "alice"' in msg
    # A cluster admin may (local development with `make run`).
    assert admin.request("POST", path, local)[0] == 201


def test_trainingruns_are_held_to_the_same_rules(team):
    ns, alice, bob, admin = team
    path = f"/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/trainingruns?dryRun=All"
    data = {"input": {"url": "https://dav.example.org/in/"},
            "output": {"url": "https://dav.example.org/out/"}}  # fmt: skip

    def run(**spec) -> dict:
        spec = {"image": IMAGE, "data": data, **spec}
        return {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "TrainingRun",
                "metadata": {"name": "train"}, "spec": spec}  # fmt: skip

    assert alice.request("POST", path, run())[0] == 201
    tuned = template(nodeSelector={"disk": "ssd"})
    msg = refused(*alice.request("POST", path, run(podTemplate=tuned)))
    assert msg.startswith("spec.podTemplate shapes the pod") and 'user "alice"' in msg
    assert bob.request("POST", path, run(podTemplate=tuned))[0] == 201
    msg = refused(*admin.request("POST", path, run(podTemplate=template(hostPID=True))))
    assert msg.startswith("spec.podTemplate.spec.hostPID:")
    with_secret = {**data, "input": {**data["input"], "secretRef": "webdav"}}
    assert 'Secret "webdav"' in refused(*alice.request("POST", path, run(data=with_secret)))


# --- nobody gets a privileged pod through the operator without the admin's opt-in ------------

HOSTILE = {
    "privileged": (
        # (privileged needs allowPrivilegeEscalation, which the operator sets to false)
        template(containers=[{"name": "deepaas", "securityContext": {
            "privileged": True, "allowPrivilegeEscalation": True}}]),
        "spec.podTemplate.spec.containers[deepaas].securityContext.privileged",
    ),
    "host-network": (template(hostNetwork=True), "spec.podTemplate.spec.hostNetwork"),
    "host-pid": (template(hostPID=True), "spec.podTemplate.spec.hostPID"),
    "host-path": (
        template(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        "spec.podTemplate.spec.volumes[root].hostPath",
    ),
    "capabilities": (
        template(
            containers=[
                {"name": "deepaas", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
            ]
        ),
        "spec.podTemplate.spec.containers[deepaas].securityContext.capabilities.add",
    ),
    "host-port": (
        template(initContainers=[{"name": "x", "image": IMAGE, "ports": [{"containerPort": 80,
                                                                          "hostPort": 80}]}]),
        "spec.podTemplate.spec.initContainers[x].ports[].hostPort",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_no_privileged_pod_spec_whatever_the_requester(team, case):
    ns, _, bob, admin = team
    pod, field = HOSTILE[case]
    for who in (bob, admin):  # pod rights, and even system:masters
        msg = refused(*who.create_dm(ns, f"bad-{case}", podTemplate=pod))
        assert msg.startswith(field + ":"), msg
        assert f"{OPT_IN}=allowed" in msg


def test_only_a_cluster_admin_opts_a_namespace_in(team, installed):
    ns, _, bob, admin = team
    pod, _ = HOSTILE["privileged"]
    # bob administers workloads in his namespace but cannot label it.
    status, _ = bob.request("PATCH", f"/api/v1/namespaces/{ns}",
                            {"metadata": {"labels": {OPT_IN: "allowed"}}}, MERGE)  # fmt: skip
    assert status == 403
    label_namespace(installed, ns, {OPT_IN: "allowed"})
    installed.wait_for(
        lambda: admin.admits(ns, podTemplate=pod), "the opted-in namespace admits a privileged pod"
    )
    assert admin.create_dm(ns, "root", podTemplate=pod)[0] == 201
    assert bob.create_dm(ns, "root-too", podTemplate=pod)[0] == 201


def test_operator_children_are_held_to_the_rules_too(team, installed):
    """Deployments and Jobs labelled as the operator's are checked themselves, whoever writes
    them and whatever DeepModule they came from."""
    ns, _, _, admin = team
    labels = {"app.kubernetes.io/managed-by": "deepmarket"}
    spec = {"containers": [{"name": "c", "image": IMAGE, "securityContext": {"privileged": True}}]}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sneaky", "labels": labels},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}},
    }  # fmt: skip
    msg = refused(*admin.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment))
    assert msg.startswith("Deployment sneaky: spec.template.spec.containers[c].securityContext")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "sneaky", "labels": labels},
        "spec": {"template": {"spec": {**spec, "hostPID": True, "restartPolicy": "Never"}}},
    }
    msg = refused(*admin.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job))
    assert msg.startswith("Job sneaky: spec.template.spec.")


def test_operator_never_creates_a_privileged_pod_without_the_opt_in(operator, team, installed):
    """A privileged DeepModule admitted while its namespace was opted in: once the admin takes
    the opt-in back, the operator's next Deployment write is refused and the status says why."""
    ns, _, _, admin = team
    cluster = operator.cluster
    label_namespace(cluster, ns, {OPT_IN: "allowed", "pod-security.kubernetes.io/enforce":
                                  "privileged"})  # fmt: skip
    pod, _ = HOSTILE["privileged"]
    cluster.wait_for(lambda: admin.admits(ns, podTemplate=pod), "opt-in in force")
    assert admin.create_dm(ns, "root", podTemplate=pod)[0] == 201
    deployment = f"/apis/apps/v1/namespaces/{ns}/deployments/root"
    try:
        cluster.wait_for(lambda: cluster.request("GET", deployment)[0] == 200, "Deployment")
    except Exception as err:
        raise AssertionError(f"{err}\n{dm_of(cluster, ns, 'root')}\n{operator.tail()}") from None
    # The admin takes the opt-in back; the Deployment is recreated (e.g. after a restore).
    label_namespace(cluster, ns, {OPT_IN: None, "pod-security.kubernetes.io/enforce": "restricted"})
    cluster.wait_for(lambda: not admin.admits(ns, podTemplate=pod), "opt-in withdrawn")
    assert cluster.request("DELETE", deployment)[0] == 200

    def rejected() -> bool:
        ready = condition(dm_of(cluster, ns, "root"), "Ready")
        return ready.get("reason") == "ApplyRejected"

    cluster.wait_for(rejected, "DeepModule root reports the refusal", timeout=90)
    ready = condition(dm_of(cluster, ns, "root"), "Ready")
    assert ready["status"] == "False"
    assert (
        "Deployment root: spec.template.spec.containers[deepaas].securityContext.privileged"
        in (ready["message"])
    )
    assert cluster.request("GET", deployment)[0] == 404


# --- images from listed registries only ---------------------------------------------------------


def test_namespace_limited_to_listed_registries(team, installed):
    ns, alice, bob, admin = team
    label_namespace(
        installed, ns, annotations={REGISTRIES: "ghcr.io/deepmarket, docker.io/deephdc"}
    )
    installed.wait_for(lambda: not alice.admits(ns, image="quay.io/x/y:1"), "rule in force")
    msg = refused(*alice.create_dm(ns, "evil", image="docker.io/evil/miner:1.0"))
    assert msg.startswith("spec.image: image docker.io/evil/miner:1.0 is not from a registry")
    assert f"namespace {ns} allows (ghcr.io/deepmarket, docker.io/deephdc)" in msg
    assert REGISTRIES in msg
    # A prefix is a path boundary, not a string prefix.
    assert "is not from a registry" in refused(
        *alice.create_dm(ns, "e2", image="ghcr.io/deepmarketx/a:1")
    )
    # Docker Hub short names are Docker Hub's.
    assert (
        alice.create_dm(ns, "hub", image="deephdc/deep-oc-plants-classification-tf:1.2.0")[0] == 201
    )
    assert alice.create_dm(ns, "ok", image="ghcr.io/deepmarket/plants:1.2.0")[0] == 201
    # Images inside podTemplate are held to the list too, whoever asks.
    sidecar = template(containers=[{"name": "side", "image": "quay.io/evil/side:1"}])
    msg = refused(*bob.create_dm(ns, "side", podTemplate=sidecar))
    assert msg.startswith("spec.podTemplate.spec.containers[side].image: image quay.io/evil/side:1")
    assert refused(*admin.create_dm(ns, "side", podTemplate=sidecar))


def test_catalog_images_are_checked_where_the_operator_writes_them(operator, team):
    """spec.module takes its image from the catalog, which admission cannot see: the operator's
    Deployment is checked instead, and the DeepModule's status carries the refusal."""
    ns, alice, _, _ = team
    cluster = operator.cluster
    label_namespace(cluster, ns, annotations={REGISTRIES: "ghcr.io/deepmarket"})
    cluster.wait_for(lambda: not alice.admits(ns, image="quay.io/x/y:1"), "rule in force")
    status, body = alice.request("POST", DM.format(ns=ns), {
        "apiVersion": "deepmarket.dev/v1alpha1", "kind": "DeepModule",
        "metadata": {"name": "pose"}, "spec": {"module": "posenet-tf"}})  # fmt: skip
    assert status == 201, body

    def rejected() -> bool:
        return condition(dm_of(cluster, ns, "pose"), "Ready").get("reason") == "ApplyRejected"

    cluster.wait_for(rejected, "DeepModule pose reports the refusal", timeout=90)
    msg = condition(dm_of(cluster, ns, "pose"), "Ready")["message"]
    assert "Deployment pose: spec.template.spec.containers[deepaas].image: image " in msg
    assert "is not from a registry" in msg


# --- GPU quotas per team ----------------------------------------------------------------------


def test_team_over_its_gpu_quota_gets_the_reason(operator, team, capsys):
    ns, alice, _, _ = team
    cluster = operator.cluster
    code = main(["admin", "quota", ns, "--gpus", "2", "--deepmodules", "3",
                 "--kubeconfig", str(cluster.kubeconfig)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"ResourceQuota deepmarket-quota in namespace {ns}:" in out
    assert "requests.nvidia.com/gpu" in out
    quota = cluster.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/deepmarket-quota")[1]
    assert quota["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "2",
        "count/deepmodules.deepmarket.dev": "3",
    }
    quota_path = f"/api/v1/namespaces/{ns}/resourcequotas/deepmarket-quota"

    def usage_known() -> bool:
        q = cluster.request("GET", quota_path)[1]
        return set(q.get("status", {}).get("used", {})) == set(q["spec"]["hard"])

    # Admission refuses what a quota covers until the quota controller has counted usage.
    cluster.wait_for(usage_known, "quota usage computed")
    gpu = {"gpu": 1, "cpu": "1", "memory": "1Gi"}
    for name in ("gpu-a", "gpu-b"):
        status, body = alice.create_dm(ns, name, resources=gpu)
        assert status == 201, body
    for name in ("gpu-a", "gpu-b"):
        cluster.wait_for(
            lambda n=name: condition(dm_of(cluster, ns, n), "Ready").get("status") == "True",
            f"{name} Ready",
            timeout=90,
        )
    assert alice.create_dm(ns, "gpu-c", resources=gpu)[0] == 201

    def exhausted() -> bool:
        return condition(dm_of(cluster, ns, "gpu-c"), "Ready").get("reason") == "QuotaExhausted"

    cluster.wait_for(exhausted, "gpu-c reports QuotaExhausted", timeout=90)
    msg = condition(dm_of(cluster, ns, "gpu-c"), "Ready")["message"]
    assert msg.startswith(
        "quota exhausted: 2 of 2 GPUs in use by DeepModule gpu-a (1), DeepModule gpu-b (1); "
    ), msg
    assert f"deepmarket admin quota {ns} --gpus N" in msg
    # The object-count quota: a fourth DeepModule is refused at admission.
    msg = refused(*alice.create_dm(ns, "gpu-d", resources=gpu))
    assert "exceeded quota: deepmarket-quota" in msg and "count/deepmodules" in msg
    # Raising the quota lets the waiting module start.
    assert main(["admin", "quota", ns, "--gpus", "3", "--kubeconfig", str(cluster.kubeconfig)]) == 0
    cluster.wait_for(
        lambda: condition(dm_of(cluster, ns, "gpu-c"), "Ready").get("status") == "True",
        "gpu-c Ready after the quota was raised",
        timeout=120,
    )


def test_quota_cli_unhappy_paths(installed, capsys):
    kubeconfig = str(installed.kubeconfig)
    assert main(["admin", "quota", "no-such-team", "--gpus", "1", "--kubeconfig", kubeconfig]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "deepmarket: error: namespace no-such-team does not exist: create it first "
        "(kubectl create namespace no-such-team)"
    )


def test_quota_cli_refuses_people_who_are_not_admins(team, tmp_path, capsys):
    ns, _, bob, _ = team
    cluster = bob.cluster
    cert, key = issue_user(cluster.pki, "bob", ("team-ml",))
    kubeconfig = tmp_path / "bob.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{cluster.server}', "
        f"certificate-authority: '{cluster.pki.ca_cert}'}}}}]\n"
        f"users: [{{name: bob, user: {{client-certificate: '{cert}', client-key: '{key}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: bob}}]\ncurrent-context: c\n"
    )
    assert main(["admin", "quota", ns, "--gpus", "8", "--kubeconfig", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert f"your credentials may not write ResourceQuotas in namespace {ns}" in err


# --- Pod Security: what the operator generates passes `restricted` ----------------------------

GENERATED = {
    "cpu": {"image": IMAGE},
    "gpu": {"image": IMAGE, "resources": {"gpu": 2, "gpuProduct": "NVIDIA-A100-SXM4-80GB"}},
    "weights": {
        "image": IMAGE,
        "weights": {"url": "https://dav.example.org/w/", "secretRef": "webdav"},
        "envFrom": [{"secretRef": {"name": "webdav"}}],
    },
}


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_generated_pods_pass_restricted_pod_security(cluster, namespace, case):
    from deepmarket.controller.deepmodule.builders import pod_template
    from deepmarket.controller.deepmodule.resolve import resolve
    from deepmarket.controller.options import Options

    labels = cluster.request("GET", f"/api/v1/namespaces/{namespace}")[1]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    tmpl = pod_template("m", resolve(GENERATED[case], None), Options())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m", **tmpl["metadata"]},
           "spec": tmpl["spec"]}  # fmt: skip
    status, body = cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", pod)
    assert status == 201, body
