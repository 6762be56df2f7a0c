"""Study runner: reproduce the paper's attention-variant comparisons at CPU scale from one JSON config.

A study trains every (dataset, variant, seed) combination of its config with the Hugging Face `Trainer`
under the same budget, writes one results JSON per run, then a summary (`results.json`), Markdown tables
(`tables.md`) and matplotlib plots. Experiments differ by config only:

```json
{
  "name": "mlm_wikitext2",
  "objective": "mlm",                      // mlm | causal_lm | classification | token_classification | glue
  "variants": ["dot", "random"],           // attention_type of each model
  "seeds": [0, 1],
  "model": {"hidden_size": 128, ...},      // SynthesizerConfig fields shared by all variants
  "train": {"max_steps": 300, ...},        // TrainingArguments fields shared by all runs
  "datasets": {"wikitext2": {"eval_blocks": 256, "train": {...}}},  // loader options (+ train, seeds overrides)
  "smoke": {...}                           // --smoke: merged over the config (only its datasets kept)
}
```

The file is typed (`study_config.StudyConfig`, where every field is documented) and checked when it is read:
an unknown field, a wrong type, an unknown objective, variant or loader, an option the loader does not read
(`LOADER_USES`) or a Trainer setting the Trainer refuses stops the study before anything trains, naming the
field. Dataset options: a loader's own (sample counts, `max_length`, ...), `loader` (run a loader of
CORPUS_LOADERS or GENERATED_TASKS under another name, e.g. two tasks of the pair probe), `encoding: "bytes"`
(LRA's byte ids instead of a tokenizer), `train` and `seeds` (per-dataset overrides).

Optional keys: `vocab_size` and `max_length` (tokenizer), `save_models` (keep each trained model, e.g. for
fine-tuning), `pretrained_from` and `pretrained_dataset` (glue: a sibling study folder whose saved models are
fine-tuned, and the dataset they were trained on), `reuse_from` (sibling study folders whose identical runs
are copied instead of retrained), `convergence_baseline` (a variant whose final eval loss the others must
reach; reports the steps taken), `attention_plot_variants` (plot the attention maps of these variants only),
`attention_maps` (save them at all; default: all objectives but glue), `threads` (torch threads, 2).

The runs are built as the scripts build theirs: the models by `models.vocabulary_config` from the scripts'
`ModelArguments`, or for glue by `models.load_task_model` as `run_glue.py` loads them; the `TrainingArguments`
by the scripts' parser over `arguments.STUDY_TRAINER_DEFAULTS`; the Trainer by `trainer.make_trainer`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import psutil
import torch
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    default_data_collator,
    set_seed,
)

from synthesizer_hf.modeling_synthesizer import (
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
)

from .collators import DataCollatorForReproducibleMLM
from .data import group_into_blocks
from .metrics import accuracy_of_logits
from .models import load_task_model, vocabulary_config
from .pair_probe import make_probe_split, probe_token_fields
from .records import environment_info, eta, format_duration, perplexity, write_json
from .study_config import (
    RUNNER_OWNED_TRAIN_FIELDS,
    DatasetOptions,
    StudyConfig,
    StudyFileError,
    at,
    read_study,
    study_training_arguments,
)
from .study_reports import (
    LM_OBJECTIVES,
    format_locality_table,
    format_tables,
    make_plots,
    summarize_runs,
)
from .task_heads import encode_task, metrics_function, task_collator
from .tasks import get_task, load_task
from .tokenization import iter_text_files, load_or_train_tokenizer, special_token_fields
from .trainer import make_trainer

# name -> (the objectives it serves, the dataset options it reads besides `loader`, `train` and `seeds`; an LM
# objective also reads `train_blocks`, `eval_blocks` and `max_length`, classification `max_length`)
LOADER_USES: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "wikitext2": (LM_OBJECTIVES, frozenset({"train_lines"})),
    "tinyshakespeare": (LM_OBJECTIVES, frozenset()),
    "imdb": (("classification", *LM_OBJECTIVES), frozenset({"train_samples", "eval_samples", "data_seed"})),
    "ag_news": (("classification", *LM_OBJECTIVES), frozenset({"eval_samples", "data_seed"})),
    "lra_text": (
        ("classification",),
        frozenset({"train_samples", "test_samples", "eval_samples", "data_seed", "encoding"}),
    ),
    "pair_probe": (
        ("token_classification",),
        frozenset({"task", "vocabulary", "segment_length", "train_samples", "eval_samples", "data_seed"}),
    ),
}
OBJECTIVE_OPTIONS = {
    **dict.fromkeys(LM_OBJECTIVES, frozenset({"train_blocks", "eval_blocks", "max_length"})),
    "classification": frozenset({"max_length"}),
}


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------


def load_study_config(path: str | Path, smoke: bool = False) -> StudyConfig:
    """Read and check a study file (with its `smoke` overrides when asked; they are checked either way)."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StudyFileError(f"{path}: not valid JSON: {err}") from err
    if not smoke and isinstance(values, Mapping) and "smoke" in values:
        parse_study_config(values, str(path), smoke=True)
    return parse_study_config(values, str(path), smoke=smoke)


