"""Shared machinery of the training scripts: argument parsers, data pipelines, collators and Trainer runs.

The scripts in ``scripts/`` are thin wrappers over this module, and ``scripts/demo.py`` calls the same
functions, so pretraining and GLUE/SuperGLUE fine-tuning behave identically whichever entry point runs them:

- ``run_pretraining(args)``: masked-LM (``SynthesizerForMaskedLM``) or T5-style span-corruption
  (``SynthesizerForSeq2SeqLM``) pretraining from text files, with a tokenizer trained on the fly if none is given.
- ``run_tasks(args)``: fine-tune and evaluate on GLUE/SuperGLUE tasks (classification, STS-B regression,
  COPA multiple choice, MultiRC with question grouping), write test submissions and a summary table.

Every run writes ``run_info.json`` (the command, arguments and timings), which ``model_card.py`` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorForMultipleChoice,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from . import __version__
from .bert_warm_start import bert_tokenizer, from_bert
from .configuration_synthesizer import SynthesizerConfig
from .metrics import benchmark_average, compute_task_metrics
from .modeling_synthesizer import (
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
    SynthesizerPreTrainedModel,
)
from .tasks import TASKS, TaskSpec, get_task, load_task, write_test_predictions
from .tokenization import iter_text_files, train_tokenizer

logger = logging.getLogger("synthesizer_hf")

RUN_INFO_FILE = "run_info.json"
EVAL_RESULTS_FILE = "eval_results.json"
SUMMARY_FILE = "summary.json"
LATEST = "latest"  # --resume_from_checkpoint without a path: the newest checkpoint in the output directory
NUM_SENTINELS = 100


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser, seq2seq: bool = False) -> None:
    """Architecture flags of a model trained from scratch (names as in the paper's tables where possible)."""
    group = parser.add_argument_group("model (from scratch)")
    group.add_argument(
        "--attention_type",
        nargs="+",
        default=["random"],
        help="Synthesizing function(s): dot, symmetric_dot, pairwise_dot, random, fixed_random, "
        "factorized_random, dense, factorized_dense, a '+' mixture such as random+dot, or the paper's short "
        "names (R, D, FR, V, R+V, ...). One value for all layers, or one per layer.",
    )
    if seq2seq:
        group.add_argument(
            "--decoder_attention_type",
            nargs="+",
            default=None,
            help="The same for the decoder self-attention (default: --attention_type).",
        )
        group.add_argument(
            "--num_decoder_layers", type=int, default=None, help="Decoder depth (default: --num_layers)."
        )
    group.add_argument("--hidden_size", type=int, default=256)
    group.add_argument("--num_layers", type=int, default=4, help="Number of (encoder) layers.")
    group.add_argument("--num_heads", type=int, default=4)
    group.add_argument("--intermediate_size", type=int, default=1024)
    group.add_argument(
        "--synthesizer_length",
        type=int,
        default=None,
        help="L of the length-bound synthesizers (default: --max_seq_length, the longest input they accept).",
    )
    group.add_argument("--dropout", type=float, default=0.1, help="Hidden and attention dropout.")


def add_bert_argument(group: argparse._ActionsContainer) -> None:
    """`--init_from_bert`: a warm start from a saved BERT (`synthesizer_hf.bert_warm_start.from_bert`)."""
    group.add_argument(
        "--init_from_bert",
        metavar="PATH",
        default=None,
        help="Start from this saved BERT folder, converted with --attention_type (with `dot` or a mixture "
        "such as random+dot the model starts out computing what the BERT computes) and with its tokenizer. "
        "The sizes and dropouts are BERT's; --synthesizer_length (default --max_seq_length) still applies.",
    )


def add_trainer_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """Flags passed through to `TrainingArguments`; `defaults` adapts them to pretraining or fine-tuning."""
    group = parser.add_argument_group("training (passed to transformers.TrainingArguments)")
    group.add_argument("--output_dir", required=True, help="Where checkpoints, the model and results go.")
    group.add_argument("--max_steps", type=int, default=-1, help="Total optimizer steps (overrides epochs).")
    group.add_argument("--num_train_epochs", type=float, default=3.0)
    group.add_argument("--per_device_train_batch_size", type=int, default=32)
    group.add_argument("--per_device_eval_batch_size", type=int, default=64)
    group.add_argument("--gradient_accumulation_steps", type=int, default=1)
    group.add_argument("--learning_rate", type=float, default=5e-5)
    group.add_argument("--weight_decay", type=float, default=0.01)
    group.add_argument(
        "--warmup_steps", type=float, default=0.0, help="Warmup steps, or a fraction of all steps if < 1."
    )
    group.add_argument("--lr_scheduler_type", default="linear")
    group.add_argument("--logging_steps", type=int, default=50)
    group.add_argument("--eval_steps", type=int, default=500, help="Evaluate every N steps (pretraining).")
    group.add_argument("--save_steps", type=int, default=500, help="Checkpoint every N steps (pretraining).")
    group.add_argument("--save_total_limit", type=int, default=2, help="Keep only the newest N checkpoints.")
    group.add_argument("--seed", type=int, default=42)
    group.add_argument(
        "--resume_from_checkpoint",
        nargs="?",
        const=LATEST,
        default=None,
        metavar="CHECKPOINT",
        help="Resume training: from the given checkpoint-N folder, or, with no value, from the newest "
        "checkpoint in the output directory (nothing to resume -> start from scratch).",
    )
    group.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (GPU/recent CPU).")
    group.add_argument("--fp16", action="store_true", help="float16 mixed precision (GPU).")
    group.add_argument(
        "--use_cpu",
        action="store_true",
        help="Train on CPU even if a GPU is present (set automatically for multi-process runs on CPU-only hosts).",
    )
    group.add_argument(
        "--activation_checkpointing",
        "--gradient_checkpointing",
        dest="activation_checkpointing",
        action="store_true",
        help="Recompute layer activations in the backward pass to save memory.",
    )
    group.add_argument(
        "--deepspeed", default=None, help="A DeepSpeed JSON config (or use an accelerate config)."
    )
    group.add_argument("--dataloader_num_workers", type=int, default=0)
    group.add_argument("--report_to", nargs="+", default=["none"], help="e.g. tensorboard, wandb, trackio.")
    group.add_argument("--push_to_hub", action="store_true", help="Push the final model (needs network).")
    group.add_argument("--hub_model_id", default=None, help="Repository to push to (user/name).")
    group.add_argument("--disable_tqdm", action="store_true", help="No progress bars (logs only).")
    parser.set_defaults(**defaults)


def build_pretraining_parser(objective: str, description: str | None = None) -> argparse.ArgumentParser:
    """Parser of `scripts/pretrain_mlm.py` (objective "mlm") and `scripts/pretrain_span_corruption.py` ("span")."""
    if objective not in ("mlm", "span"):
        raise ValueError(f"objective must be 'mlm' or 'span', got {objective!r}")
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(objective=objective)
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--train_files", nargs="+", help="Local .txt/.txt.gz (one text per line) or .jsonl/.jsonl.gz files."
    )
    source.add_argument("--dataset_name", help="A `datasets` Hub dataset (needs network access).")
    data.add_argument("--dataset_config_name", default=None, help="Configuration of --dataset_name.")
    data.add_argument("--text_column", default="text", help="Text field of jsonl records / dataset rows.")
    data.add_argument(
        "--validation_files",
        nargs="+",
        default=None,
        help="Held-out text (default: split off the train set).",
    )
    data.add_argument(
        "--validation_split_percentage",
        type=float,
        default=5.0,
        help="Percentage of the training blocks held out for evaluation when no validation data is given.",
    )
    data.add_argument("--max_seq_length", type=int, default=128, help="Tokens per training example.")
    data.add_argument("--max_train_samples", type=int, default=None, help="Use at most N training blocks.")
    data.add_argument("--max_eval_samples", type=int, default=None, help="Use at most N evaluation blocks.")
    data.add_argument(
        "--tokenizer",
        default=None,
        help="A saved tokenizer folder. Without it, the tokenizer saved in --output_dir by an earlier run is "
        "reused, or a WordPiece tokenizer is trained on the training text and saved there.",
    )
    data.add_argument("--vocab_size", type=int, default=8000, help="Vocabulary of a newly trained tokenizer.")
    data.add_argument(
        "--cache_dir",
        default=None,
        help="`datasets` cache for the tokenized blocks (default: HF_DATASETS_CACHE).",
    )
    if objective == "mlm":
        data.add_argument("--mlm_probability", type=float, default=0.15, help="Fraction of tokens masked.")
    else:
        data.add_argument("--noise_density", type=float, default=0.15, help="Fraction of tokens corrupted.")
        data.add_argument("--mean_noise_span_length", type=float, default=3.0, help="Mean corrupted span.")
    add_model_arguments(parser, seq2seq=objective == "span")
    if objective == "mlm":
        add_bert_argument(parser)
    add_trainer_arguments(
        parser, max_steps=1000, learning_rate=5e-4, warmup_steps=0.06, logging_steps=50, eval_steps=500
    )
    return parser


