"""Synthesizer models (Tay et al., 2020) as Hugging Face Transformers 5.x models.

One idea carries the file: an attention layer asks each of its synthesizers for logits, sums them with
learned mixture weights, masks them, normalises them and applies them to the values. Because every
synthesizer returns its logits as `query @ key^T + bias`, the whole mixture is ONE call of one kernel:
the transformers attention interface (`eager`, the plain reference computation that returns the attention
maps; `sdpa`, the fused kernel) or one of the kernels of `attention_kernels`, which also holds the one rule
that picks the kernel of a call.

Layout: BERT-like post-LayerNorm blocks. `SynthesizerModel` is the bidirectional encoder;
`SynthesizerDecoder` the causal stack (with dot-product cross-attention in the encoder-decoder).
"""

import dataclasses
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

# Every module of the model is imported by this file: loading remote code, transformers 5.4 copies only the
# direct relative imports of the model's file into its module cache (so not attention_kernels' own imports)
from .attention_kernels import (
    AttentionCall,
    AttentionPath,
    KeptBuffers,
    LayerTraits,
    batch_shared_attention,
    choose_attention_path,
    eager_attention_forward,
    equal_widths,
    kept_batch_shared_attention,
    shared_softmax,
    softmax_attention,
)
from .biased_attention import biased_attention
from .caching import static_key_slots, update_value_only
from .compat import CACHE_ARGUMENT, accepts_old_cache_name, output_cache
from .configuration_synthesizer import SynthesizerConfig
from .synthesizers import (
    SYNTHESIZERS,
    Positions,
    SynthesizedLogits,
    Synthesizer,
    combine_logits,
    split_heads,
)

logger = logging.get_logger(__name__)


def check_attention_mask(attention_mask: torch.Tensor | None, batch_size: int, key_length: int) -> None:
    """A clear error for a mask that does not cover (batch, past + current tokens)."""
    if attention_mask is not None and tuple(attention_mask.shape) != (batch_size, key_length):
        raise ValueError(
            f"attention_mask must have shape ({batch_size}, {key_length}) (batch, past + current tokens), "
            f"got {tuple(attention_mask.shape)}."
        )


def additive_attention_mask(
    padding_mask: torch.Tensor | None,
    batch_size: int,
    query_length: int,
    key_length: int,
    causal: bool,
    dtype: torch.dtype,
    device: torch.device,
    sequence_ids: torch.Tensor | None = None,
    past_length: int | torch.Tensor | None = None,
) -> torch.Tensor | None:
    """`[batch | 1, 1, q, k]` additive mask (0 = attend, dtype minimum = blocked), or None if nothing is blocked.

    Query i is token `past_length + i` of the keys (by default the last `query_length`; a static cache has more
    key slots than tokens, the unwritten ones after every query); causality compares those indices. With
    `sequence_ids` (`[batch, k]`, packed sequences) a token attends only within its own sequence.

    A row that may see no key at all (a padding token before a left-padded prompt, a fully padded sequence) is
    left unmasked, as transformers does for SDPA (`_unmask_unattended`): its output is padding either way, but a
    row of dtype minima loses the logits and the log-sum-exp to rounding (min + log(k) == min), and fused SDPA
    backward kernels then return gradients k times too large, which reach the shared weights through the loss
    of the first real token. Unmasked, the row's softmax is finite and exact in every implementation.
    """
    if past_length is None:
        past_length = key_length - query_length
    allowed = None
    if padding_mask is not None:
        check_attention_mask(padding_mask, batch_size, key_length)
        allowed = padding_mask[:, None, None, :].bool()
    if sequence_ids is not None:
        same = sequence_ids[:, None, -query_length:, None] == sequence_ids[:, None, None, :]
        allowed = same if allowed is None else allowed & same
    # one query over every key before it needs no mask; several queries, or slots after the query, do
    if causal and (query_length > 1 or not isinstance(past_length, int) or key_length > past_length + 1):
        rows = (torch.arange(query_length, device=device) + past_length)[:, None]
        causal_allowed = torch.arange(key_length, device=device)[None, :] <= rows
        allowed = causal_allowed[None, None] if allowed is None else allowed & causal_allowed
    if allowed is None:
        return None
    allowed = allowed | ~allowed.any(dim=-1, keepdim=True)  # rows that see no key see every key
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


def four_d_mask(attention_mask: torch.Tensor, batch_size: int, query_length: int, key_length: int, dtype):
    """A caller's `[batch | 1, 1 | heads, q, k]` mask (packed prompts, shared prefixes), bool (True = attend) or
    additive float, as the additive mask of `dtype` the layers take."""
    expected = (query_length, key_length)
    if tuple(attention_mask.shape[-2:]) != expected or attention_mask.shape[0] not in (1, batch_size):
        raise ValueError(
            f"A 4D attention_mask must have shape ({batch_size}, 1, {query_length}, {key_length}) (batch, 1, "
            f"queries, past + current tokens), got {tuple(attention_mask.shape)}."
        )
    if attention_mask.dtype == torch.bool:
        return torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device).masked_fill(
            ~attention_mask, torch.finfo(dtype).min
        )
    return attention_mask.to(dtype).clamp_min(torch.finfo(dtype).min)


