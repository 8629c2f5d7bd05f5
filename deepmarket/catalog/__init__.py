"""The catalog: load, validate, query and import module metadata. No Kubernetes, no mkdocs."""

from deepmarket.catalog.loader import (
    CatalogInvalid,
    load_catalog,
    scan_catalog,
    validate_catalog,
    validate_paths,
)
from deepmarket.catalog.model import Catalog, Module, Problem

__all__ = [
    "Catalog",
    "CatalogInvalid",
    "Module",
    "Problem",
    "load_catalog",
    "scan_catalog",
    "validate_catalog",
    "validate_paths",
]
