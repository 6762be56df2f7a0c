"""Run one study (an experiment of docs/RESULTS.md) from its JSON config: train, tabulate and plot.

A study whose `objective` is `warm_start` (`studies/paper_glue_minilm.json`) runs the training scripts from a
pretrained BERT (`synthesizer_tools.warm_start_study`); --max_runs stops it after that many runs (rerun the
same command to go on); --speed_only runs just its same-run fine-tuning speed probe.

The study's JSON holds its Trainer settings (`train`); Trainer flags given here (any `TrainingArguments` flag:
--max_steps, --learning_rate, --optim, ...) override them in every run (and so enter the runs' keys).

Example:
    python scripts/run_study.py --config studies/mlm_wikitext2.json --data_dir ../shared/data \\
        --output_dir runs/studies/mlm_wikitext2
    python scripts/run_study.py --config studies/mlm_wikitext2.json --data_dir ../shared/data \\
        --output_dir runs/studies/smoke --smoke   # a tiny run that checks the whole pipeline
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainingArguments

from synthesizer_tools.arguments import ScriptArgumentParser, flags_not_of, given_training_arguments
from synthesizer_tools.records import command_line
from synthesizer_tools.studies import check_train_overrides, load_study_config, run_study
from synthesizer_tools.study_config import StudyConfig, StudyFileError
from synthesizer_tools.warm_start_study import (
    WarmStartStudy,
    load_warm_start_study,
    run_speed_probe,
    run_warm_start_study,
    write_hub_folders,
)


@dataclass
class StudyArguments:
    """Which study, on which data (--output_dir: where runs, tables and plots are written)."""

    _argument_group_name = "study"

    config: str = field(metadata={"help": "Study JSON (studies/<name>.json)."})
    data_dir: str = field(metadata={"help": "Offline data folder (shared/data)."})
    smoke: bool = field(default=False, metadata={"help": "Apply the config's tiny `smoke` overrides."})
    max_runs: int | None = field(
        default=None, metadata={"help": "warm_start studies: run at most this many runs, then report."}
    )
    speed_only: bool = field(
        default=False,
        metadata={
            "help": "warm_start studies: run only the study's speed probe (every variant fine-tuned in one run), "
            "now, whatever else is unfinished, then report."
        },
    )
    hub_dir: str | None = field(
        default=None,
        metadata={
            "help": "warm_start studies: write a Hub-ready folder per adapted variant here (model, code, "
            "tokenizer, a card with its measured results), re-adapting where the checkpoint is gone."
        },
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[StudyArguments, str, dict[str, Any]]:
    """(study arguments, output folder, the Trainer flags given: overrides of the study's `train`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = ScriptArgumentParser(
        (StudyArguments, TrainingArguments),
        program="scripts/run_study.py",
        description=__doc__,
        argument_files=False,
    )
    (study, training), _ = parser.parse(argv)
    overrides = given_training_arguments(flags_not_of(StudyArguments, argv))
    overrides.pop("output_dir")
    return study, training.output_dir, overrides


def load_study(study: StudyArguments, overrides: dict[str, Any]) -> StudyConfig | WarmStartStudy:
    """The checked study file; a mistake in it ends the program with its message, which names the field."""
    try:
        if json.loads(Path(study.config).read_text(encoding="utf-8")).get("objective") == "warm_start":
            if overrides or study.smoke:
                raise SystemExit(
                    "a warm_start study takes its settings from its file: no Trainer flags, no --smoke"
                )
            plan = load_warm_start_study(study.config)
            if study.speed_only and plan.speed is None:
                raise SystemExit(f"--speed_only: {study.config} has no `speed` probe")
            return plan
        given = [
            flag
            for flag in ("max_runs", "hub_dir", "speed_only")
            if getattr(study, flag) not in (None, False)
        ]
        if given:
            raise SystemExit(f"--{given[0]} is for warm_start studies; {study.config} is not one")
        check_train_overrides(overrides)
        return load_study_config(study.config, smoke=study.smoke)
    except StudyFileError as err:
        raise SystemExit(f"scripts/run_study.py: error: {err}") from None


def main(argv: Sequence[str] | None = None) -> None:
    study, output_dir, overrides = parse_args(argv)
    plan = load_study(study, overrides)
    if isinstance(plan, WarmStartStudy):
        if study.speed_only:
            summary = run_speed_probe(plan, study.data_dir, output_dir)
        else:
            summary = run_warm_start_study(plan, study.data_dir, output_dir, limit=study.max_runs)
        print(summary["tables"])
        if study.hub_dir:
            command = command_line(sys.argv[1:] if argv is None else argv, "scripts/run_study.py")
            for folder in write_hub_folders(plan, study.data_dir, output_dir, study.hub_dir, command):
                print(f"Hub folder: {folder}")
        return
    summary = run_study(plan, study.data_dir, output_dir, train_overrides=overrides)
    print(summary["tables"])
    print("Plots:", *summary["plots"], sep="\n  ")


if __name__ == "__main__":
    main()
