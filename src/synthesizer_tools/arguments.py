"""The arguments of the training scripts: dataclasses parsed with `transformers.HfArgumentParser`, as Hugging
Face's example scripts do.

Each script parses its own dataclasses together with `TrainingArguments` (`run_glue.py`:
`Seq2SeqTrainingArguments`), so every Trainer flag works in every script (`--max_grad_norm`, `--optim`,
`--report_to`, `--gradient_accumulation_steps`, ...), with the names and meanings the Trainer documents. A
single `.json` / `.yaml` / `.yml` argument holds all of a run's arguments instead (the same names as keys).

The workflows keep this project's defaults (a few differ from `TrainingArguments`'): they are the parser
defaults, so `--help` shows them, and they apply to argument files too. `--output_dir` is required, and
`--resume_from_checkpoint` without a value resumes from the newest checkpoint in the output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments, TrainingArguments
from transformers.hf_argparser import string_to_bool

from synthesizer_hf.configuration_synthesizer import ATTENTION_ALIASES, SynthesizerConfig
from synthesizer_hf.synthesizers import SYNTHESIZERS

from .records import command_line
from .tasks import TASKS, get_task

LATEST = "latest"  # --resume_from_checkpoint without a path: the newest checkpoint in the output directory
ARGUMENT_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def attention_type_help() -> str:
    """The `--attention_type` help, from the synthesizer registry (a new synthesizer appears by itself)."""
    aliases = ", ".join(f"{alias.upper()}={name}" for alias, name in sorted(ATTENTION_ALIASES.items()))
    return (
        f"Synthesizing function(s): {', '.join(SYNTHESIZERS)}; a '+' mixture such as random+dot; or an alias "
        f"(any case, also in mixtures such as R+V): {aliases}. One value for all layers, or one per layer."
    )


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ModelArguments:
    """Architecture of a model trained from scratch (names as in the paper's tables where possible)."""

    _argument_group_name = "model (from scratch)"

    attention_type: list[str] = field(
        default_factory=lambda: ["random"], metadata=_help(attention_type_help())
    )
    hidden_size: int = field(default=256, metadata=_help("Hidden size."))
    num_layers: int = field(default=4, metadata=_help("Number of (encoder) layers."))
    num_heads: int = field(default=4, metadata=_help("Attention heads per layer."))
    intermediate_size: int = field(default=1024, metadata=_help("Feed-forward size."))
    synthesizer_length: int | None = field(
        default=None,
        metadata=_help(
            "L of the length-bound synthesizers (default: --max_seq_length, the longest input they accept)."
        ),
    )
    dropout: float = field(default=0.1, metadata=_help("Hidden dropout (BERT's hidden_dropout_prob)."))
    attention_dropout: float = field(
        default=SynthesizerConfig.attention_probs_dropout_prob,
        metadata=_help(
            "Dropout on the attention weights (attention_probs_dropout_prob; the library's default). Above 0 it "
            "turns off the batch-shared softmax of the random synthesizers and the fused CPU kernels."
        ),
    )


@dataclass
class Seq2SeqModelArguments(ModelArguments):
    """`ModelArguments` and the decoder of an encoder-decoder (`SynthesizerForSeq2SeqLM`)."""

    decoder_attention_type: list[str] | None = field(
        default=None, metadata=_help("The same for the decoder self-attention (default: --attention_type).")
    )
    num_decoder_layers: int | None = field(
        default=None, metadata=_help("Decoder depth (default: --num_layers).")
    )


@dataclass
class WarmStartArguments:
    """A warm start from a saved BERT (`synthesizer_hf.bert_warm_start.from_bert`) instead of from scratch."""

    _argument_group_name = "warm start"

    init_from_bert: str | None = field(
        default=None,
        metadata=_help(
            "Start from this BERT (a saved folder, `minilm`: the offline all-MiniLM-L6-v2 of the [warmstart] "
            "extra, or a Hub id), converted with --attention_type (with `dot` or a mixture such as "
            "random+dot the model starts out computing what the BERT computes) and with its tokenizer. The sizes "
            "and dropouts are BERT's; --synthesizer_length (default --max_seq_length) still applies."
        ),
    )


@dataclass
class TextDataArguments:
    """Pretraining text: local files or a `datasets` dataset, cut into blocks of --max_seq_length tokens."""

    _argument_group_name = "data"

    train_files: list[str] | None = field(
        default=None, metadata=_help("Local .txt/.txt.gz (one text per line) or .jsonl/.jsonl.gz files.")
    )
    dataset_name: str | None = field(
        default=None, metadata=_help("A `datasets` Hub dataset (needs network).")
    )
    dataset_config_name: str | None = field(default=None, metadata=_help("Configuration of --dataset_name."))
    text_column: str = field(default="text", metadata=_help("Text field of jsonl records / dataset rows."))
    validation_files: list[str] | None = field(
        default=None, metadata=_help("Held-out text (default: split off the train set).")
    )
    validation_split_percentage: float = field(
        default=5.0,
        metadata=_help(
            "Percentage of the training blocks held out for evaluation when no validation data is given."
        ),
    )
    max_seq_length: int = field(default=128, metadata=_help("Tokens per training example."))
    max_train_samples: int | None = field(default=None, metadata=_help("Use at most N training blocks."))
    max_eval_samples: int | None = field(default=None, metadata=_help("Use at most N evaluation blocks."))
    tokenizer: str | None = field(
        default=None,
        metadata=_help(
            "A saved tokenizer folder. Without it, the tokenizer saved in --output_dir by an earlier run is "
            "reused, or a WordPiece tokenizer is trained on the training text and saved there."
        ),
    )
    vocab_size: int = field(default=8000, metadata=_help("Vocabulary of a newly trained tokenizer."))
    cache_dir: str | None = field(
        default=None,
        metadata=_help("`datasets` cache for the tokenized blocks (default: HF_DATASETS_CACHE)."),
    )

    def __post_init__(self) -> None:
        if (self.train_files is None) == (self.dataset_name is None):
            raise ValueError("give exactly one of --train_files and --dataset_name")


@dataclass
class MaskingArguments:
    """BERT's masked-LM objective."""

    _argument_group_name = "objective"

    mlm_probability: float = field(default=0.15, metadata=_help("Fraction of tokens masked."))


@dataclass
class SpanCorruptionArguments:
    """T5's span-corruption objective."""

    _argument_group_name = "objective"

    noise_density: float = field(default=0.15, metadata=_help("Fraction of tokens corrupted."))
    mean_noise_span_length: float = field(default=3.0, metadata=_help("Mean corrupted span."))


@dataclass
class TaskArguments:
    """GLUE / SuperGLUE fine-tuning: which tasks, which data, which model to start from."""

    _argument_group_name = "tasks"

    tasks: list[str] = field(metadata=_help(f"One or more of: {' '.join(TASKS)}."))
    data_dir: str | None = field(
        default=None,
        metadata=_help(
            "Folder with glue/<Task>/ and superglue/<Task>/ in the official layouts (see synthesizer_tools.tasks). "
            "Default: download from the Hub (needs network access)."
        ),
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata=_help(
            "A pretrained checkpoint folder (e.g. of pretrain_mlm.py); a new task head is added. A BERT folder is "
            "fine-tuned unconverted, as the baseline of a comparison (see --init_from_bert)."
        ),
    )
    from_scratch: bool = field(
        default=False, metadata=_help("Randomly initialised model (needs --tokenizer).")
    )
    tokenizer: str | None = field(default=None, metadata=_help("Tokenizer folder (default: the model's)."))
    max_seq_length: int = field(
        default=128, metadata=_help("Longest input in tokens (longer ones are truncated).")
    )
    max_train_samples: int | None = field(default=None, metadata=_help("Quick runs: the first N examples."))
    max_eval_samples: int | None = field(default=None, metadata=_help("Quick runs: the first N examples."))
    max_predict_samples: int | None = field(default=None, metadata=_help("Quick runs: the first N examples."))
    predict: bool = field(
        default=True,
        metadata=_help(
            "Write official submission files for the test splits that exist (--no_predict: write none)."
        ),
    )
    save_model: bool = field(
        default=True,
        metadata=_help(
            "Save each fine-tuned model (and tokenizer) in <output_dir>/<task> (--no_save_model: save none)."
        ),
    )
    text_to_text: bool = field(
        default=False,
        metadata=_help(
            "T5-style: prompt '<task> sentence: ...' -> label word with SynthesizerForSeq2SeqLM "
            "(--model_name_or_path a span-corruption checkpoint, or --from_scratch); generation follows "
            "--generation_num_beams and --generation_max_length."
        ),
    )

    def __post_init__(self) -> None:
        for name in self.tasks:
            get_task(name)  # an unknown name raises with the list of valid ones
        if self.from_scratch and not self.tokenizer:
            raise ValueError("--from_scratch needs --tokenizer (a saved tokenizer folder)")


@dataclass
class LoraArguments:
    """Fine-tune a LoRA adapter (peft) instead of every weight; the task head is trained in full."""

    _argument_group_name = "LoRA adapter (pip install 'synthesizer-hf[peft]')"

    lora: bool = field(
        default=False, metadata=_help("Train a LoRA adapter; the task folder holds the adapter.")
    )
    lora_r: int = field(default=8, metadata=_help("Rank of the LoRA updates."))
    lora_alpha: float = field(
        default=16.0, metadata=_help("LoRA scaling numerator (the update is alpha / r).")
    )
    lora_dropout: float = field(
        default=0.0, metadata=_help("Dropout on the LoRA inputs (must be 0 with --lora_target_parameters).")
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata=_help("Layers to adapt: 'all-linear', or module names / one regex (see docs/TRAINING.md)."),
    )
    lora_target_parameters: list[str] | None = field(
        default=None,
        metadata=_help("Synthesizer tables to adapt too, e.g. random_logits (see docs/TRAINING.md)."),
    )

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ValueError(f"--lora_r must be at least 1, got {self.lora_r}")
        if self.lora_target_parameters and self.lora_dropout:
            raise ValueError(
                "--lora_target_parameters needs --lora_dropout 0 (peft has no dropout on parameters)"
            )


@dataclass
class PretrainingArguments:
    """Everything `pretraining.run_pretraining` needs; `objective` is `MaskingArguments` (MLM) or
    `SpanCorruptionArguments` (T5)."""

    data: TextDataArguments
    model: ModelArguments
    objective: MaskingArguments | SpanCorruptionArguments
    training: TrainingArguments
    warm_start: WarmStartArguments = field(default_factory=WarmStartArguments)
    command: str | None = None  # the command line, quoted in run_info.json and the model card

    @property
    def masked_lm(self) -> bool:
        return isinstance(self.objective, MaskingArguments)


@dataclass
class FineTuningArguments:
    """Everything `finetuning.run_tasks` needs."""

    task: TaskArguments
    model: Seq2SeqModelArguments
    training: TrainingArguments
    warm_start: WarmStartArguments = field(default_factory=WarmStartArguments)
    command: str | None = None
    lora: LoraArguments = field(default_factory=LoraArguments)


def script_arguments(*parts: Any) -> dict[str, Any]:
    """The script's own arguments (not the Trainer's), by name, for the run records."""
    return {key: value for part in parts for key, value in asdict(part).items()}


# Project defaults of the Trainer flags, shared by pretraining and fine-tuning.
TRAINER_DEFAULTS: dict[str, Any] = dict(
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    weight_decay=0.01,
    logging_steps=50,
    logging_first_step=True,
    report_to="none",
)
PRETRAINING_DEFAULTS: dict[str, Any] = dict(
    TRAINER_DEFAULTS,
    max_steps=1000,
    learning_rate=5e-4,
    warmup_steps=0.06,
    eval_strategy="steps",
    eval_steps=500,
    save_steps=500,
    save_total_limit=2,
    prediction_loss_only=True,  # evaluation needs the loss only; gathering LM logits would cost GBs
)
FINETUNING_DEFAULTS: dict[str, Any] = dict(
    TRAINER_DEFAULTS,
    learning_rate=5e-5,
    num_train_epochs=3.0,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=1,
)
# The studies' (scripts/run_study.py): many short CPU runs from scratch, evaluated every `eval_steps`, nothing
# saved but the records; the loss is logged at each evaluation (`study_config.study_training_arguments`).
STUDY_TRAINER_DEFAULTS: dict[str, Any] = dict(
    TRAINER_DEFAULTS,
    logging_first_step=False,
    learning_rate=1e-3,
    warmup_steps=0.1,
    lr_scheduler_type="linear",
    max_steps=200,
    eval_strategy="steps",
    eval_steps=50,
    save_strategy="no",
    disable_tqdm=True,
    use_cpu=True,
    dataloader_num_workers=0,
)


def cpu_only_distributed() -> bool:
    """True for a multi-process launch (torchrun / accelerate launch) on a host without any accelerator.

    `TrainingArguments` only sets up CPU data parallelism (DDP over gloo) with `use_cpu=True`; without it each
    process would silently train its own copy.
    """
    # is_available, not current_accelerator(): a CUDA build names cuda as its accelerator on a host with no GPU
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()


def host_defaults() -> dict[str, Any]:
    """Trainer defaults that depend on the machine: CPU data parallelism on CPU-only hosts, pinned memory
    only where there is a GPU to copy to."""
    return {"use_cpu": cpu_only_distributed(), "dataloader_pin_memory": torch.cuda.is_available()}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The script's docstring as written, and every flag with its default."""


class ScriptArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with this project's defaults, for the command line and for argument files alike.

    `parse(argv)` returns the dataclasses in the order given and the command line that reruns the run.
    `argument_files`: a single .json/.yaml/.yml argument is a file that holds all the arguments.
    """

    def __init__(
        self,
        dataclass_types: Sequence[type],
        *,
        program: str,
        description: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        require_output_dir: bool = True,
        argument_files: bool = True,
    ) -> None:
        super().__init__(
            dataclass_types, description=description, formatter_class=HelpFormatter, allow_abbrev=False
        )
        self.program = program
        self.project_defaults = {**host_defaults(), **(defaults or {})}
        self.require_output_dir = require_output_dir
        self.argument_files = argument_files
        self.set_defaults(**self.project_defaults)
        for action in self._actions:
            if action.type is string_to_bool and action.nargs is None:
                # `bool | None` fields (--disable_tqdm, --activation_checkpointing) work as bare flags too
                action.nargs, action.const = "?", True
            if (
                isinstance(action, argparse._StoreFalseAction)
                and f"--no_{action.dest}" in action.option_strings
            ):
                # HfArgumentParser gives --no_X the help of --X, which then reads as its opposite
                action.help, action.default = f"Turn --{action.dest} off.", argparse.SUPPRESS
            if action.dest == "output_dir" and require_output_dir:
                action.required = True
            if action.dest == "resume_from_checkpoint":
                action.nargs, action.const = "?", LATEST
                action.help = (
                    "Resume training: from the given checkpoint-N folder, or, with no value (or 'latest'), from "
                    "the newest checkpoint in the output directory (nothing to resume -> start from scratch)."
                )

    def parse_mapping(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The dataclasses from {argument name: value} over the project defaults, as an argument file is read
        (a ValueError names the keys no dataclass takes)."""
        return tuple(self.parse_dict({**self.project_defaults, **values}))

    def parse(self, argv: Sequence[str] | None = None) -> tuple[tuple[Any, ...], str]:
        """(dataclasses, command). A ValueError of a dataclass check ends the program as a usage error."""
        argv = list(sys.argv[1:] if argv is None else argv)
        try:
            if self.argument_files and len(argv) == 1 and argv[0].endswith(ARGUMENT_FILE_SUFFIXES):
                values = read_argument_file(argv[0])
                if self.require_output_dir and not values.get("output_dir"):
                    raise ValueError(f"{argv[0]}: output_dir is required")
                parsed = self.parse_mapping(values)
            else:
                parsed = self.parse_args_into_dataclasses(argv, look_for_args_file=False)
        except (TypeError, ValueError) as err:  # TypeError: an argument file lacks a required argument
            self.error(str(err))
        return tuple(parsed), command_line(argv, self.program)


def read_argument_file(path: str | os.PathLike) -> dict[str, Any]:
    """The arguments of a JSON or YAML file (a mapping of argument names to values)."""
    text = Path(path).read_text(encoding="utf-8")
    values = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values")
    return values


def flags_not_of(own: type, argv: Sequence[str]) -> list[str]:
    """The strings of `argv` that the `own` dataclass does not take: the Trainer flags of a script whose own
    arguments come first (the demo and the study runner pass them on to the runs they start)."""
    parser = HfArgumentParser(own, allow_abbrev=False)
    _, rest = parser.parse_args_into_dataclasses(
        list(argv), return_remaining_strings=True, look_for_args_file=False
    )
    return rest


def given_training_arguments(flags: Sequence[str]) -> dict[str, Any]:
    """The Trainer flags in `flags` as {field: value}, only those given (no defaults filled in)."""
    parser = HfArgumentParser(TrainingArguments, allow_abbrev=False)
    for action in parser._actions:
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    return vars(parser.parse_args(list(flags)))


def architecture_flags_given(model: ModelArguments, warm_start: WarmStartArguments) -> list[str]:
    """The architecture flags given (not at their defaults) that the model a run starts from decides instead:
    all of them for a saved checkpoint, all but --attention_type and --synthesizer_length for a BERT."""
    kept = ("attention_type", "synthesizer_length") if warm_start.init_from_bert else ()
    given = []
    for spec in dataclasses.fields(model):
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        if spec.name not in kept and getattr(model, spec.name) != default:
            given.append(f"--{spec.name}")
    return given


def check_architecture_flags(
    parser: argparse.ArgumentParser, model: ModelArguments, warm_start: WarmStartArguments, checkpoint: bool
) -> None:
    """A usage error naming the architecture flags that a checkpoint (`checkpoint`) or --init_from_bert would
    silently override."""
    if not (checkpoint or warm_start.init_from_bert):
        return
    flags = architecture_flags_given(model, warm_start)
    if not flags:
        return
    if warm_start.init_from_bert:
        parser.error(
            f"{', '.join(flags)}: the BERT of --init_from_bert sets the sizes and dropouts; only --attention_type "
            "and --synthesizer_length apply to a warm start. Drop them."
        )
    parser.error(
        f"{', '.join(flags)}: the checkpoint of --model_name_or_path sets the architecture (its config.json), so "
        "these would be ignored. Drop them, or train a new model (--from_scratch, or pretrain one)."
    )


def parse_pretraining_arguments(
    objective: str, argv: Sequence[str] | None = None, *, program: str, description: str | None = None
) -> PretrainingArguments:
    """The arguments of `scripts/pretrain_mlm.py` (objective "mlm") or `pretrain_span_corruption.py` ("span")."""
    if objective not in ("mlm", "span"):
        raise ValueError(f"objective must be 'mlm' or 'span', got {objective!r}")
    mlm = objective == "mlm"
    types = (
        (TextDataArguments, MaskingArguments, ModelArguments, WarmStartArguments, TrainingArguments)
        if mlm
        else (TextDataArguments, SpanCorruptionArguments, Seq2SeqModelArguments, TrainingArguments)
    )
    parser = ScriptArgumentParser(
        types, program=program, description=description, defaults=PRETRAINING_DEFAULTS
    )
    parsed, command = parser.parse(argv)
    if mlm:
        data, masking, model, warm_start, training = parsed
        if warm_start.init_from_bert and data.tokenizer:
            parser.error("--init_from_bert uses the tokenizer of the BERT folder: drop --tokenizer")
        check_architecture_flags(parser, model, warm_start, checkpoint=False)
        return PretrainingArguments(data, model, masking, training, warm_start, command)
    data, span, model, training = parsed
    return PretrainingArguments(data, model, span, training, command=command)


def parse_finetuning_arguments(
    argv: Sequence[str] | None = None, *, program: str, description: str | None = None
) -> FineTuningArguments:
    """The arguments of `scripts/run_glue.py`."""
    types = (
        TaskArguments,
        Seq2SeqModelArguments,
        WarmStartArguments,
        LoraArguments,
        Seq2SeqTrainingArguments,
    )
    parser = ScriptArgumentParser(
        types, program=program, description=description, defaults=FINETUNING_DEFAULTS
    )
    (task, model, warm_start, lora, training), command = parser.parse(argv)
    sources = [task.model_name_or_path is not None, task.from_scratch, warm_start.init_from_bert is not None]
    if sum(sources) != 1:
        parser.error("give exactly one of --model_name_or_path, --from_scratch and --init_from_bert")
    if warm_start.init_from_bert and task.tokenizer:
        parser.error("--init_from_bert uses the tokenizer of the BERT folder: drop --tokenizer")
    if warm_start.init_from_bert and task.text_to_text:
        parser.error("--init_from_bert converts an encoder: it cannot be combined with --text_to_text")
    check_architecture_flags(parser, model, warm_start, checkpoint=task.model_name_or_path is not None)
    if lora.lora and task.model_name_or_path is None:
        parser.error(
            "--lora needs --model_name_or_path: the adapter is saved as a change to that checkpoint, the base it "
            "is loaded onto (convert a BERT first with scripts/convert_bert.py)"
        )
    if training.resume_from_checkpoint not in (None, LATEST) and len(task.tasks) > 1:
        parser.error("--resume_from_checkpoint PATH needs a single task; give no path to resume each task")
    return FineTuningArguments(task, model, training, warm_start, command, lora)


__all__ = [
    "LATEST",
    "FineTuningArguments",
    "LoraArguments",
    "MaskingArguments",
    "ModelArguments",
    "PretrainingArguments",
    "ScriptArgumentParser",
    "Seq2SeqModelArguments",
    "SpanCorruptionArguments",
    "TaskArguments",
    "TextDataArguments",
    "WarmStartArguments",
    "flags_not_of",
    "given_training_arguments",
    "parse_finetuning_arguments",
    "parse_pretraining_arguments",
]
