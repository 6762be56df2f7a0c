"""Text-to-text fine-tuning (T5 style): a task's examples as prompts, its labels as words to generate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    PreTrainedModel,
    Trainer,
)

from synthesizer_hf.modeling_synthesizer import SynthesizerForSeq2SeqLM

from .models import build_config
from .task_heads import TaskFineTuning
from .tasks import TaskSpec
from .trainer import evaluate


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


def _target_values(spec: TaskSpec) -> Iterable[float]:
    """Every label value, to size the decoder output (STS-B: 0.0 .. 5.0 in steps of 0.2)."""
    if spec.problem_type == "regression":
        return [i / 5 for i in range(26)]
    return range(len(spec.label_names))


class TextToTextFineTuning(TaskFineTuning):
    """Fine-tune `SynthesizerForSeq2SeqLM` to write the label word, then generate and map it back to labels.

    The Trainer evaluates the loss (`prediction_loss_only`); the task metrics come from greedy generation (or
    beam search: `--generation_num_beams`), at most `--generation_max_length` new tokens (default: the
    longest label word).
    """

    @cached_property
    def max_target(self) -> int:
        """Tokens of the longest label word, with its end-of-sequence token."""
        words = (text_to_text_target(self.spec, value) for value in _target_values(self.spec))
        return max(len(self.tokenizer(word)["input_ids"]) for word in words) + 1

    def encode(self) -> datasets.DatasetDict:
        """Prompts and label words of the train and validation splits (test splits are generated from raw)."""
        return datasets.DatasetDict(
            {
                name: split.map(
                    self._encode, batched=True, remove_columns=split.column_names, desc=f"Encoding {name}"
                )
                for name, split in self.raw.items()
                if not name.startswith("test")
            }
        )

    def _prompts(self, batch: dict[str, list]) -> dict[str, Any]:
        choices = batch["choices"] if "choices" in batch else [None] * len(batch["text_a"])
        texts = [
            text_to_text_prompt(self.spec, a, b, c)
            for a, b, c in zip(batch["text_a"], batch["text_b"], choices)
        ]
        return self.tokenizer(
            texts, truncation=True, max_length=self.arguments.task.max_seq_length, return_token_type_ids=False
        )

    def _encode(self, batch: dict[str, list]) -> dict[str, Any]:
        features = self._prompts(batch)
        targets = self.tokenizer(
            [text_to_text_target(self.spec, label) for label in batch["label"]],
            truncation=True,
            max_length=self.max_target,
            add_special_tokens=False,
        )["input_ids"]
        features["labels"] = [[*ids, self.tokenizer.sep_token_id] for ids in targets]
        return features

    peft_task_type = "SEQ_2_SEQ_LM"

    def build_model(self) -> PreTrainedModel:
        """A span-corruption checkpoint (--model_name_or_path) or a new encoder-decoder (--from_scratch)."""
        task, model = self.arguments.task, self.arguments.model
        if task.from_scratch:
            config = build_config(model, self.tokenizer, task.max_seq_length, decoder=True)
            return SynthesizerForSeq2SeqLM(config)
        return AutoModelForSeq2SeqLM.from_pretrained(task.model_name_or_path)

    def collator(self, model: PreTrainedModel) -> DataCollatorForSeq2Seq:
        """Pads prompts and label words (labels with -100); the model shifts the labels into decoder inputs."""
        return DataCollatorForSeq2Seq(self.tokenizer, model=model, label_pad_token_id=-100)

    def generate(self, model: PreTrainedModel, split: datasets.Dataset) -> np.ndarray:
        """The labels the model writes for the rows of an un-tokenized split."""
        training = self.arguments.training
        batch_size = training.per_device_eval_batch_size
        inputs = split.map(self._prompts, batched=True, remove_columns=split.column_names)
        model.eval()
        outputs = []
        for start in range(0, len(inputs), batch_size):
            rows = inputs[start : start + batch_size]
            batch = self.tokenizer.pad({"input_ids": rows["input_ids"]}, return_tensors="pt").to(model.device)
            with torch.no_grad():
                generated = model.generate(
                    **batch,
                    max_new_tokens=getattr(training, "generation_max_length", None) or self.max_target,
                    num_beams=getattr(training, "generation_num_beams", None) or 1,
                    do_sample=False,
                )
            outputs += self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        predicted = np.asarray([label_from_text(self.spec, text) for text in outputs])
        return predicted if self.spec.problem_type == "regression" else predicted.astype(int)

    def evaluate(self, trainer: Trainer, split_name: str) -> dict[str, float]:
        """The loss and, from the generated labels, the task's official metrics on one validation split."""
        split = self.raw[split_name]
        metrics = evaluate(trainer, self.encoded[split_name])
        predicted = self.generate(trainer.model, split)
        metrics.update(
            self.spec.compute_metrics(
                predicted, split["label"], split=split_name, **self.spec.metric_inputs(split)
            )
        )
        return metrics

    def predict(self, trainer: Trainer, split_name: str) -> np.ndarray:
        """The generated labels of a test split."""
        return self.generate(trainer.model, self.raw[split_name])


__all__ = ["TextToTextFineTuning", "label_from_text", "text_to_text_prompt", "text_to_text_target"]