def build_tasks_parser(description: str | None = None) -> argparse.ArgumentParser:
    """Parser of `scripts/run_glue.py`."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tasks", nargs="+", required=True, metavar="TASK", help=f"One or more of: {' '.join(TASKS)}."
    )
    parser.add_argument(
        "--data_dir",
        default=None,
        help="Folder with glue/<Task>/ and superglue/<Task>/ in the official layouts (see "
        "synthesizer_hf.tasks). Default: download from the Hub (needs network access).",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model_name_or_path",
        help="A pretrained checkpoint folder (e.g. the output of pretrain_mlm.py); a new task head is added.",
    )
    model.add_argument(
        "--from_scratch", action="store_true", help="Randomly initialised model (needs --tokenizer)."
    )
    add_bert_argument(model)
    parser.add_argument("--tokenizer", default=None, help="Tokenizer folder (default: the model's).")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_samples", type=int, default=None, help="Quick runs: first N examples.")
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--max_predict_samples", type=int, default=None)
    parser.add_argument(
        "--predict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Write official submission files for the test splits that exist.",
    )
    parser.add_argument(
        "--save_model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Save each fine-tuned model (and tokenizer) in <output_dir>/<task>.",
    )
    parser.add_argument(
        "--text_to_text",
        action="store_true",
        help="T5-style: prompt '<task> sentence: ...' -> label word with SynthesizerForSeq2SeqLM "
        "(--model_name_or_path a span-corruption checkpoint, or --from_scratch).",
    )
    add_model_arguments(parser, seq2seq=True)
    add_trainer_arguments(parser, learning_rate=5e-5, num_train_epochs=3.0, logging_steps=50)
    return parser


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, script: str
) -> argparse.Namespace:
    """Parse and remember the exact command, which the model card quotes next to the results it produced."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", script, *argv])
    if getattr(args, "init_from_bert", None):
        if args.tokenizer:
            parser.error("--init_from_bert uses the tokenizer of the BERT folder: drop --tokenizer")
        if getattr(args, "text_to_text", False):
            parser.error("--init_from_bert converts an encoder: it cannot be combined with --text_to_text")
    if getattr(args, "tasks", None) is not None:
        for name in args.tasks:
            try:
                get_task(name)
            except ValueError as err:
                parser.error(str(err))
        if args.from_scratch and not args.tokenizer:
            parser.error("--from_scratch needs --tokenizer (a saved tokenizer folder)")
        if args.resume_from_checkpoint not in (None, LATEST) and len(args.tasks) > 1:
            parser.error(
                "--resume_from_checkpoint PATH needs a single task; give no path to resume each task"
            )
    return args


# ----------------------------------------------------------------------------------------------------------
# Run bookkeeping
# ----------------------------------------------------------------------------------------------------------


def setup_logging(training_args: TrainingArguments) -> None:
    """INFO logs from this package on the main process; transformers/datasets at their own quieter level."""
    level = logging.INFO if training_args.process_index == 0 else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level
    )
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write indented JSON (creating parent folders), so results are diff- and human-friendly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def environment_info() -> dict[str, str]:
    """Library versions and hardware, recorded with each run so results can be reproduced."""
    return {
        "synthesizer_hf": __version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"cpu ({os.cpu_count()} cores)",
    }


