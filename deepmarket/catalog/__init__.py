"""The catalog: load, validate, query and import module metadata. No Kubernetes, no mkdocs."""

from deepmarket.catalog.model import Catalog, Module, Problem

__all__ = ["Catalog", "Module", "Problem"]