class SynthesizerEmbeddings(nn.Module):
    """Token + learned absolute position (+ token type) embeddings, LayerNorm and dropout."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_position_embeddings = config.max_position_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.LongTensor | None,
        positions: Positions,
    ) -> torch.Tensor:
        if positions.key_length > self.max_position_embeddings:
            raise ValueError(
                f"Sequence length {positions.key_length} exceeds max_position_embeddings "
                f"({self.max_position_embeddings}). Truncate the inputs or use a model built for longer inputs."
            )
        if inputs_embeds is None:
            # a value-dependent check: eager only (torch.compile and torch.export / ONNX cannot branch on values)
            if (
                not torch.compiler.is_compiling()
                and input_ids.numel()
                and (input_ids.min() < 0 or input_ids.max() >= self.word_embeddings.num_embeddings)
            ):
                raise ValueError(
                    f"input_ids must lie in [0, {self.word_embeddings.num_embeddings}) (the vocab_size); got values "
                    f"in [{int(input_ids.min())}, {int(input_ids.max())}]. Is the tokenizer the model's own?"
                )
            inputs_embeds = self.word_embeddings(input_ids)
        if positions.query is None:
            position_ids = torch.arange(
                positions.past_length,
                positions.past_length + positions.query_length,
                device=inputs_embeds.device,
            ).unsqueeze(0)
        else:
            position_ids = positions.query
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(position_ids)
        embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class SynthesizerSelfAttention(nn.Module):
    """Self-attention whose logits are a learned mixture (eq. 8) of synthesizing functions.

    Values G(X), the output projection and the mixture weights alpha = softmax(mixture_logits) are shared;
    each synthesizer brings its own logits. Only token-dependent keys (dot-product components) are cached,
    so a pure-synthesizer decoder caches values only. Which kernel computes a call is decided in one place,
    `attention_kernels.choose_attention_path` (`attention_path` asks it).
    """

    def __init__(self, config: SynthesizerConfig, components: tuple[str, ...], layer_idx: int, causal: bool):
        super().__init__()
        self.config = config
        self.components = components
        self.layer_idx = layer_idx
        self.causal = causal
        self.is_causal = False  # the mask always carries causality (the synthetic logits need it too)
        self.num_heads = config.num_attention_heads
        self.synthesizers = nn.ModuleDict({name: SYNTHESIZERS[name](config) for name in components})
        self.mixture_logits = nn.Parameter(torch.zeros(len(components))) if len(components) > 1 else None
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob
        classes = [SYNTHESIZERS[name] for name in components]
        # components whose per-token features the layer computes once and caches: keys, or inputs
        self.token_key_components = [
            name for name, cls in zip(components, classes) if cls.uses_token_keys or cls.reads_neighbours
        ]
        self.bias_components = [name for name, cls in zip(components, classes) if cls.gives_bias]
        self.reads_neighbours = any(cls.reads_neighbours for cls in classes)  # packed or 4D masks: refused
        self.traits = LayerTraits(
            input_independent=all(cls.input_independent for cls in classes),
            shared_softmax_min_batch=max(cls.shared_softmax_min_batch for cls in classes),
            has_factors=any(not cls.gives_bias for cls in classes),
            has_bias=bool(self.bias_components),
        )
        # the batch-shared softmax, kept where it needs no gradient; the working tensors of its training step
        self._shared_weights_key, self._shared_weights = None, None
        self.kept_buffers = KeptBuffers()

    def train(self, mode: bool = True):
        if not mode:  # evaluation needs no training working tensors: give their memory back
            self.kept_buffers.clear()
        return super().train(mode)

    def synthesizer(self, name: str) -> Synthesizer:
        """The synthesizer `name` itself. An adapter library may wrap it to adapt its tables (PEFT's
        ParamWrapper applies the update around `forward` and hides every other method); `cached_per_token`,
        which reads no table, is then called on the module inside."""
        module = self.synthesizers[name]
        return module.get_base_layer() if hasattr(module, "get_base_layer") else module

    def synthesized_logits(
        self, hidden_states, positions: Positions, keys_by_component: dict
    ) -> SynthesizedLogits:
        """sum_c alpha_c S_c(X) in factored form (eq. 8)."""
        parts = [
            self.synthesizers[name](hidden_states, positions, keys_by_component.get(name))
            for name in self.components
        ]
        for name, part in zip(self.components, parts):  # the kernel was chosen from this trait
            if (part.query is None) != SYNTHESIZERS[name].gives_bias:
                raise TypeError(
                    f"Synthesizer {name!r} returned {'a bias' if part.query is None else 'query/key factors'} "
                    f"but its class sets gives_bias = {SYNTHESIZERS[name].gives_bias}: set gives_bias = True "
                    "exactly when forward returns SynthesizedLogits(bias=...) without query and key."
                )
        return combine_logits(parts, self.mixture_weights())

    def mixture_weights(self) -> torch.Tensor | None:
        """alpha of eq. 8: positive and summing to 1."""
        return None if self.mixture_logits is None else torch.softmax(self.mixture_logits, dim=0)

    def table_tensors(self, names) -> list[torch.Tensor]:
        """The parameters and buffers of the components `names`, and the mixture weights."""
        tensors = [
            t
            for name in names
            for t in (*self.synthesizers[name].parameters(), *self.synthesizers[name].buffers())
        ]
        return tensors if self.mixture_logits is None else [*tensors, self.mixture_logits]

    def attention_path(
        self, hidden_states: torch.Tensor, positions: Positions, batch_shared: bool = True
    ) -> AttentionPath:
        """The kernel that a call with these inputs takes (`batch_shared=False`: the path when the batch-shared
        softmax is not taken)."""
        grad_enabled = torch.is_grad_enabled()
        device_type = hidden_states.device.type
        call = AttentionCall(
            implementation=self.config._attn_implementation,
            batch_size=hidden_states.shape[0],
            training=self.training,
            dropout=self.dropout if self.training else 0.0,
            per_row_positions=positions.query is not None,
            grad_enabled=grad_enabled,
            bias_needs_gradient=grad_enabled
            and any(t.requires_grad for t in self.table_tensors(self.bias_components)),
            device_type=device_type,
            dtype=compute_dtype(hidden_states),
            empty=hidden_states.numel() == 0 or positions.key_length == 0,
            compiling=torch.compiler.is_compiling(),
        )
        traits = self.traits if batch_shared else dataclasses.replace(self.traits, input_independent=False)
        return choose_attention_path(traits, call)

    def batch_shared_output(
        self, hidden_states, positions: Positions, value: torch.Tensor, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The `BATCH_SHARED` kernel. P = softmax(S) is kept until a parameter changes (`_version`) where it needs
        no gradient: in inference, and in training when every table is frozen (`fixed_random`); a training step
        on CPU keeps its `[heads, q, k]` working tensors instead (`KeptBuffers`)."""
        tensors = self.table_tensors(self.components)
        needs_gradient = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        compiling = torch.compiler.is_compiling()
        on_cpu = hidden_states.device.type == "cpu" and compute_dtype(hidden_states) in (
            torch.float32,
            torch.float64,
        )
        if needs_gradient and not compiling and on_cpu:
            logits = self.synthesized_logits(hidden_states, positions, {})
            return kept_batch_shared_attention(
                logits, value, key_padding_mask, self.causal, self.kept_buffers
            )
        reuse = not needs_gradient and not compiling
        if reuse:
            key = (
                positions.past_length,
                positions.query_length,
                positions.key_length,
                hidden_states.dtype,
                hidden_states.device,
                tuple((id(t), t._version) for t in tensors),
            )
            if self._shared_weights_key != key:
                self._shared_weights_key, self._shared_weights = (
                    key,
                    self.shared_weights(hidden_states, positions),
                )
            weights = self._shared_weights
        else:
            weights = self.shared_weights(hidden_states, positions)
        return batch_shared_attention(weights, value, key_padding_mask)

    def shared_weights(self, hidden_states, positions: Positions) -> torch.Tensor:
        """P = softmax(S) `[heads, q, k]` of the batch-shared logits."""
        logits = self.synthesized_logits(hidden_states, positions, {})
        # squeeze, not [0]: the backward of a view is a view, that of an index fills a zero tensor first
        shared = logits.bias.squeeze(0) if logits.bias is not None else 0.0
        if logits.query is not None:
            shared = shared + logits.query.squeeze(0) @ logits.key.squeeze(0).transpose(-1, -2)
        return shared_softmax(shared, self.causal, hidden_states.dtype)

    def values_and_keys(self, hidden_states, cache: Cache | None) -> tuple[torch.Tensor, dict]:
        """Values and each token-key component's keys (or inputs), with the cache's earlier tokens."""
        value = split_heads(self.value(hidden_states), self.num_heads)
        token_keys = [
            self.synthesizer(name).cached_per_token(hidden_states) for name in self.token_key_components
        ]
        if not token_keys:
            if cache is not None:  # no token-dependent keys: the cache keeps values only
                value = update_value_only(cache, value, self.layer_idx)
            return value, {}
        keys = torch.cat(token_keys, dim=-1)
        if cache is not None:
            self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
            keys, value = self_cache.update(keys, value, self.layer_idx)
        widths = [k.shape[-1] for k in token_keys]
        return value, dict(zip(self.token_key_components, keys.split(widths, dim=-1)))

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        positions: Positions,
        key_padding_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`attention_mask` is additive `[batch | 1, 1, q, k]`; `key_padding_mask` the same keys as `[batch, k]`."""
        batch, length, _ = hidden_states.shape
        value, keys_by_component = self.values_and_keys(hidden_states, cache)
        path = self.attention_path(hidden_states, positions)
        if path is AttentionPath.BATCH_SHARED:
            output = self.batch_shared_output(hidden_states, positions, value, key_padding_mask)
            if output is not None:
                warn_if_weights_asked(kwargs)
                return output.reshape(batch, length, -1), None
            path = self.attention_path(
                hidden_states, positions, batch_shared=False
            )  # underflow: the exact path
        logits = self.synthesized_logits(hidden_states, positions, keys_by_component)
        dropout = self.dropout if self.training else 0.0
        if logits.bias is not None and path is not AttentionPath.BIASED_FLASH:  # the bias joins the mask
            mask = logits.bias if attention_mask is None else logits.bias + attention_mask
            if mask.dtype == torch.float16:  # the only dtype where bias + minimum can overflow to -inf
                mask = mask.clamp_min(torch.finfo(mask.dtype).min)
            attention_mask = mask.expand(batch, -1, length, -1)
        if path is AttentionPath.BIAS_SOFTMAX:
            output, weights = softmax_attention(self, attention_mask, value, dropout)
        else:
            query, key, value = equal_widths(
                logits.query.expand(batch, -1, -1, -1), logits.key.expand(batch, -1, -1, -1), value
            )
            if path is AttentionPath.BIASED_FLASH:
                output, weights = biased_attention(query, key, value, logits.bias, attention_mask), None
            else:
                attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
                    self.config._attn_implementation, eager_attention_forward
                )
                output, weights = attention_interface(
                    self, query, key, value, attention_mask, dropout=dropout, scaling=1.0, **kwargs
                )
        if weights is None:
            warn_if_weights_asked(kwargs)
        value_width = self.value.out_features // self.num_heads
        if output.shape[-1] != value_width:  # zero value features added by `equal_widths`
            output = output[..., :value_width]
        if torch.compiler.is_exporting():
            # torch.export traces SDPA with a mask that needs a gradient (outside no_grad) as a kernel whose output
            # is already laid out [batch, q, heads, d], then decomposes it into one that is not: a view traced on
            # the first fails on the second. A copy holds on both.
            output = output.clone(memory_format=torch.contiguous_format)
        return output.reshape(batch, length, -1), weights


def compute_dtype(hidden_states: torch.Tensor) -> torch.dtype:
    """The dtype the attention computes in: autocast's where it is on (the projections then give it), else the
    hidden states'."""
    device_type = hidden_states.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return hidden_states.dtype