def cpu_only_distributed() -> bool:
    """True for a multi-process launch (torchrun / accelerate launch) on a host without any accelerator.

    `TrainingArguments` only sets up CPU data parallelism (DDP over gloo) with `use_cpu=True`; without it each
    process would silently train its own copy.
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.accelerator.current_accelerator() is None


# transformers 5.23 renamed `gradient_checkpointing` to `activation_checkpointing` (the old name is a deprecated
# alias there); earlier releases know only the old name.
CHECKPOINTING_ARGUMENT = (
    "activation_checkpointing"
    if "activation_checkpointing" in {field.name for field in dataclasses.fields(TrainingArguments)}
    else "gradient_checkpointing"
)


def make_training_arguments(
    args: argparse.Namespace, output_dir: str | os.PathLike, **overrides: Any
) -> TrainingArguments:
    """`TrainingArguments` from the shared command-line flags; `overrides` set the per-workflow strategies."""
    values = dict(
        use_cpu=args.use_cpu or cpu_only_distributed(),
        output_dir=str(output_dir),
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type=args.lr_scheduler_type,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        save_total_limit=args.save_total_limit,
        seed=args.seed,
        bf16=args.bf16,
        fp16=args.fp16,
        **{CHECKPOINTING_ARGUMENT: args.activation_checkpointing},
        deepspeed=args.deepspeed,
        dataloader_num_workers=args.dataloader_num_workers,
        report_to=args.report_to,
        push_to_hub=args.push_to_hub,
        hub_model_id=args.hub_model_id,
        disable_tqdm=args.disable_tqdm,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    values.update(overrides)
    return TrainingArguments(**values)


def shutdown_distributed() -> None:
    """Leave a multi-process run cleanly: without it gloo's threads can abort a worker at exit (SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def make_trainer(model: PreTrainedModel, training_args: TrainingArguments, **kwargs: Any) -> Trainer:
    """The `Trainer` every script uses (one place to add callbacks or options for all of them).

    The Synthesizer heads declare `accepts_loss_kwargs = False`, so the Trainer averages their per-batch
    losses over gradient accumulation and processes itself.
    """
    return Trainer(model=model, args=training_args, **kwargs)


def save_final_model(trainer: Trainer) -> None:
    """Save the trained model and tokenizer in the output folder (safetensors), configured for inference.

    The Trainer turns `use_cache` off while training; it is switched back on so generation from the saved
    checkpoint uses the KV cache. MLM pretraining computes logits at the masked positions only
    (`sparse_prediction`); the released checkpoint returns the usual `[batch, length, vocab]` logits.
    """
    config = trainer.model.config
    config.use_cache = True
    if getattr(config, "sparse_prediction", False):
        config.sparse_prediction = False
    trainer.save_model()


def resolve_checkpoint(value: str | None, output_dir: str | os.PathLike) -> str | None:
    """`--resume_from_checkpoint` -> a checkpoint folder, or None to train from the start.

    With no path, the newest `checkpoint-N` in the output directory is used, so an interrupted command can be
    rerun unchanged with the flag added (and an output directory with no checkpoint starts from scratch).
    """
    if value is None:
        return None
    if value == LATEST:
        last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
        if last is None:
            logger.warning("No checkpoint found in %s: training from the start.", output_dir)
        else:
            logger.info("Resuming from %s", last)
        return last
    if not Path(value).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint: no checkpoint folder at {value}")
    return value


