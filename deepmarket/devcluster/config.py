"""Pure builders for the local control plane: command lines, kubeconfig, audit policy, KWOK
stages and fake Node objects. No I/O here; `controlplane.py` writes and runs what these return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deepmarket.devcluster.pki import Pki

SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
# Client-side rate limits of the controllers: the defaults (20-50 QPS) only slow a simulated
# cluster down (1,000 pods would wait on the scheduler's limiter); KWOK itself has none.
CLIENT_QPS = 500
CLIENT_BURST = 1000


@dataclass(frozen=True)
class NodeSpec:
    """A fake node KWOK keeps Ready; `gpus` becomes `nvidia.com/gpu` capacity."""

    name: str
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 0
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def gpu_nodes(count: int, gpus: int = 8, prefix: str = "gpu-node") -> list[NodeSpec]:
    return [
        NodeSpec(
            f"{prefix}-{i}",
            cpu="64",
            memory="512Gi",
            gpus=gpus,
            labels={
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                "nvidia.com/gpu.memory": "81920",
            },
        )
        for i in range(1, count + 1)
    ]


def cpu_nodes(count: int, prefix: str = "cpu-node") -> list[NodeSpec]:
    return [NodeSpec(f"{prefix}-{i}", cpu="16", memory="64Gi") for i in range(1, count + 1)]


def etcd_args(data_dir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        # A throwaway cluster: durability across power loss is not worth the fsync latency
        # (kube-apiserver restarts keep data either way; etcd itself is never killed -9).
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_args(
    pki: Pki,
    ports: Ports,
    cert_dir: Path,
    audit_policy: Path | None,
    audit_log: Path | None,
    node_ip: str | None = None,
) -> list[str]:
    """`node_ip`: the host's address, set when a real node joins: its pods reach the apiserver
    there through the `kubernetes` Service, and its kubelet serves logs and exec there."""
    args = [
        "--advertise-address=127.0.0.1",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
    ]
    if node_ip:
        client_cert, client_key = pki.client("apiserver-kubelet-client")
        args = [a for a in args if not a.startswith(("--advertise-address", "--bind-address"))]
        args = [a.replace("=RBAC", "=Node,RBAC") for a in args]
        args += [
            f"--advertise-address={node_ip}",
            # Pods cannot reach 127.0.0.1 of the host; TLS and client certificates guard it.
            "--bind-address=0.0.0.0",
            "--endpoint-reconciler-type=lease",
            "--enable-admission-plugins=NodeRestriction",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={client_cert}",
            f"--kubelet-client-key={client_key}",
        ]
    else:
        # No kubelets, no Service endpoints for the apiserver itself: nothing to reconcile.
        args.append("--endpoint-reconciler-type=none")
    if audit_policy and audit_log:
        args += [
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxbackup=0",
        ]
    return args


def controller_manager_args(kubeconfig: Path, pki: Pki, ports: Ports) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        "--leader-elect=false",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--controllers=*",
        f"--kube-api-qps={CLIENT_QPS}",
        f"--kube-api-burst={CLIENT_BURST}",
        # A new ResourceQuota on a resource the quota controller only just discovered (a CRD's
        # count/...) has no usage until the next full resync, and admission refuses what it
        # covers until then: 5 minutes by default, 10 s here.
        "--resource-quota-sync-period=10s",
    ]


def scheduler_config(kubeconfig: Path) -> dict:
    """KubeSchedulerConfiguration; the file replaces the deprecated --kubeconfig/--kube-api-qps."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(kubeconfig),
            "qps": CLIENT_QPS,
            "burst": CLIENT_BURST,
        },
        "leaderElection": {"leaderElect": False},
    }


def scheduler_args(config_file: Path, kubeconfig: Path, ports: Ports) -> list[str]:
    return [
        f"--config={config_file}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
    ]


def kwok_args(kubeconfig: Path, config: Path, ports: Ports) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.1.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{ports.kwok}",
    ]


def kubeconfig(
    server: str, pki: Pki, name: str = "deepmarket-dev", component: str | None = None
) -> dict:
    """A kubeconfig for the admin, or for `component` with its own client certificate."""
    cert, key = pki.client(component) if component else (pki.admin_cert, pki.admin_key)
    user = component or "admin"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


# The operator's ServiceAccount (controller/rbac/service_account.yaml), as the apiserver names it.
OPERATOR_USER = "system:serviceaccount:deepmarket-system:deepmarket-operator"


