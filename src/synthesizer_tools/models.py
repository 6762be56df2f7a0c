"""Configs and models from the script arguments: from scratch, from a saved checkpoint or from a BERT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from synthesizer_hf.bert_warm_start import from_bert
from synthesizer_hf.configuration_synthesizer import SynthesizerConfig, parse_attention_type
from synthesizer_hf.modeling_synthesizer import (
    SynthesizerForMultipleChoice,
    SynthesizerForSequenceClassification,
    SynthesizerPreTrainedModel,
)

from .arguments import LoraArguments, ModelArguments, Seq2SeqModelArguments
from .tasks import TaskSpec
from .tokenization import special_token_fields


def attention_spec(values: str | Sequence[str] | None) -> str | list[str] | None:
    """An --attention_type value (one string, or one per layer) -> the config's `attention_type`."""
    if values is None or isinstance(values, str):
        return values
    return values[0] if len(values) == 1 else list(values)


def build_config(
    architecture: ModelArguments,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    *,
    decoder: bool = False,
    **extra: Any,
) -> SynthesizerConfig:
    """Config of a model trained from scratch, with the special-token ids of `tokenizer`.

    With `decoder` (a `SynthesizerForSeq2SeqLM`), `Seq2SeqModelArguments` also shape the decoder: [SEP] ends a
    target and [PAD] starts the decoder, as T5 uses </s> and <pad>.
    """
    return vocabulary_config(
        architecture, special_token_fields(tokenizer), max_seq_length, decoder=decoder, **extra
    )


def vocabulary_config(
    architecture: ModelArguments,
    token_fields: Mapping[str, int | None],
    max_seq_length: int,
    *,
    decoder: bool = False,
    **extra: Any,
) -> SynthesizerConfig:
    """`build_config` from the vocabulary's config fields (`vocab_size` and the special-token ids) instead of
    a tokenizer: for inputs that have none (the studies' byte encoding, the pair probe's ids)."""
    if decoder:
        if not isinstance(architecture, Seq2SeqModelArguments):
            raise TypeError("an encoder-decoder config needs Seq2SeqModelArguments")
        extra = dict(decoder_start_token_id=token_fields["pad_token_id"], **extra)
    return SynthesizerConfig(
        **token_fields,
        **architecture_fields(architecture, max_seq_length, decoder),
        **extra,
    )


def architecture_fields(
    architecture: ModelArguments, max_seq_length: int, decoder: bool = False
) -> dict[str, Any]:
    """The config fields the architecture flags set (with `decoder`, the decoder's too)."""
    fields = dict(
        hidden_size=architecture.hidden_size,
        num_hidden_layers=architecture.num_layers,
        num_attention_heads=architecture.num_heads,
        intermediate_size=architecture.intermediate_size,
        max_position_embeddings=max_seq_length,
        synthesizer_length=architecture.synthesizer_length,
        attention_type=attention_spec(architecture.attention_type),
        hidden_dropout_prob=architecture.dropout,
        attention_probs_dropout_prob=architecture.attention_dropout,
    )
    if decoder:
        fields.update(
            decoder_attention_type=attention_spec(architecture.decoder_attention_type),
            num_decoder_layers=architecture.num_decoder_layers,
        )
    return fields


def check_architecture(
    architecture: ModelArguments, max_seq_length: int, *, decoder: bool = False, warm_start: bool = False
) -> None:
    """Raise the config's ValueError for impossible architecture flags (an unknown --attention_type, sizes that
    do not divide) before anything is written or trained; a warm start checks --attention_type only (BERT
    sets the rest)."""
    if warm_start:
        for spec in architecture.attention_type:
            parse_attention_type(spec)
        return
    check_max_seq_length(
        SynthesizerConfig(**architecture_fields(architecture, max_seq_length, decoder)), max_seq_length
    )


def bert_warm_start(
    bert_folder: str, head: str, architecture: ModelArguments, max_seq_length: int, **config: Any
) -> SynthesizerPreTrainedModel:
    """The --init_from_bert model with --attention_type; L defaults to --max_seq_length, as from scratch."""
    return from_bert(
        bert_folder,
        head=head,
        attention_type=attention_spec(architecture.attention_type),
        synthesizer_length=architecture.synthesizer_length or max_seq_length,
        **config,
    )


