"""The study file of `studies.run_study`, typed: frozen dataclasses read from the JSON and checked field by field,
so that a mistake stops the study before anything trains, with a message naming the field and the fix.

A study file (`studies/*.json`) holds a `StudyConfig`; its `model` section is a `ModelSection`, each entry of
`datasets` a `DatasetOptions`, and `train` (at the top and per dataset) `TrainingArguments` fields. `smoke` is a
partial study file merged over the rest by `--smoke` (keeping only the datasets it names).

A run's identity (`run_spec`, hashed into the `key` of its record) is built from the sections as the file
writes them, not from the defaults filled in, so a record stays reusable as long as its file says the same.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from transformers import TrainingArguments

from synthesizer_hf.configuration_synthesizer import SynthesizerConfig

from .arguments import STUDY_TRAINER_DEFAULTS, ModelArguments, ScriptArgumentParser
from .pair_probe import PROBE_TASKS
from .study_reports import LM_OBJECTIVES, OBJECTIVES
from .tasks import get_task

# The architecture of a study's models where its `model` section says nothing.
MODEL_DEFAULTS: dict[str, Any] = dict(
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=512,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
# TrainingArguments fields the runner sets for each run itself.
RUNNER_OWNED_TRAIN_FIELDS = {
    "output_dir": "each run writes to <output_dir>/runs/<run name>",
    "seed": "from the study's `seeds`, or a dataset's own",
    "prediction_loss_only": "the language models' evaluation needs the loss only, the others' their logits",
}


class StudyFileError(ValueError):
    """A study file that cannot run; the message names the field and the fix."""


def at(where: str, key: str) -> str:
    """The location of `key` inside `where` ("file" or "file: path"): "file: key" or "file: path.key"."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, recursively for nested dicts (neither input is modified)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ----------------------------------------------------------------------------------------------------------
# Reading a section into its dataclass
# ----------------------------------------------------------------------------------------------------------


def unknown_field_error(where: str, key: str, known: list[str], listing: str | None = None) -> StudyFileError:
    """`key` is not a field: the closest one, and all of them (or `listing`, where they are too many)."""
    close = difflib.get_close_matches(key, known, n=1)
    fix = f"did you mean {close[0]!r}? " if close else ""
    return StudyFileError(
        f"{at(where, key)}: unknown field; {fix}{listing or f'the fields are {sorted(known)}'}"
    )


def checked_fields(cls: type, values: Any, where: str) -> dict[str, Any]:
    """`values` as keyword arguments of the dataclass `cls`, or a StudyFileError naming the unknown or
    missing field (types are not checked: see `read_section`)."""
    known = [f.name for f in fields(cls)]
    if not isinstance(values, Mapping):
        raise StudyFileError(f"{where}: expected an object with fields {known}")
    for key in values:
        if key not in known:
            raise unknown_field_error(where, key, known)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        raise StudyFileError(f"{at(where, missing[0])}: required field missing")
    return dict(values)


