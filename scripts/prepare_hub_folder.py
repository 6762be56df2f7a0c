"""Prepare the exact folder to push to the Hugging Face Hub for a trained Synthesizer checkpoint.

The folder holds the safetensors weights, config.json with an `auto_map` covering every Synthesizer head, the
modeling code (so `trust_remote_code=True` works without this package), the tokenizer files, the training
records and README.md, a model card generated from the template shipped with synthesizer_tools: the attention variant and its
equation, parameter count, how it was trained, the measured results with the commands that produced them,
intended use and limitations. Nothing is uploaded; push the folder yourself, e.g.
`hf upload <user>/<repo> <output_dir>`.

Examples:
    python scripts/prepare_hub_folder.py --model_dir runs/demo/pretrain --output_dir runs/demo/hub \\
        --results runs/demo/glue/summary.json --repo_id <user>/synthesizer-demo
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True, help="A checkpoint saved by the training scripts.")
    parser.add_argument("--output_dir", required=True, help="The folder to create (must be empty or new).")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer folder (default: --model_dir).")
    parser.add_argument(
        "--results",
        nargs="*",
        default=[],
        help="Extra result files for the card, e.g. summary.json of run_glue.py (the model's own "
        "eval_results.json is always included).",
    )
    parser.add_argument(
        "--repo_id", default=None, help="The Hub repository name, used in the card's examples."
    )
    parser.add_argument("--license", default="other", help="License identifier for the card's metadata.")
    parser.add_argument(
        "--template", default=None, help="Card template (default: synthesizer_tools/templates/model_card.md)."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty --output_dir.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    """Write the folder; returns its path."""
    args = parse_args(argv)
    from synthesizer_tools.model_card import prepare_hub_folder  # after parsing: --help needs no torch import

    folder = prepare_hub_folder(
        args.model_dir,
        args.output_dir,
        tokenizer=args.tokenizer,
        results=args.results,
        repo_id=args.repo_id,
        template=args.template,
        license=args.license,
        overwrite=args.overwrite,
    )
    print(f"Hub folder ready in {folder}:")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name}")
    return folder


if __name__ == "__main__":
    main()