def parse_study_config(values: Any, where: str, *, smoke: bool = False) -> StudyConfig:
    """The checked `StudyConfig` of a study file's JSON (`where` names it in the errors)."""
    study = read_study(values, where, smoke=smoke)
    where = f"{where} (smoke)" if smoke else where
    if study.objective != "glue":
        for dataset, options in study.datasets.items():
            check_loader(study.objective, dataset, options, at(where, f"datasets.{dataset}"))
    return study


def check_loader(objective: str, dataset: str, options: DatasetOptions, where: str) -> None:
    """The dataset's loader exists, serves the objective and reads every option given."""
    loader = options.loader or dataset
    if loader not in LOADER_USES:
        field = "loader" if options.loader else "the dataset name"
        raise StudyFileError(
            f"{where}: no loader {loader!r} ({field}); name the dataset after one of {sorted(LOADER_USES)} or "
            "give it a `loader`"
        )
    objectives, read = LOADER_USES[loader]
    if objective not in objectives:
        raise StudyFileError(
            f"{where}: the {loader} loader serves {', '.join(objectives)}, not the objective {objective!r}"
        )
    read = read | OBJECTIVE_OPTIONS.get(objective, frozenset()) | {"loader"}
    unread = sorted(set(options.loader_options()) - read)
    if unread:
        raise StudyFileError(
            f"{at(where, unread[0])}: the {loader} loader does not read it for {objective}; it reads "
            f"{sorted(read)}"
        )


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


def imdb_reviews(data_dir: Path, file: str) -> list[dict[str, Any]]:
    """The records (`text`, `label`) of one IMDB file, `imdb/train.jsonl.gz` or `imdb/test.jsonl.gz`."""
    with gzip.open(data_dir / "imdb" / file, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_imdb(data_dir: Path, options: Mapping[str, Any]) -> datasets.DatasetDict:
    """IMDB reviews: `train_samples` of the train file and `eval_samples` of the test file (fixed seed)."""
    seed = options.get("data_seed", 0)
    splits = {}
    for split, file, count in (
        ("train", "train.jsonl.gz", options.get("train_samples")),
        ("validation", "test.jsonl.gz", options.get("eval_samples")),
    ):
        rows = _subsample(imdb_reviews(data_dir, file), count, seed)
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


def load_lra_text(data_dir: Path, options: Mapping[str, Any]) -> datasets.DatasetDict:
    """Long Range Arena's Text task: IMDB reviews as raw text (`<br />` kept, as LRA keeps it), the training
    split shuffled fully (the files are sorted by label), LRA's test split as `test` (all 25,000 reviews unless
    `test_samples`) and a fixed subset of it (`eval_samples`) as the `validation` split of the learning curves."""
    seed = options.get("data_seed", 0)
    splits = {}
    for split, file in (("train", "train.jsonl.gz"), ("test", "test.jsonl.gz")):
        count = options.get("train_samples") if split == "train" else options.get("test_samples")
        splits[split] = _subsample(imdb_reviews(data_dir, file), count, seed)
    splits["validation"] = splits["test"][: options.get("eval_samples", 1_000)]
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
            )
            for name, rows in splits.items()
        }
    )


CORPUS_LOADERS: dict[str, Callable[[Path, Mapping[str, Any]], datasets.DatasetDict]] = {
    "wikitext2": load_wikitext2,
    "tinyshakespeare": load_tinyshakespeare,
    "imdb": load_imdb,
    "ag_news": load_ag_news,
    "lra_text": load_lra_text,
}
# LRA's byte vocabulary: id = byte + 1, 0 = padding; one more id for the [CLS] token the classifier pools.
BYTE_PAD_ID, BYTE_CLS_ID = 0, 257
BYTE_FIELDS = {
    "vocab_size": 258,
    "pad_token_id": BYTE_PAD_ID,
    "bos_token_id": BYTE_CLS_ID,
    "eos_token_id": None,
}


