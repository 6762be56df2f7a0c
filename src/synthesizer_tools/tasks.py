"""GLUE and SuperGLUE task definitions: offline loading and official test-submission files.

Task names
    GLUE: ``cola sst2 mrpc qqp stsb mnli qnli rte wnli``; SuperGLUE: ``boolq cb copa multirc
    superglue_rte wic wsc``. Names are the usual lowercase (Hugging Face config) names; the one
    clash, RTE, which is in both benchmarks, is ``rte`` for GLUE and ``superglue_rte`` for SuperGLUE.

Local files (``load_task(name, data_dir)``), in the official release formats
    ``<data_dir>/glue/<Folder>/{train,dev,test}.tsv`` as written by the GLUE download script (MNLI:
    ``train.tsv``, ``dev_matched.tsv``, ``dev_mismatched.tsv``, ``test_matched.tsv``,
    ``test_mismatched.tsv``) and ``<data_dir>/superglue/<Folder>/{train,val,test}.jsonl`` as in the
    SuperGLUE v2 zips. ``<Folder>`` is the official name (``CoLA``, ``SST-2``, ``STS-B``, ``MultiRC``, ...,
    see ``TaskSpec.folder``). Train and validation files are required, test files are used when present.

Result
    A ``datasets.DatasetDict`` with splits ``train``, ``validation`` and ``test`` (MNLI adds
    ``validation_mismatched`` and ``test_mismatched``) and the same columns for every task:
    ``idx`` (the official example id, used in submissions), ``text_a``, ``text_b`` (None for
    single-sentence tasks), ``label`` (class id as a ``ClassLabel``, a float score for STS-B, -1 for
    unlabeled test rows), plus ``choices`` for COPA and ``question_id``/``passage_id`` for MultiRC.
    Class ids follow the ``ClassLabel`` order of the Hub copies (``nyu-mll/glue``, ``aps/super_glue``),
    so local and Hub loading give identical ids; ``TaskSpec.label_values`` holds the official label
    strings in that order.

Inputs built for tasks that are not plain sentence pairs
    WiC: ``text_a = "<word>: <sentence1>"``, ``text_b = sentence2``, so the model knows which word
    to compare. WSC: ``text_a = text``, ``text_b = "<span2_text> refers to <span1_text>"`` (span2 is
    the pronoun). COPA (multiple choice): ``text_a = "<premise> What was the cause?"`` (or
    ``effect``), to be paired with each of the two ``choices``; ``text_b`` is None. MultiRC: one row
    per answer option, ``text_a = paragraph``, ``text_b = "<question> <answer>"``, with
    ``question_id`` grouping the options of a question for the exact-match metric. BoolQ pairs
    (question, passage), QNLI (question, sentence).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pandas as pd
from datasets import ClassLabel, Features, List, Value

from .metrics import (
    accuracy,
    accuracy_and_f1,
    accuracy_and_macro_f1,
    matthews_correlation,
    multirc_f1a_and_em,
    pearson_and_spearman,
)


class _Record(dict):
    """One example of a data file; a missing field raises a ValueError naming it and the file."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        super().__init__(data)
        self.source = source

    def __missing__(self, key: str) -> Any:
        raise ValueError(f"{self.source}: missing field {key!r} (found fields: {sorted(self)})")


