"""The whole workflow in one command, in a few minutes on a laptop CPU, with no network access.

1. train a WordPiece tokenizer on the bundled WikiText-2 sample (demo_data/pretrain.txt.gz),
2. MLM-pretrain a small Synthesizer (R+V: random synthesizer mixed with dot-product attention by default),
3. fine-tune and evaluate it on the bundled SST-2 sample (2,000 training sentences, full dev set),
4. write the Hub-ready folder with a generated model card.

It calls the same functions as scripts/pretrain_mlm.py, scripts/run_glue.py and scripts/prepare_hub_folder.py,
and records the equivalent command of each step (in run_info.json, summary.json and the model card), so each
step can be rerun or scaled up on its own.

Any Trainer flag (`TrainingArguments`: --seed, --disable_tqdm, --report_to, --optim, ...) is passed on to both
training steps, after the demo's own settings.

Example:
    python scripts/demo.py --output_dir runs/demo
Outputs (under --output_dir): pretrain/ (model, tokenizer, eval_results.json), glue/ (sst2/eval_results.json,
summary.json), hub/ (the folder to push, with README.md) and demo_summary.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from synthesizer_tools.arguments import (
    ScriptArgumentParser,
    flags_not_of,
    parse_finetuning_arguments,
    parse_pretraining_arguments,
)
from synthesizer_tools.bundled import DEMO_DATA_DIR, DEMO_PRETRAIN_FILE
from synthesizer_tools.finetuning import run_tasks
from synthesizer_tools.model_card import prepare_hub_folder
from synthesizer_tools.pretraining import run_pretraining
from synthesizer_tools.records import write_json


@dataclass
class DemoArguments:
    """The demo's own settings; the Trainer flags are those of TrainingArguments (--output_dir: runs/demo)."""

    _argument_group_name = "demo"

    attention_type: str = field(
        default="random+dot", metadata={"help": "Any attention_type (see pretrain_mlm.py)."}
    )
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_seq_length: int = 128
    vocab_size: int = 4000
    pretrain_steps: int = 1000
    finetune_epochs: float = 3.0
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap SST-2 training sentences."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap SST-2 dev sentences."})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads (0: torch's default, one per core). One thread is barely slower on an idle "
            "2-core machine and many times faster on a busy one, where spinning threads wait for each other."
        },
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[DemoArguments, Path, list[str]]:
    """(demo settings, output folder, the Trainer flags to pass on to both training steps)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = ScriptArgumentParser(
        (DemoArguments, TrainingArguments),
        program="scripts/demo.py",
        description=__doc__,
        defaults={"output_dir": "runs/demo"},
        require_output_dir=False,
        argument_files=False,
    )
    (demo, training), _ = parser.parse(argv)  # checks every flag (and answers --help)
    output_dir = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    output_dir.add_argument("--output_dir", "--output-dir")
    _, trainer_flags = output_dir.parse_known_args(flags_not_of(DemoArguments, argv))
    return demo, Path(training.output_dir), trainer_flags


def _display(path: Path) -> str:
    """Paths relative to the working directory where possible, so recorded commands stay portable."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the four steps; returns the demo summary (paths, metrics, timings)."""
    args, output_dir, trainer_flags = parse_args(argv)
    started = time.time()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    pretrain_dir, glue_dir, hub_dir = output_dir / "pretrain", output_dir / "glue", output_dir / "hub"
    common = ["--max_seq_length", str(args.max_seq_length)]

    pretrain_argv = [
        "--train_files", _display(DEMO_PRETRAIN_FILE),
        "--vocab_size", str(args.vocab_size),
        "--attention_type", args.attention_type,
        "--hidden_size", str(args.hidden_size),
        "--num_layers", str(args.num_layers),
        "--num_heads", str(args.num_heads),
        "--intermediate_size", str(4 * args.hidden_size),
        "--max_steps", str(args.pretrain_steps),
        "--per_device_train_batch_size", "16",
        "--learning_rate", "1e-3",
        "--warmup_steps", "0.06",
        "--eval_steps", str(max(args.pretrain_steps // 2, 1)),
        "--save_steps", str(max(args.pretrain_steps // 2, 1)),
        "--logging_steps", str(max(args.pretrain_steps // 10, 1)),
        "--max_eval_samples", "64",
        "--output_dir", _display(pretrain_dir),
        *common, *trainer_flags,
    ]  # fmt: skip
    print(f"[demo 1-2/4] tokenizer + MLM pretraining -> {pretrain_dir}")
    pretrain_metrics = run_pretraining(
        parse_pretraining_arguments("mlm", pretrain_argv, program="scripts/pretrain_mlm.py")
    )
    pretrain_time = time.time() - started

    glue_argv = [
        "--tasks", "sst2",
        "--data_dir", _display(DEMO_DATA_DIR),
        "--model_name_or_path", _display(pretrain_dir),
        "--num_train_epochs", str(args.finetune_epochs),
        "--learning_rate", "1e-3",
        "--warmup_steps", "0.1",
        "--per_device_train_batch_size", "32",
        "--logging_steps", "20",
        "--output_dir", _display(glue_dir),
        *common,
    ]  # fmt: skip
    if args.max_train_samples is not None:
        glue_argv += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples is not None:
        glue_argv += ["--max_eval_samples", str(args.max_eval_samples)]
    glue_argv += trainer_flags
    print(f"[demo 3/4] fine-tuning on the SST-2 sample -> {glue_dir}")
    glue_summary = run_tasks(parse_finetuning_arguments(glue_argv, program="scripts/run_glue.py"))

    print(f"[demo 4/4] Hub folder with model card -> {hub_dir}")
    prepare_hub_folder(
        pretrain_dir,
        hub_dir,
        results=[glue_dir / "summary.json"],
        repo_id=f"synthesizer-{args.attention_type.replace('+', '-')}-demo",
        overwrite=True,
    )
    summary = {
        "attention_type": args.attention_type,
        "pretraining": {
            "eval_loss": pretrain_metrics["eval_loss"],
            "perplexity": pretrain_metrics["perplexity"],
        },
        "sst2_accuracy": glue_summary["tasks"]["sst2"]["accuracy"],
        "paths": {
            "pretrained_model": str(pretrain_dir),
            "finetuned_model": str(glue_dir / "sst2"),
            "eval_results": str(glue_dir / "sst2" / "eval_results.json"),
            "model_card": str(hub_dir / "README.md"),
            "hub_folder": str(hub_dir),
        },
        "time_s": {"pretraining": round(pretrain_time, 1), "total": round(time.time() - started, 1)},
    }
    write_json(output_dir / "demo_summary.json", summary)
    print(
        "\n".join(
            [
                "",
                f"Synthesizer demo ({args.attention_type}) finished in {summary['time_s']['total']:.0f} s",
                f"  MLM pretraining: eval loss {summary['pretraining']['eval_loss']:.3f}, "
                f"perplexity {summary['pretraining']['perplexity']:.1f}  ({pretrain_dir})",
                f"  SST-2 dev accuracy: {100 * summary['sst2_accuracy']:.2f}%  ({glue_dir / 'sst2'})",
                f"  model card: {hub_dir / 'README.md'}",
                f"  summary: {output_dir / 'demo_summary.json'}",
            ]
        )
    )
    return summary


if __name__ == "__main__":
    main()