def describe(annotation: Any) -> str:
    """How a type reads in an error message."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args if arg is not type(None))
    if origin is Literal:
        return " or ".join(repr(arg) for arg in args)
    if origin is tuple:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or annotation is dict:
        return "an object"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def typed_value(value: Any, annotation: Any, where: str) -> Any:
    """`value` of the JSON checked against `annotation` (lists become tuples, sections their dataclasses)."""
    if annotation is Any:  # a Trainer setting, checked by `check_train`
        return value
    if value is None:
        raise StudyFileError(f"{where}: null is not a value here; leave the field out for its default")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # `X | None`: None only ever means "not given"
        (annotation,) = [arg for arg in args if arg is not type(None)]
        return typed_value(value, annotation, where)
    if dataclasses.is_dataclass(annotation):
        return read_section(annotation, value, where)
    wrong = StudyFileError(f"{where}: expected {describe(annotation)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise wrong
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise wrong
        return tuple(typed_value(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise wrong
        item_type = args[1] if args else Any
        return {key: typed_value(item, item_type, at(where, key)) for key, item in value.items()}
    accepted = {int: int, float: (int, float)}.get(annotation, annotation)  # 1 is a number too
    if not isinstance(value, accepted) or (isinstance(value, bool) and annotation is not bool):
        raise wrong
    return value


def read_section(cls: type, values: Any, where: str) -> Any:
    """The dataclass `cls` from a JSON object, every field checked against its type."""
    values = checked_fields(cls, values, where)
    hints = typing.get_type_hints(cls)
    return cls(**{key: typed_value(value, hints[key], at(where, key)) for key, value in values.items()})


def given_fields(section: Any) -> dict[str, Any]:
    """The fields a section of the file sets (None: not given), as written."""
    return {f.name: getattr(section, f.name) for f in fields(section) if getattr(section, f.name) is not None}


# ----------------------------------------------------------------------------------------------------------
# The sections
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSection:
    """`model`: the architecture every variant shares, as `SynthesizerConfig` fields (unset: MODEL_DEFAULTS;
    the vocabulary, the special tokens and `max_position_embeddings` follow from the data)."""

    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None
    hidden_dropout_prob: float | None = None
    attention_probs_dropout_prob: float | None = None
    synthesizer_length: int | None = None  # L of the length-bound synthesizers (default: the input length)

    def architecture(self, variant: str) -> ModelArguments:
        """The scripts' `ModelArguments` of a model of `variant` attention (`models.vocabulary_config` builds it)."""
        sizes = {**MODEL_DEFAULTS, **given_fields(self)}
        return ModelArguments(
            attention_type=[variant],
            hidden_size=sizes["hidden_size"],
            num_layers=sizes["num_hidden_layers"],
            num_heads=sizes["num_attention_heads"],
            intermediate_size=sizes["intermediate_size"],
            synthesizer_length=sizes.get("synthesizer_length"),
            dropout=sizes["hidden_dropout_prob"],
            attention_dropout=sizes["attention_probs_dropout_prob"],
        )


@dataclass(frozen=True)
class DatasetOptions:
    """An entry of `datasets`: the options of its loader (`studies.LOADER_USES` says which each reads), plus
    `train` and `seeds` overriding the study's for this dataset. For a `glue` study the dataset is a task."""

    loader: str | None = None  # run this loader under the dataset's name (default: the name itself)
    train_lines: int | None = None  # WikiText-2: the first N non-empty training lines
    train_blocks: int | None = None  # language models: at most N training blocks of `max_length` tokens
    eval_blocks: int | None = None  # language models: at most N validation blocks
    train_samples: int | None = None  # at most N training examples (fixed draw of `data_seed`)
    eval_samples: int | None = None  # validation examples
    test_samples: int | None = None  # LRA Text: test examples for the final accuracy (default: all)
    data_seed: int | None = None  # the draw of the samples (default 0)
    max_length: int | None = None  # tokens per example (default: the study's `max_length`)
    encoding: Literal["bytes"] | None = None  # LRA's byte ids instead of a tokenizer (classification)
    task: str | None = None  # pair probe: "membership" or "aligned"
    vocabulary: int | None = None  # pair probe: words in the vocabulary
    segment_length: int | None = None  # pair probe: words per segment
    train: dict[str, Any] = field(default_factory=dict)  # TrainingArguments fields, over the study's `train`
    seeds: tuple[int, ...] | None = None  # this dataset's seeds (default: the study's)

    def loader_options(self) -> dict[str, Any]:
        """The options this dataset gives its loader (hashed as the run's `data`)."""
        options = given_fields(self)
        options.pop("seeds", None)
        options.pop("train")
        return options


