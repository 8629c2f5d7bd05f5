"""What the real node changes on the host, seen from outside: iptables chains, network links,
mounts, cgroups, a few sysctls, fixed paths and listening sockets. `snapshot()` reads them; the
pure functions below say what to undo so the host is left as it was found.

Only what the node itself creates is ever undone: chains with the prefixes kube-proxy, the
kubelet and the CNI plugins use that did not exist before, mounts under the node's own dir or
network namespaces it created, its bridge, `kubepods` cgroups, paths that did not exist."""

from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

CHAIN_PREFIXES = ("KUBE-", "CNI-")
FAMILIES = {"ipv4": "iptables", "ipv6": "ip6tables"}
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
CGROUP_ROOT = Path("/sys/fs/cgroup")
POD_CGROUP = "kubepods"
NETNS_DIR = Path("/run/netns")


@dataclass
class Snapshot:
    """Plain data, stored in the node's record as JSON."""

    # family -> table -> rules as `iptables -S` prints them, chain declarations included
    iptables: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)  # existing kubepods dirs (normally none)
    sysctls: dict[str, str] = field(default_factory=dict)
    paths: dict[str, bool] = field(default_factory=dict)
    netns: list[str] = field(default_factory=list)
    # "tcp 192.0.2.2:5353" for each listening TCP and bound UDP socket (CoreDNS's, kube-proxy's)
    listeners: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Snapshot:
        return cls(**data)


# --- pure decisions -----------------------------------------------------------------------


def parse_iptables_save(text: str) -> dict[str, list[str]]:
    """`iptables-save` output -> table -> lines (`:CHAIN` declarations without counters and
    `-A` rules), in order."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
            tables[current] = []
        elif current and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            tables[current].append(f":{name} {policy}")
        elif current and line.startswith("-A "):
            tables[current].append(line)
    return tables


def chains(lines: Iterable[str]) -> set[str]:
    return {line[1:].split()[0] for line in lines if line.startswith(":")}


def ours(chain: str) -> bool:
    return chain.startswith(CHAIN_PREFIXES)


def iptables_undo(before: dict[str, list[str]], now: dict[str, list[str]]) -> list[list[str]]:
    """Arguments for `iptables` that remove the chains (and jumps into them) that `now` has and
    `before` lacked, and the rules added to the host's own chains that mention them."""
    steps: list[list[str]] = []
    for table, lines in now.items():
        old = set(before.get(table, []))
        new_chains = {c for c in chains(lines) - chains(before.get(table, [])) if ours(c)}
        for line in lines:
            if not line.startswith("-A ") or line in old:
                continue
            parts = shlex.split(line)
            chain = parts[1]
            if chain in new_chains:
                continue  # goes with its chain
            if any(p in new_chains for p in parts) or any(ours(p) for p in parts[2:]):
                steps.append(["-t", table, "-D", chain, *parts[2:]])
        steps += [["-t", table, "-F", c] for c in sorted(new_chains)]
        steps += [["-t", table, "-X", c] for c in sorted(new_chains)]
    return steps


def mounts_to_undo(now: Iterable[str], before: Iterable[str], roots: Iterable[Path]) -> list[str]:
    """Mount points under `roots` that were not there before, deepest first."""
    old = set(before)
    prefixes = [str(r).rstrip("/") for r in roots]
    hits = [
        m for m in now if m not in old and any(m == p or m.startswith(p + "/") for p in prefixes)
    ]
    return sorted(set(hits), key=lambda m: (-m.count("/"), m))


def _hex_address(text: str) -> str:
    """/proc/net/* `ADDR:PORT` in hex (the address in host byte order, 32-bit words) ->
    `ip:port`."""
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    # each 32-bit word is little-endian on the machines this runs on (x86, arm64)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return f"{ip}:{int(port, 16)}"


