"""GLUE / SuperGLUE fine-tuning, the workflow of `scripts/run_glue.py`: one run per task (a task head,
`task_heads`, or text-to-text, `text_to_text`), official metrics, test submission files and a summary table."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertConfig,
    PreTrainedConfig,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)

from synthesizer_hf.bert_warm_start import bert_tokenizer, check_bert_folder, synthesizer_config
from synthesizer_hf.configuration_synthesizer import SynthesizerConfig

from .arguments import FineTuningArguments, TaskArguments, script_arguments
from .data import first_rows
from .models import architecture_fields, attention_spec, check_max_seq_length, with_lora_adapter
from .records import EVAL_RESULTS_FILE, RUN_INFO_FILE, SUMMARY_FILE, environment_info, write_json
from .task_heads import TaskFineTuning, TaskHeadFineTuning
from .tasks import (
    TaskSpec,
    benchmark_average,
    check_task_files,
    get_task,
    load_task,
    write_test_predictions,
)
from .text_to_text import TextToTextFineTuning
from .trainer import make_trainer, run_info, setup_logging, train

logger = logging.getLogger("synthesizer_tools")


def cap_splits(raw: datasets.DatasetDict, task: TaskArguments) -> datasets.DatasetDict:
    """Apply --max_train/eval/predict_samples (first N rows) for quick runs."""
    caps = {
        "train": task.max_train_samples,
        "validation": task.max_eval_samples,
        "test": task.max_predict_samples,
    }
    return datasets.DatasetDict(
        {name: first_rows(split, caps[name.split("_")[0]]) for name, split in raw.items()}
    )


def task_training_arguments(arguments: FineTuningArguments, name: str) -> TrainingArguments:
    """The Trainer arguments of one task: its own output folder (and Hub repository when there are several
    tasks); text-to-text evaluation keeps the loss only, its metrics come from generation."""
    training = copy.copy(arguments.training)
    training.output_dir = str(Path(arguments.training.output_dir) / name)
    if training.hub_model_id and len(arguments.task.tasks) > 1:
        training.hub_model_id = f"{training.hub_model_id}-{name}"
    if arguments.task.text_to_text:
        training.prediction_loss_only = True
    return training


def task_fine_tuning(
    name: str, arguments: FineTuningArguments, tokenizer: PreTrainedTokenizerBase
) -> TaskFineTuning:
    """The task loaded (capped by --max_*_samples) and encoded for its way of fine-tuning: a task head, or
    text-to-text with --text_to_text."""
    task = arguments.task
    raw = cap_splits(load_task(name, task.data_dir), task)
    kind = TextToTextFineTuning if task.text_to_text else TaskHeadFineTuning
    return kind(get_task(name), raw, tokenizer, arguments)


def run_task(
    name: str, arguments: FineTuningArguments, tokenizer: PreTrainedTokenizerBase
) -> dict[str, float]:
    """Fine-tune on one task, evaluate every validation split and write the test submission files.

    Writes `<output_dir>/<task>/eval_results.json` (and the model, unless --no_save_model) and
    `<output_dir>/submission/<benchmark>/<official file>` for each test split.
    """
    started = time.time()
    task = arguments.task
    training_args = task_training_arguments(arguments, name)
    setup_logging(training_args)
    fine_tuning = task_fine_tuning(name, arguments, tokenizer)
    spec, raw = fine_tuning.spec, fine_tuning.raw
    set_seed(training_args.seed)
    model = fine_tuning.build_model()
    if arguments.lora.lora:
        model = with_lora_adapter(model, arguments.lora, fine_tuning.peft_task_type, fine_tuning.new_modules)
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=fine_tuning.encoded["train"],
        eval_dataset=fine_tuning.encoded["validation"],
        processing_class=tokenizer,
        data_collator=fine_tuning.collator(model),
        compute_metrics=fine_tuning.compute_metrics,
    )
    trained, _ = train(trainer, save_model=task.save_model)

    # the training speed is recorded beside the scores (the warm-start study reads it as its throughput row)
    metrics: dict[str, float] = {
        key: trained.metrics[key]
        for key in ("train_runtime", "train_samples_per_second", "train_cpu_share")
        if key in trained.metrics
    }
    for split_name in [s for s in raw if s.startswith("validation")]:
        metrics.update(fine_tuning.evaluate(trainer, split_name))
    if task.predict:
        if task.max_predict_samples is not None and any(s.startswith("test") for s in raw):
            logger.warning(
                "%s: --max_predict_samples %d: the submission files hold the first %d test rows only, which the "
                "benchmark servers reject; drop the flag for a submission.",
                name,
                task.max_predict_samples,
                task.max_predict_samples,
            )
        for split_name in [s for s in raw if s.startswith("test")]:
            predicted = fine_tuning.predict(trainer, split_name)
            write_submission(
                spec, split_name, raw[split_name], predicted, arguments.training.output_dir, trainer
            )
    metrics["wall_time_s"] = round(time.time() - started, 1)
    if trainer.is_world_process_zero():
        write_task_records(spec, arguments, trainer, metrics, started)
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=f"Fine-tuned on {name}")
    return metrics


def write_task_records(
    spec: TaskSpec,
    arguments: FineTuningArguments,
    trainer: Trainer,
    metrics: Mapping[str, Any],
    started: float,
) -> None:
    """`eval_results.json` and `run_info.json` of one task, next to the fine-tuned model."""
    task_dir = Path(trainer.args.output_dir)
    write_json(task_dir / EVAL_RESULTS_FILE, metrics)
    how = "text-to-text" if arguments.task.text_to_text else spec.problem_type
    record = run_info(
        trainer,
        script="run_glue",
        objective=f"fine-tuning on {spec.name} ({how})",
        command=arguments.command,
        arguments=script_arguments(arguments.task, arguments.model, arguments.warm_start, arguments.lora),
        started=started,
        task=spec.name,
        base_model=base_model(arguments),
    )
    write_json(task_dir / RUN_INFO_FILE, record)


def base_model(arguments: FineTuningArguments) -> str:
    """What a fine-tuning run started from, for its records and the model card."""
    if arguments.warm_start.init_from_bert:
        return f"{arguments.warm_start.init_from_bert} (converted from BERT)"
    return arguments.task.model_name_or_path or "from scratch"


def write_submission(
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
    path = write_test_predictions(
        spec.name,
        raw_split["idx"],
        list(predicted),
        Path(output_dir) / "submission" / spec.benchmark,
        split=split_name,
        **spec.submission_inputs(raw_split),
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
    if "glue_courtois" in scores:
        rows.append(("GLUE (Courtois et al.)", "mean of 9, no WNLI", f"{100 * scores['glue_courtois']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def task_tokenizer(arguments: FineTuningArguments) -> PreTrainedTokenizerBase:
    """The BERT folder's tokenizer (--init_from_bert), --tokenizer, or the pretrained model's."""
    if arguments.warm_start.init_from_bert:
        return bert_tokenizer(arguments.warm_start.init_from_bert)
    return AutoTokenizer.from_pretrained(arguments.task.tokenizer or arguments.task.model_name_or_path)


def starting_config(arguments: FineTuningArguments) -> SynthesizerConfig | PreTrainedConfig:
    """The config of the model each task starts from (before its head is added): the checkpoint's, the
    converted BERT's or the one built from the architecture flags."""
    task, architecture = arguments.task, arguments.model
    if task.model_name_or_path is not None:
        return AutoConfig.from_pretrained(task.model_name_or_path)
    if arguments.warm_start.init_from_bert:
        folder = check_bert_folder(arguments.warm_start.init_from_bert)
        length = architecture.synthesizer_length or task.max_seq_length
        return synthesizer_config(
            BertConfig.from_pretrained(folder),
            attention_spec(architecture.attention_type),
            {"synthesizer_length": length},
        )
    return SynthesizerConfig(
        **architecture_fields(architecture, task.max_seq_length, decoder=task.text_to_text)
    )