def warn_if_weights_asked(kwargs: dict) -> None:
    """`output_attentions=True` on a path that never forms the attention weights (SDPA, the fused bias and
    batch-shared kernels) returns no weights; say so and how to get them, as transformers' SDPA does."""
    if kwargs.get("output_attentions"):
        logger.warning_once(
            "output_attentions=True: the Synthesizer's sdpa attention paths do not form the attention weights, "
            "so none are returned. Load the model with attn_implementation='eager' (or call "
            "model.set_attn_implementation('eager')) to get them."
        )


class SynthesizerCrossAttention(nn.Module):
    """Dot-product cross-attention (the paper found it cannot be replaced by synthetic attention)."""

    def __init__(self, config: SynthesizerConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = False
        self.num_heads = config.num_attention_heads
        self.scaling = (config.hidden_size // config.num_attention_heads) ** -0.5
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
        cache: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        query = split_heads(self.query(hidden_states), self.num_heads)
        if cache is not None and cache.is_updated.get(self.layer_idx):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = layer.keys, layer.values
        else:
            key = split_heads(self.key(encoder_hidden_states), self.num_heads)
            value = split_heads(self.value(encoder_hidden_states), self.num_heads)
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            encoder_attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return output.reshape(batch, length, -1), weights


class SynthesizerLayer(GradientCheckpointingLayer):
    """Post-LayerNorm block: self-attention, optional cross-attention, feed-forward."""

    def __init__(
        self,
        config: SynthesizerConfig,
        components: tuple[str, ...],
        layer_idx: int,
        causal: bool = False,
        cross_attention: bool = False,
    ):
        super().__init__()
        self.self_attn = SynthesizerSelfAttention(config, components, layer_idx, causal)
        self.self_attn_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn = SynthesizerCrossAttention(config, layer_idx) if cross_attention else None
        if cross_attention:
            self.cross_attn_output = nn.Linear(config.hidden_size, config.hidden_size)
            self.cross_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    @accepts_old_cache_name
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        positions: Positions | None = None,
        key_padding_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attended, _ = self.self_attn(
            hidden_states, attention_mask, positions, key_padding_mask, cache, **kwargs
        )
        hidden_states = self.self_attn_layer_norm(
            hidden_states + self.dropout(self.self_attn_output(attended))
        )
        if self.cross_attn is not None:
            attended, _ = self.cross_attn(
                hidden_states, encoder_hidden_states, encoder_attention_mask, cache, **kwargs
            )
            hidden_states = self.cross_attn_layer_norm(
                hidden_states + self.dropout(self.cross_attn_output(attended))
            )
        feed_forward = self.output(self.activation(self.intermediate(hidden_states)))
        return self.output_layer_norm(hidden_states + self.dropout(feed_forward))


def attention_layers_of_another_variant(
    model: nn.Module, missing_keys: list[str], unexpected_keys: list[str]
) -> list[str]:
    """Layers whose checkpoint holds self-attention weights, but not those of the model's synthesizers.

    A layer with none of its attention weights in the checkpoint (a weightless or partial checkpoint) is not
    one: its weights are simply missing.
    """
    missing, mismatched = set(missing_keys), []
    layers: dict[str, set[str]] = {}
    for key in model.state_dict():
        if ".self_attn." in key:
            layers.setdefault(key.split(".self_attn.")[0], set()).add(key)
    # unexpected keys keep the checkpoint's naming, which may lack the head's prefix or have one more
    unexpected_layers = {key.split(".self_attn.")[0] for key in unexpected_keys if ".self_attn." in key}
    for layer, keys in layers.items():
        absent = keys & missing
        foreign = any(
            layer == other or layer.endswith("." + other) or other.endswith("." + layer)
            for other in unexpected_layers
        )
        if foreign or (absent and keys - absent):
            mismatched.append(layer)
    return mismatched


class SynthesizerPreTrainedModel(PreTrainedModel):
    config: SynthesizerConfig
    config_class = SynthesizerConfig
    base_model_prefix = "synthesizer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SynthesizerEmbeddings", "SynthesizerLayer"]
    # The heads average their own losses: the Trainer must not expect them to divide by num_items_in_batch.
    accepts_loss_kwargs = False
    _supports_sdpa = True
    _supports_flash_attn = False  # synthetic logits enter as an additive bias, which flash kernels refuse
    _supports_flex_attn = False
    _can_compile_fullgraph = False
    _can_record_outputs = {
        "hidden_states": SynthesizerLayer,
        "attentions": OutputRecorder(SynthesizerSelfAttention, index=1),
    }

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, but a checkpoint whose attention layers hold the weights of another
        variant or mixture (a `random` checkpoint loaded as `dense`, a mixture as one of its components), or an
        encoder-decoder loaded as a causal LM (`pipeline("text-generation")`), is an error, not randomly
        initialised weights and a warning. Any other missing weight follows the transformers contract:
        initialised, listed in the loading info and logged.
        """
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if isinstance(model, SynthesizerForCausalLM) and getattr(model.config, "is_encoder_decoder", False):
            raise ValueError(
                "The checkpoint is an encoder-decoder (SynthesizerForSeq2SeqLM): a decoder-only "
                "SynthesizerForCausalLM would start from random weights. Load it with AutoModelForSeq2SeqLM, or "
                "use pipeline('text2text-generation')."
            )
        if not kwargs.get("ignore_mismatched_sizes", False):
            layers = attention_layers_of_another_variant(model, info["missing_keys"], info["unexpected_keys"])
            if layers:
                raise ValueError(
                    f"The checkpoint does not match this model (attention_type={model.config.attention_type!r}): "
                    f"the self-attention of {', '.join(layers[:4])}{' ...' if len(layers) > 4 else ''} holds "
                    "weights of another attention variant. Load it with the config it was saved with, or pass "
                    "ignore_mismatched_sizes=True to initialise the differing weights anew."
                )
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with every head in the config's `auto_map` (transformers lists only
        the saved one), so any `AutoModelFor...` loads the folder with `trust_remote_code=True` where the package
        is not installed: a pretrained encoder is fine-tuned with another head."""
        if self._auto_class is not None:  # the modeling code is copied next to the weights
            self.config.auto_map = {
                "AutoConfig": f"configuration_synthesizer.{type(self.config).__name__}",
                **{
                    auto: f"modeling_synthesizer.{head.__name__}" for auto, head in AUTO_MODEL_CLASSES.items()
                },
            }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def create_masks_for_generate(
        self,
        config,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs,
    ) -> torch.Tensor | None:
        """What `generate()` hands the forward pass with a static cache: the 2D padding mask, widened to the
        cache's fixed number of slots (the ones not yet written blocked), so that every decoding step has the
        same shapes (no recompilation) while the positions can still count the real tokens. transformers' default
        would build a 4D mask, from which those positions cannot be read."""
        slots = static_key_slots(kwargs.get(CACHE_ARGUMENT))  # the cache, under the installed release's name
        if attention_mask is None or attention_mask.dim() != 2 or slots is None:
            return attention_mask
        return nn.functional.pad(attention_mask, (0, slots - attention_mask.shape[-1]))

    @torch.no_grad()
    def _init_weights(self, module):
        """Every raw Parameter is initialised here, so `from_pretrained` never leaves uninitialised memory."""
        super()._init_weights(module)
        if hasattr(module, "reset_synthesizer_parameters"):
            module.reset_synthesizer_parameters(self.config)
        elif isinstance(module, SynthesizerSelfAttention) and module.mixture_logits is not None:
            init.zeros_(module.mixture_logits)
        elif isinstance(module, SynthesizerLMPredictionHead):
            init.zeros_(module.bias)


def compute_positions(
    attention_mask: torch.Tensor | None,
    position_ids: torch.LongTensor | None,
    past_length: int | torch.Tensor,
    query_length: int,
    key_length: int,
    causal: bool,
    device: torch.device | None = None,
) -> Positions:
    """Positions of the current queries and all keys.

    Given `position_ids` (and no cache) they are the positions of every token, queries and keys alike. In a
    decoder with padding before a real token (left or inner padding), a token's position otherwise counts only
    the real tokens before it (`cumsum(attention_mask) - 1`), so a padded prompt sees the same synthesized
    rows and position embeddings as the same prompt alone. Encoders use the sequence index, as BERT does.
    A static cache gives `past_length` as a tensor: the query positions are then a tensor too (no Python
    integer that would change at every decoding step), and the keys are its `key_length` slots.
    """
    static = not isinstance(past_length, int) or key_length != past_length + query_length
    key_positions, slots = None, None
    if position_ids is not None and not static and past_length == 0:
        key_positions = position_ids
    elif causal and attention_mask is not None and attention_mask.dim() == 2:
        mask = attention_mask.long()
        if torch.compiler.is_compiling() or bool((mask[:, 1:] > mask[:, :-1]).any()):  # a token after padding
            key_positions = (mask.cumsum(-1) - 1).clamp_min(0)
    if static:
        # the slots of the current tokens in the cache: past_length, ..., past_length + query_length - 1
        slots = torch.arange(query_length, device=device) + (
            past_length if isinstance(past_length, int) else past_length.reshape(-1).to(device)
        )
        if position_ids is None:
            position_ids = slots[None] if key_positions is None else key_positions.index_select(1, slots)
    elif position_ids is None and key_positions is not None:
        position_ids = key_positions[:, past_length : past_length + query_length]
    key_mask = attention_mask.bool() if attention_mask is not None and attention_mask.dim() == 2 else None
    return Positions(
        past_length,
        query_length,
        key_length,
        query=position_ids,
        key=key_positions,
        key_mask=key_mask,
        causal=causal,
        slots=slots if static else None,
    )


def packed_sequence_ids(position_ids: torch.LongTensor) -> torch.LongTensor | None:
    """Which packed sequence each token belongs to (`[batch, length]`), when `position_ids` restart within a
    row, as `DataCollatorWithFlattening` packs them (padding-free training); None for one sequence a row."""
    steps = torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1)
    sequences = (steps != 1).cumsum(-1)
    if not torch.compiler.is_compiling() and not bool(sequences[:, -1].any()):
        return None
    return sequences


