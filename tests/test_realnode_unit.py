"""The real node's pure decisions: configuration, the pod network, what to undo on the host,
which images to build and when to rebuild them. No root, no processes."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from deepmarket.devcluster import hoststate, images, nodeconfig
from deepmarket.devcluster.config import Ports, apiserver_args
from deepmarket.devcluster.nodeconfig import NodePlan, NodePorts
from deepmarket.devcluster.pki import write_pki


def plan(tmp_path: Path) -> NodePlan:
    return NodePlan(
        base=tmp_path / "node",
        node_ip="192.0.2.2",
        pod_cidr="10.85.0.0/24",
        ports=NodePorts(10250, 10248, 10256, 10249, dns=5353, dns_ready=8181),
        ca_cert=tmp_path / "ca.crt",
        upstreams=("192.0.2.53",),
    )


def test_pod_network_avoids_the_machines_and_the_clusters_ranges():
    assert nodeconfig.choose_pod_cidr(["192.0.2.0/24", "10.88.0.0/16"]) == "10.85.0.0/24"
    assert nodeconfig.choose_pod_cidr(["10.85.0.0/16", "10.86.0.7/32"]) == "10.87.0.0/24"
    assert nodeconfig.choose_pod_cidr(["default", "fe80::/64", "10.85.0.0/24"]) == "10.86.0.0/24"
    with pytest.raises(ValueError, match="overlaps"):
        nodeconfig.choose_pod_cidr(["10.0.0.0/8"])
    for candidate in nodeconfig.POD_CIDR_CANDIDATES:
        assert not candidate.startswith(("10.0.", "10.244.", "10.88."))


def test_kubelet_config_fits_a_cgroup_v1_host_without_cap_sys_resource(tmp_path):
    config = nodeconfig.kubelet_config(plan(tmp_path))
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["oomScoreAdj"] == 0 and config["maxOpenFiles"] == 20000
    # logs/exec only for the apiserver's client certificate, never anonymous
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0
    assert config["registerWithTaints"] == [nodeconfig.TAINT]
    assert all(v == "0%" for v in config["evictionHard"].values())
    assert config["containerRuntimeEndpoint"] == "unix:///run/deepmarket/node/containerd.sock"
    assert config["clusterDNS"] == ["10.0.0.10"] and config["clusterDomain"] == "cluster.local"


def test_containerd_keeps_every_state_dir_under_the_nodes_own_dir(tmp_path):
    text = nodeconfig.containerd_config(plan(tmp_path), images.PAUSE_IMAGE)
    base = str(tmp_path / "node")
    for key in ("root", "state", "path", "Root", "conf_dir"):
        values = [
            line.split("=", 1)[1].strip().strip('"')
            for line in text.splitlines()
            if line.strip().startswith(f"{key} =")
        ]
        assert values and all(v.startswith(base) for v in values), key
    # runc where this machine has it (Debian: /usr/sbin; Docker's containerd.io: /usr/bin)
    other = nodeconfig.containerd_config(
        NodePlan(**{**plan(tmp_path).__dict__, "runc": "/usr/bin/runc"}), images.PAUSE_IMAGE
    )
    assert 'BinaryName = "/usr/bin/runc"' in other


def test_containerd_config_is_version_3_with_the_cri_split_in_two_plugins(tmp_path):
    """containerd 2.x reads the CRI's settings from `io.containerd.cri.v1.images` and
    `io.containerd.cri.v1.runtime`; what 1.6 read from `io.containerd.grpc.v1.cri` (a
    version-2 config) would only be migrated, or ignored."""
    cache = tmp_path / "cache" / "containerd2"
    config = tomllib.loads(
        nodeconfig.containerd_config(
            NodePlan(**{**plan(tmp_path).__dict__, "containerd_root": cache}), images.PAUSE_IMAGE
        )
    )
    assert config["version"] == 3
    assert config["imports"] == []  # not the host's /etc/containerd/conf.d drop-ins
    assert config["root"] == str(cache)  # the image cache outlives the node
    plugins = config["plugins"]
    assert "io.containerd.grpc.v1.cri" not in plugins
    assert plugins["io.containerd.nri.v1.nri"] == {"disable": True}
    img = plugins["io.containerd.cri.v1.images"]
    assert img["snapshotter"] == "overlayfs"
    # the local pause image: there is no registry to pull one from
    assert img["pinned_images"] == {"sandbox": images.PAUSE_IMAGE}
    rt = plugins["io.containerd.cri.v1.runtime"]
    # no CAP_SYS_RESOURCE: the OOM score may only go up
    assert rt["restrict_oom_score_adj"] is True
    assert rt["netns_mounts_under_state_dir"] is True
    assert rt["containerd"]["default_runtime_name"] == "runc"
    runc = rt["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {
        "SystemdCgroup": False,  # cgroupfs, as the kubelet's cgroupDriver
        "BinaryName": "/usr/sbin/runc",
        "Root": str(tmp_path / "node" / "containerd" / "runc"),
    }
    assert rt["cni"] == {
        "bin_dirs": [str(nodeconfig.CNI_BIN_DIR)],
        "conf_dir": str(tmp_path / "node" / "cni" / "net.d"),
    }
    assert config["grpc"]["address"] == "/run/deepmarket/node/containerd.sock"


def test_containerd_finds_the_pinned_shim_before_any_on_path(tmp_path):
    from deepmarket.devcluster.binaries import Binaries
    from deepmarket.devcluster.realnode import containerd_env

    cache = tmp_path / "k8s"
    found = Binaries({n: cache / n for n in ("containerd", "containerd-shim-runc-v2", "ctr")}, {})
    env = containerd_env(found, {"PATH": "/usr/bin:/bin", "HOME": "/root"})
    assert env["PATH"] == f"{cache}:/usr/bin:/bin" and env["HOME"] == "/root"
    assert containerd_env(found, {})["PATH"].startswith(f"{cache}:")
    record = {"socket": "/run/deepmarket/node-x/containerd.sock", "ctr": str(cache / "ctr")}
    from deepmarket.devcluster.realnode import ctr_command

    assert ctr_command(record) == [str(cache / "ctr"), "-a", record["socket"], "-n", "k8s.io"]


def test_cni_bridge_uses_the_chosen_range_and_no_masquerading(tmp_path):
    conf = nodeconfig.cni_conflist(plan(tmp_path))
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == nodeconfig.BRIDGE and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.85.0.0/24", "gateway": "10.85.0.1"}]]


def test_kube_proxy_writes_no_sysctls(tmp_path):
    config = nodeconfig.kube_proxy_config(plan(tmp_path), tmp_path / "kp.kubeconfig")
    assert config["mode"] == "iptables"
    assert config["iptables"]["localhostNodePorts"] is False  # else route_localnet=1
    assert set(config["conntrack"].values()) == {0, "0s"}
    assert json.loads(nodeconfig.to_json(config)) == config


def test_kubelet_runs_in_a_namespace_that_shows_it_the_sysctls_it_wants(tmp_path):
    p = plan(tmp_path)
    cmd = nodeconfig.namespaced_command(p, ["/bin/kubelet", "--v=1"])
    assert cmd[:4] == ["unshare", "--mount", "--propagation", "unchanged"]
    script = cmd[cmd.index("-ec") + 1]
    assert script.startswith("mount --make-rslave /proc; ")  # never leak to the host's /proc
    for key in nodeconfig.KUBELET_SYSCTLS:
        assert f"/proc/sys/{key}" in script
    assert script.endswith('exec "$@"') and cmd[-2:] == ["/bin/kubelet", "--v=1"]
    shlex.split(script)  # well-formed


def test_apiserver_for_a_real_node_uses_node_authorization_and_lease_endpoints(tmp_path):
    pki = write_pki(tmp_path / "pki", extra_ips=("192.0.2.2",))
    ports = Ports(1, 2, 3, 4, 5, 6)
    plain = apiserver_args(pki, ports, tmp_path, None, None)
    assert "--endpoint-reconciler-type=none" in plain and "--authorization-mode=RBAC" in plain
    real = apiserver_args(pki, ports, tmp_path, None, None, node_ip="192.0.2.2")
    assert "--authorization-mode=Node,RBAC" in real
    assert "--advertise-address=192.0.2.2" in real
    assert "--endpoint-reconciler-type=lease" in real
    assert "--enable-admission-plugins=NodeRestriction" in real
    assert any(a.startswith("--kubelet-client-certificate=") for a in real)
    assert not [a for a in real if a.startswith("--advertise-address=127")]


# --- cluster DNS ---------------------------------------------------------------------------

RESOLVED_STUB = "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"


def test_pods_get_a_resolv_conf_whose_nameservers_they_can_reach():
    plain = "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
    assert nodeconfig.nameservers(plain + "nameserver fe80::1%eth0\n# nameserver 1.1.1.1\n") == [
        "192.0.2.53",
        "2001:db8::53",
        "fe80::1",
    ]
    assert nodeconfig.kubelet_resolv_conf(plain, True) == "/etc/resolv.conf"
    # systemd-resolved's stub is the pod's own loopback there: the real upstreams' file.
    assert nodeconfig.kubelet_resolv_conf(RESOLVED_STUB, True) == nodeconfig.SYSTEMD_RESOLV_CONF
    assert nodeconfig.kubelet_resolv_conf(RESOLVED_STUB, False) == "/etc/resolv.conf"


def test_coredns_forwards_to_the_hosts_resolver_but_never_to_itself():
    # On the host a loopback stub is reachable, so CoreDNS keeps the host's resolution.
    assert nodeconfig.dns_upstreams(RESOLVED_STUB, "192.0.2.2") == ("127.0.0.53",)
    looping = "nameserver 10.0.0.10\nnameserver 192.0.2.2\nnameserver 192.0.2.53\n"
    assert nodeconfig.dns_upstreams(looping, "192.0.2.2") == ("192.0.2.53",)
    assert nodeconfig.dns_upstreams("", "192.0.2.2") == ()


def test_corefile_serves_the_cluster_domain_and_only_the_nodes_pods(tmp_path):
    p = plan(tmp_path)
    text = nodeconfig.corefile(p, tmp_path / "coredns.kubeconfig")
    assert text.startswith(".:5353 {") and "bind 192.0.2.2" in text
    assert "ready 127.0.0.1:8181" in text
    assert "allow net 10.85.0.0/24 192.0.2.2/32 127.0.0.0/8" in text and "        block" in text
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in text
    assert f"kubeconfig {tmp_path / 'coredns.kubeconfig'}" in text
    assert "forward . 192.0.2.53 {" in text and "loop" in text
    assert text.count("{") == text.count("}")
    # No upstream: no forward block (other names fail cleanly instead of timing out).
    alone = nodeconfig.corefile(NodePlan(**{**p.__dict__, "upstreams": ()}), tmp_path / "k")
    assert "forward" not in alone


def test_kube_dns_service_points_at_coredns_on_the_host_with_a_read_only_role(tmp_path):
    role, binding, service, slice_ = nodeconfig.dns_objects(plan(tmp_path))
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "watch"}
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"services", "namespaces", "endpointslices"}
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
    ]
    assert service["metadata"] == {**service["metadata"], "namespace": "kube-system"}
    assert service["spec"]["clusterIP"] == "10.0.0.10" and "selector" not in service["spec"]
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    for obj in (role, binding, service, slice_):  # label values as the apiserver accepts them
        for value in obj["metadata"]["labels"].values():
            assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value), value
    assert slice_["endpoints"][0]["addresses"] == ["192.0.2.2"]
    # Port names match the Service's, so kube-proxy maps 53 to CoreDNS's port.
    assert {(p["name"], p["protocol"], p["port"]) for p in slice_["ports"]} == {
        ("dns", "UDP", 5353),
        ("dns-tcp", "TCP", 5353),
    }
    assert {p["name"] for p in service["spec"]["ports"]} == {"dns", "dns-tcp"}


PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
  12: 0200000A:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2
  13: 0100007F:0035 0200007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 2
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A
   1: 0000000000000000FFFF00000100007F:9A77 0000000000000000FFFF00000100007F:C9D6 0A
   2: 0000000000000000FFFF00000100007F:9A78 0000000000000000FFFF00000100007F:C9D6 01
"""


