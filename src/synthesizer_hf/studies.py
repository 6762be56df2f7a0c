"""Study runner: reproduce the paper's attention-variant comparisons at CPU scale from one JSON config.

A study trains every (dataset, variant, seed) combination of its config with the Hugging Face `Trainer`
under the same budget, writes one results JSON per run, then a summary (`results.json`), Markdown tables
(`tables.md`) and matplotlib plots. Experiments differ by config only:

```json
{
  "name": "mlm_wikitext2",
  "objective": "mlm",                      // mlm | causal_lm | classification | glue
  "variants": ["dot", "random"],           // attention_type of each model
  "seeds": [0, 1],
  "model": {"hidden_size": 128, ...},      // SynthesizerConfig fields shared by all variants
  "train": {"max_steps": 300, ...},        // TrainingArguments fields shared by all runs
  "datasets": {"wikitext2": {"eval_blocks": 256, "train": {...}}},  // loader options (+ train, seeds overrides)
  "smoke": {...}                           // --smoke: merged over the config (only its datasets kept)
}
```

Optional keys: `vocab_size` and `max_length` (tokenizer), `save_models` (keep each trained model, e.g. for
fine-tuning), `pretrained_from` (glue: a sibling study folder whose saved models are fine-tuned),
`reuse_from` (sibling study folders whose identical runs are copied instead of retrained),
`convergence_baseline` (a variant whose final eval loss the others must reach; reports the steps taken).
"""

from __future__ import annotations

import copy
import csv
import gzip
import hashlib
import json
import math
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from .configuration_synthesizer import SynthesizerConfig
from .metrics import accuracy, benchmark_average
from .modeling_synthesizer import (
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForSequenceClassification,
)
from .tasks import get_task, load_task
from .tokenization import iter_text_files, train_tokenizer
from .training import (
    DataCollatorForReproducibleMLM,
    MultipleChoiceCollator,
    encode_task,
    environment_info,
    load_task_model,
    make_trainer,
    metrics_function,
    write_json,
)

