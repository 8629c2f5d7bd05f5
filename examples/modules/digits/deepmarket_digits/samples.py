"""Sample inputs made from the held-out part of the bundled digits (never trained on).

python -m deepmarket_digits.samples seven.png          # one held-out 7 as a 32x32 PNG
python -m deepmarket_digits.samples --folder DIR -n 10  # DIR/<digit>/<i>.png for training
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deepmarket_digits import classifier, images


def held_out(digit: int, index: int = 0) -> np.ndarray:
    """The `index`-th held-out example of `digit` in the pre-trained model's split."""
    features, labels = classifier.bundled_dataset()
    split = classifier._split(labels, classifier.SEED)
    assert split is not None
    test = sorted(int(i) for i in split[1] if labels[i] == digit)
    return features[test[index]]


def write_folder(root: Path, per_class: int, seed: int = classifier.SEED) -> int:
    """A labelled image folder (`root/<digit>/<n>.png`) drawn from the bundled digits."""
    features, labels = classifier.bundled_dataset()
    rng = np.random.default_rng(seed)
    written = 0
    for digit in range(10):
        chosen = rng.choice(np.flatnonzero(labels == digit), size=per_class, replace=False)
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(chosen):
            (folder / f"{n}.png").write_bytes(images.digit_png(features[i]))
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file, or folder with --folder")
    parser.add_argument("--digit", type=int, default=7)
    parser.add_argument("--folder", action="store_true", help="write a labelled image folder")
    parser.add_argument("-n", type=int, default=10, help="images per digit with --folder")
    args = parser.parse_args()
    if args.folder:
        print(f"wrote {write_folder(args.out, args.n)} images under {args.out}")
    else:
        args.out.write_bytes(images.digit_png(held_out(args.digit)))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
