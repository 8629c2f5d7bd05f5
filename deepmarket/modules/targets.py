"""Which DEEPaaS model a `deepmarket module serve` target names, and whether it is installed.

A target is a module package directory (its pyproject declares a `deepaas.v2.model` entry
point) or a catalog id (its module.yml names the model in `runtime.model`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from deepmarket.errors import UsageError, UserError

ENTRY_POINT_GROUP = "deepaas.v2.model"


@dataclass(frozen=True)
class ServeTarget:
    model: str  # the DEEPaaS model name (entry-point name)
    origin: str  # where it was named, for messages
    package_dir: Path | None = None


def installed_models() -> dict[str, str]:
    """Entry-point name -> `module:attr` for every DEEPaaS v2 model in this environment."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def models_in_pyproject(pyproject: Path) -> list[str]:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{pyproject}: cannot read it: {exc}") from None
    group = data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    return sorted(group)


def read_entry(catalog_root: Path, module_id: str) -> tuple[dict[str, Any], Path]:
    """catalog/<id>/module.yml as data, and its directory (read on its own: one broken
    neighbour entry must not stop an author from serving or checking theirs)."""
    from ruamel.yaml import YAML, YAMLError

    path = catalog_root / "catalog" / module_id / "module.yml"
    if not path.is_file():
        raise UsageError(
            f"{module_id!r} is neither a module package directory nor a catalog id "
            f"({path} does not exist)"
        )
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except (OSError, YAMLError) as exc:
        raise UserError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of module fields")
    return data, path.parent


def model_in_catalog(catalog_root: Path, module_id: str) -> str:
    """`runtime.model` of catalog/<id>/module.yml."""
    data, folder = read_entry(catalog_root, module_id)
    runtime = data.get("runtime")
    model = runtime.get("model") if isinstance(runtime, dict) else None
    if not isinstance(model, str) or not model:
        raise UserError(
            f"{folder / 'module.yml'}: runtime.model: missing; it names the DEEPaaS model"
        )
    return model


def resolve(target: str, catalog_root: Path, installed: dict[str, str]) -> ServeTarget:
    """Decide what to serve; fail with the command that fixes a missing installation."""
    path = Path(target)
    if path.is_dir() and (path / "pyproject.toml").is_file():
        names = models_in_pyproject(path / "pyproject.toml")
        if len(names) != 1:
            raise UserError(
                f"{path / 'pyproject.toml'}: declares {len(names)} '{ENTRY_POINT_GROUP}' "
                f"entry points ({', '.join(names) or 'none'}); a module declares exactly one"
            )
        found = ServeTarget(names[0], str(path), path)
    elif path.is_dir():
        raise UsageError(f"{path}: a module package directory needs a pyproject.toml")
    else:
        found = ServeTarget(model_in_catalog(catalog_root, target), f"catalog entry {target}")
    if found.model not in installed:
        fix = (
            f"pip install -e {found.package_dir}"
            if found.package_dir
            else "install the module's Python package into this environment"
        )
        have = ", ".join(sorted(installed)) or "none"
        raise UserError(
            f"DEEPaaS model {found.model!r} ({found.origin}) is not installed here "
            f"(installed models: {have}); {fix}"
        )
    return found