def classification_features(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> datasets.Dataset:
    """Tokenize "text" to exactly `max_length` tokens (truncated/padded), so throughput is comparable."""
    return split.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length, padding="max_length"),
        batched=True,
        remove_columns=["text"],
    )


def byte_features(split: datasets.Dataset, max_length: int) -> datasets.Dataset:
    """LRA's byte encoding: `[CLS]` then the first `max_length - 1` UTF-8 bytes (id = byte + 1), padded with 0."""

    def encode(batch):
        ids = [
            [BYTE_CLS_ID, *(b + 1 for b in text.encode("utf-8")[: max_length - 1])] for text in batch["text"]
        ]
        return {
            "input_ids": [row + [BYTE_PAD_ID] * (max_length - len(row)) for row in ids],
            "attention_mask": [[1] * len(row) + [0] * (max_length - len(row)) for row in ids],
        }

    return split.map(encode, batched=True, remove_columns=["text"])


@dataclass
class PreparedData:
    """Everything a run needs besides the model: datasets, tokenizer, collator and labels.

    `test`, when given, is what the final metrics are computed on (`validation` then only draws the learning
    curves); `token_fields` are the config fields the vocabulary fixes (`special_token_fields` of `tokenizer`,
    or `BYTE_FIELDS` for byte inputs, which have no tokenizer)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    tokenizer: PreTrainedTokenizerBase | None
    collator: Callable
    token_fields: dict[str, int | None]
    num_labels: int = 0
    tokens_per_sample: int | None = None  # fixed-length inputs; None for dynamic padding (glue)
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None
    task: str | None = None
    test: datasets.Dataset | None = None


def prepare_corpus(study: StudyConfig, dataset: str, data_dir: Path, output_dir: Path) -> PreparedData:
    """Load a corpus, train (or reuse) the study's tokenizer on its training text and build the features."""
    options = study.datasets[dataset]
    loader = options.loader or dataset  # a config may run one loader under several names
    if loader in GENERATED_TASKS:
        return GENERATED_TASKS[loader](options.loader_options())
    raw = CORPUS_LOADERS[loader](data_dir, options.loader_options())
    length = options.max_length or study.max_length
    if options.encoding == "bytes":
        features = {name: byte_features(split, length) for name, split in raw.items()}
        return classification_data(raw, features, None, default_data_collator, dict(BYTE_FIELDS), length)
    tokenizer = load_or_train_tokenizer(
        output_dir / f"tokenizer_{dataset}", raw["train"]["text"], study.vocab_size, length
    )
    if study.objective in LM_OBJECTIVES:
        wrap = study.objective == "mlm"
        # the whole split as one token stream (group_size=None): every block but the last one is complete
        train, validation = (
            group_into_blocks(raw[name], tokenizer, length, wrap, desc=name, group_size=None, max_blocks=cap)
            for name, cap in (("train", options.train_blocks), ("validation", options.eval_blocks))
        )
        collator = (
            DataCollatorForReproducibleMLM(tokenizer, mlm_probability=0.15, seed=0)
            if wrap
            else DataCollatorForLanguageModeling(tokenizer, mlm=False)
        )
        return PreparedData(
            train, validation, tokenizer, collator, special_token_fields(tokenizer), tokens_per_sample=length
        )
    features = {name: classification_features(split, tokenizer, length) for name, split in raw.items()}
    return classification_data(
        raw, features, tokenizer, DataCollatorWithPadding(tokenizer), special_token_fields(tokenizer), length
    )


def classification_data(
    raw: datasets.DatasetDict,
    features: Mapping[str, datasets.Dataset],
    tokenizer: PreTrainedTokenizerBase | None,
    collator: Callable,
    token_fields: dict[str, int | None],
    length: int,
) -> PreparedData:
    """A classification corpus's PreparedData from its encoded splits (a `test` split takes the final metrics)."""
    return PreparedData(
        features["train"],
        features["validation"],
        tokenizer,
        collator,
        token_fields,
        num_labels=len(set(raw["train"]["label"])),
        tokens_per_sample=length,
        compute_metrics=accuracy_of_logits,
        test=features.get("test"),
    )


