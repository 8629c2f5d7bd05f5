"""Drive mkdocs for the CLI, tests and benchmarks: build or serve the marketplace.

The only place that knows how to point the `deepmarket` plugin at another catalog or
deployment than `mkdocs.yml` says.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import Abort, ConfigurationError, PluginError

from deepmarket.errors import UserError


def load(
    config_file: Path,
    *,
    site_dir: Path | None = None,
    catalog: Path | None = None,
    deploy_base_url: str | None = None,
    strict: bool = False,
    site_url: str | None = None,
) -> MkDocsConfig:
    if not config_file.is_file():
        raise UserError(
            f"{config_file}: no such mkdocs configuration; run from the repository root"
        )
    overrides: dict[str, object] = {"strict": strict}
    if site_dir is not None:
        overrides["site_dir"] = str(site_dir)
    if site_url is not None:
        overrides["site_url"] = site_url
    try:
        config = load_config(str(config_file), **overrides)
    except (ConfigurationError, Abort) as exc:
        raise UserError(f"{config_file}: {exc}") from None
    plugin = config.plugins.get("deepmarket")
    if plugin is None:
        raise UserError(f"{config_file}: the deepmarket plugin is not enabled under plugins:")
    if catalog is not None:
        plugin.config.catalog = str(catalog)
    if deploy_base_url is not None:
        plugin.config.deploy_base_url = deploy_base_url
    return config


def build_site(
    config_file: Path,
    *,
    site_dir: Path | None = None,
    catalog: Path | None = None,
    deploy_base_url: str | None = None,
    strict: bool = True,
    site_url: str | None = None,
) -> Path:
    """Build the marketplace; returns the output directory. Errors are one `UserError`."""
    config = load(
        config_file,
        site_dir=site_dir,
        catalog=catalog,
        deploy_base_url=deploy_base_url,
        strict=strict,
        site_url=site_url,
    )
    _show_mkdocs_progress()
    plugin = config.plugins["deepmarket"]
    try:
        build(config)
    except (PluginError, Abort) as exc:
        # The plugin's own message (e.g. every catalog problem) beats mkdocs' "Aborted".
        raise UserError(getattr(plugin, "error", None) or f"site build failed: {exc}") from None
    return Path(config.site_dir)


def _show_mkdocs_progress() -> None:
    """mkdocs logs to `mkdocs.*`; without its CLI nothing prints them, so show INFO and up."""
    logger = logging.getLogger("mkdocs")
    if not any(getattr(h, "_deepmarket", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
        # Our plugin's errors reach the user once, as the CLI's `deepmarket: error:` line.
        handler.addFilter(
            lambda r: r.levelno < logging.ERROR or not str(r.msg).startswith("deepmarket: ")
        )
        handler._deepmarket = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def serve_site(
    config_file: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    catalog: Path | None = None,
    deploy_base_url: str | None = None,
) -> None:
    """Serve with live reload; edits to the catalog or the pages rebuild the site.

    mkdocs reloads its configuration on every rebuild, so the overrides travel as the
    environment variables the plugin reads.
    """
    import os

    from mkdocs.commands.serve import serve

    from deepmarket.site.plugin import ENV_BASE_URL, ENV_CATALOG

    load(config_file, catalog=catalog, deploy_base_url=deploy_base_url)  # fail early, clearly
    if catalog is not None:
        os.environ[ENV_CATALOG] = str(catalog.resolve())
    if deploy_base_url is not None:
        os.environ[ENV_BASE_URL] = deploy_base_url
    root = (catalog or config_file.parent).resolve()
    watch = [str(p) for p in (root / "catalog", root / "modules.yml") if p.exists()]
    _show_mkdocs_progress()
    try:
        serve(str(config_file), dev_addr=f"{host}:{port}", watch=watch, livereload=True)
    except PluginError as exc:
        raise UserError(str(exc)) from None
    except Abort as exc:
        raise UserError(f"site serve failed: {exc}") from None