def embed_and_mask(
    stack: nn.Module,
    input_ids: torch.LongTensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.LongTensor | None,
    token_type_ids: torch.LongTensor | None,
    past_length: int | torch.Tensor,
    causal: bool,
    key_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, Positions, torch.Tensor | None]:
    """The prologue both stacks share: check the inputs, place the tokens, embed them and build the
    self-attention mask (padding; causality in a decoder; packed sequences when `position_ids` restart and
    no mask is given; a caller's 4D mask as given). Returns hidden states, the additive mask, the positions and
    the key padding mask. `key_length` is the number of key slots when a static cache fixes it (more than the
    `past_length + query length` tokens; a 2D mask may cover the tokens only: the slots after are blocked)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Specify exactly one of input_ids or inputs_embeds.")
    reference = input_ids if input_ids is not None else inputs_embeds
    if reference.dim() != (2 if input_ids is not None else 3):
        name, shape = (
            ("input_ids", "[batch, length]")
            if input_ids is not None
            else ("inputs_embeds", "[batch, length, hidden]")
        )
        raise ValueError(
            f"{name} must be {shape}, got shape {tuple(reference.shape)}: add the batch dimension "
            f"({name}[None], or tokenizer(..., return_tensors='pt'))."
        )
    batch, length = reference.shape[:2]
    if batch == 0 or length == 0:
        raise ValueError(f"Empty input: got a batch of shape {tuple(reference.shape[:2])}.")
    static_slots = key_length is not None
    if not static_slots:
        key_length = past_length + length
    custom_mask = attention_mask is not None and attention_mask.dim() == 4
    if custom_mask and any(layer.self_attn.reads_neighbours for layer in stack.layers):
        raise ValueError(
            "Convolutional synthesizers do not take a 4D attention_mask: their windows read the neighbouring "
            "tokens whatever it says. Pass a 2D padding mask."
        )
    if attention_mask is not None and not custom_mask:
        if static_slots and attention_mask.shape[-1] < key_length:
            # a static cache's slots past the tokens seen so far hold nothing yet
            attention_mask = nn.functional.pad(attention_mask, (0, key_length - attention_mask.shape[-1]))
        check_attention_mask(attention_mask, batch, key_length)
        if not torch.compiler.is_compiling() and bool(attention_mask.all()):
            attention_mask = None  # nothing is masked: the unmasked fast paths give the same result
    positions = compute_positions(
        None if custom_mask else attention_mask,
        position_ids,
        past_length,
        length,
        key_length,
        causal=causal,
        device=reference.device,
    )
    if custom_mask and positions.query is None:  # per-row positions: the batch-shared paths do not apply
        positions.query = torch.arange(length, device=reference.device)[None] + past_length
    hidden_states = stack.embeddings(input_ids, inputs_embeds, token_type_ids, positions)
    if custom_mask:
        return (
            hidden_states,
            four_d_mask(attention_mask, batch, length, key_length, hidden_states.dtype),
            positions,
            None,
        )
    sequences = None
    if attention_mask is None and position_ids is not None and not static_slots and past_length == 0:
        sequences = packed_sequence_ids(position_ids)
        if sequences is not None and any(layer.self_attn.reads_neighbours for layer in stack.layers):
            raise ValueError(
                "Packed sequences (position_ids that restart within a row) are not supported with convolutional "
                "synthesizers, whose windows would cross the sequence boundaries; pad the batch instead."
            )
    mask = additive_attention_mask(
        attention_mask,
        batch,
        length,
        key_length,
        causal,
        hidden_states.dtype,
        hidden_states.device,
        sequences,
        past_length,
    )
    key_padding_mask = attention_mask.bool() if attention_mask is not None else None
    return hidden_states, mask, positions, key_padding_mask


class SynthesizerModel(SynthesizerPreTrainedModel):
    """The bidirectional Synthesizer encoder (BERT layout), with an optional pooler."""

    def __init__(
        self,
        config: SynthesizerConfig,
        add_pooling_layer: bool = True,
    ):
        super().__init__(config)
        self.embeddings = SynthesizerEmbeddings(config)
        self.layers = nn.ModuleList(
            SynthesizerLayer(config, components, idx)
            for idx, components in enumerate(config.layer_attention_types())
        )
        self.pooler = SynthesizerPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        hidden_states, mask, positions, key_padding_mask = embed_and_mask(
            self,
            input_ids,
            inputs_embeds,
            attention_mask,
            position_ids,
            token_type_ids,
            past_length=0,
            causal=False,
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, positions, key_padding_mask, **kwargs)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states, pooler_output=pooled
        )


class SynthesizerDecoder(SynthesizerPreTrainedModel):
    """Causal Synthesizer stack: the causal LM on its own, the decoder (with cross-attention) in seq2seq."""

    # static caches: tensor positions, fixed mask shapes, no graph break (tests/test_static_cache.py)
    _can_compile_fullgraph = True

    _can_record_outputs = {
        "hidden_states": SynthesizerLayer,
        "attentions": OutputRecorder(SynthesizerSelfAttention, index=1),
        "cross_attentions": OutputRecorder(SynthesizerCrossAttention, index=1),
    }

    def __init__(
        self,
        config: SynthesizerConfig,
        cross_attention: bool = False,
    ):
        super().__init__(config)
        self.embeddings = SynthesizerEmbeddings(config)
        # In an encoder-decoder the decoder has its own attention types; a decoder-only LM uses the main ones.
        layer_types = config.layer_attention_types(decoder=cross_attention)
        self.layers = nn.ModuleList(
            SynthesizerLayer(config, components, idx, causal=True, cross_attention=cross_attention)
            for idx, components in enumerate(layer_types)
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    @accepts_old_cache_name
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        if use_cache and cache is None:
            cache_config = self.config.get_text_config(decoder=True)
            cache = (
                EncoderDecoderCache(DynamicCache(config=cache_config), DynamicCache(config=cache_config))
                if encoder_hidden_states is not None
                else DynamicCache(config=cache_config)
            )
        hidden_states, mask, positions, key_padding_mask = embed_and_mask(
            self,
            input_ids,
            inputs_embeds,
            attention_mask,
            position_ids,
            None,
            past_length=cache.get_seq_length() if cache is not None else 0,
            causal=True,
            key_length=static_key_slots(cache),
        )
        length = hidden_states.shape[1]
        if encoder_hidden_states is not None:
            encoder_attention_mask = additive_attention_mask(
                encoder_attention_mask,
                hidden_states.shape[0],
                length,
                encoder_hidden_states.shape[1],
                False,
                hidden_states.dtype,
                hidden_states.device,
            )
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                mask,
                positions,
                key_padding_mask,
                encoder_hidden_states,
                encoder_attention_mask,
                **{CACHE_ARGUMENT: cache},
                **kwargs,
            )
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states, **{CACHE_ARGUMENT: cache if use_cache else None}
        )


class SynthesizerPooler(nn.Module):
    """tanh(W h_[CLS]) as in BERT, for sentence-level heads."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class SynthesizerLMPredictionHead(nn.Module):
    """Transform (dense + activation + LayerNorm) then a vocabulary projection tied to the input embeddings."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))


class SynthesizerForMaskedLM(SynthesizerPreTrainedModel):
    _tied_weights_keys = {
        "lm_head.decoder.weight": "synthesizer.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.synthesizer = SynthesizerModel(config, add_pooling_layer=False)
        self.lm_head = SynthesizerLMPredictionHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings
        self.lm_head.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        outputs = self.synthesizer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        loss = None
        if labels is not None:
            check_labels(labels, hidden_states.shape[:2], "token")
            if self.config.sparse_prediction:
                labelled = labels != -100
                hidden_states, labels = hidden_states[labelled], labels[labelled]
        logits = self.lm_head(hidden_states)
        if labels is not None:
            loss = token_cross_entropy(logits, labels)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over `[..., classes]` logits and `[...]` labels, -100 ignored (already aligned)."""
    check_labels(labels, logits.shape[:-1], "token")
    return CrossEntropyLoss()(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))


