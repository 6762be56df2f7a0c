"""Fine-tuning throughput of several models, measured in one run on real batches.

Records of separate fine-tuning runs are not a throughput comparison: runs made hours apart on a shared machine
differ by the machine's drift. Here every contender fine-tunes on the same task through the fine-tuning workflow's
own pieces (`finetuning.task_fine_tuning`: its data, model builder and collator; `make_trainer`), on the same
batches (the Trainer's seeded shuffle, dynamic padding), in a rotating order over rounds, and each round's time is
taken from the Trainer's step callbacks: forward, backward, gradient clipping, optimizer and scheduler step. The
first step of every round is not timed (it allocates the optimizer state and working memory). The summary is the
median over rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, set_seed

from .arguments import FineTuningArguments
from .benchmark_measure import rotations
from .finetuning import task_fine_tuning, task_tokenizer
from .trainer import make_trainer

UNTIMED_STEPS = 1  # at the start of every round


@dataclass
class StepTimer(TrainerCallback):
    """Wall and process CPU seconds of each training step of the current round."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        wall, cpu = self._started
        self.seconds.append(time.perf_counter() - wall)
        self.cpu_seconds.append(time.process_time() - cpu)


class BatchCounter:
    """A collator that records what each batch it makes holds: rows, token positions, real (unpadded) tokens."""

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]):
        self.collate = collate
        self.batches: list[dict[str, int]] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        self.batches.append(
            {
                "rows": int(batch["input_ids"].shape[0]),
                "tokens": int(batch["input_ids"].numel()),
                "real_tokens": int(batch["attention_mask"].sum()),
            }
        )
        return batch


@dataclass
class Contender:
    """One model with its Trainer, step timer and batch counter."""

    name: str
    trainer: Trainer
    timer: StepTimer
    counter: BatchCounter

    def run_round(self) -> dict[str, float]:
        """Train `max_steps` steps from the same seed (so on the same batches as every contender); the timed
        steps' samples, tokens and seconds."""
        self.timer.seconds.clear()
        self.timer.cpu_seconds.clear()
        self.counter.batches.clear()
        set_seed(self.trainer.args.seed)
        self.trainer.train()
        steps = self.trainer.args.max_steps
        # the dataloader may collate a batch ahead of the step that uses it: the first `steps` are the trained ones
        batches = self.counter.batches[UNTIMED_STEPS:steps]
        seconds = sum(self.timer.seconds[UNTIMED_STEPS:])
        cpu_seconds = sum(self.timer.cpu_seconds[UNTIMED_STEPS:])
        return {
            "seconds": seconds,
            "samples": sum(batch["rows"] for batch in batches),
            "tokens": sum(batch["tokens"] for batch in batches),
            "real_tokens": sum(batch["real_tokens"] for batch in batches),
            # about 1 when the process had its threads to itself; less beside other work
            "cpu_share": cpu_seconds / max(seconds * torch.get_num_threads(), 1e-9),
        }


def build_contender(name: str, task: str, arguments: FineTuningArguments) -> Contender:
    """The model `scripts/run_glue.py` would fine-tune on `task` with these arguments, with its Trainer."""
    if arguments.training.max_steps <= UNTIMED_STEPS:
        raise ValueError(f"{name}: max_steps must exceed the {UNTIMED_STEPS} untimed step(s) of every round")
    tokenizer = task_tokenizer(arguments)
    fine_tuning = task_fine_tuning(task, arguments, tokenizer)
    set_seed(arguments.training.seed)
    model = fine_tuning.build_model()
    timer, counter = StepTimer(), BatchCounter(fine_tuning.collator(model))
    trainer = make_trainer(
        model,
        arguments.training,
        train_dataset=fine_tuning.encoded["train"],
        processing_class=tokenizer,
        data_collator=counter,
        callbacks=[timer],
    )
    return Contender(name, trainer, timer, counter)


def measure_finetuning_speed(
    arguments: Mapping[str, FineTuningArguments], task: str, rounds: int, reference: str
) -> dict[str, dict[str, Any]]:
    """`{name: {"rounds": [...], "samples_per_second", "tokens_per_second", "real_tokens_per_second",
    "cpu_share", "vs_reference"}}`: each contender (its run_glue arguments, `max_steps` included) fine-tuned on
    `task` for `rounds` interleaved rounds; rates are medians over rounds, `vs_reference` the ratio of median
    samples/s to `reference`'s (the same batches, so also the ratio of tokens/s)."""
    if reference not in arguments:
        raise ValueError(f"the reference {reference!r} is not among the contenders {list(arguments)}")
    contenders = [build_contender(name, task, values) for name, values in arguments.items()]
    measured: dict[str, list[dict[str, float]]] = {contender.name: [] for contender in contenders}
    for order in rotations(contenders, rounds):
        for contender in order:
            measured[contender.name].append(contender.run_round())
    results = {}
    for name, records in measured.items():
        results[name] = {
            "rounds": records,
            **{
                f"{unit}_per_second": statistics.median(
                    record[unit] / record["seconds"] for record in records
                )
                for unit in ("samples", "tokens", "real_tokens")
            },
            "cpu_share": min(record["cpu_share"] for record in records),
        }
    for result in results.values():
        result["vs_reference"] = result["samples_per_second"] / results[reference]["samples_per_second"]
    return results


__all__ = ["measure_finetuning_speed"]
