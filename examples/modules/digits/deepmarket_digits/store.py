"""Where the weights and metrics live, and how they are written.

The directory comes from `DIGITS_MODEL_DIR` so an operator can mount a volume there: a
`deepaas-cli train` Job writes new weights into it and the next server that starts on the same
volume serves them. Files are JSON (no pickle): readable, diffable, safe to load.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

ENV_VAR = "DIGITS_MODEL_DIR"
WEIGHTS_FILE = "weights.json"
METRICS_FILE = "metrics.json"


def model_dir() -> Path:
    """The weights directory: $DIGITS_MODEL_DIR, else a per-user cache directory."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache) / "deepmarket-digits"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically so a server reading concurrently never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    Path(tmp).chmod(0o644)  # mkstemp makes 0600; other users of a shared volume must read it
    Path(tmp).replace(path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


PROGRESS_ENV = "DEEPMARKET_PROGRESS_FILE"


def report_progress(**fields: Any) -> None:
    """Tell a deepmarket TrainingRun how far training is (percent, epoch, epochs, etaSeconds,
    metrics): the pod's step program reads this file and forwards it. A no-op elsewhere."""
    target = os.environ.get(PROGRESS_ENV, "").strip()
    if target:
        write_json(Path(target), fields)