OBJECTIVES = ("mlm", "causal_lm", "classification", "glue")
LM_OBJECTIVES = ("mlm", "causal_lm")
TRAIN_DEFAULTS: dict[str, Any] = dict(
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    learning_rate=1e-3,
    weight_decay=0.01,
    warmup_steps=0.1,
    lr_scheduler_type="linear",
    max_steps=200,
    eval_steps=50,
    eval_strategy="steps",
    save_strategy="no",
    report_to="none",
    disable_tqdm=True,
    use_cpu=True,
    dataloader_num_workers=0,
)
LOCALITY_OFFSETS = (-3, -2, -1, 0, 1, 2, 3)  # key offsets j - i reported by `attention_by_offset`
MODEL_DEFAULTS: dict[str, Any] = dict(
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=512,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, recursively for nested dicts (neither input is modified)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_study_config(path: str | Path, smoke: bool = False) -> dict[str, Any]:
    """Read a study JSON (applying its `smoke` overrides when asked) and check the required keys."""
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    smoke_overrides = config.pop("smoke", {})
    if smoke:  # a smoke run keeps only the datasets its overrides name
        config = deep_merge(config, smoke_overrides)
        if "datasets" in smoke_overrides:
            config["datasets"] = {k: config["datasets"][k] for k in smoke_overrides["datasets"]}
    missing = [key for key in ("name", "objective", "variants", "seeds", "datasets") if key not in config]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    if config["objective"] not in OBJECTIVES:
        raise ValueError(f"{path}: objective must be one of {OBJECTIVES}, got {config['objective']!r}")
    return config


# ----------------------------------------------------------------------------------------------------------
# Data: each loader returns a DatasetDict with "train" and "validation" ("text", plus "label" if labelled)
# ----------------------------------------------------------------------------------------------------------


def _subsample(rows: list[Any], count: int | None, seed: int) -> list[Any]:
    """`count` rows drawn without replacement with a fixed seed (all rows, shuffled, when count is None)."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows if count is None else rows[:count]


def _lines(path: Path, max_lines: int | None) -> list[str]:
    lines = []
    for line in iter_text_files(path):
        lines.append(line)
        if max_lines is not None and len(lines) >= max_lines:
            break
    return lines


def load_wikitext2(data_dir: Path, options: Mapping[str, Any]) -> datasets.DatasetDict:
    """WikiText-2 (tokenized v1): the first `train_lines` non-empty training lines and the validation file."""
    folder = data_dir / "wikitext-2"
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict(
            {"text": _lines(folder / "train.txt.gz", options.get("train_lines"))}
        ),
        validation=datasets.Dataset.from_dict({"text": _lines(folder / "valid.txt", None)}),
    )


def load_tinyshakespeare(data_dir: Path, options: Mapping[str, Any]) -> datasets.DatasetDict:
    """Tiny Shakespeare split as nanoGPT does: first 90% of characters for training, the rest for validation."""
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": [text[:cut]]}),
        validation=datasets.Dataset.from_dict({"text": [text[cut:]]}),
    )


def load_imdb(data_dir: Path, options: Mapping[str, Any]) -> datasets.DatasetDict:
    """IMDB reviews: `train_samples` of the train file and `eval_samples` of the test file (fixed seed)."""
    seed = options.get("data_seed", 0)
    splits = {}
    for split, file, count in (
        ("train", "train.jsonl.gz", options.get("train_samples")),
        ("validation", "test.jsonl.gz", options.get("eval_samples")),
    ):
        with gzip.open(data_dir / "imdb" / file, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        rows = _subsample(rows, count, seed)
        splits[split] = datasets.Dataset.from_dict(
            {"text": [r["text"].replace("<br />", " ") for r in rows], "label": [r["label"] for r in rows]}
        )
    return datasets.DatasetDict(splits)


def load_ag_news(data_dir: Path, options: Mapping[str, Any]) -> datasets.DatasetDict:
    """AG News test split (the only one offline), shuffled with a fixed seed and cut into train/validation."""
    with open(data_dir / "ag_news" / "test.csv", encoding="utf-8", newline="") as handle:
        rows = [
            {"text": f"{title} {description}".replace("\\n", " "), "label": int(label) - 1}
            for label, title, description in csv.reader(handle)
        ]
    rows = _subsample(rows, None, options.get("data_seed", 0))
    held_out = options.get("eval_samples", 1600)
    parts = {"validation": rows[:held_out], "train": rows[held_out:]}
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"text": [r["text"] for r in part], "label": [r["label"] for r in part]}
            )
            for name, part in parts.items()
        }
    )


CORPUS_LOADERS: dict[str, Callable[[Path, Mapping[str, Any]], datasets.DatasetDict]] = {
    "wikitext2": load_wikitext2,
    "tinyshakespeare": load_tinyshakespeare,
    "imdb": load_imdb,
    "ag_news": load_ag_news,
}


def study_tokenizer(
    texts: Sequence[str], folder: Path, vocab_size: int, max_length: int
) -> PreTrainedTokenizerBase:
    """The WordPiece tokenizer saved in `folder`, trained on `texts` first if there is none yet."""
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def lm_blocks(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, length: int, wrap: bool, max_blocks: int | None
) -> datasets.Dataset:
    """Concatenate the token ids of `texts` and cut them into blocks of `length` tokens.

    With `wrap` ([CLS] block [SEP], for MLM) the content is `length - 2` tokens long. At most `max_blocks`.
    """
    content = length - 2 if wrap else length
    stream: list[int] = []
    for start in range(0, len(texts), 1000):
        for ids in tokenizer(list(texts[start : start + 1000]), add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
    blocks = [stream[i : i + content] for i in range(0, len(stream) - content + 1, content)]
    if wrap:
        blocks = [[tokenizer.cls_token_id, *block, tokenizer.sep_token_id] for block in blocks]
    if max_blocks is not None:
        blocks = blocks[:max_blocks]
    return datasets.Dataset.from_dict({"input_ids": blocks})


def classification_features(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> datasets.Dataset:
    """Tokenize "text" to exactly `max_length` tokens (truncated/padded), so throughput is comparable."""
    return split.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length, padding="max_length"),
        batched=True,
        remove_columns=["text"],
    )


@dataclass
class PreparedData:
    """Everything a run needs besides the model: datasets, tokenizer, collator and labels."""

    train: datasets.Dataset
    validation: datasets.Dataset
    tokenizer: PreTrainedTokenizerBase
    collator: Callable
    num_labels: int = 0
    tokens_per_sample: int | None = None  # fixed-length inputs; None for dynamic padding (glue)
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None
    task: str | None = None


def _accuracy_metrics(prediction: EvalPrediction) -> dict[str, float]:
    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    return accuracy(np.asarray(logits).argmax(-1), prediction.label_ids)


def prepare_corpus(
    study: Mapping[str, Any], dataset: str, options: Mapping[str, Any], data_dir: Path, output_dir: Path
) -> PreparedData:
    """Load a corpus, train (or reuse) the study's tokenizer on its training text and build the features."""
    if dataset not in CORPUS_LOADERS:
        raise ValueError(f"Unknown dataset {dataset!r}; known: {sorted(CORPUS_LOADERS)}")
    raw = CORPUS_LOADERS[dataset](data_dir, options)
    length = options.get("max_length", study.get("max_length", 128))
    tokenizer = study_tokenizer(
        raw["train"]["text"], output_dir / f"tokenizer_{dataset}", study.get("vocab_size", 8000), length
    )
    objective = study["objective"]
    if objective in LM_OBJECTIVES:
        wrap = objective == "mlm"
        train = lm_blocks(raw["train"]["text"], tokenizer, length, wrap, options.get("train_blocks"))
        validation = lm_blocks(raw["validation"]["text"], tokenizer, length, wrap, options.get("eval_blocks"))
        collator = (
            DataCollatorForReproducibleMLM(tokenizer, mlm_probability=0.15, seed=0)
            if wrap
            else DataCollatorForLanguageModeling(tokenizer, mlm=False)
        )
        return PreparedData(train, validation, tokenizer, collator, tokens_per_sample=length)
    return PreparedData(
        classification_features(raw["train"], tokenizer, length),
        classification_features(raw["validation"], tokenizer, length),
        tokenizer,
        DataCollatorWithPadding(tokenizer),
        num_labels=len(set(raw["train"]["label"])),
        tokens_per_sample=length,
        compute_metrics=_accuracy_metrics,
    )


def prepare_glue_task(
    task: str, options: Mapping[str, Any], data_dir: Path, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> PreparedData:
    """A GLUE/SuperGLUE task from the offline files, tokenized with the pretrained model's tokenizer."""
    spec = get_task(task)
    raw = load_task(task, data_dir, splits=["train", "validation"])
    train_samples = options.get("train_samples")
    if train_samples is not None and train_samples < len(raw["train"]):
        raw["train"] = raw["train"].shuffle(seed=options.get("data_seed", 0)).select(range(train_samples))
    encoded = encode_task(spec, raw, tokenizer, max_length)
    collator = (
        MultipleChoiceCollator(tokenizer)
        if spec.problem_type == "multiple_choice"
        else DataCollatorWithPadding(tokenizer)
    )
    return PreparedData(
        encoded["train"],
        encoded["validation"],
        tokenizer,
        collator,
        num_labels=spec.num_labels,
        compute_metrics=metrics_function(spec, "validation", raw["validation"]),
        task=task,
    )


# ----------------------------------------------------------------------------------------------------------
# Models and runs
# ----------------------------------------------------------------------------------------------------------


def build_model(
    objective: str, model_options: Mapping[str, Any], variant: str, data: PreparedData
) -> PreTrainedModel:
    """A model trained from scratch with `variant` attention and the study's shared architecture."""
    tokenizer = data.tokenizer
    config = SynthesizerConfig(
        **{**MODEL_DEFAULTS, **model_options},
        vocab_size=len(tokenizer),
        max_position_embeddings=data.tokens_per_sample,
        attention_type=variant,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sparse_prediction=objective == "mlm",
        **({"num_labels": data.num_labels} if objective == "classification" else {}),
    )
    model_class = {
        "mlm": SynthesizerForMaskedLM,
        "causal_lm": SynthesizerForCausalLM,
        "classification": SynthesizerForSequenceClassification,
    }[objective]
    return model_class(config)


def load_pretrained_for_task(path: Path, data: PreparedData, max_length: int) -> PreTrainedModel:
    """A saved (MLM) model with a fresh head for `data.task`, through the fine-tuning helper of training.py."""
    args = SimpleNamespace(
        from_scratch=False, init_from_bert=None, model_name_or_path=str(path), max_seq_length=max_length
    )
    return load_task_model(get_task(data.task), args, data.tokenizer)


class StepTimer(TrainerCallback):
    """Wall time spent inside optimisation steps only (evaluation and logging excluded)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._start
        self.steps += 1


@torch.no_grad()
def attention_maps(model: PreTrainedModel, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Attention weights `[layers, heads, L, L]` averaged over `batch`, via the eager path.

    For input-independent synthesizers (random) this is softmax(R) (under the padding or causal mask).
    """
    implementation = model.config._attn_implementation
    model.set_attn_implementation("eager")
    model.eval()
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    try:
        outputs = model(**inputs, output_attentions=True)
    finally:
        model.set_attn_implementation(implementation)
    return torch.stack([a.float().mean(0) for a in outputs.attentions]).numpy()


def curves_from_history(history: Sequence[Mapping[str, Any]]) -> dict[str, list[list[float]]]:
    """`{metric: [[step, value], ...]}` for the train loss and every eval_* metric the Trainer logged (one per step)."""
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    for entry in history:
        for key, value in entry.items():
            wanted = key == "loss" or (
                key.startswith("eval_") and not key.endswith(("_runtime", "_per_second"))
            )
            if wanted and isinstance(value, int | float):
                curves[key][entry["step"]] = float(value)  # the final evaluation repeats the last step
    return {key: [[step, value] for step, value in points.items()] for key, points in curves.items()}


def final_metrics(objective: str, metrics: Mapping[str, float], task: str | None) -> dict[str, float]:
    """The headline numbers of a run: log-perplexity and perplexity (LMs), accuracy, or the task score."""
    values = {
        key.removeprefix("eval_"): float(v)
        for key, v in metrics.items()
        if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second"))
    }
    if objective in LM_OBJECTIVES:
        values["perplexity"] = math.exp(min(values["loss"], 50.0))
    if objective == "glue":
        values["score"] = benchmark_average({task: values})[task]
    return values


def run_key(spec: Mapping[str, Any]) -> str:
    """Identity of a run: a hash of everything that determines its result."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def run_name(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}__{variant}__seed{seed}"


def train_one(
    study: Mapping[str, Any], data: PreparedData, variant: str, seed: int, run_dir: Path, spec: Mapping
) -> dict[str, Any]:
    """Train and evaluate one model; returns its results record (and saves its attention maps)."""
    objective = study["objective"]
    train_options = {**TRAIN_DEFAULTS, **spec["train"]}
    train_options.setdefault("logging_steps", train_options["eval_steps"])
    training_args = TrainingArguments(
        output_dir=str(run_dir),
        seed=seed,
        prediction_loss_only=objective in LM_OBJECTIVES,
        **train_options,
    )
    set_seed(seed)
    if objective == "glue":
        source = Path(study["_pretrained_dir"]) / run_name(study.get("pretrained_dataset", ""), variant, seed)
        model = load_pretrained_for_task(source, data, study.get("max_length", 128))
    else:
        model = build_model(objective, study.get("model", {}), variant, data)
    timer = StepTimer()
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=data.collator,
        compute_metrics=data.compute_metrics,
        callbacks=[timer],
    )
    started = time.perf_counter()
    trainer.train()
    metrics = trainer.evaluate()
    batch_size = training_args.per_device_train_batch_size
    samples_per_second = timer.steps * batch_size / max(timer.seconds, 1e-9)
    record = {
        "dataset": spec["dataset"],
        "variant": variant,
        "seed": seed,
        "key": run_key(spec),
        "spec": spec,
        "metrics": final_metrics(objective, metrics, data.task),
        "num_parameters": model.num_parameters(),
        "train_steps": trainer.state.global_step,
        "train_seconds": round(timer.seconds, 2),
        "steps_per_second": timer.steps / max(timer.seconds, 1e-9),
        "samples_per_second": samples_per_second,
        "tokens_per_second": samples_per_second * data.tokens_per_sample if data.tokens_per_sample else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "curves": curves_from_history(trainer.state.log_history),
    }
    if study.get("attention_maps", objective != "glue") and seed == study["seeds"][0]:
        batch = data.collator([data.validation[i] for i in range(min(8, len(data.validation)))])
        np.save(
            run_dir.parent / f"{run_dir.name}.attention.npy", attention_maps(model, batch).astype(np.float16)
        )
    if study.get("save_models"):
        trainer.save_model(str(run_dir.parent.parent / "models" / run_dir.name))
        data.tokenizer.save_pretrained(str(run_dir.parent.parent / "models" / run_dir.name))
    shutil.rmtree(run_dir, ignore_errors=True)  # Trainer scratch folder (no checkpoints are saved)
    return record


def find_reusable(name: str, key: str, folders: Sequence[Path]) -> Path | None:
    """The results file of an identical run (same key) in any of `folders`, if one exists."""
    for folder in folders:
        path = folder / "runs" / f"{name}.json"
        if path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("key") == key:
            return path
    return None


def run_study(config: Mapping[str, Any], data_dir: str | Path, output_dir: str | Path) -> dict[str, Any]:
    """Run every (dataset, variant, seed) of `config` one after the other, then write tables and plots.

    A run whose results file (same spec) already exists here or in a `reuse_from` study is not repeated,
    so an interrupted study resumes where it stopped.
    """
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    runs_dir = output_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    study = dict(config)
    if "pretrained_from" in study:
        study["_pretrained_dir"] = str(output_dir.parent / study["pretrained_from"] / "models")
    reuse = [output_dir, *(output_dir.parent / name for name in study.get("reuse_from", []))]
    torch.set_num_threads(study.get("threads", 2))
    records = []
    for dataset, raw_options in study["datasets"].items():
        options = dict(raw_options)
        train_spec = deep_merge(study.get("train", {}), options.pop("train", {}))
        seeds = options.pop("seeds", study["seeds"])
        data = None
        for variant in study["variants"]:
            for seed in seeds:
                name = run_name(dataset, variant, seed)
                spec = {
                    "objective": study["objective"],
                    "dataset": dataset,
                    "data": options,
                    "model": study.get("model", {}),
                    "train": train_spec,
                    "variant": variant,
                    "seed": seed,
                    "vocab_size": study.get("vocab_size", 8000),
                    "max_length": study.get("max_length", 128),
                    "pretrained_from": study.get("pretrained_from"),
                }
                found = find_reusable(name, run_key(spec), reuse)
                if found is not None:
                    print(f"[{study['name']}] {name}: reusing {found}", flush=True)
                    if found.parent != runs_dir:
                        shutil.copy(found, runs_dir / found.name)
                        maps = found.with_suffix(".attention.npy")
                        if maps.is_file():
                            shutil.copy(maps, runs_dir / maps.name)
                    records.append(json.loads(found.read_text(encoding="utf-8")))
                    continue
                if data is None:
                    data = prepare_data(study, dataset, options, data_dir, output_dir, variant, seed)
                print(f"[{study['name']}] {name}: training", flush=True)
                record = train_one(study, data, variant, seed, runs_dir / name, spec)
                write_json(runs_dir / f"{name}.json", record)
                print(f"[{study['name']}] {name}: {format_run(record)}", flush=True)
                records.append(record)
    return write_report(study, records, output_dir)


def prepare_data(
    study: Mapping[str, Any],
    dataset: str,
    options: Mapping[str, Any],
    data_dir: Path,
    output_dir: Path,
    variant: str,
    seed: int,
) -> PreparedData:
    """Corpus features, or for glue the task encoded with the tokenizer of the first pretrained model."""
    if study["objective"] != "glue":
        return prepare_corpus(study, dataset, options, data_dir, output_dir)
    source = Path(study["_pretrained_dir"]) / run_name(study.get("pretrained_dataset", ""), variant, seed)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return prepare_glue_task(dataset, options, data_dir, tokenizer, study.get("max_length", 128))


def format_run(record: Mapping[str, Any]) -> str:
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items() if isinstance(v, float))
    return f"{metrics}; {record['steps_per_second']:.2f} steps/s; {record['wall_seconds']} s"


# ----------------------------------------------------------------------------------------------------------
# Summary and tables
# ----------------------------------------------------------------------------------------------------------


def headline_metric(objective: str) -> tuple[str, str, bool]:
    """(metric key, label, higher is better) of an objective."""
    return {
        "mlm": ("loss", "valid log-ppl", False),
        "causal_lm": ("loss", "valid log-ppl", False),
        "classification": ("accuracy", "accuracy (%)", True),
        "glue": ("score", "score (x100)", True),
    }[objective]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def steps_to_reach(curve: Sequence[Sequence[float]], target: float) -> float | None:
    """First logged step whose value is at or below `target` (None if never)."""
    return next((step for step, value in curve if value <= target), None)


def summarize(study: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, variant): headline metric mean/std and per seed, throughput, parameters."""
    key, _, _ = headline_metric(study["objective"])
    scale = 100.0 if study["objective"] in ("classification", "glue") else 1.0
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[(record["dataset"], record["variant"])].append(record)
    rows = []
    for (dataset, variant), runs in grouped.items():
        values = [scale * r["metrics"][key] for r in runs]
        mean, std = mean_std(values)
        row = {
            "dataset": dataset,
            "variant": variant,
            "mean": mean,
            "std": std,
            "per_seed": {r["seed"]: v for r, v in zip(runs, values)},
            # Contention from other jobs only slows a run down, so the fastest seed is the cleanest timing.
            "steps_per_second": max(r["steps_per_second"] for r in runs),
            "samples_per_second": max(r["samples_per_second"] for r in runs),
            "num_parameters": runs[0]["num_parameters"],
        }
        if study["objective"] in LM_OBJECTIVES:
            row["perplexity"] = mean_std([r["metrics"]["perplexity"] for r in runs])
        if runs[0]["tokens_per_second"]:
            row["tokens_per_second"] = max(r["tokens_per_second"] for r in runs)
        rows.append(row)
    add_convergence(study, records, rows)
    return rows


def add_convergence(
    study: Mapping[str, Any], records: Sequence[Mapping[str, Any]], rows: list[dict[str, Any]]
) -> None:
    """With `convergence_baseline`, add the steps each run needs to reach the baseline's mean final eval loss."""
    baseline = study.get("convergence_baseline")
    if baseline is None:
        return
    for row in rows:
        reference = [r for r in rows if r["dataset"] == row["dataset"] and r["variant"] == baseline]
        if not reference:
            continue
        target = reference[0]["mean"]
        runs = [r for r in records if r["dataset"] == row["dataset"] and r["variant"] == row["variant"]]
        row["baseline_loss"] = target
        row["steps_to_baseline"] = {
            r["seed"]: steps_to_reach(r["curves"].get("eval_loss", []), target) for r in runs
        }


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def format_tables(study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: the per-variant table of each dataset (mean ± std, every seed, throughput, parameters)."""
    _, label, _ = headline_metric(study["objective"])
    digits = 3 if study["objective"] in LM_OBJECTIVES else 1
    convergence = any("steps_to_baseline" in row for row in rows)
    lines = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        header = ["variant", f"{label} mean ± std", "per seed"]
        if study["objective"] in LM_OBJECTIVES:
            header.append("perplexity")
        header += ["train steps/s*", "samples/s*"]
        if any("tokens_per_second" in row for row in rows):
            header.append("tokens/s*")
        header.append("parameters")
        if convergence:
            header.append(f"steps to reach {study['convergence_baseline']}'s final loss (per seed)")
        lines += [f"**{dataset}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in (r for r in rows if r["dataset"] == dataset):
            seeds = ", ".join(f"s{seed}: {_fmt(v, digits)}" for seed, v in row["per_seed"].items())
            cells = [
                f"`{row['variant']}`",
                f"{_fmt(row['mean'], digits)} ± {_fmt(row['std'], digits)}",
                seeds,
            ]
            if "perplexity" in row:
                cells.append(_fmt(row["perplexity"][0], 1))
            cells += [_fmt(row["steps_per_second"], 2), _fmt(row["samples_per_second"], 1)]
            if "tokens_per_second" in row:
                cells.append(f"{row['tokens_per_second']:,.0f}")
            cells.append(f"{row['num_parameters']:,}")
            if convergence:
                steps = row.get("steps_to_baseline", {})
                cells.append(", ".join(f"s{s}: {'—' if v is None else v}" for s, v in steps.items()))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "\\* throughput of the fastest seed (optimisation steps only; other jobs can only slow a run down).\n"
    )
    if study["objective"] == "glue":
        lines.append(format_task_matrix(rows))
    return "\n".join(lines)


def format_task_matrix(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown matrix variant x task (mean over seeds) with GLUE / SuperGLUE / overall averages."""
    tasks = list(dict.fromkeys(row["dataset"] for row in rows))
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    by_cell = {(row["variant"], row["dataset"]): row for row in rows}
    groups = {
        "GLUE avg": [t for t in tasks if get_task(t).benchmark == "glue"],
        "SuperGLUE avg": [t for t in tasks if get_task(t).benchmark == "superglue"],
        "all avg": tasks,
    }
    groups = {name: members for name, members in groups.items() if members}
    header = ["variant", *tasks, *groups]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in variants:
        cells = [f"`{variant}`"]
        for task in tasks:
            row = by_cell.get((variant, task))
            cells.append("" if row is None else f"{row['mean']:.1f} ± {row['std']:.1f}")
        for members in groups.values():
            present = [by_cell[(variant, t)]["mean"] for t in members if (variant, t) in by_cell]
            cells.append(f"{np.mean(present):.1f}" if len(present) == len(members) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def attention_by_offset(maps: np.ndarray, offsets: Sequence[int] = LOCALITY_OFFSETS) -> np.ndarray:
    """Head-averaged attention at key offset j - i, as a multiple of uniform attention: `[layers, offsets]`.

    Uniform means spreading each query's weight evenly over the keys it can see (the non-zero entries of its
    row: the causal mask and padding are respected), so 1.0 is "no preference" and a learned local window
    (paper Appendix A.5) shows as values above 1 next to offset 0.
    """
    mean = maps.astype(np.float64).mean(axis=1)  # [layers, L, L]
    visible = (mean > 0).sum(axis=-1, keepdims=True)  # keys each query can see
    ratio = mean * np.maximum(visible, 1)  # weight / (1 / visible)
    length = mean.shape[-1]
    result = np.zeros((mean.shape[0], len(offsets)))
    for column, offset in enumerate(offsets):
        queries = np.arange(max(0, -offset), min(length, length - offset))
        on_support = mean[:, queries, queries + offset] > 0
        values = ratio[:, queries, queries + offset]
        result[:, column] = [v[m].mean() if m.any() else 0.0 for v, m in zip(values, on_support)]
    return result


def format_locality_table(maps: Mapping[tuple[str, str], np.ndarray]) -> str:
    """Markdown: `attention_by_offset` per (dataset, variant, layer) of the first seed's saved maps."""
    header = ["dataset", "variant", "layer", *(f"{offset:+d}" for offset in LOCALITY_OFFSETS)]
    lines = [
        "**attention at key offset j - i, x uniform (mean over heads and queries; seed of the maps)**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (dataset, variant), value in maps.items():
        for layer, row in enumerate(attention_by_offset(value)):
            cells = [dataset, f"`{variant}`", str(layer + 1), *(f"{x:.2f}" for x in row)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_attention_maps(
    study: Mapping[str, Any], records: Sequence[Mapping[str, Any]], output_dir: Path
) -> dict[tuple[str, str], np.ndarray]:
    """The saved attention maps of the first seed, keyed by (dataset, variant)."""
    paths = {
        (r["dataset"], r["variant"]): output_dir
        / "runs"
        / f"{run_name(r['dataset'], r['variant'], r['seed'])}.attention.npy"
        for r in records
        if r["seed"] == study["seeds"][0]
    }
    return {key: np.load(path).astype(np.float32) for key, path in paths.items() if path.is_file()}


def write_report(study: Mapping[str, Any], records: Sequence[Mapping[str, Any]], output_dir: Path) -> dict:
    """`results.json`, `tables.md` and the plots of a finished (or partial) study."""
    rows = summarize(study, records)
    maps = load_attention_maps(study, records, output_dir)
    tables = format_tables(study, rows)
    if maps:
        tables += "\n" + format_locality_table(maps)
    summary = {
        "study": {k: v for k, v in study.items() if not k.startswith("_")},
        "rows": rows,
        "environment": environment_info(),
    }
    write_json(output_dir / "results.json", summary)
    (output_dir / "tables.md").write_text(tables, encoding="utf-8")
    summary["plots"] = [str(p) for p in make_plots(study, records, rows, maps, output_dir)]
    summary["tables"] = tables
    return summary


# ----------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------


def make_plots(
    study: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping],
    maps: Mapping[tuple[str, str], np.ndarray],
    output_dir: Path,
) -> list[Path]:
    """Every plot that applies to the study, as PNGs in `output_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    name = study["name"]
    paths = [plot_learning_curves(study, records, output_dir / f"{name}_curves.png")]
    paths.append(plot_metric_and_throughput(study, rows, output_dir / f"{name}_metric_vs_throughput.png"))
    if maps:
        paths.append(plot_attention_maps(maps, output_dir / f"{name}_attention.png"))
        paths.append(plot_attention_histograms(maps, output_dir / f"{name}_attention_hist.png"))
    return paths


def _curve_key(study: Mapping[str, Any]) -> str:
    return {"classification": "eval_accuracy", "glue": "eval_loss"}.get(study["objective"], "eval_loss")


def plot_learning_curves(study: Mapping[str, Any], records: Sequence[Mapping], path: Path) -> Path:
    """Validation curve per variant and dataset: mean over seeds, shaded min-max band."""
    import matplotlib.pyplot as plt

    key = _curve_key(study)
    datasets_ = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = plt.subplots(1, len(datasets_), figsize=(5 * len(datasets_), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets_):
        for variant in study["variants"]:
            curves = [
                r["curves"].get(key, [])
                for r in records
                if r["dataset"] == dataset and r["variant"] == variant
            ]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            steps = np.array([point[0] for point in curves[0][:length]])
            values = np.array([[point[1] for point in c[:length]] for c in curves])
            (line,) = ax.plot(steps, values.mean(0), marker=".", label=variant)
            ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
        ax.set(title=f"{study['name']}: {dataset}", xlabel="training step", ylabel=key.removeprefix("eval_"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metric_and_throughput(study: Mapping[str, Any], rows: Sequence[Mapping], path: Path) -> Path:
    """Bars of the headline metric (mean ± std) and of training throughput per variant and dataset."""
    import matplotlib.pyplot as plt

    _, label, _ = headline_metric(study["objective"])
    datasets_ = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(2, len(datasets_), figsize=(max(4.5, 3.2 * len(datasets_)), 6), squeeze=False)
    for column, dataset in enumerate(datasets_):
        subset = [r for r in rows if r["dataset"] == dataset]
        names = [r["variant"] for r in subset]
        x = np.arange(len(subset))
        colors = [f"C{i}" for i in range(len(subset))]
        top, bottom = axes[0][column], axes[1][column]
        top.bar(x, [r["mean"] for r in subset], yerr=[r["std"] for r in subset], color=colors, capsize=3)
        low = min(r["mean"] - r["std"] for r in subset)
        high = max(r["mean"] + r["std"] for r in subset)
        pad = max(0.15 * (high - low), 0.01 * abs(high), 1e-3)  # equal bars still get a readable axis
        top.set_ylim(low - pad, high + pad)
        top.set(title=dataset, ylabel=label)
        bottom.bar(x, [r["samples_per_second"] for r in subset], color=colors)
        bottom.set(ylabel="train samples / s (fastest seed)")
        for ax in (top, bottom):
            ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_attention_maps(maps: Mapping[tuple[str, str], np.ndarray], path: Path) -> Path:
    """One row per (dataset, variant, layer), one column per head: the attention map averaged over a batch."""
    import matplotlib.pyplot as plt

    panels = [(key, layer) for key, value in maps.items() for layer in range(value.shape[0])]
    heads = max(value.shape[1] for value in maps.values())
    fig, axes = plt.subplots(len(panels), heads, figsize=(2.2 * heads, 2.2 * len(panels)), squeeze=False)
    for row, ((dataset, variant), layer) in enumerate(panels):
        for head in range(heads):
            ax = axes[row][head]
            ax.imshow(maps[(dataset, variant)][layer, head], cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if head == 0:
                ax.set_ylabel(f"{variant}\nlayer {layer + 1}", fontsize=8)
            if row == 0:
                ax.set_title(f"head {head + 1}", fontsize=8)
    fig.suptitle(
        "attention weights (rows: queries, columns: keys), mean over 8 validation inputs", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / len(panels)))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_attention_histograms(maps: Mapping[tuple[str, str], np.ndarray], path: Path) -> Path:
    """Histogram of the (non-masked) attention weights per variant and layer, as the paper's Figure 2."""
    import matplotlib.pyplot as plt

    keys = list(maps)
    layers = max(value.shape[0] for value in maps.values())
    fig, axes = plt.subplots(len(keys), layers, figsize=(3.2 * layers, 1.9 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        for layer in range(maps[key].shape[0]):
            weights = maps[key][layer].ravel()
            ax = axes[row][layer]
            ax.hist(weights[weights > 0], bins=50, log=True, color=f"C{row}")
            ax.set_title(f"{key[1]} L{layer + 1}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = [
    "CORPUS_LOADERS",
    "attention_by_offset",
    "deep_merge",
    "format_tables",
    "load_study_config",
    "run_study",
    "summarize",
]