def prepare_pair_probe(options: Mapping[str, Any]) -> PreparedData:
    """The synthetic pair task of `pair_probe` (token classification; options `task`, `vocabulary`,
    `segment_length`, `train_samples`, `eval_samples`, `data_seed`), encoded by its generator."""
    task, vocabulary = options.get("task", "membership"), options.get("vocabulary", 256)
    segment_length, seed = options.get("segment_length", 7), options.get("data_seed", 0)
    train, validation = (
        make_probe_split(task, count, vocabulary, segment_length, split_seed)
        for count, split_seed in (
            (options.get("train_samples", 100_000), seed),
            (options.get("eval_samples", 2_000), seed + 1_000_003),  # another stream: no shared draws
        )
    )
    return PreparedData(
        train,
        validation,
        None,
        default_data_collator,
        probe_token_fields(vocabulary),
        num_labels=2,
        tokens_per_sample=2 * segment_length + 3,
        compute_metrics=accuracy_of_logits,
    )


# Tasks whose generator also encodes them (no corpus, no tokenizer): name -> loader options -> PreparedData
GENERATED_TASKS: dict[str, Callable[[Mapping[str, Any]], PreparedData]] = {
    "pair_probe": prepare_pair_probe,
}


def prepare_glue_task(
    task: str, options: DatasetOptions, data_dir: Path, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> PreparedData:
    """A GLUE/SuperGLUE task from the offline files, tokenized with the pretrained model's tokenizer."""
    spec = get_task(task)
    raw = load_task(task, data_dir, splits=["train", "validation"])
    train_samples = options.train_samples
    if train_samples is not None and train_samples < len(raw["train"]):
        raw["train"] = raw["train"].shuffle(seed=options.data_seed or 0).select(range(train_samples))
    encoded = encode_task(spec, raw, tokenizer, max_length)
    return PreparedData(
        encoded["train"],
        encoded["validation"],
        tokenizer,
        task_collator(spec, tokenizer),
        special_token_fields(tokenizer),
        num_labels=spec.num_labels,
        compute_metrics=metrics_function(spec, "validation", raw["validation"]),
        task=task,
    )


# ----------------------------------------------------------------------------------------------------------
# Models and runs
# ----------------------------------------------------------------------------------------------------------


# objective -> the head a study trains from scratch (a glue study fine-tunes saved models instead)
SCRATCH_MODELS: dict[str, type[PreTrainedModel]] = {
    "mlm": SynthesizerForMaskedLM,
    "causal_lm": SynthesizerForCausalLM,
    "classification": SynthesizerForSequenceClassification,
    "token_classification": SynthesizerForTokenClassification,
}


def build_model(study: StudyConfig, variant: str, data: PreparedData) -> PreTrainedModel:
    """A model trained from scratch with `variant` attention and the study's shared architecture, configured
    as the scripts configure theirs (`models.vocabulary_config`)."""
    config = vocabulary_config(
        study.model.architecture(variant),
        data.token_fields,
        data.tokens_per_sample,
        sparse_prediction=study.objective == "mlm",
        **({"num_labels": data.num_labels} if data.num_labels else {}),
    )
    return SCRATCH_MODELS[study.objective](config)


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


class PeakMemory(TrainerCallback):
    """Peak resident memory of the process during training (sampled at the start, every 10 ms by a thread, and at
    the end, so that a run shorter than one interval still records it): the whole process, data and framework
    included, so compare it between the runs of one study only."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def on_train_begin(self, args, state, control, **kwargs):
        self._sample()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._thread.start()

    def on_train_end(self, args, state, control, **kwargs):
        self._stop.set()
        self._thread.join()
        self._sample()


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
        values["perplexity"] = perplexity(values["loss"])
    if objective == "glue":
        values["score"] = get_task(task).score(values)
    return values


def run_key(spec: Mapping[str, Any]) -> str:
    """Identity of a run: a hash of everything that determines its result."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def run_name(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}__{variant}__seed{seed}"


@dataclass(frozen=True)
class PlannedRun:
    """One (dataset, variant, seed) of a study, with its spec (what determines its result) and that spec's key."""

    dataset: str
    variant: str
    seed: int
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return run_name(self.dataset, self.variant, self.seed)

    @property
    def key(self) -> str:
        return run_key(self.spec)


def plan_runs(study: StudyConfig, train_overrides: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """Every run of the study in the order they train: dataset by dataset, then variant, then seed."""
    return [
        PlannedRun(dataset, variant, seed, study.run_spec(dataset, variant, seed, train_overrides))
        for dataset in study.datasets
        for variant in study.variants
        for seed in study.dataset_seeds(dataset)
    ]


def pretrained_model(study: StudyConfig, output_dir: Path, variant: str, seed: int) -> Path:
    """A glue run's starting point: the model of the same variant and seed saved by `pretrained_from`, a
    sibling of this study's folder."""
    models = output_dir.parent / study.pretrained_from / "models"
    return models / run_name(study.pretrained_dataset, variant, seed)


def check_pretrained_models(study: StudyConfig, output_dir: Path, runs: Sequence[PlannedRun]) -> None:
    """A glue study's `runs` to train need their pretraining study's saved models: a FileNotFoundError that
    says which study to run first, before anything trains."""
    missing = {
        path
        for run in runs
        if not (path := pretrained_model(study, output_dir, run.variant, run.seed)).is_dir()
    }
    if not missing:
        return
    pretraining_dir = output_dir.parent / study.pretrained_from
    command = f"python scripts/run_study.py --config studies/{study.pretrained_from}.json --output_dir {pretraining_dir}"
    if not (pretraining_dir / "models").is_dir():
        raise FileNotFoundError(
            f"{study.name} fine-tunes the models of the study {study.pretrained_from!r}, which has not been run "
            f"here (no {pretraining_dir / 'models'}): run it first, e.g. {command}"
        )
    names = ", ".join(sorted(path.name for path in missing))
    raise FileNotFoundError(
        f"{study.name} fine-tunes the models of the study {study.pretrained_from!r}, but "
        f"{pretraining_dir / 'models'} lacks {len(missing)} of them ({names}): run that study with these "
        f"variants and seeds and `save_models: true` first, e.g. {command}"
    )


def train_one(
    study: StudyConfig, data: PreparedData, run: PlannedRun, run_dir: Path, pretrained: Path | None
) -> dict[str, Any]:
    """Train and evaluate one model (from scratch, or from the `pretrained` folder for glue); returns its
    results record (and saves its attention maps)."""
    training_args = study_training_arguments(study, run.spec["train"], str(run_dir), run.seed)
    set_seed(run.seed)
    if pretrained is not None:
        model = load_task_model(
            get_task(data.task), data.tokenizer, study.max_length, model_name_or_path=str(pretrained)
        )
    else:
        model = build_model(study, run.variant, data)
    timer, memory = StepTimer(), PeakMemory()
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=data.collator,
        compute_metrics=data.compute_metrics,
        callbacks=[timer, memory],
    )
    started = time.perf_counter()
    trainer.train()
    metrics = trainer.evaluate(data.test) if data.test is not None else trainer.evaluate()
    batch_size = training_args.per_device_train_batch_size
    samples_per_second = timer.steps * batch_size / max(timer.seconds, 1e-9)
    record = {
        "dataset": run.dataset,
        "variant": run.variant,
        "seed": run.seed,
        "key": run.key,
        "spec": run.spec,
        "metrics": final_metrics(study.objective, metrics, data.task),
        "num_parameters": model.num_parameters(),
        "train_steps": trainer.state.global_step,
        "train_seconds": round(timer.seconds, 2),
        "steps_per_second": timer.steps / max(timer.seconds, 1e-9),
        "samples_per_second": samples_per_second,
        "tokens_per_second": samples_per_second * data.tokens_per_sample if data.tokens_per_sample else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_bytes": memory.peak_bytes,
        "curves": curves_from_history(trainer.state.log_history),
    }
    if study.saves_attention_maps() and run.seed == study.seeds[0]:
        batch = data.collator([data.validation[i] for i in range(min(8, len(data.validation)))])
        np.save(
            run_dir.parent / f"{run_dir.name}.attention.npy", attention_maps(model, batch).astype(np.float16)
        )
    if study.save_models:
        trainer.save_model(str(run_dir.parent.parent / "models" / run_dir.name))
        if data.tokenizer is not None:
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


def check_train_overrides(overrides: Mapping[str, Any]) -> None:
    """The command line's Trainer flags may not set what the runner sets for each run."""
    for key in overrides:
        if key in RUNNER_OWNED_TRAIN_FIELDS:
            raise StudyFileError(
                f"--{key}: set by the study runner itself ({RUNNER_OWNED_TRAIN_FIELDS[key]})"
            )


def run_study(
    config: StudyConfig | Mapping[str, Any],
    data_dir: str | Path,
    output_dir: str | Path,
    train_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every (dataset, variant, seed) of `config` one after the other, then write tables and plots.

    `config` is a checked `StudyConfig` (`load_study_config`) or the JSON of a study file, checked here.
    `train_overrides` (TrainingArguments fields) take precedence over the config's `train` settings in every
    run. A run whose results file (same spec) already exists here or in a `reuse_from` study is not repeated,
    so an interrupted study resumes where it stopped. The log says which run starts, how many are left and the
    estimated time to the end (from this session's runs of each dataset).
    """
    study = config if isinstance(config, StudyConfig) else parse_study_config(config, "the study config")
    check_train_overrides(train_overrides or {})
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    runs_dir = output_dir / "runs"
    reuse = [output_dir, *(output_dir.parent / name for name in study.reuse_from)]
    planned = [(run, find_reusable(run.name, run.key, reuse)) for run in plan_runs(study, train_overrides)]
    if study.objective == "glue":
        check_pretrained_models(study, output_dir, [run for run, found in planned if found is None])
    runs_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(study.threads)
    records, data = [], {}
    pending = [run for run, found in planned if found is None]
    started, seconds_by_dataset = time.perf_counter(), defaultdict(list)
    for run, found in planned:
        if found is not None:
            print(f"[{study.name}] {run.name}: reusing {found}", flush=True)
            if found.parent != runs_dir:
                shutil.copy(found, runs_dir / found.name)
                maps = found.with_suffix(".attention.npy")
                if maps.is_file():
                    shutil.copy(maps, runs_dir / maps.name)
            records.append(json.loads(found.read_text(encoding="utf-8")))
            continue
        pretrained = (
            pretrained_model(study, output_dir, run.variant, run.seed) if study.objective == "glue" else None
        )
        if run.dataset not in data:
            data[run.dataset] = prepare_data(study, run.dataset, data_dir, output_dir, pretrained)
        remaining = pending[sum(map(len, seconds_by_dataset.values())) :]
        print(
            f"[{study.name}] {run.name}: training ({len(remaining)} of {len(pending)} left; "
            f"{format_duration(time.perf_counter() - started)} elapsed; "
            f"{eta([r.dataset for r in remaining], seconds_by_dataset)})",
            flush=True,
        )
        begun = time.perf_counter()
        record = train_one(study, data[run.dataset], run, runs_dir / run.name, pretrained)
        seconds_by_dataset[run.dataset].append(time.perf_counter() - begun)
        write_json(runs_dir / f"{run.name}.json", record)
        print(f"[{study.name}] {run.name}: {format_run(record)}", flush=True)
        records.append(record)
    return write_report(study, records, output_dir)


def prepare_data(
    study: StudyConfig, dataset: str, data_dir: Path, output_dir: Path, pretrained: Path | None
) -> PreparedData:
    """Corpus features, or for glue the task encoded with the tokenizer of the `pretrained` model."""
    if pretrained is None:
        return prepare_corpus(study, dataset, data_dir, output_dir)
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    return prepare_glue_task(dataset, study.datasets[dataset], data_dir, tokenizer, study.max_length)


def format_run(record: Mapping[str, Any]) -> str:
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items() if isinstance(v, float))
    return f"{metrics}; {record['steps_per_second']:.2f} steps/s; {record['wall_seconds']} s"


def load_attention_maps(
    study: StudyConfig, records: Sequence[Mapping[str, Any]], output_dir: Path
) -> dict[tuple[str, str], np.ndarray]:
    """The saved attention maps of the first seed, keyed by (dataset, variant)."""
    paths = {
        (r["dataset"], r["variant"]): output_dir
        / "runs"
        / f"{run_name(r['dataset'], r['variant'], r['seed'])}.attention.npy"
        for r in records
        if r["seed"] == study.seeds[0]
    }
    return {key: np.load(path).astype(np.float32) for key, path in paths.items() if path.is_file()}


def write_report(study: StudyConfig, records: Sequence[Mapping[str, Any]], output_dir: Path) -> dict:
    """`results.json`, `tables.md` and the plots of a finished (or partial) study."""
    rows = summarize_runs(study, records)
    maps = load_attention_maps(study, records, output_dir)
    tables = format_tables(study, rows)
    if maps:
        tables += "\n" + format_locality_table(maps)
    summary = {
        "study": study.as_json(),
        "rows": rows,
        "environment": environment_info(),
    }
    write_json(output_dir / "results.json", summary)
    (output_dir / "tables.md").write_text(tables, encoding="utf-8")
    summary["plots"] = [str(p) for p in make_plots(study, records, rows, maps, output_dir)]
    summary["tables"] = tables
    return summary


__all__ = [
    "CORPUS_LOADERS",
    "GENERATED_TASKS",
    "LOADER_USES",
    "check_train_overrides",
    "load_study_config",
    "parse_study_config",
    "plan_runs",
    "run_study",
]