def attention_spec(values: Sequence[str] | None) -> str | list[str] | None:
    """nargs='+' flag -> one spec for all layers (a string) or one per layer (a list)."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else list(values)


def build_config(
    args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase, **extra: Any
) -> SynthesizerConfig:
    """Config of a model trained from scratch, with the special-token ids of `tokenizer`."""
    return SynthesizerConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_seq_length,
        synthesizer_length=args.synthesizer_length,
        attention_type=attention_spec(args.attention_type),
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **extra,
    )


def bert_warm_start(args: argparse.Namespace, head: str, **config: Any) -> SynthesizerPreTrainedModel:
    """The --init_from_bert model with --attention_type; L defaults to --max_seq_length, as from scratch."""
    return from_bert(
        args.init_from_bert,
        head=head,
        attention_type=attention_spec(args.attention_type),
        synthesizer_length=args.synthesizer_length or args.max_seq_length,
        **config,
    )


def seq2seq_config_extras(args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Decoder settings: [SEP] ends a target and [PAD] starts the decoder, as T5 uses </s> and <pad>."""
    return dict(
        decoder_attention_type=attention_spec(args.decoder_attention_type),
        num_decoder_layers=args.num_decoder_layers,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


# ----------------------------------------------------------------------------------------------------------
# Pretraining data
# ----------------------------------------------------------------------------------------------------------


def _text_rows(paths: list[str], text_field: str, stamps: list[tuple[int, int]]) -> Iterator[dict[str, str]]:
    """Generator for `Dataset.from_generator`; `stamps` (size, mtime) only feed the cache fingerprint."""
    del stamps
    for text in iter_text_files(paths, text_field=text_field):
        yield {"text": text}


def text_dataset_from_files(
    paths: Sequence[str], text_field: str = "text", cache_dir: str | None = None
) -> datasets.Dataset:
    """Local text/jsonl files -> a `datasets.Dataset` with a "text" column, streamed through the Arrow cache.

    The file sizes and modification times are part of the cache key, so an edited file is re-read.
    """
    paths = [str(Path(p).resolve()) for p in paths]
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Text file not found: {path}")
    stamps = [(Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in paths]
    try:
        dataset = datasets.Dataset.from_generator(
            _text_rows,
            gen_kwargs={"paths": paths, "text_field": text_field, "stamps": stamps},
            features=datasets.Features({"text": datasets.Value("string")}),
            cache_dir=cache_dir,
        )
    except datasets.exceptions.DatasetGenerationError as err:  # surface the reader's own message
        cause = err.__cause__
        message = cause.args[0] if cause is not None and cause.args else str(err)
        raise ValueError(f"Could not read the text files: {message} (see --text_column)") from cause
    if len(dataset) == 0:
        raise ValueError(f"No text found in {', '.join(paths)}")
    return dataset


def load_pretraining_texts(args: argparse.Namespace) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """(train, validation or None) text datasets from --train_files / --dataset_name."""
    if args.train_files:
        train = text_dataset_from_files(args.train_files, args.text_column, args.cache_dir)
        validation = (
            text_dataset_from_files(args.validation_files, args.text_column, args.cache_dir)
            if args.validation_files
            else None
        )
        return train, validation
    hub = datasets.load_dataset(args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir)
    if "train" not in hub:
        raise ValueError(f"{args.dataset_name} has no 'train' split (splits: {list(hub)})")
    if args.text_column not in hub["train"].column_names:
        raise ValueError(
            f"{args.dataset_name} has no column {args.text_column!r} (columns: {hub['train'].column_names}); "
            "pass --text_column"
        )

    def select(split: datasets.Dataset) -> datasets.Dataset:
        split = split.select_columns([args.text_column]).rename_column(args.text_column, "text")
        return split.filter(lambda row: bool(row["text"] and row["text"].strip()))

    validation = hub.get("validation")
    if args.validation_files:
        validation = text_dataset_from_files(args.validation_files, args.text_column, args.cache_dir)
    elif validation is not None:
        validation = select(validation)
    return select(hub["train"]), validation


def prepare_tokenizer(
    args: argparse.Namespace,
    texts: datasets.Dataset,
    output_dir: str | os.PathLike,
    training_args: TrainingArguments,
) -> PreTrainedTokenizerBase:
    """--tokenizer, else the one an earlier run saved in the output folder, else train one on `texts`.

    The main process trains first; the other processes of a distributed run then load its saved copy.
    """
    output_dir = Path(output_dir)
    with training_args.main_process_first(desc="tokenizer"):
        if args.tokenizer:
            return AutoTokenizer.from_pretrained(args.tokenizer)
        if (output_dir / "tokenizer.json").is_file():
            logger.info("Reusing the tokenizer saved in %s", output_dir)
            return AutoTokenizer.from_pretrained(output_dir)
        logger.info("Training a WordPiece tokenizer (vocab %d) on the training text", args.vocab_size)
        tokenizer = train_tokenizer(
            _batched_text(texts), vocab_size=args.vocab_size, model_max_length=args.max_seq_length
        )
        tokenizer.save_pretrained(output_dir)
        return tokenizer


def _batched_text(dataset: datasets.Dataset, batch_size: int = 1000) -> Iterator[str]:
    for batch in dataset.iter(batch_size=batch_size):
        yield from batch["text"]


def add_sentinel_tokens(tokenizer: PreTrainedTokenizerBase, count: int = NUM_SENTINELS) -> list[int]:
    """Ensure the T5 sentinels `<extra_id_0..count-1>` are special tokens; returns their ids in order."""
    sentinels = [f"<extra_id_{i}>" for i in range(count)]
    missing = [token for token in sentinels if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": sentinels}, replace_extra_special_tokens=False
        )
    return tokenizer.convert_tokens_to_ids(sentinels)


def group_into_blocks(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    block_length: int,
    wrap_special_tokens: bool,
    training_args: TrainingArguments,
    desc: str,
) -> datasets.Dataset:
    """Tokenize all texts, concatenate them and cut the stream into equal blocks (the rest is dropped).

    With `wrap_special_tokens`, each block becomes `[CLS] block [SEP]` of `block_length + 2` tokens (BERT MLM);
    otherwise blocks are raw token ids (span corruption appends its own end-of-sequence token).
    """
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False, verbose=False)
        return {"input_ids": ids["input_ids"]}

    def chunk(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        stream = [token for ids in batch["input_ids"] for token in ids]
        blocks = [
            stream[i : i + block_length] for i in range(0, len(stream) - block_length + 1, block_length)
        ]
        if wrap_special_tokens:
            blocks = [[cls, *block, sep] for block in blocks]
        return {"input_ids": blocks}

    with training_args.main_process_first(desc=desc):
        tokenized = dataset.map(
            tokenize, batched=True, remove_columns=dataset.column_names, desc=f"Tokenizing {desc}"
        )
        return tokenized.map(
            chunk,
            batched=True,
            batch_size=1000,
            remove_columns=tokenized.column_names,
            desc=f"Grouping {desc} into blocks of {block_length}",
        )


def split_blocks(
    train: datasets.Dataset, validation: datasets.Dataset | None, args: argparse.Namespace
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out a validation share when none was given, then apply the --max_*_samples caps."""
    if validation is None:
        if len(train) < 2:
            raise ValueError(
                f"Only {len(train)} block(s) of {args.max_seq_length} tokens in the training text: use more "
                "text or a smaller --max_seq_length"
            )
        held_out = max(1, round(len(train) * args.validation_split_percentage / 100))
        parts = train.train_test_split(test_size=held_out, seed=args.seed, shuffle=True)
        train, validation = parts["train"], parts["test"]
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(
            "No complete training or validation block: use more text or a smaller --max_seq_length"
        )
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples is not None:
        validation = validation.select(range(min(args.max_eval_samples, len(validation))))
    return train, validation


# ----------------------------------------------------------------------------------------------------------
# Collators whose randomness depends on the batch, so a resumed run repeats the uninterrupted one
# ----------------------------------------------------------------------------------------------------------


def content_seeded_generator(token_ids: torch.Tensor | Sequence[Sequence[int]], seed: int) -> torch.Generator:
    """A torch generator seeded by a hash of the batch's token ids and `seed`.

    The Trainer restores the global RNG only after it has collated the first batch of a resumed run, so
    masks drawn from the global RNG differ between a resumed and an uninterrupted run. Deriving them from the
    batch itself makes them identical (and evaluation masks the same at every evaluation, so eval losses are
    comparable across steps). Shuffling changes batch composition each epoch, so masks still vary over epochs.
    """
    if isinstance(token_ids, torch.Tensor):
        data = token_ids.to(torch.int64).cpu().numpy().tobytes()
    else:
        data = b"".join(np.asarray(ids, dtype=np.int64).tobytes() + b"|" for ids in token_ids)
    digest = hashlib.blake2b(data, digest_size=8, key=int(seed).to_bytes(8, "little", signed=True)).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class DataCollatorForReproducibleMLM(DataCollatorForLanguageModeling):
    """BERT's masking (80% [MASK], 10% random, 10% kept) drawn from `content_seeded_generator(batch, seed)`."""

    def torch_mask_tokens(
        self, inputs: Any, special_tokens_mask: Any | None = None, offset_mapping: Any = None
    ):
        self.generator = content_seeded_generator(inputs, self.seed or 0)
        return super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)


# ----------------------------------------------------------------------------------------------------------
# Span corruption (T5, Raffel et al. 2020, section 3.1.4)
# ----------------------------------------------------------------------------------------------------------


def _corrupted_lengths(tokens_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """(input, target) lengths, both with their end-of-sequence token, after corrupting `tokens_length`."""
    noise, spans = _noise_counts(tokens_length, noise_density, mean_span)
    return tokens_length - noise + spans + 1, noise + spans + 1


def _noise_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """Number of noise tokens and noise spans in a sequence of `length` tokens (as in T5)."""
    noise = min(max(round(length * noise_density), 1), length - 1)
    spans = max(round(noise / mean_span), 1)
    return noise, min(spans, noise, length - noise)


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw tokens per block, target length) such that a corrupted block has exactly `inputs_length` tokens.

    The T5 recipe: take the longest raw block whose corrupted input (kept tokens + one sentinel per span +
    end-of-sequence) still fits, so the encoder always sees full-length inputs without padding.
    """
    tokens_length = inputs_length
    while _corrupted_lengths(tokens_length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, _corrupted_lengths(tokens_length, noise_density, mean_noise_span_length)[1]


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Boolean mask of the corrupted tokens: alternating kept and noise spans, starting with a kept one.

    Span lengths are a uniformly random partition of the kept and noise counts (T5's `random_spans_noise_mask`).
    """
    noise, spans = _noise_counts(length, noise_density, mean_noise_span_length)

    def partition(total: int) -> torch.Tensor:
        cuts = torch.randperm(total - 1, generator=generator)[: spans - 1] + 1
        bounds = torch.cat([torch.tensor([0]), cuts.sort().values, torch.tensor([total])])
        return bounds.diff()

    span_lengths = torch.stack([partition(length - noise), partition(noise)], dim=1).reshape(-1)
    is_noise_span = torch.arange(2 * spans) % 2 == 1
    return torch.repeat_interleave(is_noise_span, span_lengths)


def corrupt_spans(
    ids: torch.Tensor, noise_mask: torch.Tensor, sentinel_ids: torch.Tensor, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 inputs and targets of one sequence: `a <X0> d <X1> g </s>` -> `<X0> b c <X1> e f </s>`."""
    previous = torch.cat([noise_mask.new_zeros(1), noise_mask[:-1]])
    starts = noise_mask & ~previous
    span_index = starts.cumsum(0) - 1
    if starts.sum() > len(sentinel_ids):
        raise ValueError(f"{int(starts.sum())} noise spans but only {len(sentinel_ids)} sentinel tokens")
    eos = ids.new_tensor([eos_id])
    with_sentinels = torch.where(starts, sentinel_ids[span_index.clamp_min(0)], ids)
    inputs = torch.cat([with_sentinels[~noise_mask | starts], eos])
    # Targets: each noise span preceded by its sentinel; order by (2 * position) for sentinels and
    # (2 * position + 1) for the noise tokens themselves.
    positions = torch.arange(len(ids))
    keys = torch.cat([2 * positions[starts], 2 * positions[noise_mask] + 1])
    values = torch.cat([sentinel_ids[span_index[starts]], ids[noise_mask]])
    targets = torch.cat([values[keys.argsort()], eos])
    return inputs, targets


@dataclass
class DataCollatorForSpanCorruption:
    """Turns raw token blocks into T5 span-corruption examples for `SynthesizerForSeq2SeqLM`.

    Input blocks have `span_corruption_lengths(...)[0]` tokens; outputs are `input_ids`/`attention_mask`
    (encoder) and `labels` (the sentinel-delimited noise spans, ending with [SEP] as end-of-sequence). The model
    derives `decoder_input_ids` by shifting the labels right after its `decoder_start_token_id` ([PAD]).
    Sequences are padded (labels with -100) only if a block was shorter than the others. The noise is drawn
    from `content_seeded_generator(batch, seed)`, so resumed runs repeat uninterrupted ones exactly.
    """

    tokenizer: PreTrainedTokenizerBase
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.sentinel_ids = torch.tensor(add_sentinel_tokens(self.tokenizer))
        self.eos_id = self.tokenizer.sep_token_id
        self.pad_id = self.tokenizer.pad_token_id

    def __call__(self, examples: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        inputs, targets = [], []
        generator = content_seeded_generator([example["input_ids"] for example in examples], self.seed)
        for example in examples:
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long)
            mask = random_spans_noise_mask(
                len(ids), self.noise_density, self.mean_noise_span_length, generator
            )
            source, target = corrupt_spans(ids, mask, self.sentinel_ids, self.eos_id)
            inputs.append(source)
            targets.append(target)
        input_ids = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True, padding_value=self.pad_id)
        labels = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-100)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.pad_id).long(), "labels": labels}


# ----------------------------------------------------------------------------------------------------------
# Pretraining
# ----------------------------------------------------------------------------------------------------------


def perplexity(loss: float) -> float:
    """exp(loss), inf instead of an OverflowError for a diverged run."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def run_pretraining(args: argparse.Namespace) -> dict[str, Any]:
    """MLM or span-corruption pretraining from scratch (MLM also from a BERT, --init_from_bert); returns the
    final evaluation metrics.

    Writes to `args.output_dir`: the model (safetensors) and tokenizer, `checkpoint-N/` folders,
    `eval_results.json` (eval loss and perplexity) and `run_info.json` (command, data, sizes, timings).
    """
    started = time.time()
    output_dir = Path(args.output_dir)
    training_args = make_training_arguments(
        args,
        output_dir,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        prediction_loss_only=True,  # evaluation needs the loss only; gathering LM logits would cost GBs
    )
    setup_logging(training_args)
    set_seed(args.seed)

    train_texts, validation_texts = load_pretraining_texts(args)
    init_from_bert = getattr(args, "init_from_bert", None)  # a flag of the MLM parser only
    if init_from_bert:
        tokenizer = bert_tokenizer(init_from_bert)
    else:
        tokenizer = prepare_tokenizer(args, train_texts, output_dir, training_args)
    if args.objective == "mlm":
        block_length, wrap = args.max_seq_length - 2, True
        collator = DataCollatorForReproducibleMLM(
            tokenizer, mlm_probability=args.mlm_probability, seed=args.seed
        )
    else:
        collator = DataCollatorForSpanCorruption(
            tokenizer, args.noise_density, args.mean_noise_span_length, seed=args.seed
        )
        block_length, wrap = (
            span_corruption_lengths(args.max_seq_length, args.noise_density, args.mean_noise_span_length)[0],
            False,
        )
    if block_length < 2:
        raise ValueError(f"--max_seq_length {args.max_seq_length} is too short")
    train = group_into_blocks(train_texts, tokenizer, block_length, wrap, training_args, "train")
    validation = (
        group_into_blocks(validation_texts, tokenizer, block_length, wrap, training_args, "validation")
        if validation_texts is not None
        else None
    )
    train, validation = split_blocks(train, validation, args)

    if init_from_bert:
        model = bert_warm_start(args, "mlm", sparse_prediction=True)
    elif args.objective == "mlm":
        # Vocabulary logits only at the masked positions while training: the output layer dominates the cost
        # of small models, and 85% of its work would be thrown away.
        model = SynthesizerForMaskedLM(build_config(args, tokenizer, sparse_prediction=True))
    else:
        model = SynthesizerForSeq2SeqLM(
            build_config(args, tokenizer, **seq2seq_config_extras(args, tokenizer))
        )
    logger.info(
        "%s: attention %s, %s parameters, %d train / %d validation blocks",
        type(model).__name__,
        model.config.attention_type,
        f"{model.num_parameters():,}",
        len(train),
        len(validation),
    )
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=collator,
    )
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = trainer.evaluate()
    save_final_model(trainer)
    metrics["perplexity"] = perplexity(metrics["eval_loss"])
    metrics["train_loss"] = train_result.training_loss
    metrics["train_steps"] = trainer.state.global_step
    if trainer.is_world_process_zero():
        trainer.save_state()
        write_json(output_dir / EVAL_RESULTS_FILE, metrics)
        write_json(
            output_dir / RUN_INFO_FILE,
            {
                "script": "pretrain_mlm" if args.objective == "mlm" else "pretrain_span_corruption",
                "objective": "masked language modeling" if args.objective == "mlm" else "span corruption",
                "command": args.command,
                "arguments": {k: v for k, v in vars(args).items() if k != "command"},
                "train_blocks": len(train),
                "validation_blocks": len(validation),
                "tokens_per_block": len(train[0]["input_ids"]),
                "num_parameters": model.num_parameters(),
                "train_steps": trainer.state.global_step,
                "world_size": training_args.world_size,
                "resumed_from": checkpoint,
                "wall_time_s": round(time.time() - started, 1),
                "environment": environment_info(),
            },
        )
        logger.info("eval loss %.4f, perplexity %.2f", metrics["eval_loss"], metrics["perplexity"])
        logger.info("Model, tokenizer and results saved in %s", output_dir)
    if args.push_to_hub:
        trainer.push_to_hub(commit_message="End of pretraining")
    return metrics


# ----------------------------------------------------------------------------------------------------------
# GLUE / SuperGLUE fine-tuning
# ----------------------------------------------------------------------------------------------------------


class MultipleChoiceCollator(DataCollatorForMultipleChoice):
    """Also collates unlabeled (test) examples, which the transformers collator requires labels for."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "label" in examples[0] or "labels" in examples[0]:
            return super().torch_call(examples)
        num_choices = len(examples[0]["input_ids"])
        flat = [{k: v[i] for k, v in example.items()} for example in examples for i in range(num_choices)]
        batch = self.tokenizer.pad(flat, padding=self.padding, return_tensors="pt")
        return {k: v.view(len(examples), num_choices, -1) for k, v in batch.items()}


def _pair_or_single(first: list[str], second: list[str | None]) -> tuple[list[str], list[str] | None]:
    """A batch's text pairs, or single texts for tasks without a second text."""
    if all(text is None for text in second):
        return first, None
    return first, [text or "" for text in second]


def encode_task(
    spec: TaskSpec,
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
) -> datasets.DatasetDict:
    """Tokenize every split: (text_a, text_b) pairs, or one (text_a, choice) pair per choice for COPA.

    Only model inputs and `label` remain; the original columns (idx, question_id, ...) stay in `splits`.
    Test rows have no label (-1 in the raw data), so their label column is dropped.
    """

    def classification(batch: dict[str, list]) -> dict[str, Any]:
        first, second = _pair_or_single(batch["text_a"], batch["text_b"])
        return tokenizer(first, second, truncation=True, max_length=max_seq_length)

    def multiple_choice(batch: dict[str, list]) -> dict[str, Any]:
        counts = [len(choices) for choices in batch["choices"]]
        first = [text for text, n in zip(batch["text_a"], counts) for _ in range(n)]
        second = [choice for choices in batch["choices"] for choice in choices]
        flat = tokenizer(first, second, truncation=True, max_length=max_seq_length)
        offsets = np.cumsum([0, *counts])
        return {
            key: [values[start:end] for start, end in itertools.pairwise(offsets)]
            for key, values in flat.items()
        }

    encode = multiple_choice if spec.problem_type == "multiple_choice" else classification
    encoded = {}
    for name, split in splits.items():
        drop = [column for column in split.column_names if column != "label" or name.startswith("test")]
        encoded[name] = split.map(
            encode, batched=True, remove_columns=drop, desc=f"Tokenizing {spec.name} {name}"
        )
    return datasets.DatasetDict(encoded)


def predictions_from_logits(spec: TaskSpec, predictions: Any) -> np.ndarray:
    """Class ids (argmax) or, for STS-B, the regression scores."""
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    if spec.problem_type == "regression":
        return np.asarray(logits).reshape(-1)
    return np.asarray(logits).argmax(-1)


def metrics_function(
    spec: TaskSpec, split_name: str, raw_split: datasets.Dataset
) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for one evaluation split, computed offline with `synthesizer_hf.metrics`.

    MultiRC's exact match groups answer options by question, read from the un-tokenized split (the Trainer
    keeps evaluation order).
    """
    extra = {"question_ids": raw_split["question_id"]} if spec.name == "multirc" else {}

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predicted = predictions_from_logits(spec, prediction.predictions)
        return compute_task_metrics(spec.name, predicted, prediction.label_ids, split=split_name, **extra)

    return compute


def load_task_model(
    spec: TaskSpec, args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """A pretrained checkpoint with a new head for the task, a model from scratch (--from_scratch) or one
    converted from a BERT checkpoint (--init_from_bert)."""
    labels = dict(enumerate(spec.label_names))
    head_kwargs: dict[str, Any] = {}
    if spec.problem_type == "classification":
        head_kwargs = dict(
            num_labels=spec.num_labels,
            id2label=labels,
            label2id={name: i for i, name in labels.items()},
            problem_type="single_label_classification",
        )
    elif spec.problem_type == "regression":
        head_kwargs = dict(num_labels=1, problem_type="regression")
    multiple_choice = spec.problem_type == "multiple_choice"
    if args.from_scratch:
        config = build_config(args, tokenizer, **head_kwargs)
        model_class = (
            SynthesizerForMultipleChoice if multiple_choice else SynthesizerForSequenceClassification
        )
        return model_class(config)
    if args.init_from_bert:
        return bert_warm_start(
            args, "multiple_choice" if multiple_choice else "sequence_classification", **head_kwargs
        )
    auto_class = AutoModelForMultipleChoice if multiple_choice else AutoModelForSequenceClassification
    model = auto_class.from_pretrained(args.model_name_or_path, **head_kwargs)
    if args.max_seq_length > model.config.max_position_embeddings:
        raise ValueError(
            f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings "
            f"({model.config.max_position_embeddings}), the longest input it was built for"
        )
    return model


def run_task(name: str, args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
    """Fine-tune on one task, evaluate every validation split and write the test submission files.

    Writes `<output_dir>/<task>/eval_results.json` (and the model, unless --no-save_model) and
    `<output_dir>/submission/<benchmark>/<official file>` for each test split.
    """
    started = time.time()
    spec = get_task(name)
    task_dir = Path(args.output_dir) / name
    multiple_tasks = len(args.tasks) > 1
    training_args = make_training_arguments(
        args,
        task_dir,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        prediction_loss_only=args.text_to_text,  # text-to-text metrics come from generate(), not logits
        hub_model_id=f"{args.hub_model_id}-{name}"
        if args.hub_model_id and multiple_tasks
        else args.hub_model_id,
    )
    setup_logging(training_args)
    raw = load_task(name, args.data_dir)
    raw = _cap_samples(raw, args)
    if args.text_to_text:
        return run_text_to_text_task(spec, raw, args, tokenizer, training_args, started)
    encoded = encode_task(spec, raw, tokenizer, args.max_seq_length)
    set_seed(args.seed)
    model = load_task_model(spec, args, tokenizer)
    collator = (
        MultipleChoiceCollator(tokenizer)
        if spec.problem_type == "multiple_choice"
        else DataCollatorWithPadding(tokenizer)
    )
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=metrics_function(spec, "validation", raw["validation"]),
    )
    trainer.train(resume_from_checkpoint=resolve_checkpoint(args.resume_from_checkpoint, task_dir))
    if args.save_model:
        save_final_model(trainer)

    metrics: dict[str, float] = {}
    for split_name in [s for s in encoded if s.startswith("validation")]:
        trainer.compute_metrics = metrics_function(spec, split_name, raw[split_name])
        metrics.update(_strip_prefix(trainer.evaluate(encoded[split_name], metric_key_prefix="eval")))
    if args.predict:
        for split_name in [s for s in encoded if s.startswith("test")]:
            predicted = predictions_from_logits(spec, trainer.predict(encoded[split_name]).predictions)
            _write_submission(spec, split_name, raw[split_name], predicted, args.output_dir, trainer)
    metrics["wall_time_s"] = round(time.time() - started, 1)
    if trainer.is_world_process_zero():
        write_task_records(spec, args, trainer, metrics)
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"Fine-tuned on {name}")
    return metrics


def write_task_records(
    spec: TaskSpec, args: argparse.Namespace, trainer: Trainer, metrics: Mapping[str, Any]
) -> None:
    """`eval_results.json` and `run_info.json` of one task, next to the fine-tuned model."""
    task_dir = Path(trainer.args.output_dir)
    write_json(task_dir / EVAL_RESULTS_FILE, metrics)
    write_json(
        task_dir / RUN_INFO_FILE,
        {
            "script": "run_glue",
            "objective": f"fine-tuning on {spec.name} ({'text-to-text' if args.text_to_text else spec.problem_type})",
            "task": spec.name,
            "base_model": base_model(args),
            "command": args.command,
            "arguments": {k: v for k, v in vars(args).items() if k != "command"},
            "train_steps": trainer.state.global_step,
            "world_size": trainer.args.world_size,
            "wall_time_s": metrics.get("wall_time_s"),
            "environment": environment_info(),
        },
    )


def base_model(args: argparse.Namespace) -> str:
    """What a fine-tuning run started from, for its records and the model card."""
    if args.init_from_bert:
        return f"{args.init_from_bert} (converted from BERT)"
    return args.model_name_or_path or "from scratch"


def _cap_samples(raw: datasets.DatasetDict, args: argparse.Namespace) -> datasets.DatasetDict:
    """Apply --max_train/eval/predict_samples (first N rows) for quick runs."""
    caps = {
        "train": args.max_train_samples,
        "validation": args.max_eval_samples,
        "test": args.max_predict_samples,
    }
    capped = {}
    for name, split in raw.items():
        cap = caps[name.split("_")[0]]
        capped[name] = split.select(range(min(cap, len(split)))) if cap is not None else split
    return datasets.DatasetDict(capped)


def _strip_prefix(metrics: Mapping[str, float], prefix: str = "eval_") -> dict[str, float]:
    """`eval_accuracy` -> `accuracy`: the names `metrics.benchmark_average` expects."""
    return {key.removeprefix(prefix): value for key, value in metrics.items()}


def _write_submission(
    spec: TaskSpec,
    split_name: str,
    raw_split: datasets.Dataset,
    predicted: Sequence[float],
    output_dir: str | os.PathLike,
    trainer: Trainer,
) -> None:
    """Official submission file in `<output_dir>/submission/<benchmark>/` (zip that folder to submit)."""
    if not trainer.is_world_process_zero():
        return
    extra = {}
    if spec.name == "multirc":
        extra = {"question_ids": raw_split["question_id"], "passage_ids": raw_split["passage_id"]}
    path = write_test_predictions(
        spec.name,
        raw_split["idx"],
        list(predicted),
        Path(output_dir) / "submission" / spec.benchmark,
        split=split_name,
        **extra,
    )
    logger.info("Wrote %s predictions to %s", split_name, path)


def format_summary_table(results: Mapping[str, Mapping[str, float]], scores: Mapping[str, float]) -> str:
    """Plain-text table: one row per task (metrics x 100) and one per benchmark average."""
    rows = [("Task", "Metrics", "Score")]
    for name, metrics in results.items():
        keys = get_task(name).score_keys
        detail = ", ".join(f"{key} {100 * metrics[key]:.2f}" for key in keys)
        rows.append((name, detail, f"{100 * scores[name]:.2f}"))
    for benchmark in ("glue", "superglue"):
        key = f"{benchmark}_average"
        if key in scores:
            count = sum(get_task(name).benchmark == benchmark for name in results)
            label = "GLUE" if benchmark == "glue" else "SuperGLUE"
            rows.append((f"{label} average", f"mean of {count} task(s)", f"{100 * scores[key]:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def run_tasks(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune and evaluate on each of `args.tasks`; write `summary.json` and print the results table.

    Returns `{"tasks": {task: metrics}, "scores": {task: score, "glue_average": ...}, ...}`.
    """
    if args.init_from_bert:
        tokenizer = bert_tokenizer(args.init_from_bert)
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model_name_or_path)
    results = {name: run_task(name, args, tokenizer) for name in args.tasks}
    scores = benchmark_average(results)
    summary = {
        "command": args.command,
        "model": base_model(args),
        "tasks": results,
        "scores": scores,
        "environment": environment_info(),
    }
    table = format_summary_table(results, scores)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(args.output_dir) / SUMMARY_FILE, summary)
        print(f"\n{table}\n")
    summary["table"] = table
    return summary