@dataclass(frozen=True)
class StudyConfig:
    """A study file (`studies/*.json`): every (dataset, variant, seed) trained under the same budget."""

    name: str  # the study's folder and the prefix of its plots
    objective: str  # mlm | causal_lm | classification | token_classification | glue
    variants: tuple[str, ...]  # the attention_type of each model
    seeds: tuple[int, ...]
    datasets: dict[str, DatasetOptions]
    description: str = ""
    model: ModelSection = ModelSection()
    train: dict[str, Any] = field(default_factory=dict)  # TrainingArguments fields of every run
    vocab_size: int = 8000  # the WordPiece vocabulary trained on each corpus
    max_length: int = 128  # tokens per example (a dataset's `max_length` overrides it)
    save_models: bool = False  # keep each trained model in <output_dir>/models (for a glue study)
    attention_maps: bool | None = None  # save the first seed's attention maps (default: all but glue)
    pretrained_from: str | None = None  # glue: the sibling study whose saved models are fine-tuned
    pretrained_dataset: str | None = None  # glue: the dataset those models were trained on
    reuse_from: tuple[str, ...] = ()  # sibling studies whose identical runs are copied instead of retrained
    convergence_baseline: str | None = None  # a variant whose final eval loss the others must reach
    attention_plot_variants: tuple[str, ...] | None = None  # plot the attention maps of these variants only
    threads: int = 2  # torch threads

    def saves_attention_maps(self) -> bool:
        return self.objective != "glue" if self.attention_maps is None else self.attention_maps

    def dataset_seeds(self, dataset: str) -> tuple[int, ...]:
        own = self.datasets[dataset].seeds
        return self.seeds if own is None else own

    def dataset_train(self, dataset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The TrainingArguments fields of a dataset's runs as given: the study's `train`, the dataset's, then
        `overrides` (the Trainer flags of the command line)."""
        return {**deep_merge(self.train, self.datasets[dataset].train), **(overrides or {})}

    def run_spec(
        self, dataset: str, variant: str, seed: int, train_overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Everything that determines a run's result, as the file gives it (its hash is the run's key)."""
        return {
            "objective": self.objective,
            "dataset": dataset,
            "data": self.datasets[dataset].loader_options(),
            "model": given_fields(self.model),
            "train": self.dataset_train(dataset, train_overrides),
            "variant": variant,
            "seed": seed,
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "pretrained_from": self.pretrained_from,
        }

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
# Reading and checking a study
# ----------------------------------------------------------------------------------------------------------


def apply_smoke(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The study with its `smoke` overrides merged in, keeping only the datasets they name."""
    smoke = values.get("smoke", {})
    if not isinstance(smoke, Mapping):
        raise StudyFileError(f"{at(where, 'smoke')}: expected an object (a partial study file)")
    merged = deep_merge({k: v for k, v in values.items() if k != "smoke"}, smoke)
    if "datasets" in smoke:
        for dataset in smoke["datasets"]:
            if dataset not in values.get("datasets", {}):
                raise StudyFileError(
                    f"{at(where, 'smoke.datasets.' + dataset)}: not a dataset of the study; the smoke run "
                    f"keeps some of {sorted(values.get('datasets', {}))}"
                )
        merged["datasets"] = {name: merged["datasets"][name] for name in smoke["datasets"]}
    return merged


def read_study(values: Any, where: str, *, smoke: bool = False) -> StudyConfig:
    """A `StudyConfig` from the JSON of a study file (with its smoke overrides when `smoke`), checked."""
    if not isinstance(values, Mapping):
        raise StudyFileError(f"{where}: expected a study object, got {type(values).__name__}")
    if smoke:
        values = apply_smoke(values, f"{where} (smoke)")
        where = f"{where} (smoke)"
    study = read_section(StudyConfig, {k: v for k, v in values.items() if k != "smoke"}, where)
    check_study(study, where, smoke=smoke)
    return study


def check_study(study: StudyConfig, where: str, *, smoke: bool = False) -> None:
    """What the types cannot say: known objective and variants, their relations, and a glue study's tasks.
    (A smoke run may keep fewer variants than `attention_plot_variants` names.)"""
    if study.objective not in OBJECTIVES:
        raise StudyFileError(
            f"{at(where, 'objective')}: unknown objective {study.objective!r}; use one of {', '.join(OBJECTIVES)} "
            "(or warm_start, a study of its own schema: synthesizer_tools.warm_start_study)"
        )
    for key in ("variants", "seeds", "datasets"):
        if not getattr(study, key):
            raise StudyFileError(f"{at(where, key)}: empty; list at least one")
    for index, variant in enumerate(study.variants):
        try:
            SynthesizerConfig(attention_type=variant)
        except (ValueError, TypeError) as err:
            raise StudyFileError(f"{at(where, f'variants[{index}]')} {variant!r}: {err}") from err
    if study.convergence_baseline is not None and study.convergence_baseline not in study.variants:
        raise StudyFileError(
            f"{at(where, 'convergence_baseline')}: {study.convergence_baseline!r} is not one of the `variants`"
        )
    for variant in () if smoke else study.attention_plot_variants or ():
        if variant not in study.variants:
            raise StudyFileError(
                f"{at(where, 'attention_plot_variants')}: {variant!r} is not one of the `variants`"
            )
    glue = study.objective == "glue"
    if glue and (study.pretrained_from is None or study.pretrained_dataset is None):
        raise StudyFileError(
            f"{at(where, 'pretrained_from' if study.pretrained_from is None else 'pretrained_dataset')}: a glue "
            "study fine-tunes the saved models of another study: give `pretrained_from` (its name, a study run "
            "with save_models) and `pretrained_dataset` (the dataset they were trained on)"
        )
    if not glue and (study.pretrained_from or study.pretrained_dataset):
        raise StudyFileError(
            f"{at(where, 'pretrained_from')}: only a glue study starts from pretrained models; remove it"
        )
    for dataset, options in study.datasets.items():
        place = at(where, f"datasets.{dataset}")
        if glue:
            try:
                get_task(dataset)
            except ValueError as err:
                raise StudyFileError(f"{place}: {err}") from err
            extra = sorted(set(options.loader_options()) - {"train_samples", "data_seed"})
            if extra:
                raise StudyFileError(
                    f"{place}.{extra[0]}: a glue task takes only train_samples and data_seed (and train, seeds)"
                )
        if options.task is not None and options.task not in PROBE_TASKS:
            raise StudyFileError(
                f"{place}.task: unknown pair-probe task {options.task!r}; use one of {PROBE_TASKS}"
            )
        if options.encoding == "bytes" and study.objective != "classification":
            raise StudyFileError(
                f"{place}.encoding: byte encoding is only offered for classification, not {study.objective!r}"
            )
        check_train(study, dataset, where)


def check_train(study: StudyConfig, dataset: str, where: str) -> None:
    """A dataset's `train` (the study's merged with its own): TrainingArguments fields of the right types, not
    set by the runner, that the Trainer accepts. An error names the section that gave the field."""
    own = study.datasets[dataset].train
    train = study.dataset_train(dataset)
    known = [f.name for f in fields(TrainingArguments) if f.init]
    hints = typing.get_type_hints(TrainingArguments)
    for key, value in train.items():
        place = at(where, f"datasets.{dataset}.train" if key in own else "train")
        if key not in known:
            raise unknown_field_error(
                place, key, known, "the fields are those of transformers.TrainingArguments"
            )
        if key in RUNNER_OWNED_TRAIN_FIELDS:
            raise StudyFileError(
                f"{at(place, key)}: set by the study runner itself ({RUNNER_OWNED_TRAIN_FIELDS[key]}); remove it"
            )
        options = [arg for arg in typing.get_args(hints[key]) or (hints[key],) if arg is not type(None)]
        optional = type(None) in typing.get_args(hints[key])
        if len(options) == 1 and options[0] in (int, float, str, bool) and not (value is None and optional):
            typed_value(value, options[0], at(place, key))
    try:
        study_training_arguments(study, train, "study-check", 0)
    except (TypeError, ValueError) as err:
        sections = at(where, "train") + (f", datasets.{dataset}.train" if own else "")
        raise StudyFileError(f"{sections}: the Trainer refuses these settings: {err}") from err


def study_training_arguments(
    study: StudyConfig, train: Mapping[str, Any], output_dir: str, seed: int
) -> TrainingArguments:
    """The TrainingArguments of a run, read as the scripts read an argument file: `train` over the study
    defaults (`arguments.STUDY_TRAINER_DEFAULTS`); the loss is logged as often as the model is evaluated
    unless `logging_steps` says otherwise."""
    values = {
        "logging_steps": train.get("eval_steps", STUDY_TRAINER_DEFAULTS["eval_steps"]),
        **train,
        "output_dir": output_dir,
        "seed": seed,
        "prediction_loss_only": study.objective in LM_OBJECTIVES,
    }
    parser = ScriptArgumentParser(
        (TrainingArguments,), program="scripts/run_study.py", defaults=STUDY_TRAINER_DEFAULTS
    )
    (arguments,) = parser.parse_mapping(values)
    return arguments


__all__ = [
    "MODEL_DEFAULTS",
    "DatasetOptions",
    "ModelSection",
    "StudyConfig",
    "StudyFileError",
    "checked_fields",
    "deep_merge",
    "read_study",
    "study_training_arguments",
]
