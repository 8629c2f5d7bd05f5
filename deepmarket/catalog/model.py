"""Plain data the rest of deepmarket reads the catalog through (no I/O here).

`Module.data` is the module.yml mapping exactly as validated (JSON-compatible types only);
the properties below are conveniences over it so callers never re-derive them differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    """One validation finding, located as precisely as the source allows.

    `severity` is "error" (the catalog cannot be used) or "warning" (it can, but something would
    embarrass the module on the marketplace, e.g. text left from the scaffold); `validate`
    treats warnings as errors in CI (`CI=true`) or with `--strict`.
    """

    file: str
    line: int | None = None
    col: int | None = None
    path: str = ""  # dotted field path inside the document, e.g. "links.source_code"
    message: str = ""
    severity: str = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        kind = " warning:" if self.severity == "warning" else ""
        field_part = f" {self.path}:" if self.path else ""
        return f"{where}:{kind}{field_part} {self.message}"


@dataclass(frozen=True)
class Module:
    """One catalog entry: `catalog/<id>/module.yml` plus its entry in `modules.yml`."""

    id: str
    data: dict[str, Any]
    dir: Path
    deploy: bool = False  # modules.yml: auto-deployed for inference when merged to main
    readme: str | None = None  # text of the referenced README.md, if any
    icon: Path | None = None  # resolved icon file, if any

    @property
    def title(self) -> str:
        return str(self.data.get("title", self.id))

    @property
    def summary(self) -> str:
        return str(self.data.get("summary", ""))

    @property
    def categories(self) -> list[str]:
        return list(self.data.get("categories", []))

    @property
    def trainable(self) -> bool:
        return bool(self.data.get("runtime", {}).get("train", False))

    @property
    def train_args(self) -> dict[str, dict[str, Any]]:
        """runtime.training.args: the training arguments the module declares (may be empty)."""
        return dict(self.data.get("runtime", {}).get("training", {}).get("args", {}))

    @property
    def train_data(self) -> str:
        """runtime.training.data: the layout its training data folder must have (Markdown)."""
        return str(self.data.get("runtime", {}).get("training", {}).get("data", ""))

    @property
    def inference(self) -> bool:
        return "inference" in self.categories

    @property
    def image(self) -> str:
        return str(self.data.get("runtime", {}).get("image", ""))

    @property
    def model_name(self) -> str:
        return str(self.data.get("runtime", {}).get("model", self.id))

    @property
    def port(self) -> int:
        return int(self.data.get("runtime", {}).get("port", 5000))

    def resources(self, purpose: str) -> dict[str, Any]:
        """`resources.inference` or `resources.training` (empty when the module gives none)."""
        return dict(self.data.get("resources", {}).get(purpose, {}))


@dataclass
class Catalog:
    """The whole catalog in marketplace order (the order of `modules.yml`)."""

    root: Path
    modules: list[Module] = field(default_factory=list)

    def get(self, module_id: str) -> Module:
        for module in self.modules:
            if module.id == module_id:
                return module
        raise KeyError(module_id)

    def __iter__(self):
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)