def check_before_training(arguments: FineTuningArguments) -> None:
    """What would otherwise fail after some training: every task's files, and --max_seq_length against the
    model's positions and synthesizer length (a length-bound synthesizer fails on the first long batch)."""
    task = arguments.task
    if task.data_dir is not None:
        check_task_files(task.tasks, task.data_dir)
    config = starting_config(arguments)
    if isinstance(config, BertConfig):  # transformers' own BERT, fine-tuned as is: a comparison's baseline
        logger.warning(
            "%s is a BERT: fine-tuning it unconverted (transformers' Bert classes). To fine-tune it as a "
            "Synthesizer, pass it to --init_from_bert with --attention_type instead.",
            task.model_name_or_path,
        )
    elif not isinstance(config, SynthesizerConfig):
        raise ValueError(
            f"{task.model_name_or_path} holds a {config.model_type!r} checkpoint, not a Synthesizer (nor a BERT "
            "to fine-tune as a baseline): convert a BERT with --init_from_bert (or scripts/convert_bert.py)"
        )
    check_max_seq_length(config, task.max_seq_length)


def run_tasks(arguments: FineTuningArguments) -> dict[str, Any]:
    """Fine-tune and evaluate on each task; write `summary.json` and print the results table.

    Returns `{"tasks": {task: metrics}, "scores": {task: score, "glue_average": ...}, ...}`.
    """
    check_before_training(arguments)
    tokenizer = task_tokenizer(arguments)
    results = {name: run_task(name, arguments, tokenizer) for name in arguments.task.tasks}
    scores = benchmark_average(results)
    summary = {
        "command": arguments.command,
        "model": base_model(arguments),
        # the checkpoint fine-tuned, resolved: prepare_hub_folder.py --results checks it is the card's model
        "model_dir": str(Path(source).resolve()) if (source := arguments.task.model_name_or_path) else None,
        "tasks": results,
        "scores": scores,
        "environment": environment_info(),
    }
    table = format_summary_table(results, scores)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(arguments.training.output_dir) / SUMMARY_FILE, summary)
        print(f"\n{table}\n")
    summary["table"] = table
    return summary


__all__ = ["format_summary_table", "run_task", "run_tasks", "task_fine_tuning"]