# ----------------------------------------------------------------------------------------------------------
# Text-to-text fine-tuning (T5 style)
# ----------------------------------------------------------------------------------------------------------


def text_to_text_prompt(
    spec: TaskSpec, text_a: str, text_b: str | None, choices: Sequence[str] | None
) -> str:
    """T5's input format: `"<task> sentence: ..."` for one text, `"<task> sentence1: ... sentence2: ..."`."""
    if choices:
        options = " ".join(f"choice{i + 1}: {choice}" for i, choice in enumerate(choices))
        return f"{spec.name} premise: {text_a} {options}"
    if text_b is None:
        return f"{spec.name} sentence: {text_a}"
    return f"{spec.name} sentence1: {text_a} sentence2: {text_b}"


def text_to_text_target(spec: TaskSpec, label: float) -> str:
    """The label as a word (`positive`, `entailment`, ...); STS-B scores rounded to 0.2, as T5 does."""
    if spec.problem_type == "regression":
        return f"{round(float(label) * 5) / 5:.1f}"
    return spec.label_names[int(label)].lower()


def label_from_text(spec: TaskSpec, text: str) -> float:
    """Generated text -> class id (or score); unparseable output counts as class 0 (or score 0), as in T5.

    Whitespace is ignored, since WordPiece decoding spaces out punctuation (`not _ entailment`, `3. 4`).
    """
    text = "".join(text.lower().split())
    if spec.problem_type == "regression":
        try:
            return float(text)
        except ValueError:
            return 0.0
    words = ["".join(name.lower().split()) for name in spec.label_names]
    return float(words.index(text)) if text in words else 0.0


