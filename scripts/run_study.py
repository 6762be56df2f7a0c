"""Run one study (an experiment of docs/RESULTS.md) from its JSON config: train, tabulate and plot.

Example:
    python scripts/run_study.py --config studies/mlm_wikitext2.json --data_dir ../shared/data \\
        --output_dir runs/studies/mlm_wikitext2
    python scripts/run_study.py --config studies/mlm_wikitext2.json --data_dir ../shared/data \\
        --output_dir runs/studies/smoke --smoke   # a tiny run that checks the whole pipeline
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from synthesizer_hf.studies import load_study_config, run_study


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="Study JSON (studies/<name>.json).")
    parser.add_argument("--data_dir", required=True, help="Offline data folder (shared/data).")
    parser.add_argument("--output_dir", required=True, help="Where runs, tables and plots are written.")
    parser.add_argument("--smoke", action="store_true", help="Apply the config's tiny `smoke` overrides.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    summary = run_study(load_study_config(args.config, smoke=args.smoke), args.data_dir, args.output_dir)
    print(summary["tables"])
    print("Plots:", *summary["plots"], sep="\n  ")


if __name__ == "__main__":
    main()
