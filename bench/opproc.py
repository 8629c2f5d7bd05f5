"""The operator as a host process, for the benchmarks: started with the admin kubeconfig (a
benchmark times the operator, not RBAC), awaited on its /healthz, sampled for peak RSS and CPU
time, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from deepmarket.devcluster.controlplane import ControlPlane, free_ports


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OperatorProcess:
    """`deepmarket controller run --kubeconfig <admin> <args…>`, its output appended to `log`."""

    def __init__(self, cluster: ControlPlane, log: Path, *args: str) -> None:
        self.cluster, self.log, self.args = cluster, log, args
        self.proc: subprocess.Popen | None = None
        self.peak_rss_kb = 0
        self.cpu_s = 0.0

    def start(self) -> None:
        (port,) = free_ports(1)
        health = f"http://127.0.0.1:{port}/healthz"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deepmarket", "controller", "run",
             "--kubeconfig", str(self.cluster.kubeconfig), "--liveness", health, *self.args],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip

        def up() -> bool:
            assert self.proc.poll() is None, f"operator exited; see {self.log}"
            try:
                with urllib.request.urlopen(health, timeout=2):
                    return True
            except OSError:
                return False

        self.cluster.wait_for(up, "operator liveness", timeout=120)

    def sample(self) -> None:
        """Record the peak RSS (VmHWM) and CPU time so far; call it before reading them."""
        if self.proc and self.proc.poll() is None:
            self.cpu_s = cpu_seconds(self.proc.pid)
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))

    def stop(self) -> None:
        self.sample()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
