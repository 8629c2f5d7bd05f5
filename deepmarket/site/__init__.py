"""The marketplace: an mkdocs plugin that renders the catalog as pages, a browser and a JSON API.

Imports the catalog, never the controller. `render` and `api` are pure; `plugin` is the
mkdocs shell; `build` drives mkdocs for the CLI, tests and benchmarks.
"""
