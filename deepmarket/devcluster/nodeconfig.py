"""Pure builders for the real node: containerd, CNI, kubelet and kube-proxy configuration, the
kubelet's command line, and the choice of a pod network. No I/O here; `realnode.py` writes and
runs what these return.

Facts that shaped them (Debian 12 host, cgroup v1/hybrid, root without CAP_SYS_RESOURCE):
kubelet 1.37 refuses cgroup v1 unless `failCgroupV1: false`; a negative OOM score or a
1,000,000 open-file limit cannot be set without CAP_SYS_RESOURCE; containerd's CRI needs
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

from deepmarket.devcluster.config import SERVICE_CIDR

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
# Cluster DNS: CoreDNS on the host (see `corefile`) behind the `kube-dns` Service at the 10th
# address of the Service range, as kubeadm places it (in the range's static band, so the
# apiserver never hands it to another Service).
CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR)[10])
DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
# CoreDNS's identity (a client certificate) and the ClusterRole bound to it: read-only, only
# what its kubernetes plugin lists and watches.
DNS_USER = "system:coredns"
DNS_MANAGER = "realnode.deepmarket.io"  # a label value: no slash
SYSTEMD_RESOLVED_STUB = "127.0.0.53"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
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
    dns: int  # CoreDNS, UDP and TCP on the node's address (the kube-dns Service's target)
    dns_ready: int  # CoreDNS's ready plugin, on 127.0.0.1


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
    # The host's resolver configuration the kubelet gives pods (search domains; `Default` pods'
    # nameservers), see `kubelet_resolv_conf`.
    resolv_conf: str = "/etc/resolv.conf"
    # Where CoreDNS forwards names outside the cluster (the host's nameservers).
    upstreams: tuple[str, ...] = ()
    # Debian's runc is /usr/sbin/runc; Docker's containerd.io package (GitHub's Ubuntu runners)
    # ships /usr/bin/runc: the one on PATH.
    runc: str = "/usr/sbin/runc"

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
    """containerd 2.x configuration (version 3: the CRI split into its images and runtime
    plugins) with all state under `plan.base` and the root in `plan.containerd_root`."""
    b = plan.base / "containerd"
    images = '[plugins."io.containerd.cri.v1.images"]'
    runtime = '[plugins."io.containerd.cri.v1.runtime"'
    return f"""\
version = 3
root = "{plan.containerd_root or b / "root"}"
state = "{b / "state"}"
oom_score = 0
# No drop-ins: the host's /etc/containerd/conf.d (which `containerd config default` imports)
# configures the host's own containerd, if any, not this node's.
imports = []

[grpc]
  address = "{plan.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{b / "opt"}"

# No NRI plugins here; disabled, it opens no socket under /var/run/nri.
[plugins."io.containerd.nri.v1.nri"]
  disable = true

{images}
  snapshotter = "overlayfs"
  # The sandbox (pause) image is a local one: there is no registry to pull it from.
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause_image}"

{runtime}]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  {runtime}.containerd]
    default_runtime_name = "runc"
    {runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      {runtime}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{plan.runc}"
        Root = "{b / "runc"}"
  {runtime}.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
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
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": plan.resolv_conf,
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


# --- cluster DNS ---------------------------------------------------------------------------


def nameservers(resolv_conf: str) -> list[str]:
    """The `nameserver` addresses of a resolv.conf text, in order."""
    found = []
    for line in resolv_conf.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(parts[1].split("%", 1)[0])))
            except ValueError:
                continue
    return found


def kubelet_resolv_conf(etc_resolv_conf: str, systemd_resolv_conf_exists: bool) -> str:
    """The file the kubelet reads search domains (and `dnsPolicy: Default` pods' nameservers)
    from. Under systemd-resolved /etc/resolv.conf names only its stub 127.0.0.53, which a pod
    cannot reach (it is the pod's own loopback there): use the file listing the real upstream
    servers instead, as kubeadm does."""
    servers = nameservers(etc_resolv_conf)
    if systemd_resolv_conf_exists and servers and set(servers) == {SYSTEMD_RESOLVED_STUB}:
        return SYSTEMD_RESOLV_CONF
    return "/etc/resolv.conf"


def dns_upstreams(etc_resolv_conf: str, plan_node_ip: str) -> tuple[str, ...]:
    """Where CoreDNS forwards other names: the host's own nameservers. CoreDNS runs on the host,
    so a loopback stub (systemd-resolved's 127.0.0.53, a local dnsmasq) is reachable and keeps
    the host's split DNS; only servers that would be CoreDNS itself are left out."""
    own = {plan_node_ip, DNS_SERVICE_IP}
    return tuple(s for s in nameservers(etc_resolv_conf) if s not in own)


def corefile(plan: NodePlan, kubeconfig: Path) -> str:
    """CoreDNS's configuration: cluster names from the apiserver, the rest forwarded to the
    host's nameservers, answering only the node's pods and this host (an open resolver on the
    machine's address would serve its whole network)."""
    forward = (
        f"    forward . {' '.join(plan.upstreams)} {{\n        max_concurrent 1000\n    }}\n"
        if plan.upstreams
        else ""
    )
    return f"""\
.:{plan.ports.dns} {{
    bind {plan.node_ip}
    errors
    log . {{
        class error
    }}
    ready 127.0.0.1:{plan.ports.dns_ready}
    acl {{
        allow net {plan.pod_cidr} {plan.node_ip}/32 127.0.0.0/8
        block
    }}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
{forward}    cache 30
    loop
}}
"""


def coredns_args(coredns: Path, corefile_path: Path) -> list[str]:
    return [str(coredns), "-conf", str(corefile_path)]


def dns_objects(plan: NodePlan) -> list[dict[str, Any]]:
    """What the cluster holds for its DNS: the read-only ClusterRole bound to CoreDNS's user,
    the `kube-dns` Service at its fixed ClusterIP (no selector: CoreDNS is no pod) and the
    EndpointSlice that points it at CoreDNS on the host."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": DNS_USER, "labels": labels},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": DNS_USER, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": DNS_USER,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DNS_USER}
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE, "labels": labels},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{DNS_SERVICE}-host",
                "namespace": DNS_NAMESPACE,
                "labels": {
                    **labels,
                    "kubernetes.io/service-name": DNS_SERVICE,
                    # not the EndpointSlice controllers': they leave it alone
                    "endpointslice.kubernetes.io/managed-by": DNS_MANAGER,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [plan.node_ip], "conditions": {"ready": True}}],
            "ports": [
                {"name": "dns", "port": plan.ports.dns, "protocol": "UDP"},
                {"name": "dns-tcp", "port": plan.ports.dns, "protocol": "TCP"},
            ],
        },
    ]