def classifier_dropout(config: SynthesizerConfig) -> nn.Dropout:
    """`classifier_dropout`, falling back to `hidden_dropout_prob`, as in BERT."""
    probability = config.classifier_dropout
    return nn.Dropout(config.hidden_dropout_prob if probability is None else probability)


def check_labels(labels: torch.Tensor, expected_shape: tuple[int, ...] | torch.Size, kind: str) -> None:
    """Clear errors for labels of the wrong shape or dtype instead of a deep loss-function failure."""
    if tuple(labels.shape) != tuple(expected_shape):
        raise ValueError(f"{kind} labels must have shape {tuple(expected_shape)}, got {tuple(labels.shape)}.")
    if labels.is_floating_point():
        raise ValueError(f"{kind} labels must be integer class ids (torch.long), got {labels.dtype}.")


def sequence_classification_loss(config: SynthesizerConfig, logits: torch.Tensor, labels: torch.Tensor):
    """Regression (num_labels == 1), single-label or multi-label loss, chosen as BERT does
    (from `config.problem_type`, else from num_labels and the label dtype; the config is not modified)."""
    problem_type = config.problem_type
    if problem_type is None:
        if config.num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if labels.shape[0] != logits.shape[0] or labels.numel() != logits.numel():
            raise ValueError(
                f"regression labels must have one value per output, shape ({logits.shape[0]},) or "
                f"{tuple(logits.shape)}; got {tuple(labels.shape)}."
            )
        return MSELoss()(logits.view(-1), labels.reshape(-1).to(logits.dtype))
    if problem_type == "single_label_classification":
        check_labels(labels.view(-1), (logits.shape[0],), "classification")
        return CrossEntropyLoss()(logits.view(-1, config.num_labels), labels.view(-1))
    if tuple(labels.shape) != tuple(logits.shape):
        raise ValueError(
            f"multi-label labels must have shape {tuple(logits.shape)}, got {tuple(labels.shape)}."
        )
    return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


