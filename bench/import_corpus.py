"""Import every DEEP v1 / AI4OS v2 metadata file under a directory and print the success rate.

    python bench/import_corpus.py DIR [--show refused|invalid|all] [--notes]

Each file is converted and validated as `deepmarket import` does (into an empty scratch
catalog, so ids never clash); nothing is written. A file counts as a success when its entry
validates with no edits and no flags. Prints one line per failure and the totals.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import traceback
from pathlib import Path

from deepmarket.catalog import importio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--show", choices=("failures", "all"), default="failures")
    parser.add_argument("--notes", action="store_true", help="count the kinds of notes")
    args = parser.parse_args()
    sources, skipped = importio.find_sources([args.directory])
    results: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    formats: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as root:
        for source in sources:
            fmt = "v2" if source.name in importio.V2_NAMES else "v1"
            try:
                outcome = importio.prepare(source, Path(root))
            except Exception:  # the point of the run: any traceback is a bug to report
                results["traceback"] += 1
                print(f"TRACEBACK {source}\n{traceback.format_exc()}", file=sys.stderr)
                continue
            results[outcome.result] += 1
            formats[f"{fmt} {outcome.result}"] += 1
            if args.show == "all" or outcome.result != "valid":
                print(f"{outcome.result.upper():8} {source}")
                for problem in outcome.problems:
                    print(f"         {problem}")
            for note in outcome.notes:
                kinds[re.sub(r"'[^']*'|\"[^\"]*\"|\[.*\]|\d+", "…", note)[:90]] += 1
    total = sum(results.values())
    valid = results["valid"]
    print(f"\n{len(sources)} files ({len(skipped)} v1 files skipped beside a v2 file)")
    for key, count in sorted(formats.items()):
        print(f"  {key}: {count}")
    print(f"valid with no edits: {valid}/{total} = {valid / max(total, 1):.1%}")
    if args.notes:
        for kind, count in kinds.most_common():
            print(f"{count:5}  {kind}")
    return 0 if not results["traceback"] else 1


if __name__ == "__main__":
    sys.exit(main())
