"""Fine-tuning a task head (sequence classification, STS-B regression, COPA multiple choice) on GLUE /
SuperGLUE, and the base class of the ways to fine-tune on a task (`text_to_text` is the other)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
)

from .arguments import FineTuningArguments
from .collators import MultipleChoiceCollator
from .metrics import predictions_from_logits
from .models import load_task_model
from .tasks import TaskSpec
from .trainer import evaluate


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


def metrics_function(
    spec: TaskSpec, split_name: str, raw_split: datasets.Dataset
) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for one evaluation split, computed offline with the task's official metric.

    The columns the metric needs besides the labels (MultiRC's question ids) come from the un-tokenized split
    (the Trainer keeps evaluation order).
    """
    extra = spec.metric_inputs(raw_split)

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predicted = predictions_from_logits(prediction.predictions, spec.problem_type)
        return spec.compute_metrics(predicted, prediction.label_ids, split=split_name, **extra)

    return compute


def task_collator(spec: TaskSpec, tokenizer: PreTrainedTokenizerBase) -> Callable:
    """Dynamic padding; one row of choices per example for multiple choice (COPA)."""
    if spec.problem_type == "multiple_choice":
        return MultipleChoiceCollator(tokenizer)
    return DataCollatorWithPadding(tokenizer)


class TaskFineTuning:
    """One way to fine-tune on a task (`finetuning.run_task` runs it): what differs between a task head and
    text-to-text fine-tuning. `raw` is the loaded task (`tasks.load_task`); `encode` turns it into the model
    inputs (train, validation and, for a task head, test splits)."""

    def __init__(
        self,
        spec: TaskSpec,
        raw: datasets.DatasetDict,
        tokenizer: PreTrainedTokenizerBase,
        arguments: FineTuningArguments,
    ) -> None:
        self.spec, self.raw, self.tokenizer, self.arguments = spec, raw, tokenizer, arguments
        self.encoded = self.encode()

    def encode(self) -> datasets.DatasetDict:
        raise NotImplementedError

    @property
    def compute_metrics(self) -> Callable[[EvalPrediction], dict[str, float]] | None:
        """The Trainer's `compute_metrics` on "validation" (None: the loss only)."""
        return None

    # Modules of the model `build_model` makes that the starting checkpoint lacks (for --lora).
    new_modules: tuple[str, ...] = ()

    def build_model(self) -> PreTrainedModel:
        raise NotImplementedError

    @property
    def peft_task_type(self) -> str | None:
        """peft's task type of the model `build_model` makes (for --lora)."""
        raise NotImplementedError

    def collator(self, model: PreTrainedModel) -> Callable:
        raise NotImplementedError

    def evaluate(self, trainer: Trainer, split_name: str) -> dict[str, float]:
        """The metrics of one validation split."""
        raise NotImplementedError

    def predict(self, trainer: Trainer, split_name: str) -> np.ndarray:
        """The predicted labels (scores for regression) of one test split."""
        raise NotImplementedError


class TaskHeadFineTuning(TaskFineTuning):
    """A sequence-classification (or regression, or multiple-choice) head on the encoder."""

    new_modules = ("pooler", "classifier")  # a pretrained (MLM) checkpoint has neither

    @property
    def peft_task_type(self) -> str | None:
        return None if self.spec.problem_type == "multiple_choice" else "SEQ_CLS"

    def encode(self) -> datasets.DatasetDict:
        return encode_task(self.spec, self.raw, self.tokenizer, self.arguments.task.max_seq_length)

    @property
    def compute_metrics(self) -> Callable[[EvalPrediction], dict[str, float]]:
        return metrics_function(self.spec, "validation", self.raw["validation"])

    def build_model(self) -> PreTrainedModel:
        task = self.arguments.task
        return load_task_model(
            self.spec,
            self.tokenizer,
            task.max_seq_length,
            model_name_or_path=task.model_name_or_path,
            init_from_bert=self.arguments.warm_start.init_from_bert,
            architecture=self.arguments.model,
        )

    def collator(self, model: PreTrainedModel) -> Callable:
        return task_collator(self.spec, self.tokenizer)

    def evaluate(self, trainer: Trainer, split_name: str) -> dict[str, float]:
        trainer.compute_metrics = metrics_function(self.spec, split_name, self.raw[split_name])
        return evaluate(trainer, self.encoded[split_name])

    def predict(self, trainer: Trainer, split_name: str) -> np.ndarray:
        logits = trainer.predict(self.encoded[split_name]).predictions
        return predictions_from_logits(logits, self.spec.problem_type)


__all__ = ["TaskFineTuning", "TaskHeadFineTuning", "encode_task", "metrics_function", "task_collator"]
