"""The schema documents themselves: valid draft 2020-12, self-describing, strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from deepmarket.catalog.schema import SCHEMA_DIR

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["module.schema.json", "modules.schema.json"]


def walk_objects(schema, where="#"):
    """Every sub-schema that declares properties, with its JSON pointer."""
    if isinstance(schema, dict):
        if "properties" in schema:
            yield where, schema
        for key, value in schema.items():
            yield from walk_objects(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from walk_objects(value, f"{where}/{i}")


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_2020_12_with_id(name):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + name)


@pytest.mark.parametrize("name", NAMES)
def test_every_property_is_described_and_objects_are_closed(name):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    for where, obj in walk_objects(schema):
        for prop, sub in obj["properties"].items():
            assert sub.get("description"), f"{where}/properties/{prop} has no description"
        if obj.get("type") == "object":
            assert obj.get("additionalProperties") is False, where
            assert "^x-" in obj.get("patternProperties", {}), where


@pytest.mark.parametrize("name", NAMES)
def test_top_level_schemas_are_the_packaged_ones(name):
    assert (ROOT / "schemas" / name).read_bytes() == (SCHEMA_DIR / name).read_bytes()
