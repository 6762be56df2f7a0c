"""The Trainer set-up every workflow shares: logging, the Trainer itself, resuming, the final save."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_utils import TrainOutput, get_last_checkpoint

from .arguments import LATEST
from .records import environment_info

logger = logging.getLogger("synthesizer_tools")


def setup_logging(training_args: TrainingArguments) -> None:
    """INFO logs from this package on the main process; transformers/datasets at their own quieter level."""
    level = logging.INFO if training_args.process_index == 0 else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level
    )
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())


def evaluate(trainer: Trainer, dataset: datasets.Dataset) -> dict[str, float]:
    """`trainer.evaluate` with the metric names unprefixed (`eval_accuracy` -> `accuracy`), as the task
    scores (`tasks.benchmark_average`) name them."""
    metrics = trainer.evaluate(dataset, metric_key_prefix="eval")
    return {key.removeprefix("eval_"): value for key, value in metrics.items()}


def run_info(
    trainer: Trainer,
    *,
    script: str,
    objective: str,
    command: str | None,
    arguments: Mapping[str, Any],
    started: float,
    **details: Any,
) -> dict[str, Any]:
    """The `run_info.json` of a training run, which the model card reads: what ran (script, command, its own
    arguments and the Trainer's), on what (`details`: data sizes, task, base model), how long and where."""
    return {
        "script": script,
        "objective": objective,
        **details,
        "command": command,
        "arguments": dict(arguments),
        "training_arguments": trainer.args.to_dict(),
        "train_steps": trainer.state.global_step,
        "world_size": trainer.args.world_size,
        "distributed_type": trainer.accelerator.distributed_type.value,  # NO, MULTI_CPU, MULTI_GPU, FSDP, ...
        "wall_time_s": round(time.time() - started, 1),
        "environment": environment_info(),
    }


def shutdown_distributed() -> None:
    """Leave a multi-process run cleanly: without it gloo's threads can abort a worker at exit (SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def run_script(main: Callable[[], Any]) -> None:
    """A training script's `if __name__ == "__main__"`: run its `main`, then leave a distributed run cleanly."""
    main()
    shutdown_distributed()


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


def train(trainer: Trainer, save_model: bool = True) -> tuple[TrainOutput, str | None]:
    """Train, resuming as `--resume_from_checkpoint` says (in the trainer's output folder), and save the final
    model unless told not to; returns the Trainer's result (its metrics with `train_cpu_share`) and the
    checkpoint resumed from (None: none)."""
    checkpoint = resolve_checkpoint(trainer.args.resume_from_checkpoint, trainer.args.output_dir)
    cpu_seconds, wall_seconds = time.process_time(), time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    # the share of its threads' time the run got: about 1 alone on the machine, less beside other work (whose
    # speed then is not a throughput figure)
    wall_seconds = (time.perf_counter() - wall_seconds) * torch.get_num_threads()
    result.metrics["train_cpu_share"] = round(
        (time.process_time() - cpu_seconds) / max(wall_seconds, 1e-9), 3
    )
    if save_model:
        save_final_model(trainer)
    return result, checkpoint


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


__all__ = [
    "evaluate",
    "make_trainer",
    "resolve_checkpoint",
    "run_info",
    "run_script",
    "save_final_model",
    "setup_logging",
    "shutdown_distributed",
    "train",
]
