"""Pure builders for the real node: containerd, CNI, kubelet and kube-proxy configuration, the
kubelet's command line, and the choice of a pod network. No I/O here; `realnode.py` writes and
runs what these return.

Facts that shaped them (Debian 12 host, cgroup v1/hybrid, root without CAP_SYS_RESOURCE):
kubelet 1.37 refuses cgroup v1 unless `failCgroupV1: false`; a negative OOM score or a
1,000,000 open-file limit cannot be set without CAP_SYS_RESOURCE; Debian's containerd 1.6 needs
`restrict_oom_score_adj` for the same reason; crun refuses hybrid cgroups, runc does not.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "real-node-1"
REAL_NODE_LABEL = "deepmarket.io/real-node"
# Only workloads that tolerate this taint (and select the label) land on the real node; the
# simulated GPU nodes keep everything else.
TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
BRIDGE = "dm-cni0"
# Candidate pod networks, first free one wins: away from the cluster's Service range
# (10.0.0.0/24), KWOK's pretend pod IPs (10.244.0.0/16) and podman's default (10.88.0.0/16).
POD_CIDR_CANDIDATES = tuple(f"10.{second}.0.0/24" for second in (85, 86, 87, 89, 90, 91))
CNI_BIN_DIR = Path("/usr/lib/cni")
# Sysctls the kubelet insists on writing (pkg/kubelet/cm setupKernelTunables), with the values
# it wants. The kubelet runs in its own mount namespace where these files read back exactly
# these values, so the host's own settings are never touched.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Where nodes keep their state: short, because the kubelet and containerd put unix sockets
# (at most 108 bytes of path) under it.
NODES_DIR = Path("/var/lib/deepmarket-node")
# Paths the kubelet and containerd use whatever their configuration says.
FIXED_PATHS = (
    str(NODES_DIR),
    "/var/lib/kubelet",
    "/var/log/containers",
    "/run/containerd",
    "/opt/containerd",
)


def placement() -> dict[str, Any]:
    """What a pod spec adds to run on the real node (a DeepModule's `podTemplate.spec`)."""
    return {
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{**TAINT, "operator": "Equal"}],
    }


@dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int


@dataclass(frozen=True)
class NodePlan:
    """Everything the node's configuration depends on."""

    base: Path  # all of the node's own state lives under here
    node_ip: str
    pod_cidr: str
    ports: NodePorts
    ca_cert: Path
    # Unix socket paths are limited to 108 bytes: the socket lives in a short dir of its own.
    run_dir: Path = Path("/run/deepmarket/node")
    # containerd's root (content and unpacked images) outlives the node: a cache, so the next
    # start need not import the images again.
    containerd_root: Path | None = None
    name: str = NODE_NAME
    bridge: str = BRIDGE
    max_open_files: int = 20000

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.base / "kubelet"

    @property
    def sysctl_dir(self) -> Path:
        return self.base / "sysctl"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni" / "net.d"

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))


def choose_pod_cidr(in_use: Iterable[str]) -> str:
    """The first candidate overlapping none of the host's routes and addresses (`in_use`)."""
    taken = []
    for net in in_use:
        try:
            taken.append(ipaddress.ip_network(net, strict=False))
        except ValueError:
            continue
    for candidate in POD_CIDR_CANDIDATES:
        net = ipaddress.ip_network(candidate)
        if not any(net.version == t.version and net.overlaps(t) for t in taken):
            return candidate
    raise ValueError(
        f"every candidate pod network ({', '.join(POD_CIDR_CANDIDATES)}) overlaps a network "
        "of this machine"
    )


def containerd_config(plan: NodePlan, pause_image: str) -> str:
    """containerd 1.6 (Debian) configuration with all state under `plan.base`."""
    b = plan.base / "containerd"
    return f"""\
version = 2
root = "{plan.containerd_root or b / "root"}"
state = "{b / "state"}"
oom_score = 0

[grpc]
  address = "{plan.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{b / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "{b / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{plan.cni_conf_dir}"
"""


def cni_conflist(plan: NodePlan) -> dict[str, Any]:
    """A bridge on the node's own range; no masquerading (pods talk to this host and to each
    other, never to the internet), so no per-pod NAT chains to clean up."""
    return {
        "cniVersion": "0.4.0",
        "name": "deepmarket",
        "plugins": [
            {
                "type": "bridge",
                "bridge": plan.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(plan.base / "cni" / "ipam"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": plan.pod_cidr, "gateway": plan.gateway}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(plan: NodePlan) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # the host is cgroup v1/hybrid
        "cgroupDriver": "cgroupfs",  # no systemd managing cgroups here
        "containerRuntimeEndpoint": f"unix://{plan.socket}",
        "failSwapOn": False,
        "oomScoreAdj": 0,  # a negative score needs CAP_SYS_RESOURCE
        "maxOpenFiles": plan.max_open_files,  # the hard RLIMIT_NOFILE; more needs CAP_SYS_RESOURCE
        # Only the apiserver (client certificate from the cluster CA) may call logs and exec.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(plan.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "address": plan.node_ip,
        "port": plan.ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": plan.ports.kubelet_healthz,
        "podLogsDir": str(plan.base / "pod-logs"),
        "podCIDR": plan.pod_cidr,
        # A developer machine's disk and memory are the user's: never evict or GC for them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "0%",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
            "imagefs.inodesFree": "0%",
        },
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        "registerWithTaints": [TAINT],
        # Pods stuck terminating would hold `dev down` up; a dev node need not wait long.
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
    }


def kubelet_args(plan: NodePlan, kubelet: Path, config: Path, kubeconfig: Path) -> list[str]:
    return [
        str(kubelet),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={plan.kubelet_root}",
        f"--cert-dir={plan.base / 'kubelet-pki'}",
        f"--hostname-override={plan.name}",
        f"--node-ip={plan.node_ip}",
        f"--node-labels={REAL_NODE_LABEL}=true",
        "--v=1",
    ]


def namespaced_command(plan: NodePlan, command: list[str]) -> list[str]:
    """`command` in a private mount namespace where the kubelet's sysctls read back the values
    it wants (files bind-mounted over /proc/sys/...). The PID stays the kubelet's: unshare,
    then sh, exec into it. /proc is made a slave first: on a host whose mounts are shared
    (systemd's default) the bind mounts would otherwise propagate back to the host's /proc."""
    mounts = "mount --make-rslave /proc; " + "; ".join(
        f"mount --bind {shlex.quote(str(plan.sysctl_dir / key.replace('/', '_')))} /proc/sys/{key}"
        for key in KUBELET_SYSCTLS
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "unchanged",
        "--",
        "sh",
        "-ec",
        f'{mounts}; exec "$@"',
        "kubelet",
        *command,
    ]


def kube_proxy_config(plan: NodePlan, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": plan.name,
        "clusterCIDR": plan.pod_cidr,
        "bindAddress": plan.node_ip,
        "healthzBindAddress": f"127.0.0.1:{plan.ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{plan.ports.proxy_metrics}",
        "nodePortAddresses": [f"{plan.node_ip}/32"],
        # Pod -> Service -> pod on the same bridge needs br_netfilter, a host-wide module and
        # sysctl; masquerading Service traffic routes the replies back through this host instead.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        # 0 leaves the host's conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def to_json(data: dict[str, Any]) -> str:
    """Kubelet and kube-proxy configuration files are YAML; JSON is YAML."""
    return json.dumps(data, indent=1)
