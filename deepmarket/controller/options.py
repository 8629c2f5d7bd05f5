"""How an operator instance is configured (plain data, filled from the command line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Options:
    catalog: Path | None = None  # catalog root (modules.yml + catalog/); None: spec.image only
    ingress_base: str | None = None  # e.g. https://models.example.org → status.externalURL
    cluster_domain: str = "cluster.local"
    # Tolerations added to every pod, e.g. for a cluster whose nodes all carry a taint.
    tolerations: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    weights_image: str = "rclone/rclone:1.68.2"
    # The catalog sync (CatalogSources): where the bare git mirrors live (None: the user's
    # cache directory), and the most one fetch may bring.
    git_cache: Path | None = None
    git_max_bytes: int = 256 * 1024 * 1024
    # TrainingRun: the image that brings step.py and rclone into training pods, the address the
    # progress endpoint listens on, and the URL pods reach it at (README: Training).
    training_tools_image: str = "ghcr.io/deepmarket/operator:0.1.0"
    progress_listen: str | None = None  # e.g. 0.0.0.0:8081
    progress_url: str | None = None  # e.g. http://<operator service>:8081/progress
    # For clusters without cluster DNS: give pods the progress Service's ClusterIP instead of
    # its name (the operator reads it from the Service named in progress_url).
    progress_url_by_cluster_ip: bool = False
    # Where TrainingRun pods that request no GPU run (nodeSelector, tolerations), e.g. the dev
    # cluster's real node: its other nodes are simulated and cannot train.
    cpu_training_node_selector: tuple[tuple[str, str], ...] = ()
    cpu_training_tolerations: tuple[dict[str, Any], ...] = field(default_factory=tuple)