def parse_proc_net(proto: str, text: str) -> list[str]:
    """Listening sockets in a /proc/net/{tcp,udp}[6] table: TCP in LISTEN (0A), UDP bound
    without a peer (07)."""
    state = "0A" if proto.startswith("tcp") else "07"
    found = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 3 and parts[3] == state:
            found.append(f"{proto.rstrip('6')} {_hex_address(parts[1])}")
    return found


# --- reading the host ---------------------------------------------------------------------


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def read_iptables() -> dict[str, dict[str, list[str]]]:
    result = {}
    for family, tool in FAMILIES.items():
        out = _run([f"{tool}-save"])
        result[family] = parse_iptables_save(out.stdout) if out.returncode == 0 else {}
    return result


def read_mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field_ = line.split()[4]
        # mountinfo escapes spaces and such as octal
        points.append(field_.encode().decode("unicode_escape"))
    return points


def cgroup_dirs(root: Path = CGROUP_ROOT) -> list[str]:
    """Every `kubepods` directory, in every cgroup hierarchy, deepest first."""
    found: list[str] = []
    if not root.is_dir():
        return found
    # cgroup v1 (and hybrid): one hierarchy per controller (/sys/fs/cgroup/memory/kubepods,
    # ..., and unified/kubepods); v2 (unified, e.g. Ubuntu 24.04): one tree, where the
    # kubelet's cgroupfs driver makes /sys/fs/cgroup/kubepods beside systemd's slices.
    # Controller links (cpu -> cpu,cpuacct) are skipped: their target is listed itself.
    tops = [root / POD_CGROUP] + [
        h / POD_CGROUP
        for h in root.iterdir()
        if h.name != POD_CGROUP and h.is_dir() and not h.is_symlink()
    ]
    for top in tops:
        if top.is_dir() and not top.is_symlink():
            for dirpath, _dirs, _files in os.walk(top):
                found.append(dirpath)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def read_listeners() -> list[str]:
    found: set[str] = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            found.update(parse_proc_net(proto, (Path("/proc/net") / proto).read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found)


def read_sysctl(key: str) -> str | None:
    try:
        return (Path("/proc/sys") / key).read_text().strip()
    except OSError:
        return None


def snapshot(fixed_paths: Iterable[str]) -> Snapshot:
    return Snapshot(
        iptables=read_iptables(),
        links=sorted(p.name for p in Path("/sys/class/net").iterdir()),
        mounts=read_mounts(),
        cgroups=cgroup_dirs(),
        sysctls={k: v for k in SYSCTLS if (v := read_sysctl(k)) is not None},
        paths={p: os.path.lexists(p) for p in fixed_paths},
        netns=sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else [],
        listeners=read_listeners(),
    )


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, one line each (the tests' view of 'as found')."""
    diffs = []
    for family in FAMILIES:
        b, a = before.iptables.get(family, {}), after.iptables.get(family, {})
        for table in sorted(set(b) | set(a)):
            added = [x for x in a.get(table, []) if x not in set(b.get(table, []))]
            removed = [x for x in b.get(table, []) if x not in set(a.get(table, []))]
            diffs += [f"{family} {table}: added {x}" for x in added]
            diffs += [f"{family} {table}: removed {x}" for x in removed]
    for what in ("links", "mounts", "cgroups", "netns", "listeners"):
        b_set, a_set = set(getattr(before, what)), set(getattr(after, what))
        diffs += [f"{what}: added {x}" for x in sorted(a_set - b_set)]
        diffs += [f"{what}: removed {x}" for x in sorted(b_set - a_set)]
    for key in set(before.sysctls) | set(after.sysctls):
        if before.sysctls.get(key) != after.sysctls.get(key):
            diffs.append(f"sysctl {key}: {before.sysctls.get(key)} -> {after.sysctls.get(key)}")
    for path in set(before.paths) | set(after.paths):
        if before.paths.get(path) != after.paths.get(path):
            was, now = before.paths.get(path), after.paths.get(path)
            diffs.append(f"path {path}: existed {was} -> {now}")
    return diffs
