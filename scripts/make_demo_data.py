"""Rebuild ``src/synthesizer_tools/demo_data/`` from the offline copy of the public datasets (``shared/data``).

The demo has to run on a fresh clone, so the package bundles small samples of real data. Every row is copied
byte for byte from the source file (no CSV re-serialisation: GLUE TSVs have unbalanced quotes), and the
sampling is seeded, so running this again gives identical files.

    python scripts/make_demo_data.py --shared_data_dir /work/shared/data
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parents[1] / "src" / "synthesizer_tools" / "demo_data"
# A WikiText top-level heading (" = Title = "), i.e. the start of a new article; sections are " = = ... = = ".
_ARTICLE_HEADING = re.compile(rb" = [^=].* = \n")


def sample_tsv(src: Path, dst: Path, n_rows: int, seed: int) -> int:
    """Copy the header and ``n_rows`` randomly chosen rows of ``src``, kept in their original order."""
    header, *rows = src.read_bytes().splitlines(keepends=True)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), n_rows))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(header + b"".join(rows[i] for i in chosen))
    return n_rows


def copy_tsv(src: Path, dst: Path) -> int:
    """Copy a whole file unchanged; returns its row count (header excluded)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return len(dst.read_bytes().splitlines()) - 1


def head_wikitext(src: Path, dst: Path, max_bytes: int) -> int:
    """Write the first lines of WikiText-2 train, stopping at the first article start after ``max_bytes``.

    Cutting at an article boundary keeps every bundled article whole. The output is gzip'd with a zero
    timestamp and no file name, so it is reproducible byte for byte.
    """
    lines: list[bytes] = []
    size = 0
    with gzip.open(src, "rb") as handle:
        for line in handle:
            if size >= max_bytes and _ARTICLE_HEADING.fullmatch(line):
                break
            lines.append(line)
            size += len(line)
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(b"".join(lines))
    return len(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Write every demo file and print what was written, for the README."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shared_data_dir", type=Path, required=True, help="Folder holding shared/data/README.md."
    )
    parser.add_argument("--output_dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pretrain_bytes", type=int, default=1_800_000)
    parser.add_argument("--sst2_train_rows", type=int, default=2000)
    parser.add_argument("--rte_train_rows", type=int, default=500)
    args = parser.parse_args(argv)

    src, out = args.shared_data_dir, args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    n = head_wikitext(src / "wikitext-2" / "train.txt.gz", out / "pretrain.txt.gz", args.pretrain_bytes)
    print(f"pretrain.txt.gz: first {n} lines of wikitext-2/train.txt.gz")
    for task, n_train in (("SST-2", args.sst2_train_rows), ("RTE", args.rte_train_rows)):
        n = sample_tsv(
            src / "glue" / task / "train.tsv", out / "glue" / task / "train.tsv", n_train, args.seed
        )
        print(f"glue/{task}/train.tsv: {n} rows sampled (seed {args.seed})")
        n = copy_tsv(src / "glue" / task / "dev.tsv", out / "glue" / task / "dev.tsv")
        print(f"glue/{task}/dev.tsv: {n} rows (full official dev set)")


if __name__ == "__main__":
    main()
