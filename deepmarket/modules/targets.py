"""Which DEEPaaS model a `deepmarket module serve` target names, and whether it is installed.

A target is a module package directory (its pyproject declares a `deepaas.v2.model` entry
point) or a catalog id (its module.yml names the model in `runtime.model`).
"""

from __future__ import annotations

import contextlib
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
    """Entry-point names a pyproject.toml declares, PEP 621 or Poetry style."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{pyproject}: cannot read it: {exc}") from None
    project = data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    poetry = data.get("tool", {}).get("poetry", {}).get("plugins", {}).get(ENTRY_POINT_GROUP, {})
    return sorted({*project, *poetry})


def models_in_setup_cfg(setup_cfg: Path) -> list[str]:
    """Entry-point names under [options.entry_points] or [entry_points] of a setup.cfg."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(setup_cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise UsageError(f"{setup_cfg}: cannot read it: {exc}") from None
    names: set[str] = set()
    for section in ("options.entry_points", "entry_points"):
        if parser.has_option(section, ENTRY_POINT_GROUP):
            for line in parser.get(section, ENTRY_POINT_GROUP).splitlines():
                name, sep, _ = line.partition("=")
                if sep and name.strip():
                    names.add(name.strip())
    return sorted(names)


def _distribution_name(pyproject: Path) -> str | None:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name") or data.get("tool", {}).get("poetry", {}).get("name")
    return str(name) if name else None


def models_installed_from(name: str) -> list[str]:
    """Entry-point names the installed distribution `name` declares (dynamic metadata,
    setup.py-only packages)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return []
    return sorted({ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP})


def declared_models(package_dir: Path) -> tuple[list[str], str]:
    """The deepaas.v2.model entry points a package directory declares, and where they were
    found: pyproject.toml (PEP 621 or Poetry), setup.cfg, else the installed distribution's
    metadata (for setup.py or dynamic declarations). ([], "") when nothing says."""
    pyproject = package_dir / "pyproject.toml"
    setup_cfg = package_dir / "setup.cfg"
    if pyproject.is_file() and (names := models_in_pyproject(pyproject)):
        return names, str(pyproject)
    if setup_cfg.is_file() and (names := models_in_setup_cfg(setup_cfg)):
        return names, str(setup_cfg)
    candidates = []
    if pyproject.is_file() and (name := _distribution_name(pyproject)):
        candidates.append(name)
    if setup_cfg.is_file():
        import configparser

        parser = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(OSError, UnicodeDecodeError, configparser.Error):
            parser.read_string(setup_cfg.read_text(encoding="utf-8"))
            if parser.has_option("metadata", "name"):
                candidates.append(parser.get("metadata", "name"))
    for name in candidates:
        if names := models_installed_from(name):
            return names, f"the installed distribution {name!r}"
    return [], ""


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
    packaging = ("pyproject.toml", "setup.cfg", "setup.py")
    if path.is_dir() and any((path / name).is_file() for name in packaging):
        names, where = declared_models(path)
        if len(names) != 1:
            raise UserError(
                f"{path}: declares {len(names)} '{ENTRY_POINT_GROUP}' entry points "
                f"({', '.join(names) or 'none'}"
                + (
                    f", in {where}"
                    if where
                    else "; install the package first if setup.py declares them"
                )
                + "); a module declares exactly one"
            )
        found = ServeTarget(names[0], str(path), path)
    elif path.is_dir():
        raise UsageError(
            f"{path}: a module package directory needs a pyproject.toml, setup.cfg or setup.py"
        )
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


def check_base_url(url: str) -> str:
    """The base URL of a DEEPaaS server, without a trailing slash; a usage error (exit 2)
    that says how to write it otherwise."""
    from urllib.parse import urlsplit

    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise UsageError(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{url!r}: expected an http:// or https:// URL of the DEEPaaS server")
    if not parts.hostname or any(c.isspace() for c in text):
        raise UsageError(f"{url!r} is not a valid URL (no host); e.g. http://127.0.0.1:5000")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise UsageError(
            f"{url!r}: give the server's base URL without a query or fragment "
            f"(e.g. {parts.scheme}://{parts.netloc}{parts.path.rstrip('/')})"
        )
    path = parts.path.rstrip("/")
    marker = path.find("/v2")
    if path.endswith("/v2") or "/v2/models" in path or path.endswith("/swagger.json"):
        base = path[:marker] if marker >= 0 else path.rsplit("/", 1)[0]
        raise UsageError(
            f"{url!r} points inside the API; give the server's base URL, without /v2/: "
            f"{parts.scheme}://{parts.netloc}{base}"
        )
    del port
    return f"{parts.scheme}://{parts.netloc}{path}"