def run_text_to_text_task(
    spec: TaskSpec,
    raw: datasets.DatasetDict,
    args: argparse.Namespace,
    tokenizer: PreTrainedTokenizerBase,
    training_args: TrainingArguments,
    started: float,
) -> dict[str, float]:
    """Fine-tune `SynthesizerForSeq2SeqLM` to write the label word, then generate and map it back to labels."""
    from transformers import AutoModelForSeq2SeqLM

    task_dir = Path(training_args.output_dir)
    max_target = (
        max(len(tokenizer(text_to_text_target(spec, v))["input_ids"]) for v in _target_values(spec)) + 1
    )

    def prompts(batch: dict[str, list]) -> dict[str, Any]:
        choices = batch["choices"] if "choices" in batch else [None] * len(batch["text_a"])
        texts = [
            text_to_text_prompt(spec, a, b, c) for a, b, c in zip(batch["text_a"], batch["text_b"], choices)
        ]
        return tokenizer(texts, truncation=True, max_length=args.max_seq_length, return_token_type_ids=False)

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        features = prompts(batch)
        targets = tokenizer(
            [text_to_text_target(spec, label) for label in batch["label"]],
            truncation=True,
            max_length=max_target,
            add_special_tokens=False,
        )["input_ids"]
        features["labels"] = [[*ids, tokenizer.sep_token_id] for ids in targets]
        return features

    encoded = datasets.DatasetDict(
        {
            name: split.map(encode, batched=True, remove_columns=split.column_names, desc=f"Encoding {name}")
            for name, split in raw.items()
            if not name.startswith("test")
        }
    )
    set_seed(args.seed)
    if args.from_scratch:
        model = SynthesizerForSeq2SeqLM(
            build_config(args, tokenizer, **seq2seq_config_extras(args, tokenizer))
        )
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(args.model_name_or_path)
    collator = transformers.DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=collator,
    )
    trainer.train(resume_from_checkpoint=resolve_checkpoint(args.resume_from_checkpoint, task_dir))
    if args.save_model:
        save_final_model(trainer)

    def generate(split: datasets.Dataset) -> np.ndarray:
        inputs = split.map(prompts, batched=True, remove_columns=split.column_names)
        model.eval()
        outputs = []
        for start in range(0, len(inputs), args.per_device_eval_batch_size):
            rows = inputs[start : start + args.per_device_eval_batch_size]
            batch = tokenizer.pad({"input_ids": rows["input_ids"]}, return_tensors="pt").to(model.device)
            with torch.no_grad():
                generated = model.generate(**batch, max_new_tokens=max_target, num_beams=1, do_sample=False)
            outputs += tokenizer.batch_decode(generated, skip_special_tokens=True)
        predicted = np.asarray([label_from_text(spec, text) for text in outputs])
        return predicted if spec.problem_type == "regression" else predicted.astype(int)

    metrics: dict[str, float] = {}
    for split_name in [s for s in raw if s.startswith("validation")]:
        split = raw[split_name]
        metrics.update(_strip_prefix(trainer.evaluate(encoded[split_name], metric_key_prefix="eval")))
        extra = {"question_ids": split["question_id"]} if spec.name == "multirc" else {}
        predicted = generate(split)
        metrics.update(compute_task_metrics(spec.name, predicted, split["label"], split=split_name, **extra))
    if args.predict:
        for split_name in [s for s in raw if s.startswith("test")]:
            predicted = generate(raw[split_name])
            _write_submission(spec, split_name, raw[split_name], predicted, args.output_dir, trainer)
    metrics["wall_time_s"] = round(time.time() - started, 1)
    if trainer.is_world_process_zero():
        write_task_records(spec, args, trainer, metrics)
    return metrics


def _target_values(spec: TaskSpec) -> Iterable[float]:
    """Every label value, to size the decoder output (STS-B: 0.0 .. 5.0 in steps of 0.2)."""
    if spec.problem_type == "regression":
        return [i / 5 for i in range(26)]
    return range(len(spec.label_names))


__all__ = [
    "DataCollatorForReproducibleMLM",
    "DataCollatorForSpanCorruption",
    "MultipleChoiceCollator",
    "add_model_arguments",
    "add_sentinel_tokens",
    "add_trainer_arguments",
    "build_config",
    "build_pretraining_parser",
    "build_tasks_parser",
    "content_seeded_generator",
    "corrupt_spans",
    "encode_task",
    "format_summary_table",
    "group_into_blocks",
    "load_task_model",
    "make_training_arguments",
    "parse_args",
    "random_spans_noise_mask",
    "resolve_checkpoint",
    "run_pretraining",
    "run_task",
    "run_tasks",
    "span_corruption_lengths",
    "write_json",
]
