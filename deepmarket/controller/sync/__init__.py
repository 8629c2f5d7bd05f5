"""The catalog sync (GitOps): CatalogSource → the DeepModules of its `deploy: true` modules.

Pure decisions (`gitcatalog` reads and validates a commit, `plan`, `status`, `webhook`) beside
the thin I/O (`git` mirrors, `syncer`, `handlers`, `receiver`); shared plumbing lives one level
up in `deepmarket.controller`. It shares only plain data with the DeepModule controller: the
synced catalogs in `deepmarket.controller.catalogstore`.
"""

from deepmarket.controller.sync.handlers import setup

__all__ = ["setup"]