def audit_policy() -> dict:
    """One Metadata-level event per write call (create/update/patch/delete), and the operator's
    reads too (its RBAC is checked against every call it makes), nothing else."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {
                "level": "Metadata",
                "verbs": ["create", "update", "patch", "delete", "deletecollection"],
            },
            {"level": "Metadata", "users": [OPERATOR_USER], "verbs": ["get", "list", "watch"]},
            {"level": "None"},
        ],
    }


def node_manifest(spec: NodeSpec) -> dict:
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods)}
    if spec.gpus:
        resources[GPU_RESOURCE] = str(spec.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            # KWOK manages nodes carrying this annotation; no taint, so workloads need no
            # toleration: every node in this cluster is fake.
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": spec.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **spec.labels,
            },
        },
        "status": {"capacity": resources, "allocatable": resources},
    }


# KWOK stages, written for this project: nodes turn Ready, scheduled pods Running,
# Job-owned pods Succeeded, deleted pods disappear. Templates see the object as `.`.
_NODE_READY = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
- address: {{ NodeIP | Quote }}
  type: InternalIP
- address: {{ NodeName | Quote }}
  type: Hostname
allocatable:
{{ YAML .status.allocatable 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version }}
  kernelVersion: {{ printf "kwok-%s" Version }}
  kubeProxyVersion: {{ printf "kwok-%s" Version }}
  osImage: kwok
  machineID: ""
  bootID: ""
  systemUUID: ""
phase: Running
"""

_POD_RUNNING = """\
{{ $now := Now }}
conditions:
- {type: PodReadyToStartContainers, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
{{ range .spec.readinessGates }}
- {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ $now | Quote }}}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }},
          finishedAt: {{ $now | Quote }}}}
{{ end }}
{{ with NodeIPWith .spec.nodeName }}
hostIP: {{ . | Quote }}
hostIPs: [{ip: {{ . | Quote }}}]
{{ end }}
{{ with PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ . | Quote }}
podIPs: [{ip: {{ . | Quote }}}]
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""  # noqa: E501

_POD_SUCCEEDED = """\
{{ $now := Now }}
conditions:
- {type: Ready, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }},
          finishedAt: {{ $now | Quote }}}}
{{ end }}
phase: Succeeded
"""  # noqa: E501


# A test can make a Job pod fail (or keep running) instead of succeeding: label it
# `deepmarket.dev/kwok-outcome: Failed` (with annotations for the exit code and termination
# message) or `Running`. TrainingRun tests use it through spec.podTemplate.
OUTCOME_LABEL = "deepmarket.dev/kwok-outcome"
_OUTCOME = f'.metadata.labels["{OUTCOME_LABEL}"]'

_POD_FAILED = """\
{{ $now := Now }}
conditions:
- {type: Ready, status: "False", reason: PodFailed, lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state: {terminated: {exitCode: {{ index $.metadata.annotations "deepmarket.dev/kwok-exit-code" }},
          reason: Error, message: {{ index $.metadata.annotations "deepmarket.dev/kwok-message" | Quote }},
          startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
{{ end }}
phase: Failed
"""  # noqa: E501


def _stage(name: str, kind: str, expressions: list[dict], nxt: dict) -> dict:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": expressions},
            "next": nxt,
        },
    }


def _expr(key: str, operator: str, *values: str) -> dict:
    expr: dict = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return expr


def kwok_stages() -> list[dict]:
    ready = '.status.conditions.[] | select( .type == "Ready" ) | .status'
    alive = _expr(".metadata.deletionTimestamp", "DoesNotExist")
    return [
        _stage(
            "node-ready", "Node", [_expr(ready, "NotIn", "True")], {"statusTemplate": _NODE_READY}
        ),
        _stage(
            "pod-running",
            "Pod",
            [alive, _expr(".status.phase", "In", "Pending"), _expr(ready, "NotIn", "True")],
            {"statusTemplate": _POD_RUNNING},
        ),
        _stage(
            "pod-job-succeeded",
            "Pod",
            [
                alive,
                _expr(".status.phase", "In", "Running"),
                _expr(".metadata.ownerReferences.[].kind", "In", "Job"),
                _expr(_OUTCOME, "DoesNotExist"),
            ],
            {"statusTemplate": _POD_SUCCEEDED},
        ),
        _stage(
            "pod-job-failed",
            "Pod",
            [alive, _expr(".status.phase", "In", "Running"), _expr(_OUTCOME, "In", "Failed")],
            {"statusTemplate": _POD_FAILED},
        ),
        _stage(
            "pod-delete",
            "Pod",
            [_expr(".metadata.deletionTimestamp", "Exists")],
            {"delete": True},
        ),
    ]
