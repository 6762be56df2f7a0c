"""Fine-tune and evaluate Synthesizers on GLUE and SuperGLUE tasks, offline metrics and submission files.

Task names: cola sst2 mrpc qqp stsb mnli qnli rte wnli (GLUE), boolq cb copa multirc superglue_rte wic
wsc (SuperGLUE). STS-B is trained as regression, COPA as multiple choice, MultiRC is scored per question.
--data_dir points at the official files (<data_dir>/glue/SST-2/train.tsv, <data_dir>/superglue/COPA/
train.jsonl, ...); without it the Hub copies are downloaded. Outputs, under --output_dir:
<task>/eval_results.json and the fine-tuned model, submission/{glue,superglue}/<official file> for each test
split, and summary.json with the GLUE/SuperGLUE averages (also printed as a table).

Every `TrainingArguments` flag works too (--optim, --max_grad_norm, --report_to, ...: see --help), and one
.json/.yaml argument file can hold all the arguments (see docs/TRAINING.md, "Arguments").

Examples:
    # the bundled SST-2 and RTE samples, from a checkpoint of pretrain_mlm.py
    python scripts/run_glue.py --tasks sst2 rte --data_dir src/synthesizer_tools/demo_data \\
        --model_name_or_path runs/mlm --learning_rate 1e-4 --num_train_epochs 3 --output_dir runs/glue
    # every task of both benchmarks from the official files
    python scripts/run_glue.py --tasks cola sst2 mrpc qqp stsb mnli qnli rte wnli boolq cb copa multirc \\
        superglue_rte wic wsc --data_dir ../shared/data --model_name_or_path runs/mlm --output_dir runs/all
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthesizer_tools.arguments import parse_finetuning_arguments
from synthesizer_tools.finetuning import run_tasks
from synthesizer_tools.trainer import run_script


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line (or one .json/.yaml argument file), run every task; returns the summary
    (per-task metrics and averages)."""
    return run_tasks(parse_finetuning_arguments(argv, program="scripts/run_glue.py", description=__doc__))


if __name__ == "__main__":
    run_script(main)