def task_head_config(spec: TaskSpec) -> dict[str, Any]:
    """Config fields of the task's head: labels and problem type (none for multiple choice)."""
    if spec.problem_type == "classification":
        labels = dict(enumerate(spec.label_names))
        return dict(
            num_labels=spec.num_labels,
            id2label=labels,
            label2id={name: i for i, name in labels.items()},
            problem_type="single_label_classification",
        )
    if spec.problem_type == "regression":
        return dict(num_labels=1, problem_type="regression")
    return {}


def load_task_model(
    spec: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    *,
    model_name_or_path: str | None = None,
    init_from_bert: str | None = None,
    architecture: ModelArguments | None = None,
) -> PreTrainedModel:
    """The model to fine-tune on a task: a saved checkpoint with a new head (`model_name_or_path`), a BERT
    converted with `architecture.attention_type` (`init_from_bert`), or else a model from scratch of
    `architecture`."""
    head_config = task_head_config(spec)
    multiple_choice = spec.problem_type == "multiple_choice"
    if model_name_or_path is None and architecture is None:
        raise ValueError("load_task_model needs model_name_or_path or the architecture of a new model")
    if model_name_or_path is None and init_from_bert is None:
        model_class = (
            SynthesizerForMultipleChoice if multiple_choice else SynthesizerForSequenceClassification
        )
        return model_class(build_config(architecture, tokenizer, max_seq_length, **head_config))
    if model_name_or_path is None:
        head = "multiple_choice" if multiple_choice else "sequence_classification"
        return bert_warm_start(init_from_bert, head, architecture, max_seq_length, **head_config)
    auto_class = AutoModelForMultipleChoice if multiple_choice else AutoModelForSequenceClassification
    model = auto_class.from_pretrained(model_name_or_path, **head_config)
    check_max_seq_length(model.config, max_seq_length)
    return model


def check_max_seq_length(config: PretrainedConfig, max_seq_length: int) -> None:
    """--max_seq_length must fit the model: its position table, and L of a length-bound synthesizer (which
    would otherwise fail on the first long batch, inside training). A BERT baseline has positions only."""
    if not isinstance(config, SynthesizerConfig):
        if max_seq_length > config.max_position_embeddings:
            raise ValueError(
                f"--max_seq_length {max_seq_length} exceeds the model's max_position_embeddings "
                f"({config.max_position_embeddings}): pass --max_seq_length {config.max_position_embeddings} or less."
            )
        return
    limit = config.longest_input()
    if max_seq_length > limit:
        raise ValueError(
            f"--max_seq_length {max_seq_length} exceeds the longest input of the model, {limit} tokens "
            f"(max_position_embeddings {config.max_position_embeddings}, synthesizer_length "
            f"{config.synthesizer_length} for attention_type {config.attention_type!r}): pass --max_seq_length "
            f"{limit} or less."
        )


__all__ = [
    "architecture_fields",
    "attention_spec",
    "bert_warm_start",
    "build_config",
    "check_architecture",
    "check_max_seq_length",
    "load_task_model",
    "task_head_config",
    "vocabulary_config",
]


def with_lora_adapter(
    model: PreTrainedModel, lora: LoraArguments, task_type: str | None, new_modules: Sequence[str] = ()
) -> PreTrainedModel:
    """`model` wrapped by peft with a new LoRA adapter of `--lora*`; only the adapter and `new_modules` are
    trainable. `task_type` is peft's ("SEQ_CLS", "SEQ_2_SEQ_LM"), or None for a head peft has no type for
    (multiple choice). `new_modules` are the modules the starting checkpoint lacks (the task head's pooler and
    classifier on an MLM checkpoint): they are trained in full and saved whole in the adapter (peft's
    `modules_to_save`), since the base model they would be reloaded onto initialises them anew."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("--lora needs peft: pip install 'synthesizer-hf[peft]'") from err
    targets = lora.lora_target_modules
    config = LoraConfig(
        task_type=task_type,
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets[0] if len(targets) == 1 else targets,  # one string: "all-linear" or a regex
        target_parameters=lora.lora_target_parameters,
        modules_to_save=list(new_modules) or None,
    )
    return get_peft_model(model, config)
