"""Configuration of the Synthesizer family (Tay et al., 2020) for Hugging Face Transformers 5.x.

`attention_type` names the synthesizing functions of each layer. A name, or several joined by `+`
(a mixture, eq. 8 of the paper), for all layers; or a list with one such entry per layer. The paper's
short names (R, Fix, FR, D, FD, V, R+V, ...) are accepted and stored in their canonical long form.
"""

from __future__ import annotations

import copy
import dataclasses

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .synthesizers import SYNTHESIZERS

# Derived from the synthesizer registry: canonical names in the order the docs present them, and the
# paper's abbreviations (Tables 2-6) and other spellings, matched case-insensitively.
ATTENTION_COMPONENTS = tuple(SYNTHESIZERS)
ATTENTION_ALIASES = {alias: name for name, cls in SYNTHESIZERS.items() for alias in cls.aliases}

# Sizes that must be positive integers: the model's, and every synthesizer's (checked whichever is used:
# the defaults derived from them divide by them).
POSITIVE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "num_decoder_layers",
    *dict.fromkeys(field for cls in SYNTHESIZERS.values() for field in cls.config_fields),
)


def parse_attention_type(spec: str) -> tuple[str, ...]:
    """Turn one attention spec such as ``"R+V"`` into canonical component names ``("random", "dot")``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"attention_type entries must be non-empty strings, got {spec!r}.")
    components = []
    for raw in spec.split("+"):
        name = raw.strip().lower()
        name = ATTENTION_ALIASES.get(name, name)
        if name not in ATTENTION_COMPONENTS:
            raise ValueError(
                f"attention_type: unknown synthesizing function {raw.strip()!r} in {spec!r}. Allowed: "
                f"{', '.join(ATTENTION_COMPONENTS)} (aliases: {', '.join(sorted(ATTENTION_ALIASES))}), "
                "or several joined by '+' for a mixture."
            )
        if name in components:
            raise ValueError(f"attention_type: {name!r} appears twice in the mixture {spec!r}.")
        components.append(name)
    return tuple(components)


def _canonical(spec: str | list[str], field: str) -> str | list[str]:
    if isinstance(spec, str):
        return "+".join(parse_attention_type(spec))
    if not isinstance(spec, (list, tuple)):
        raise ValueError(
            f"{field} must be a synthesizing function such as 'random', a '+' mixture such as 'random+dot', or a "
            f"list with one of those per layer; got {spec!r}."
        )
    return ["+".join(parse_attention_type(s)) for s in spec]


def _default_factors(length: int) -> tuple[int, int]:
    """The most balanced a x b = length with a <= b (a = 1 when length is prime)."""
    a = int(length**0.5)
    while length % a:
        a -= 1
    return a, length // a


@strict
class SynthesizerConfig(PreTrainedConfig):
    r"""
    Configuration for every Synthesizer model (encoder, masked LM, classification heads, causal LM and
    encoder-decoder). Standard BERT/T5 names where they exist, plus:

    attention_type (`str` or `list[str]`): synthesizing function(s) of the (encoder) self-attention, one for
        all layers or one per layer: a name or alias of the synthesizer registry (`ATTENTION_COMPONENTS`,
        `ATTENTION_ALIASES`; the README's table lists them), or a `+`-joined mixture of them (eq. 8).
    decoder_attention_type: the same for the decoder self-attention of `SynthesizerForSeq2SeqLM`
        (defaults to `attention_type`). Cross-attention is always dot-product (the paper could not replace it).
    synthesizer_length (`int`): L, the longest sequence the length-bound synthesizers support
        (defaults to `max_position_embeddings`, which must be at least as large).
    factorized_random_rank (`int`): k of the factorized random synthesizer (eq. 7), paper default 8.
    factorized_dense_a / factorized_dense_b (`int`): the factors of the factorized dense synthesizer with
        a * b = L (eq. 5-6); by default the most balanced pair.
    dense_synthesizer_hidden_size (`int`): width of W1 in the dense synthesizers (defaults to `hidden_size`,
        which gives Table 1's d^2 + d*L parameters).
    synthesizer_conv_width / synthesizer_second_conv_width (`int`): filter widths f1, f2 of the convolutional
        synthesizers of appendix A.2 (`conv_linear` uses f1; `conv_relu_conv` and
        `bottleneck_conv_relu_conv` both); 3 and 3, Table 8's first rows.
    synthesizer_bottleneck_size (`int`): r of `bottleneck_dense` and `bottleneck_conv_relu_conv` (16, the
        paper's 512 -> 16 -> 512).
    synthesizer_initializer_range (`float`): std of the normal init of R, R1, R2 (defaults to
        `initializer_range`).
    pairwise_initializer_range (`float`): std of the normal init of the per-head pairwise coefficient
        matrices (1.0, as in Courtois et al., 2024).
    attention_probs_dropout_prob (`float`): dropout on the attention weights; 0 by default (unlike BERT's 0.1,
        like ModernBERT) because a dropout mask per batch row stops the batch-shared softmax of the random
        synthesizers and the fused SDPA kernels on CPU.
    sparse_prediction (`bool`): when `SynthesizerForMaskedLM` gets labels, compute vocabulary logits only at
        the labelled positions (as ModernBERT does): `logits` is then `[num_labelled, vocab]`. Saves most of
        the head's 2 x hidden x vocab FLOPs per token in pretraining; off by default so that `logits`
        keeps the usual `[batch, length, vocab]` shape.
    """

    model_type = "synthesizer"
    # the output field of the cache since and before transformers 5.24
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "d_model": "hidden_size",
        "num_heads": "num_attention_heads",
        "num_layers": "num_hidden_layers",
    }

    vocab_size: int = 8000
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    classifier_dropout: float | int | None = None
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    use_cache: bool = True
    is_decoder: bool = False
    tie_word_embeddings: bool = True

    attention_type: str | list[str] = "random"
    decoder_attention_type: str | list[str] | None = None
    num_decoder_layers: int | None = None
    synthesizer_length: int | None = None
    factorized_random_rank: int = 8
    factorized_dense_a: int | None = None
    factorized_dense_b: int | None = None
    dense_synthesizer_hidden_size: int | None = None
    synthesizer_conv_width: int = 3
    synthesizer_second_conv_width: int = 3
    synthesizer_bottleneck_size: int = 16
    synthesizer_initializer_range: float | None = None
    pairwise_initializer_range: float = 1.0
    sparse_prediction: bool = False

    def __post_init__(self, **kwargs):
        self.check_positive()
        if self.synthesizer_length is None:
            self.synthesizer_length = self.max_position_embeddings
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_hidden_layers
        if self.decoder_attention_type is None:
            self.decoder_attention_type = self.attention_type
        if self.factorized_dense_a is None and self.factorized_dense_b is None:
            self.factorized_dense_a, self.factorized_dense_b = _default_factors(self.synthesizer_length)
        elif self.factorized_dense_a is None:
            self.factorized_dense_a = self.synthesizer_length // self.factorized_dense_b
        elif self.factorized_dense_b is None:
            self.factorized_dense_b = self.synthesizer_length // self.factorized_dense_a
        if self.dense_synthesizer_hidden_size is None:
            self.dense_synthesizer_hidden_size = self.hidden_size
        if self.synthesizer_initializer_range is None:
            self.synthesizer_initializer_range = self.initializer_range
        # Canonical names are what gets saved, so a checkpoint never depends on alias spellings.
        self.attention_type = _canonical(self.attention_type, "attention_type")
        self.decoder_attention_type = _canonical(self.decoder_attention_type, "decoder_attention_type")
        self.check_sizes()
        super().__post_init__(**kwargs)

    def check_positive(self) -> None:
        """Sizes must be positive integers (checked first: the derived defaults divide by them)."""
        for field in POSITIVE_FIELDS:
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{field} must be a positive integer, got {value!r}.")

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """Another model's config (a BERT folder given to `SynthesizerForMaskedLM.from_pretrained`) is refused,
        with the way to convert a BERT, rather than loaded as a randomly initialised Synthesizer. Overrides given
        to `from_pretrained` go through the same defaults and checks as the constructor (transformers would
        otherwise set them after construction, unchecked); a new synthesizer length also re-derives the
        factorized dense factors."""
        saved_type = config_dict.get("model_type", cls.model_type)
        if saved_type != cls.model_type:
            raise ValueError(
                f"This folder holds a {saved_type!r} checkpoint, not a Synthesizer one: its weights would not load "
                "and the model would be randomly initialised. "
                + (
                    "Convert a BERT with synthesizer_hf.bert_warm_start.from_bert(folder, head=..., "
                    "attention_type=...) or scripts/convert_bert.py (a warm start)."
                    if saved_type == "bert"
                    else "Only Synthesizer checkpoints (model_type 'synthesizer') and BERTs (converted with "
                    "synthesizer_hf.bert_warm_start.from_bert) can be loaded."
                )
            )
        fields = {field.name for field in dataclasses.fields(cls)}
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in fields}
        config_dict = {**config_dict, **overrides}
        if "synthesizer_length" in overrides or "max_position_embeddings" in overrides:
            for derived in ("factorized_dense_a", "factorized_dense_b"):
                if derived not in overrides:
                    config_dict[derived] = None
        if "max_position_embeddings" in overrides and "synthesizer_length" not in overrides:
            config_dict["synthesizer_length"] = None
        return super().from_dict(config_dict, **kwargs)

    def get_text_config(self, decoder=None, encoder=None):
        """The decoder's view has `num_decoder_layers` layers, so generation sizes its caches correctly."""
        config = super().get_text_config(decoder=decoder, encoder=encoder)
        if decoder and self.is_encoder_decoder and self.num_decoder_layers != self.num_hidden_layers:
            config = copy.copy(config)
            config.num_hidden_layers = self.num_decoder_layers
        return config

    def check_sizes(self) -> None:
        """Reject impossible combinations with a ValueError that names the field and what is allowed.

        Run from `__post_init__` rather than `validate_architecture`, whose errors `@strict` wraps in a
        non-ValueError exception type.
        """
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for field, num_layers in (
            ("attention_type", self.num_hidden_layers),
            ("decoder_attention_type", self.num_decoder_layers),
        ):
            spec = getattr(self, field)
            if isinstance(spec, list) and len(spec) != num_layers:
                raise ValueError(
                    f"{field} lists {len(spec)} entries but the stack has {num_layers} layers: give one "
                    "string for all layers or exactly one entry per layer."
                )
        for name in self.components_in_use(
            decoder=True
        ):  # only the synthesizers in use constrain their fields
            SYNTHESIZERS[name].check_config(self)

    def components_in_use(self, encoder: bool = True, decoder: bool | None = None) -> list[str]:
        """The synthesizers of the layers of the first stack (an encoder's, or a decoder-only model's) and of
        the decoder of an encoder-decoder, each once. `decoder=True` takes `decoder_attention_type` whatever the
        model: the config checks every spec it holds."""
        decoder = self.is_encoder_decoder if decoder is None else decoder
        layers = (self.layer_attention_types() if encoder else []) + (
            self.layer_attention_types(decoder=True) if decoder else []
        )
        return list(dict.fromkeys(name for components in layers for name in components))

    def longest_input(self) -> int:
        """The longest input the model accepts: L if a layer has a length-bound synthesizer (its tables have L
        rows), else the position table's `max_position_embeddings`."""
        length_bound = any(SYNTHESIZERS[name].length_bound for name in self.components_in_use())
        return self.synthesizer_length if length_bound else self.max_position_embeddings

    def layer_attention_types(self, decoder: bool = False) -> list[tuple[str, ...]]:
        """Canonical component tuple of each layer of the encoder (or decoder) self-attention."""
        spec = self.decoder_attention_type if decoder else self.attention_type
        num_layers = self.num_decoder_layers if decoder else self.num_hidden_layers
        specs = [spec] * num_layers if isinstance(spec, str) else spec
        return [parse_attention_type(s) for s in specs]


__all__ = ["ATTENTION_ALIASES", "ATTENTION_COMPONENTS", "SynthesizerConfig", "parse_attention_type"]
