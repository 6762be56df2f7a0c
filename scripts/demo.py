"""The whole workflow in one command, in a few minutes on a laptop CPU, with no network access.

1. train a WordPiece tokenizer on the bundled WikiText-2 sample (demo_data/pretrain.txt.gz),
2. MLM-pretrain a small Synthesizer (R+V: random synthesizer mixed with dot-product attention by default),
3. fine-tune and evaluate it on the bundled SST-2 sample (2,000 training sentences, full dev set),
4. write the Hub-ready folder with a generated model card.

It calls the same functions as scripts/pretrain_mlm.py, scripts/run_glue.py and scripts/prepare_hub_folder.py,
and records the equivalent command of each step (in run_info.json, summary.json and the model card), so each
step can be rerun or scaled up on its own.

Example:
    python scripts/demo.py --output_dir runs/demo
Outputs (under --output_dir): pretrain/ (model, tokenizer, eval_results.json), glue/ (sst2/eval_results.json,
summary.json), hub/ (the folder to push, with README.md) and demo_summary.json.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="runs/demo")
    parser.add_argument(
        "--attention_type", default="random+dot", help="Any attention_type (see pretrain_mlm.py)."
    )
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--num_heads", type=int, default=4)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--vocab_size", type=int, default=4000)
    parser.add_argument("--pretrain_steps", type=int, default=1000)
    parser.add_argument("--finetune_epochs", type=float, default=3.0)
    parser.add_argument("--max_train_samples", type=int, default=None, help="Cap SST-2 training sentences.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Cap SST-2 dev sentences.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default, one per core). One thread is barely slower on an idle "
        "2-core machine and many times faster on a busy one, where spinning threads wait for each other.",
    )
    parser.add_argument("--disable_tqdm", action="store_true", help="No progress bars.")
    return parser.parse_args(argv)


def _display(path: Path) -> str:
    """Paths relative to the working directory where possible, so recorded commands stay portable."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the four steps; returns the demo summary (paths, metrics, timings)."""
    args = parse_args(argv)
    started = time.time()
    # Imported after parsing so --help is instant.
    import torch

    from synthesizer_hf.model_card import prepare_hub_folder
    from synthesizer_hf.tokenization import DEMO_DATA_DIR, DEMO_PRETRAIN_FILE
    from synthesizer_hf.training import (
        build_pretraining_parser,
        build_tasks_parser,
        run_pretraining,
        run_tasks,
        write_json,
    )
    from synthesizer_hf.training import (
        parse_args as parse_workflow_args,
    )

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir)
    pretrain_dir, glue_dir, hub_dir = output_dir / "pretrain", output_dir / "glue", output_dir / "hub"
    common = ["--seed", str(args.seed), "--max_seq_length", str(args.max_seq_length)]
    common += ["--disable_tqdm"] if args.disable_tqdm else []

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
        *common,
    ]  # fmt: skip
    print(f"[demo 1-2/4] tokenizer + MLM pretraining -> {pretrain_dir}")
    pretrain_metrics = run_pretraining(
        parse_workflow_args(build_pretraining_parser("mlm"), pretrain_argv, "scripts/pretrain_mlm.py")
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
    print(f"[demo 3/4] fine-tuning on the SST-2 sample -> {glue_dir}")
    glue_summary = run_tasks(parse_workflow_args(build_tasks_parser(), glue_argv, "scripts/run_glue.py"))

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
