"""Train the project's WordPiece tokenizer from local text files or a `datasets` dataset and save it.

Thin CLI over ``synthesizer_tools.tokenization`` so the demo, the tests and users all get the same tokenizer.

Examples:
    python scripts/train_tokenizer.py --files src/synthesizer_tools/demo_data/pretrain.txt.gz --output_dir runs/tok
    python scripts/train_tokenizer.py --dataset wikitext --dataset_config wikitext-103-raw-v1 \\
        --text_column text --output_dir runs/tok   # needs network access to the Hub
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable, Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; exactly one text source (``--files`` or ``--dataset``) is required."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--files", nargs="+", help="Local .txt/.txt.gz (one text per line) or .jsonl/.jsonl.gz files."
    )
    source.add_argument("--dataset", help="A `datasets` dataset name (downloaded: online only).")
    parser.add_argument("--dataset_config", default=None, help="Configuration name of --dataset.")
    parser.add_argument("--split", default="train", help="Split of --dataset to train on.")
    parser.add_argument(
        "--text_column", default="text", help="Text field of --dataset rows and of jsonl records."
    )
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--min_frequency", type=int, default=2, help="Minimum count for a merge to be kept.")
    parser.add_argument(
        "--lowercase", action=argparse.BooleanOptionalAction, default=True, help="Lowercase text (uncased)."
    )
    parser.add_argument("--model_max_length", type=int, default=512)
    parser.add_argument(
        "--max_lines", type=int, default=None, help="Use only the first N texts (quick experiments)."
    )
    parser.add_argument("--output_dir", required=True, help="Where save_pretrained() writes the tokenizer.")
    return parser.parse_args(argv)


def _dataset_texts(name: str, config: str | None, split: str, column: str) -> Iterable[str]:
    """Stream one text column of a Hub dataset; imported lazily so --files works without `datasets` I/O."""
    from datasets import load_dataset

    dataset = load_dataset(name, config, split=split, streaming=True)
    return (row[column] for row in dataset if row[column] and row[column].strip())


def main(argv: Sequence[str] | None = None) -> str:
    """Train and save the tokenizer; returns the output directory."""
    args = parse_args(argv)
    # Imported after parsing: importing the package loads torch and registers the models, which --help and
    # argument errors should not wait for.
    from synthesizer_tools.tokenization import iter_text_files, train_tokenizer

    if args.files:
        texts = iter_text_files(args.files, text_field=args.text_column)
    else:
        texts = _dataset_texts(args.dataset, args.dataset_config, args.split, args.text_column)
    if args.max_lines is not None:
        texts = itertools.islice(texts, args.max_lines)
    tokenizer = train_tokenizer(
        texts,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        lowercase=args.lowercase,
        model_max_length=args.model_max_length,
        show_progress=True,
    )
    tokenizer.save_pretrained(args.output_dir)
    print(f"Saved tokenizer (vocab size {len(tokenizer)}) to {args.output_dir}")
    return args.output_dir


if __name__ == "__main__":
    main()
