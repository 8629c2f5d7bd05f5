"""How much the deepmarket plugin costs over plain mkdocs-material, at catalog scale.

For each size N (default 100, 1,000 and 5,000 modules) it generates a catalog and, in the same
run, builds

* the marketplace: the repository's mkdocs.yml with the `deepmarket` plugin on that catalog;
* the baseline: plain mkdocs-material (same theme, features, search and tags plugins, same
  Markdown extensions) over N equivalent hand-written Markdown pages (title, summary, badges,
  description, the same manifests and commands in code blocks, a details table) plus a home
  page listing every module,

each as a fresh `mkdocs build` process, and prints wall and CPU seconds and their ratios
(best of --repeat runs, the two variants interleaved).

    .venv/bin/python bench/site.py                 # 100, 1000, 5000
    .venv/bin/python bench/site.py --sizes 100 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from deepmarket.catalog import load_catalog
from deepmarket.catalog.model import Module
from deepmarket.site import render
from deepmarket.site.samplecat import write_catalog

REPO = Path(__file__).resolve().parents[1]


def baseline_page(module: Module) -> str:
    """What a person would write by hand for the same page, in plain Markdown."""
    badges = " ".join(f"`{t}`" for t in render.page_tags(module))
    dates = module.data.get("dates") or {}
    details = "\n".join(
        [
            "| | |",
            "| --- | --- |",
            f"| Module id | `{module.id}` |",
            f"| Image | `{module.image}` |",
            f"| DEEPaaS model | `{module.model_name}` |",
            f"| Licence | {module.data.get('license', '')} |",
            f"| Updated | {dates.get('updated', '')} |",
        ]
    )
    links = "\n".join(
        f"- [{label}]({url})"
        for key, label in render.LINK_LABELS
        if (url := render.safe_url((module.data.get("links") or {}).get(key)))
    )
    text = render.page_markdown(module)
    replacements = {
        render.SLOT.format("header"): f"# {module.title}\n\n{module.summary}\n\n{badges}\n",
        render.SLOT.format("description"): str(module.data.get("description", "")),
        render.SLOT.format("tryit"): '!!! info "Try it"\n    Deploy the module, then open `/ui`.\n',
        render.SLOT.format("details"): f"{details}\n\n### Links\n\n{links}\n",
    }
    return render.fill_slots(text, replacements)


def write_baseline(catalog_root: Path, docs: Path) -> Path:
    """A plain mkdocs-material project equivalent to the marketplace; returns its mkdocs.yml."""
    shutil.copytree(REPO / "site", docs)
    catalog = load_catalog(catalog_root)
    (docs / "modules").mkdir()
    front = "title: Marketplace\nhide: [navigation, toc]\nsearch: {exclude: true}"  # as site/
    index = [f"---\n{front}\n---\n", "# Modules\n"]
    for module in catalog:
        (docs / "modules" / f"{module.id}.md").write_text(baseline_page(module))
        index.append(f"- [{module.title}](modules/{module.id}.md): {module.summary}")
    (docs / "index.md").write_text("\n".join(index) + "\n")

    yaml = YAML()
    config = yaml.load((REPO / "mkdocs.yml").read_text())
    config["plugins"] = [p for p in config["plugins"] if "deepmarket" not in str(p)]
    config["docs_dir"] = str(docs)
    if "custom_dir" in config["theme"]:
        config["theme"]["custom_dir"] = str(docs / Path(config["theme"]["custom_dir"]).name)
    target = docs.parent / "mkdocs.yml"
    with target.open("w") as out:
        yaml.dump(config, out)
    return target


def timed_build(config: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one `mkdocs build` process."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(config), "-d", str(out)],
        check=True,
        env=env,
        cwd=REPO,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeat", type=int, default=1, help="builds per variant; best is kept")
    args = parser.parse_args()

    # CPU seconds are the steadier figure on a shared machine: other processes' load stretches
    # wall time but not the CPU a build itself consumes.
    print(
        f"{'modules':>8} | {'deepmarket wall/cpu s':>22} | {'mkdocs-material wall/cpu s':>27}"
        f" | {'ratio wall':>10} {'ratio cpu':>9}"
    )
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
            work = Path(tmp)
            write_catalog(work / "catalog", n)
            plain = write_baseline(work / "catalog", work / "baseline" / "docs")
            env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPMARKET_")}
            env["NO_MKDOCS_2_WARNING"] = "1"  # the theme's banner about MkDocs 2.0
            ours_env = {**env, "DEEPMARKET_CATALOG": str(work / "catalog")}
            ours = base = (float("inf"), float("inf"))
            for _ in range(args.repeat):  # interleaved, so machine load hits both alike
                ours = min(ours, timed_build(REPO / "mkdocs.yml", work / "out-dm", ours_env))
                base = min(base, timed_build(plain, work / "out-plain", env))
            print(
                f"{n:>8} | {ours[0]:>10.2f} / {ours[1]:>9.2f} | {base[0]:>13.2f} / {base[1]:>11.2f}"
                f" | {ours[0] / base[0]:>10.2f} {ours[1] / base[1]:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