class SynthesizerForSequenceClassification(SynthesizerPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear. Regression when num_labels == 1, multi-label via problem_type."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.synthesizer = SynthesizerModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        outputs = self.synthesizer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class SynthesizerForTokenClassification(SynthesizerPreTrainedModel):
    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.synthesizer = SynthesizerModel(config, add_pooling_layer=False)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        outputs = self.synthesizer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class SynthesizerForMultipleChoice(SynthesizerPreTrainedModel):
    """Scores each (context, choice) pair with the pooled [CLS]; inputs are `[batch, num_choices, length]`."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.synthesizer = SynthesizerModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultipleChoiceModelOutput:
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None or reference.dim() < 3:
            raise ValueError(
                "SynthesizerForMultipleChoice expects inputs of shape (batch, num_choices, length)."
            )
        num_choices = reference.shape[1]

        def flat(x):
            return None if x is None else x.reshape(-1, *x.shape[2:])

        outputs = self.synthesizer(
            flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=flat(inputs_embeds),
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = None
        if labels is not None:
            check_labels(labels, logits.shape[:1], "multiple-choice")
            loss = CrossEntropyLoss()(logits, labels)
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class SynthesizerForQuestionAnswering(SynthesizerPreTrainedModel):
    """Extractive QA: start/end logits per token, loss averaged over start and end as in BERT."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.synthesizer = SynthesizerModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        outputs = self.synthesizer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.shape[1]
            loss_fn = CrossEntropyLoss(ignore_index=ignored)
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (loss_fn(start_logits, start) + loss_fn(end_logits, end)) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits.contiguous(),
            end_logits=end_logits.contiguous(),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class SynthesizerForCausalLM(SynthesizerPreTrainedModel, GenerationMixin):
    """Decoder-only Synthesizer LM (the paper's LM1B setting). Labels are shifted inside, as in GPT-2."""

    # static caches: tensor positions, fixed mask shapes, no graph break (tests/test_static_cache.py)
    _can_compile_fullgraph = True

    _tied_weights_keys = {"lm_head.weight": "synthesizer.embeddings.word_embeddings.weight"}

    def __init__(self, config: SynthesizerConfig):
        config.is_decoder = True
        super().__init__(config)
        self.synthesizer = SynthesizerDecoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    @can_return_tuple
    @accepts_old_cache_name
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithCrossAttentions:
        """`labels` are shifted inside (token t predicts t + 1); `shift_labels` (a keyword argument), if given,
        are the targets already aligned with the logits, as sequence and context parallelism pass them, and take
        precedence. It is not a named parameter, as in transformers' own causal LMs: the Trainer takes every
        named `*label*` parameter for a label it must find in each batch, and computes no evaluation loss
        without it."""
        shift_labels = kwargs.pop("shift_labels", None)
        outputs = self.synthesizer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        loss = None
        if shift_labels is not None:  # already aligned with the logits (sequence/context parallel shards)
            check_labels(shift_labels, logits.shape[:2], "language-model shift_labels")
            loss = token_cross_entropy(logits, shift_labels)
        elif labels is not None:
            check_labels(labels, logits.shape[:2], "language-model")
            loss = token_cross_entropy(logits[:, :-1], labels[:, 1:])
        return CausalLMOutputWithCrossAttentions(
            **{CACHE_ARGUMENT: output_cache(outputs)},
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def use_as_encoder_decoder(config: SynthesizerConfig) -> None:
    """Mark the config as an encoder-decoder's; the decoder starts from the pad token unless told otherwise."""
    config.is_encoder_decoder = True
    if config.decoder_start_token_id is None:
        config.decoder_start_token_id = config.pad_token_id


class SynthesizerSeq2SeqModel(SynthesizerPreTrainedModel):
    """The encoder-decoder without a head (as `BartModel`): shared embeddings, a `SynthesizerModel` encoder
    with `attention_type` and a `SynthesizerDecoder` with `decoder_attention_type` and dot-product
    cross-attention. Returns the decoder states and the encoder outputs."""

    # static caches: tensor positions, fixed mask shapes, no graph break (tests/test_static_cache.py)
    _can_compile_fullgraph = True

    base_model_prefix = "model"  # what the LM head calls it, so that either loads the other's checkpoint
    _tied_weights_keys = {
        "encoder.embeddings.word_embeddings.weight": "shared.weight",
        "decoder.embeddings.word_embeddings.weight": "shared.weight",
    }

    def __init__(self, config: SynthesizerConfig):
        use_as_encoder_decoder(config)
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        # their token embeddings are tied to `shared` by `_tied_weights_keys`, as in BART
        self.encoder = SynthesizerModel(config, add_pooling_layer=False)
        self.decoder = SynthesizerDecoder(config, cross_attention=True)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.set_input_embeddings(value)
        self.decoder.set_input_embeddings(value)

    @can_return_tuple
    @accepts_old_cache_name
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            **{CACHE_ARGUMENT: output_cache(decoder_outputs)},
            last_hidden_state=decoder_outputs.last_hidden_state,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class SynthesizerForSeq2SeqLM(SynthesizerPreTrainedModel, GenerationMixin):
    """Encoder-decoder Synthesizer LM: `SynthesizerSeq2SeqModel` (BART-like post-LN layout) and an LM head
    tied to the shared embeddings.

    Encoder self-attention uses `attention_type`, decoder self-attention `decoder_attention_type`;
    cross-attention is dot-product. The loss is computed here (labels are NOT shifted: the decoder
    inputs are the labels shifted right, as in T5/BART).
    """

    # static caches: tensor positions, fixed mask shapes, no graph break (tests/test_static_cache.py)
    _can_compile_fullgraph = True

    base_model_prefix = "model"
    _tied_weights_keys = {
        "model.encoder.embeddings.word_embeddings.weight": "model.shared.weight",
        "model.decoder.embeddings.word_embeddings.weight": "model.shared.weight",
        "lm_head.weight": "model.shared.weight",
    }
    # checkpoints saved before the base model existed hold `shared.`, `encoder.`, `decoder.` at the top
    _earlier_layout = {r"^(shared|encoder|decoder)\.": r"model.\1."}

    def __init__(self, config: SynthesizerConfig):
        use_as_encoder_decoder(config)  # before the generation config is derived from it
        super().__init__(config)
        self.model = SynthesizerSeq2SeqModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Also loads checkpoints of the earlier layout (no `model.` prefix)."""
        kwargs.setdefault("key_mapping", cls._earlier_layout)
        return super().from_pretrained(*args, **kwargs)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self.shift_right(labels)

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs: decoder_start_token_id, then the labels without the last token (-100 -> pad)."""
        if self.config.decoder_start_token_id is None or self.config.pad_token_id is None:
            raise ValueError(
                "Set config.decoder_start_token_id and config.pad_token_id to train a seq2seq model."
            )
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    @can_return_tuple
    @accepts_old_cache_name
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.shift_right(labels)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = token_cross_entropy(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(
            **{CACHE_ARGUMENT: output_cache(outputs)},
            loss=loss,
            logits=logits,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


# The Auto class of every head: the package registers them (`synthesizer_hf/__init__.py`) and `save_pretrained`
# lists them all in `auto_map`.
AUTO_MODEL_CLASSES: dict[str, type[SynthesizerPreTrainedModel]] = {
    "AutoModel": SynthesizerModel,
    "AutoModelForMaskedLM": SynthesizerForMaskedLM,
    "AutoModelForSequenceClassification": SynthesizerForSequenceClassification,
    "AutoModelForTokenClassification": SynthesizerForTokenClassification,
    "AutoModelForMultipleChoice": SynthesizerForMultipleChoice,
    "AutoModelForQuestionAnswering": SynthesizerForQuestionAnswering,
    "AutoModelForCausalLM": SynthesizerForCausalLM,
    "AutoModelForSeq2SeqLM": SynthesizerForSeq2SeqLM,
}

__all__ = [
    "AUTO_MODEL_CLASSES",
    "SynthesizerDecoder",
    "SynthesizerForCausalLM",
    "SynthesizerForMaskedLM",
    "SynthesizerForMultipleChoice",
    "SynthesizerForQuestionAnswering",
    "SynthesizerForSeq2SeqLM",
    "SynthesizerForSequenceClassification",
    "SynthesizerForTokenClassification",
    "SynthesizerModel",
    "SynthesizerPreTrainedModel",
    "SynthesizerSeq2SeqModel",
]