Builder = Callable[[_Record], dict[str, Any]]


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to load, score and submit one task.

    ``text_fields`` name the fields the model input is built from (Hugging Face names, which the
    local readers rename official columns to via ``tsv_columns``); ``build`` replaces the default
    (text_a, text_b) = text_fields for tasks whose input is composed from several fields.
    ``label_values[i]`` is the official label string of class id ``i`` (JSON booleans as
    ``"true"``/``"false"``); ``submission_labels`` overrides what the submission file contains
    per class id when it differs from ``label_values``. ``score_keys`` are the metric keys whose
    mean is the official leaderboard score of the task (see ``benchmark_average``).

    Tasks whose rows are parts of a larger example (MultiRC: one row per answer option) say so with
    ``metric_columns`` (metric keyword -> column, e.g. the question ids its exact match groups by),
    ``submission_columns`` (the same for the submission file) and ``submission_layout``, which regroups
    per-row predictions into the official file's nested records.
    """

    name: str
    benchmark: Literal["glue", "superglue"]
    folder: str
    text_fields: tuple[str, ...]
    label_values: tuple[str, ...]
    label_names: tuple[str, ...]
    files: Mapping[str, str]
    submission_files: Mapping[str, str]
    hub_config: str
    problem_type: Literal["classification", "regression", "multiple_choice"] = "classification"
    metric: Callable[..., dict[str, float]] = accuracy
    score_keys: tuple[str, ...] = ("accuracy",)
    tsv_columns: Mapping[str, str] = field(default_factory=dict)
    headerless_columns: tuple[str, ...] = ()
    build: Builder | None = None
    unnest: Callable[[_Record], Iterator[dict[str, Any]]] | None = None
    hub_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    hub_splits: Mapping[str, str] = field(default_factory=dict)
    extra_features: Mapping[str, Any] = field(default_factory=dict)
    submission_labels: tuple[str | int, ...] = ()
    metric_columns: Mapping[str, str] = field(default_factory=dict)
    submission_columns: Mapping[str, str] = field(default_factory=dict)
    submission_layout: Callable[..., list[dict[str, Any]]] | None = None

    @property
    def num_labels(self) -> int:
        """Output size of a classification head (1 for regression, the number of choices for COPA)."""
        return 1 if self.problem_type == "regression" else len(self.label_values)

    @property
    def hub_path(self) -> str:
        """Hub dataset repository used when no local data directory is given."""
        return "nyu-mll/glue" if self.benchmark == "glue" else "aps/super_glue"

    @property
    def features(self) -> Features:
        """Column types of every split, identical for local and Hub loading."""
        label = (
            Value("float32")
            if self.problem_type == "regression"
            else ClassLabel(names=list(self.label_names))
        )
        base = {"idx": Value("int64"), "text_a": Value("string"), "text_b": Value("string")}
        return Features({**base, **self.extra_features, "label": label})

    def texts(self, record: _Record) -> dict[str, Any]:
        """Model inputs (text_a, text_b and task extras) of one example."""
        if self.build is not None:
            return self.build(record)
        first, *rest = self.text_fields
        return {"text_a": record[first], "text_b": record[rest[0]] if rest else None}

    def metric_inputs(self, split: datasets.Dataset) -> dict[str, list]:
        """The columns of an (un-tokenized) split that the metric needs besides predictions and labels."""
        return {keyword: split[column] for keyword, column in self.metric_columns.items()}

    def submission_inputs(self, split: datasets.Dataset) -> dict[str, list]:
        """The columns of an (un-tokenized) test split that the submission file needs besides the ids."""
        return {keyword: split[column] for keyword, column in self.submission_columns.items()}

    def compute_metrics(
        self,
        predictions: Sequence[float],
        references: Sequence[float],
        *,
        split: str | None = None,
        **extra: Any,
    ) -> dict[str, float]:
        """The official metrics; for a split with a variant suffix such as MNLI's `validation_mismatched`, the
        suffix is appended to every key (`accuracy_mismatched`), so both MNLI dev sets share one results dict.
        `extra` holds the `metric_inputs` (MultiRC's `question_ids`)."""
        variant = (split or "").partition("_")[2]
        suffix = f"_{variant}" if variant else ""
        return {
            f"{key}{suffix}": value for key, value in self.metric(predictions, references, **extra).items()
        }

    def score(self, metrics: Mapping[str, float]) -> float:
        """The official leaderboard score: the unweighted mean of the `score_keys` metrics."""
        missing = [key for key in self.score_keys if key not in metrics]
        if missing:
            raise ValueError(
                f"results for {self.name!r} lack {missing}; its official score averages {list(self.score_keys)}"
            )
        return float(np.mean([metrics[key] for key in self.score_keys]))

    def submission_value(self, prediction: float) -> str | int:
        """What the official submission file holds for one prediction (class id or STS-B score)."""
        if self.problem_type == "regression":
            return f"{float(prediction):.3f}"
        values = self.submission_labels or self.label_values
        class_id = int(prediction)
        if not 0 <= class_id < len(values):
            raise ValueError(
                f"{self.name}: prediction {prediction!r} is not a class id in 0..{len(values) - 1}"
            )
        return values[class_id]


def _copa(record: _Record) -> dict[str, Any]:
    return {
        "text_a": f"{record['premise']} What was the {record['question']}?",
        "text_b": None,
        "choices": [record["choice1"], record["choice2"]],
    }


def _wic(record: _Record) -> dict[str, Any]:
    return {"text_a": f"{record['word']}: {record['sentence1']}", "text_b": record["sentence2"]}


def _wsc(record: _Record) -> dict[str, Any]:
    return {"text_a": record["text"], "text_b": f"{record['span2_text']} refers to {record['span1_text']}"}


def _multirc(record: _Record) -> dict[str, Any]:
    return {
        "text_a": record["paragraph"],
        "text_b": f"{record['question']} {record['answer']}",
        "question_id": int(record["question_id"]),
        "passage_id": int(record["passage_id"]),
    }


def _wsc_target(record: _Record) -> Iterator[dict[str, Any]]:
    """Lift the official nested ``target`` span fields to the top level, where the Hub copy has them."""
    yield {**record, **_Record(record["target"], record.source)}


def _multirc_options(record: _Record) -> Iterator[dict[str, Any]]:
    """Flatten one official MultiRC passage into one example per answer option."""
    passage = _Record(record["passage"], record.source)
    for question in passage["questions"]:
        question = _Record(question, record.source)
        for answer in question["answers"]:
            answer = _Record(answer, record.source)
            option = {
                "paragraph": passage["text"],
                "question": question["question"],
                "answer": answer["text"],
                "idx": answer["idx"],
                "question_id": question["idx"],
                "passage_id": record["idx"],
            }
            if "label" in answer:
                option["label"] = answer["label"]
            yield option


def _multirc_hub_row(row: dict[str, Any]) -> dict[str, Any]:
    """The Hub copy keeps the three MultiRC ids in one ``idx`` dict; split them like the local loader."""
    ids = row["idx"]
    return {**row, "idx": ids["answer"], "question_id": ids["question"], "passage_id": ids["paragraph"]}


def _multirc_submission_lines(
    answer_ids: list[int], labels: list[Any], question_ids: Sequence[int], passage_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """Regroup per-option predictions into the official nested passage -> question -> answer layout."""
    passages: dict[int, dict[int, list[dict[str, Any]]]] = {}
    for passage, question, answer, label in zip(passage_ids, question_ids, answer_ids, labels, strict=True):
        passages.setdefault(int(passage), {}).setdefault(int(question), []).append(
            {"idx": answer, "label": label}
        )
    return [
        {"idx": passage, "passage": {"questions": [{"idx": q, "answers": a} for q, a in questions.items()]}}
        for passage, questions in passages.items()
    ]


GLUE_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
SUPERGLUE_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
BINARY = ("0", "1")
BOOLEAN = ("false", "true")
NLI_2 = ("entailment", "not_entailment")
BOOLEAN_NAMES = ("False", "True")
SENTENCE_PAIR = ("sentence1", "sentence2")


def _glue(name: str, folder: str, **fields: Any) -> TaskSpec:
    """A GLUE task with the release's file names and its official ``<Folder>.tsv`` submission file. By default
    the TSV columns are named as the text fields (plus ``index`` and ``label``) and the class names are the
    label values."""
    text_columns = {field: field for field in fields["text_fields"]}
    defaults = {
        "files": GLUE_FILES,
        "submission_files": {"test": f"{folder}.tsv"},
        "hub_config": name,
        "tsv_columns": {"index": "idx", **text_columns, "label": "label"},
        "label_names": fields["label_values"],
    }
    return TaskSpec(name=name, benchmark="glue", folder=folder, **{**defaults, **fields})


def _superglue(name: str, folder: str, **fields: Any) -> TaskSpec:
    """A SuperGLUE task with the v2 release's file names and its official ``<Folder>.jsonl`` submission file
    (class names: the label values unless given)."""
    defaults = {
        "files": SUPERGLUE_FILES,
        "submission_files": {"test": f"{folder}.jsonl"},
        "hub_config": name,
        "label_names": fields["label_values"],
    }
    return TaskSpec(name=name, benchmark="superglue", folder=folder, **{**defaults, **fields})


_SPECS = [
    _glue(
        "cola",
        "CoLA",
        text_fields=("sentence",),
        label_values=BINARY,
        label_names=("unacceptable", "acceptable"),
        metric=matthews_correlation,
        score_keys=("matthews_correlation",),
        headerless_columns=("source", "label", "original_judgment", "sentence"),
    ),
    _glue(
        "sst2",
        "SST-2",
        text_fields=("sentence",),
        label_values=BINARY,
        label_names=("negative", "positive"),
    ),
    _glue(
        "mrpc",
        "MRPC",
        text_fields=SENTENCE_PAIR,
        label_values=BINARY,
        label_names=("not_equivalent", "equivalent"),
        metric=accuracy_and_f1,
        score_keys=("accuracy", "f1"),
        tsv_columns={"index": "idx", "#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"},
    ),
    _glue(
        "qqp",
        "QQP",
        text_fields=("question1", "question2"),
        label_values=BINARY,
        label_names=("not_duplicate", "duplicate"),
        metric=accuracy_and_f1,
        score_keys=("accuracy", "f1"),
        tsv_columns={
            "id": "idx",
            "question1": "question1",
            "question2": "question2",
            "is_duplicate": "label",
        },
    ),
    _glue(
        "stsb",
        "STS-B",
        problem_type="regression",
        text_fields=SENTENCE_PAIR,
        label_values=(),
        label_names=(),
        metric=pearson_and_spearman,
        score_keys=("pearson", "spearmanr"),
        tsv_columns={"index": "idx", "sentence1": "sentence1", "sentence2": "sentence2", "score": "label"},
    ),
    _glue(
        "mnli",
        "MNLI",
        text_fields=("premise", "hypothesis"),
        label_values=("entailment", "neutral", "contradiction"),
        score_keys=("accuracy", "accuracy_mismatched"),
        tsv_columns={
            "index": "idx",
            "sentence1": "premise",
            "sentence2": "hypothesis",
            "gold_label": "label",
        },
        files={
            "train": "train.tsv",
            "validation": "dev_matched.tsv",
            "validation_mismatched": "dev_mismatched.tsv",
            "test": "test_matched.tsv",
            "test_mismatched": "test_mismatched.tsv",
        },
        submission_files={"test": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
        hub_splits={"validation": "validation_matched", "test": "test_matched"},
    ),
    _glue("qnli", "QNLI", text_fields=("question", "sentence"), label_values=NLI_2),
    _glue("rte", "RTE", text_fields=SENTENCE_PAIR, label_values=NLI_2),
    _glue(
        "wnli",
        "WNLI",
        text_fields=SENTENCE_PAIR,
        label_values=BINARY,
        label_names=("not_entailment", "entailment"),
    ),
    _superglue(
        "boolq",
        "BoolQ",
        text_fields=("question", "passage"),
        label_values=BOOLEAN,
        label_names=BOOLEAN_NAMES,
    ),
    _superglue(
        "cb",
        "CB",
        text_fields=("premise", "hypothesis"),
        label_values=("entailment", "contradiction", "neutral"),
        metric=accuracy_and_macro_f1,
        score_keys=("accuracy", "macro_f1"),
    ),
    _superglue(
        "copa",
        "COPA",
        problem_type="multiple_choice",
        text_fields=("premise", "question", "choice1", "choice2"),
        label_values=BINARY,
        label_names=("choice1", "choice2"),
        build=_copa,
        extra_features={"choices": List(Value("string"))},
        submission_labels=(0, 1),
    ),
    _superglue(
        "multirc",
        "MultiRC",
        text_fields=("paragraph", "question", "answer"),
        label_values=BINARY,
        label_names=BOOLEAN_NAMES,
        metric=multirc_f1a_and_em,
        score_keys=("f1_a", "exact_match"),
        build=_multirc,
        unnest=_multirc_options,
        hub_row=_multirc_hub_row,
        extra_features={"question_id": Value("int64"), "passage_id": Value("int64")},
        submission_labels=(0, 1),
        metric_columns={"question_ids": "question_id"},
        submission_columns={"question_ids": "question_id", "passage_ids": "passage_id"},
        submission_layout=_multirc_submission_lines,
    ),
    _superglue(
        "superglue_rte",
        "RTE",
        text_fields=("premise", "hypothesis"),
        label_values=NLI_2,
        hub_config="rte",
    ),
    _superglue(
        "wic",
        "WiC",
        text_fields=("word", "sentence1", "sentence2"),
        label_values=BOOLEAN,
        label_names=BOOLEAN_NAMES,
        build=_wic,
    ),
    _superglue(
        "wsc",
        "WSC",
        text_fields=("text", "span1_text", "span2_text"),
        label_values=BOOLEAN,
        label_names=BOOLEAN_NAMES,
        build=_wsc,
        unnest=_wsc_target,
        # Capitalised in WSC submissions only, as written by jiant (the SuperGLUE authors' toolkit).
        submission_labels=("False", "True"),
    ),
]
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def get_task(name: str) -> TaskSpec:
    """The spec of a task, with an error listing the valid names for a typo."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def _label_id(spec: TaskSpec, value: Any, source: str) -> int | float:
    """Official label value (string, JSON bool or int) -> class id, or float score for STS-B."""
    if spec.problem_type == "regression":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{source}: label {value!r} is not a number") from None
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if key not in spec.label_values:
        raise ValueError(
            f"{source}: unknown {spec.name} label {value!r}; expected one of {list(spec.label_values)}"
        )
    return spec.label_values.index(key)


def _read_tsv(spec: TaskSpec, path: Path, labelled: bool) -> list[_Record]:
    """Rows of an official GLUE TSV, with columns renamed to the Hugging Face field names.

    Quoting is disabled because GLUE text contains unbalanced quote characters, and empty strings
    stay strings. ``utf-8-sig`` drops the byte-order mark the MRPC files start with.
    """
    headerless = labelled and bool(spec.headerless_columns)
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            dtype=str,
            encoding="utf-8-sig",
            header=None if headerless else 0,
            names=list(spec.headerless_columns) if headerless else None,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a valid GLUE TSV file ({err})") from err
    needed = set(spec.text_fields) | ({"label"} if labelled else set())
    for column, renamed in spec.tsv_columns.items():
        if renamed in needed and column not in frame.columns:
            raise ValueError(f"{path}: missing column {column!r} (found columns: {list(frame.columns)})")
    present = {column: renamed for column, renamed in spec.tsv_columns.items() if column in frame.columns}
    frame = frame[list(present)].rename(columns=present)
    return [_Record(row, str(path)) for row in frame.to_dict("records")]


def _read_jsonl(spec: TaskSpec, path: Path) -> list[_Record]:
    """Examples of an official SuperGLUE jsonl file, flattened by the task's ``unnest`` if it has one."""
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = _Record(json.loads(line), f"{path}:{number}")
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: invalid JSON ({err})") from err
            unnested = spec.unnest(record) if spec.unnest else [record]
            records.extend(_Record(item, record.source) for item in unnested)
    return records


def _dataset(spec: TaskSpec, examples: list[dict[str, Any]]) -> datasets.Dataset:
    """Examples -> Dataset with the task's fixed features (also right for an empty file)."""
    features = spec.features
    return datasets.Dataset.from_dict(
        {column: [example[column] for example in examples] for column in features}, features=features
    )


def _load_local_split(spec: TaskSpec, path: Path, split: str) -> datasets.Dataset:
    """One split from an official file; test files carry no labels, so their label is -1."""
    labelled = not split.startswith("test")
    records = _read_tsv(spec, path, labelled) if spec.benchmark == "glue" else _read_jsonl(spec, path)
    examples = [
        {
            # CoLA, SST-2 and MRPC train/dev files have no id column: the id is the row number.
            "idx": int(record.get("idx", position)),
            **spec.texts(record),
            "label": _label_id(spec, record["label"], record.source) if labelled else -1,
        }
        for position, record in enumerate(records)
    ]
    return _dataset(spec, examples)


def _load_hub_split(spec: TaskSpec, rows: datasets.Dataset, source: str) -> datasets.Dataset:
    """One split of the Hub copy, whose labels already are class ids in our order."""
    examples = []
    for row in rows:
        record = _Record(spec.hub_row(row) if spec.hub_row else row, source)
        examples.append({"idx": int(record["idx"]), **spec.texts(record), "label": record["label"]})
    return _dataset(spec, examples)


def check_task_files(names: Sequence[str], data_dir: str | Path) -> None:
    """FileNotFoundError listing every missing train / validation file of these tasks (test files are
    optional), so a run over several tasks fails before the first one trains."""
    missing = []
    for name in names:
        spec = get_task(name)
        folder = Path(data_dir) / spec.benchmark / spec.folder
        missing += [
            f"{name} {split}: {folder / file}"
            for split, file in spec.files.items()
            if not split.startswith("test") and not (folder / file).is_file()
        ]
    if missing:
        raise FileNotFoundError(
            "expected the official task files (see synthesizer_tools.tasks for the layout); missing:\n  "
            + "\n  ".join(missing)
        )


def load_task(
    name: str, data_dir: str | Path | None = None, splits: Sequence[str] | None = None
) -> datasets.DatasetDict:
    """Load a task as a DatasetDict with the normalised columns described in the module docstring.

    With ``data_dir``, read the official files under it (no network). Without it, download the Hub
    copy (``nyu-mll/glue`` / ``aps/super_glue``), which needs network access. ``splits`` restricts
    loading to the given split names, all of which must then exist; by default the train and
    validation splits are required and the test splits are loaded when their files exist.
    """
    spec = get_task(name)
    unknown = [split for split in splits or () if split not in spec.files]
    if unknown:
        raise ValueError(f"{name} has no split(s) {unknown}; valid splits: {list(spec.files)}")
    wanted = list(splits) if splits is not None else list(spec.files)

    if data_dir is None:
        hub = datasets.load_dataset(spec.hub_path, spec.hub_config)
        return datasets.DatasetDict(
            {
                split: _load_hub_split(
                    spec, hub[spec.hub_splits.get(split, split)], f"{spec.hub_path}/{spec.hub_config}"
                )
                for split in wanted
            }
        )

    folder = Path(data_dir) / spec.benchmark / spec.folder
    loaded = {}
    for split in wanted:
        path = folder / spec.files[split]
        if path.is_file():
            loaded[split] = _load_local_split(spec, path, split)
        elif splits is not None or not split.startswith("test"):
            raise FileNotFoundError(
                f"{name}: expected the official {split} file at {path} "
                "(pass splits=[...] to load only the splits you have)"
            )
    return datasets.DatasetDict(loaded)


def write_test_predictions(
    task_name: str,
    idx: Sequence[int],
    predictions: Sequence[float],
    output_dir: str | Path,
    *,
    split: str = "test",
    **columns: Sequence[int],
) -> Path:
    """Write test predictions in the official submission format and return the file path.

    ``idx`` are the examples' ``idx`` values, ``predictions`` class ids (STS-B: scores). GLUE gets
    ``<Task>.tsv`` with an ``index<TAB>prediction`` header and official label strings (MNLI: pass
    ``split="test"`` for ``MNLI-m.tsv`` and ``split="test_mismatched"`` for ``MNLI-mm.tsv``).
    SuperGLUE gets ``<Task>.jsonl`` lines ``{"idx": ..., "label": ...}``; a task with
    ``submission_columns`` also needs them, one per prediction (MultiRC, whose rows are answer
    options: ``question_ids`` and ``passage_ids``, to rebuild the official nested layout; see
    ``TaskSpec.submission_inputs``).
    """
    spec = get_task(task_name)
    if split not in spec.submission_files:
        raise ValueError(
            f"{task_name} has no submission file for split {split!r}; use one of {list(spec.submission_files)}"
        )
    indices = [int(i) for i in idx]
    if len(indices) != len(predictions):
        raise ValueError(f"got {len(predictions)} predictions for {len(indices)} idx values")
    if set(columns) != set(spec.submission_columns) or any(len(v) != len(indices) for v in columns.values()):
        needed = " and ".join(spec.submission_columns) or "no other columns"
        raise ValueError(f"{task_name} submissions need {needed}, one per prediction (got {sorted(columns)})")
    labels = [spec.submission_value(prediction) for prediction in predictions]
    path = Path(output_dir) / spec.submission_files[split]
    path.parent.mkdir(parents=True, exist_ok=True)

    if spec.benchmark == "glue":
        rows = "".join(f"{index}\t{label}\n" for index, label in zip(indices, labels))
        path.write_text("index\tprediction\n" + rows, encoding="utf-8")
        return path
    if spec.submission_layout is not None:
        lines = spec.submission_layout(indices, labels, **columns)
    else:
        lines = [{"idx": index, "label": label} for index, label in zip(indices, labels)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def compute_task_metrics(
    task_name: str,
    predictions: Sequence[float] | np.ndarray,
    references: Sequence[float] | np.ndarray,
    *,
    split: str | None = None,
    **extra: Sequence[int],
) -> dict[str, float]:
    """Official metrics of `task_name` (a key of `TASKS`); see `TaskSpec.compute_metrics`."""
    return get_task(task_name).compute_metrics(predictions, references, split=split, **extra)


# Courtois et al. (2024) report GLUE as the mean of nine numbers: MNLI's two dev sets apart, WNLI left out.
COURTOIS_GLUE_PARTS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy_mismatched",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
}


def courtois_glue_score(results: Mapping[str, Mapping[str, float]]) -> float | None:
    """GLUE as Courtois et al. (2024) average it (their 79.36 / 78.74): the mean of CoLA MCC, SST-2, MRPC and
    QQP (accuracy and F1 averaged), STS-B (Pearson and Spearman averaged), MNLI-m, MNLI-mm, QNLI and RTE.
    None unless all nine are in `results` (a partial mean would not compare with theirs)."""
    parts = []
    for part, keys in COURTOIS_GLUE_PARTS.items():
        metrics = results.get(part.partition("_")[0], {})
        if not all(key in metrics for key in keys):
            return None
        parts.append(float(np.mean([metrics[key] for key in keys])))
    return float(np.mean(parts))


def benchmark_average(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Official leaderboard score of each task, plus one average per benchmark present.

    As on the GLUE and SuperGLUE leaderboards, a task with several metrics scores the unweighted
    mean of them (MRPC: accuracy and F1; STS-B: Pearson and Spearman; MNLI: matched and mismatched
    accuracy; CB: accuracy and macro-F1; MultiRC: F1a and EM), and the benchmark score is the
    unweighted mean over tasks. The averages are keyed `glue_average` / `superglue_average`; they
    equal the official score only when every task of the benchmark is in `results`. With every GLUE task
    but WNLI present, `glue_courtois` is added (`courtois_glue_score`). Values keep the
    scale of the inputs (0-1 unless the caller scaled them); other keys such as losses are ignored.
    """
    scores: dict[str, float] = {}
    by_benchmark: dict[str, list[float]] = defaultdict(list)
    for task_name, metrics in results.items():
        spec = get_task(task_name)
        scores[task_name] = spec.score(metrics)
        by_benchmark[spec.benchmark].append(scores[task_name])
    for benchmark, task_scores in by_benchmark.items():
        scores[f"{benchmark}_average"] = float(np.mean(task_scores))
    courtois = courtois_glue_score(results)
    if courtois is not None:
        scores["glue_courtois"] = courtois
    return scores
