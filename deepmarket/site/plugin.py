"""The `deepmarket` mkdocs plugin: the catalog becomes pages, a home-page browser and a JSON API.

A thin shell over `render` and `api`: it loads the catalog once per build, registers virtual
files (nothing generated is written into the repository) and fills the pages' HTML slots.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from mkdocs.config import config_options as opt
from mkdocs.config.base import Config
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

from deepmarket.catalog import CatalogInvalid, export, scan_catalog
from deepmarket.catalog.icons import icon_is_safe
from deepmarket.catalog.model import Catalog, Module
from deepmarket.errors import UserError
from deepmarket.site import api, render

log = logging.getLogger("mkdocs.plugins.deepmarket")

ENV_BASE_URL = "DEEPMARKET_DEPLOY_BASE_URL"
ENV_CATALOG = "DEEPMARKET_CATALOG"
ASSETS = ("market.css", "market.js")
ASSET_DIR = "assets/deepmarket"


class DeepMarketConfig(Config):
    # Catalog root (holds modules.yml and catalog/); empty: DEEPMARKET_CATALOG, else the
    # directory of mkdocs.yml.
    catalog = opt.Type(str, default="")
    # Deployment base URL for try-it forms; `{id}` is replaced by the module id, else
    # `/<id>/` is appended. Empty: the DEEPMARKET_DEPLOY_BASE_URL environment variable.
    deploy_base_url = opt.Type(str, default="")
    # URL folder of the generated module pages.
    modules_dir = opt.Type(str, default="modules")


class DeepMarketPlugin(BasePlugin[DeepMarketConfig]):
    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.error: str | None = None  # why the last build failed, for `deepmarket site build`
        self.serving = False  # `mkdocs serve`: a broken catalog shows an error page instead
        self.last_good: dict[Path, Catalog] = {}  # per root: what to show while it is broken
        self.failure: list[str] = []  # located problems shown on every page while serving
        self.base_url: str | None = None
        self.pages: dict[str, Module] = {}  # src_uri of a generated page → its module
        self.page_files: dict[str, File] = {}  # module id → its page file
        self.icon_files: dict[str, File] = {}  # module id → its icon file
        self.render_md = render.MarkdownRenderer()

    # -- configuration -------------------------------------------------------------------

    def on_startup(self, *, command: str, dirty: bool) -> None:
        # Defining on_startup also keeps this instance across `serve` rebuilds (mkdocs >= 1.4),
        # which is what lets a broken catalog fall back to the last one that loaded.
        self.serving = command == "serve"

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        default_root = Path(config.config_file_path or "mkdocs.yml").parent
        root = Path(self.config.catalog or os.environ.get(ENV_CATALOG) or default_root).resolve()
        self.failure = []
        try:
            catalog, problems = scan_catalog(root)
            errors = [p for p in problems if p.is_error]
            if errors:
                raise CatalogInvalid(errors)
            for problem in problems:  # warnings: the site builds, the author should still know
                log.info("deepmarket: %s", problem)
            self.catalog = catalog
            self.last_good[root] = catalog
        except CatalogInvalid as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems) or f"  {exc}"
            self.error = f"the catalog in {root} is invalid; fix these and build again:\n{problems}"
            if not self.serving:
                raise PluginError(f"deepmarket: {self.error}") from None
            self._serve_broken(root, [str(p) for p in exc.problems])
        except UserError as exc:  # e.g. no modules.yml at all
            self.error = f"cannot load the catalog in {root}: {exc}"
            if not self.serving:
                raise PluginError(f"deepmarket: {self.error}") from None
            self._serve_broken(root, [str(exc)])
        self.base_url = (self.config.deploy_base_url or os.environ.get(ENV_BASE_URL, "")).strip()
        self.base_url = self.base_url or None
        if self.base_url and not render.safe_url(self.base_url):
            self.error = (
                f"deploy base URL {self.base_url!r} (plugin option deploy_base_url or "
                f"{ENV_BASE_URL}) must start with http:// or https://"
            )
            raise PluginError(f"deepmarket: {self.error}")
        log.info(
            "deepmarket: %d modules from %s%s",
            len(self.catalog),
            root,
            f"; try-it calls {render.deploy_url(self.base_url, '<id>')}" if self.base_url else "",
        )
        for name in ASSETS:
            target = config.extra_css if name.endswith(".css") else config.extra_javascript
            path = f"{ASSET_DIR}/{name}"
            if path not in [str(x) for x in target]:
                target.append(path)
        return config

    def _serve_broken(self, root: Path, problems: list[str]) -> None:
        """While serving, a broken catalog is reported, never fatal: mkdocs' dev server stalls
        every request after a failed rebuild, so the build goes on with the last catalog that
        loaded (or none) and every page says what to fix."""
        self.failure = problems
        log.warning(
            "deepmarket: the catalog in %s has %d problem%s; showing the last version that "
            "loaded until they are fixed:\n%s",
            root,
            len(problems),
            "" if len(problems) == 1 else "s",
            "\n".join(f"  {p}" for p in problems),
        )
        self.catalog = self.last_good.get(root) or Catalog(root=root)

    def on_post_page(self, output: str, /, *, page: Page, config: MkDocsConfig) -> str | None:
        output = self._with_jsonld(output, page, config)
        return render.with_error_panel(output, self.failure) if self.failure else output

    def on_post_template(
        self, output_content: str, /, *, template_name: str, config: MkDocsConfig
    ) -> str | None:
        if self.failure and template_name == "404.html":
            return render.with_error_panel(output_content, self.failure)
        return output_content

    def on_post_build(self, *, config: MkDocsConfig) -> None:
        # mkdocs writes a sitemap whatever happens; without site_url its <loc>s are bare paths,
        # which no search engine accepts. No sitemap beats a wrong one.
        if not config.site_url and not self.serving:
            for name in ("sitemap.xml", "sitemap.xml.gz"):
                Path(config.site_dir, name).unlink(missing_ok=True)
            log.info(
                "deepmarket: no site_url (DEEPMARKET_SITE_URL or --site-url): no sitemap and no "
                "canonical links; the 404 page works at the site's top level only"
            )

    # -- files ---------------------------------------------------------------------------

    def on_files(self, files: Files, /, *, config: MkDocsConfig) -> Files:
        assert self.catalog is not None
        self.pages.clear()
        self.page_files.clear()
        self.icon_files.clear()
        assets = resources.files("deepmarket.site").joinpath("assets")
        for name in ASSETS:
            self._add(
                files,
                File.generated(
                    config, f"{ASSET_DIR}/{name}", content=assets.joinpath(name).read_bytes()
                ),
            )

        folder = self.config.modules_dir.strip("/")
        entries = []
        for module in self.catalog:
            src = f"{folder}/{module.id}.md"
            page = File.generated(
                config,
                src,
                content=render.page_markdown(module),
                inclusion=InclusionLevel.NOT_IN_NAV,
            )
            self._add(files, page)
            self.pages[src] = module
            self.page_files[module.id] = page
            icon = self._icon(module, folder, config)
            if icon:
                self._add(files, icon)
                self.icon_files[module.id] = icon
            entries.append(api.summary_entry(module, page.url, icon.url if icon else None))

        for module, entry in zip(self.catalog, entries, strict=True):
            doc = api.module_document(module, entry)
            path = api.module_path(module.id)
            self._add(files, File.generated(config, path, content=api.dumps(doc)))
            page_url = self._absolute(self.page_files[module.id].url, config)
            jsonld = export.jsonld_text(module, page_url)
            self._add(
                files, File.generated(config, path[: -len(".json")] + ".jsonld", content=jsonld)
            )
        self._add(
            files,
            File.generated(config, api.INDEX_PATH, content=api.dumps(api.index_document(entries))),
        )
        self._add(files, File.generated(config, api.SCHEMA_PATH, content=api.dumps(api.schema())))
        return files

    def _icon(self, module: Module, folder: str, config: MkDocsConfig) -> File | None:
        if not module.icon or not Path(module.icon).is_file():
            return None
        icon = Path(module.icon)
        if not icon_is_safe(icon.name, icon.read_bytes()):  # the validator refuses these too
            log.info(
                "deepmarket: %s: icon %s has active content; showing a placeholder",
                module.id,
                icon.name,
            )
            return None
        return File.generated(
            config, f"{folder}/{module.id}/icon{icon.suffix.lower()}", abs_src_path=str(icon)
        )

    @staticmethod
    def _add(files: Files, file: File) -> None:
        if file.src_uri in files:
            raise PluginError(
                f"deepmarket: {file.src_uri} is generated from the catalog but the docs "
                "directory has a file of that name; remove or rename it"
            )
        files.append(file)

    # -- pages ---------------------------------------------------------------------------

    def on_page_content(
        self, html: str, /, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str | None:
        module = self.pages.get(page.file.src_uri)
        if module is not None:
            # The sitemap's <lastmod>: when the module changed, not when the site was built.
            page.update_date = render.updated(module) or page.update_date
            return render.fill_slots(
                html,
                render.page_slots(
                    module,
                    render_md=self.render_md,
                    icon_url=self._rel(self.icon_files.get(module.id), page),
                    home_url=(get_relative_url("", page.url) or ".").rstrip("/") + "/",
                    base_template=self.base_url,
                ),
            )
        if render.HOME_MARKER in html:
            return html.replace(render.HOME_MARKER, self._marketplace(page), 1)
        return html

    def _with_jsonld(self, output: str, page: Page, config: MkDocsConfig) -> str:
        """Put the module's schema.org JSON-LD (the same as api/modules/<id>.jsonld) in the
        page's <head>, where search engines look for it."""
        module = self.pages.get(page.file.src_uri)
        if module is None or "</head>" not in output:
            return output
        script = export.jsonld_script(module, self._absolute(page.url, config))
        return output.replace("</head>", script + "</head>", 1)

    def _marketplace(self, page: Page) -> str:
        assert self.catalog is not None
        cards = [
            render.card_html(
                module,
                self._rel(self.page_files[module.id], page) or "",
                self._rel(self.icon_files.get(module.id), page),
            )
            for module in self.catalog
        ]
        return render.marketplace_html(cards, render.facets(self.catalog))

    @staticmethod
    def _absolute(url: str, config: MkDocsConfig) -> str | None:
        """A site URL made absolute with `site_url`, when the site knows its address."""
        site = str(config.site_url or "")
        return site.rstrip("/") + "/" + url.lstrip("/") if site else None

    @staticmethod
    def _rel(file: File | None, page: Page) -> str | None:
        return get_relative_url(file.url, page.url) if file else None