def test_listening_sockets_are_read_from_proc_net():
    # bound UDP sockets only (state 07), the address in host byte order
    assert hoststate.parse_proc_net("udp", PROC_NET_UDP) == ["udp 10.0.0.2:5353"]
    assert hoststate.parse_proc_net("tcp6", PROC_NET_TCP6) == ["tcp :::8080", "tcp 127.0.0.1:39543"]


IPT_BEFORE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
COMMIT
"""
IPT_AFTER = """\
*filter
:INPUT ACCEPT [10:20]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
-A INPUT -j KUBE-FIREWALL
-A FORWARD -j DOCKER-USER
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
"""


def test_iptables_undo_removes_only_the_nodes_chains_and_jumps():
    before = hoststate.parse_iptables_save(IPT_BEFORE)
    after = hoststate.parse_iptables_save(IPT_AFTER)
    steps = hoststate.iptables_undo(before, after)
    assert ["-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"] in steps
    assert [
        "-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment",
        "kubernetes forwarding rules", "-j", "KUBE-FORWARD",
    ] in steps  # fmt: skip
    assert ["-t", "nat", "-X", "KUBE-SERVICES"] in steps
    assert not [s for s in steps if "DOCKER-USER" in s]
    # deletes come before flushes, flushes before chain removals
    kinds = [s[2] for s in steps if s[1] == "filter"]
    assert kinds == sorted(kinds, key=["-D", "-F", "-X"].index)
    # counters are not differences; nothing to undo on an unchanged host
    assert hoststate.iptables_undo(before, before) == []
    assert hoststate.parse_iptables_save(IPT_AFTER)["filter"][0] == ":INPUT ACCEPT"


def test_mounts_to_undo_are_the_new_ones_under_the_nodes_dirs_deepest_first():
    before = ["/", "/run/netns/theirs"]
    now = [*before, "/x/node/kubelet", "/x/node/kubelet/pods/a/tmpfs", "/run/netns/cni-1", "/y"]
    assert hoststate.mounts_to_undo(now, before, [Path("/x/node"), Path("/run/netns")]) == [
        "/x/node/kubelet/pods/a/tmpfs",
        "/run/netns/cni-1",
        "/x/node/kubelet",
    ]


def test_pod_cgroups_are_found_on_v1_hybrid_and_v2_unified_hosts(tmp_path):
    # v1/hybrid (Debian 12 here): one hierarchy per controller, controller links, unified/.
    v1 = tmp_path / "v1"
    for sub in (
        "memory/kubepods/besteffort/pod1/c1",
        "cpu,cpuacct/kubepods",
        "unified/kubepods",
        "memory/system.slice",
    ):
        (v1 / sub).mkdir(parents=True)
    (v1 / "cpu").symlink_to(v1 / "cpu,cpuacct")
    assert hoststate.cgroup_dirs(v1) == [
        f"{v1}/memory/kubepods/besteffort/pod1/c1",
        f"{v1}/memory/kubepods/besteffort/pod1",
        f"{v1}/memory/kubepods/besteffort",
        f"{v1}/cpu,cpuacct/kubepods",
        f"{v1}/memory/kubepods",
        f"{v1}/unified/kubepods",
    ]
    # v2/unified (Ubuntu 24.04, GitHub's runners): one tree, the kubelet's cgroupfs driver
    # puts kubepods at its root beside systemd's slices; files there are no hierarchies.
    v2 = tmp_path / "v2"
    for sub in ("kubepods/burstable/pod2/c2", "system.slice/docker.service", "user.slice"):
        (v2 / sub).mkdir(parents=True)
    (v2 / "cgroup.procs").write_text("1\n")
    assert hoststate.cgroup_dirs(v2) == [
        f"{v2}/kubepods/burstable/pod2/c2",
        f"{v2}/kubepods/burstable/pod2",
        f"{v2}/kubepods/burstable",
        f"{v2}/kubepods",
    ]
    assert hoststate.cgroup_dirs(tmp_path / "none") == []


def test_differences_name_what_changed():
    a = hoststate.Snapshot(links=["eth0"], sysctls={"net/ipv4/ip_forward": "0"})
    b = hoststate.Snapshot(links=["eth0", "dm-cni0"], sysctls={"net/ipv4/ip_forward": "1"})
    assert hoststate.differences(a, a) == []
    assert hoststate.differences(a, b) == [
        "links: added dm-cni0",
        "sysctl net/ipv4/ip_forward: 0 -> 1",
    ]


def test_module_images_take_the_catalogs_names_for_their_source_directory(tmp_path):
    modules = tmp_path / "modules"
    (modules / "digits").mkdir(parents=True)
    (modules / "digits" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (modules / "no-dockerfile").mkdir()
    entries = [
        {
            "links": {"source_code": "https://github.com/x/y/tree/main/examples/modules/digits"},
            "runtime": {"image": "ghcr.io/x/digits:1.0.0"},
        },
        {"links": {"source_code": "https://github.com/x/other"}, "runtime": {"image": "o:1"}},
    ]
    (found,) = images.catalog_images(modules, entries)
    assert found.directory == modules / "digits" and found.names == ("ghcr.io/x/digits:1.0.0",)


def test_a_changed_module_file_changes_its_image_key(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "api.py").write_text("A = 1\n")
    key = images.content_key(tmp_path, "base-1")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "api.pyc").write_bytes(b"junk")
    assert images.content_key(tmp_path, "base-1") == key  # caches do not count
    assert images.content_key(tmp_path, "base-2") != key  # a new base rebuilds
    (tmp_path / "pkg" / "api.py").write_text("A = 2\n")
    assert images.content_key(tmp_path, "base-1") != key
    assert images.archive_name("ghcr.io/x/digits:1.0.0", "abc") == "digits_1.0.0-abc.tar"


def test_builds_other_checkouts_just_made_are_not_evicted(tmp_path):
    """The image cache is shared by every checkout: an archive another one built a moment ago
    (its node about to import it) stays; only long-untouched older builds go."""
    import os
    import time

    from deepmarket.devcluster.images import STALE_AFTER_S, evict

    mine, theirs, old = (tmp_path / f"node-images-{n}.tar" for n in ("mine", "theirs", "old"))
    for path in (mine, theirs, old):
        path.write_text("x")
    now = time.time()
    os.utime(old, (now - STALE_AFTER_S - 60, now - STALE_AFTER_S - 60))
    assert evict(tmp_path.glob("node-images-*.tar"), keep=mine, now=now) == [old]
    assert mine.exists() and theirs.exists() and not old.exists()
