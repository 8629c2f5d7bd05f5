"""The catalog shipped in this repository: what a marketplace visitor relies on.

These tests read the real `modules.yml` and `catalog/` (not a fixture), so a pull
request that breaks an entry, or thins the catalog out, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepmarket.catalog import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = {"trainable", "inference", "pre-trained", "tool"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    # load_catalog raises CatalogInvalid listing every problem, so a broken
    # entry fails this fixture with the validator's own file:line messages.
    return load_catalog(ROOT)


def test_catalog_is_large_enough_to_browse(catalog: Catalog) -> None:
    assert len(catalog) >= 15


def test_every_category_filter_has_modules(catalog: Catalog) -> None:
    seen = {category for module in catalog for category in module.categories}
    assert seen >= CATEGORIES, f"no module in categories {sorted(CATEGORIES - seen)}"


def test_ids_match_directories_both_ways(catalog: Catalog) -> None:
    for module in catalog:
        assert module.dir.name == module.id
    on_disk = {p.name for p in (ROOT / "catalog").iterdir() if p.is_dir()}
    assert on_disk == {module.id for module in catalog}


def test_every_module_has_a_readme(catalog: Catalog) -> None:
    for module in catalog:
        assert (module.dir / "README.md").is_file(), module.id
        assert module.readme and module.readme.lstrip().startswith("#"), module.id


def test_icons_are_small(catalog: Catalog) -> None:
    icons = [module.icon for module in catalog if module.icon is not None]
    assert len(icons) >= len(catalog) // 2
    for icon in icons:
        assert icon.stat().st_size < 4096, icon


def test_trainable_category_agrees_with_runtime(catalog: Catalog) -> None:
    for module in catalog:
        assert ("trainable" in module.categories) == module.trainable, module.id


def test_auto_deployed_modules_are_light_cpu_inference(catalog: Catalog) -> None:
    deployed = [module for module in catalog if module.deploy]
    assert 0 < len(deployed) <= 4
    for module in deployed:
        assert module.inference, module.id
        assert not module.resources("inference").get("gpu"), module.id
