"""Synthesizing functions: each turns hidden states (and token positions) into per-head attention logits.

A synthesizer returns its logits in factored form, S = query @ key^T + bias (any part may be absent),
so that an attention layer can sum several of them (a mixture, eq. 8) and hand the result to ONE
`scaled_dot_product_attention` call: the queries and keys of all components are concatenated along the
feature axis and the biases are added to the attention mask. Dot-product attention is just one more
synthesizer here (S(X) = F_Q(X) F_K(X)^T, paper section 3.2).

Shapes: `[batch | 1, heads, query_length | key_length, features]`. Tables indexed by position (R, R1, R2,
the dense W2 and b2) are stored as `[heads, L, ...]` so that one helper selects their rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from transformers import initialization as init

if TYPE_CHECKING:  # the config derives its names and checks from this module
    from .configuration_synthesizer import SynthesizerConfig


@dataclass
class SynthesizedLogits:
    """Attention logits S = query @ key^T + bias of one synthesizer (already scaled)."""

    query: torch.Tensor | None = None
    key: torch.Tensor | None = None
    bias: torch.Tensor | None = None


@dataclass
class Positions:
    """Absolute positions of the queries and keys of one forward pass.

    `query`/`key` are `[batch, length]` tensors when positions differ from the sequence index (left-padded
    decoding), else None, meaning queries are `past_length .. past_length + query_length - 1` and keys
    `0 .. key_length - 1`: the synthesizers then slice their tables instead of gathering.
    """

    past_length: int
    query_length: int
    key_length: int
    query: torch.LongTensor | None = None
    key: torch.LongTensor | None = None
    key_mask: torch.Tensor | None = None  # `[batch, key_length]`, True at real tokens (None: all real)
    causal: bool = False  # a decoder: a token sees no later token
    # a static cache: the key slots of the queries (`[query_length]`), the slots after them not yet written
    slots: torch.LongTensor | None = None


def select_positions(table: torch.Tensor, positions: torch.LongTensor | None, start: int, length: int):
    """Rows of a `[heads, L, ...]` table for the given positions, as `[batch | 1, heads, length, ...]`."""
    if positions is None and torch.compiler.is_exporting():
        # torch.export: slicing the L rows to a symbolic length fixes the exported graph to length < L or = L
        # (guards on the slice's layout); rows gathered by index serve every length up to L
        positions = torch.arange(start, start + length, device=table.device)[None]
    if positions is None:
        if start == 0 and length == table.shape[1]:  # the whole table: no slice (its backward fills a copy)
            return table.unsqueeze(0)
        return table[:, start : start + length].unsqueeze(0)
    return table[:, positions].movedim(1, 0)


def select_columns(logits: torch.Tensor, positions: torch.LongTensor | None, length: int) -> torch.Tensor:
    """Last-axis entries of `[batch | 1, heads, q, L]` logits for the key positions."""
    if positions is None and torch.compiler.is_exporting():  # torch.export: gathered, as in select_positions
        positions = torch.arange(length, device=logits.device)[None]
    if positions is None:
        return logits if length == logits.shape[-1] else logits[..., :length]
    batch, heads, queries = max(logits.shape[0], positions.shape[0]), logits.shape[1], logits.shape[2]
    index = positions[:, None, None, :].expand(batch, heads, queries, -1)
    return logits.expand(batch, -1, -1, -1).gather(-1, index)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """`[batch, length, heads * e]` -> `[batch, heads, length, e]`."""
    return x.view(*x.shape[:-1], num_heads, -1).transpose(1, 2)


# Every synthesizer class that sets a `name`, by that name: the one source of the variant names, their
# traits and their config checks (configuration, modeling, docs and tools all read it).
SYNTHESIZERS: dict[str, type[Synthesizer]] = {}


class Synthesizer(nn.Module):
    """Base class of the synthesizing functions. A subclass with a `name` registers itself in SYNTHESIZERS;
    its class attributes are the traits everything else derives from."""

    name: ClassVar[str | None] = None  # the `attention_type` spelling
    aliases: ClassVar[tuple[str, ...]] = ()  # the paper's abbreviations and other spellings (any case)
    paper_name: ClassVar[str] = ""  # as the papers name it
    logits: ClassVar[str] = ""  # one line: the logits S(X) of one head
    summary: ClassVar[str] = ""  # one line: what that means
    uses_token_keys: ClassVar[bool] = False  # keys come from the key tokens (cached; can compare two tokens)
    reads_neighbours: ClassVar[bool] = False  # F reads nearby tokens too: the layer caches its inputs
    length_bound: ClassVar[bool] = False  # parameters per position: the synthesizer length L bounds inputs
    input_independent: ClassVar[bool] = False  # logits ignore the input: one softmax serves the whole batch
    gives_bias: ClassVar[bool] = False  # its logits are a `[q, k]` table (bias), not query/key factors
    # training batches smaller than this take the per-row path instead of the batch-shared softmax
    shared_softmax_min_batch: ClassVar[int] = 1
    config_fields: ClassVar[tuple[str, ...]] = ()  # the size fields of the config it reads (positive ints)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            return
        missing = [trait for trait in ("paper_name", "logits", "summary") if not cls.__dict__.get(trait)]
        if missing:
            raise TypeError(f"Synthesizer {cls.name!r} must describe itself: set {', '.join(missing)}.")
        cls.aliases = cls.__dict__.get(
            "aliases", ()
        )  # a subclass is another variant: never its parent's alias
        SYNTHESIZERS[cls.name] = cls

    @classmethod
    def check_config(cls, config: SynthesizerConfig) -> None:
        """Raise a ValueError naming the field for sizes this synthesizer cannot be built with. Run only for
        the synthesizers a config uses."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.synthesizer_length = config.synthesizer_length

    def cached_per_token(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """What the layer computes once per token and caches for decoding, `[batch, heads, length, e]`, handed back
        to `forward` for every token so far: the keys (`uses_token_keys`) or the inputs (`reads_neighbours`)."""
        raise NotImplementedError

    def forward(
        self, hidden_states: torch.Tensor, positions: Positions, keys: torch.Tensor | None
    ) -> SynthesizedLogits:
        raise NotImplementedError

    def reset_synthesizer_parameters(self, config: SynthesizerConfig) -> None:
        """Initialise raw Parameters (Linear layers are initialised by the PreTrainedModel)."""

    def start_with_zero_logits(self) -> None:
        """Make the logits exactly zero while keeping them trainable: zero the factor nearest the output, whose
        gradient is then non-zero at once (the factors behind it get gradients from the second step on).

        Added to a trained attention layer (a warm start from dot-product attention), such a synthesizer
        changes nothing at first and learns from there.
        """
        raise ValueError(f"{type(self).__name__} has no zero-logit start that still learns.")


class DotProductSynthesizer(Synthesizer):
    """Standard attention: S = (X W_Q)(X W_K)^T / sqrt(d_h)."""

    name = "dot"
    aliases = ("v", "vanilla", "dot_product", "transformer")
    paper_name = "Transformer (dot-product attention)"
    logits = "(X W_Q)(X W_K)^T / sqrt(d_h)"
    summary = "token-token attention"

    uses_token_keys = True

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)

    def cached_per_token(self, hidden_states):
        return split_heads(self.key(hidden_states), self.num_heads)  # the keys

    def forward(self, hidden_states, positions, keys):
        query = split_heads(self.query(hidden_states), self.num_heads) * self.head_dim**-0.5
        return SynthesizedLogits(query=query, key=keys)


class SymmetricDotProductSynthesizer(Synthesizer):
    """Symmetric attention (Courtois et al., 2024): one projection for queries and keys, S = Q Q^T / sqrt(d_h)."""

    name = "symmetric_dot"
    aliases = ("symmetric",)
    paper_name = "Symmetric dot-product attention (Courtois et al., 2024)"
    logits = "(X W_Q)(X W_Q)^T / sqrt(d_h)"
    summary = "dot-product attention with keys = queries (no W_K)"

    uses_token_keys = True

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.query = nn.Linear(config.hidden_size, config.hidden_size)

    def cached_per_token(self, hidden_states):
        return split_heads(self.query(hidden_states), self.num_heads)  # the keys, which are the queries

    def start_with_zero_logits(self):
        raise ValueError(
            "symmetric_dot cannot start with zero logits and still learn: S = Q Q^T has a zero gradient at Q = 0."
        )

    def current_queries(self, hidden_states, positions, keys):
        """The queries equal the keys of the current tokens: the last `query_length` cached keys, or with a
        static cache (whose slots after the current tokens are not yet written) the keys at their slots."""
        if positions.slots is not None:
            return keys.index_select(2, positions.slots)
        return keys[:, :, keys.shape[2] - hidden_states.shape[1] :]

    def forward(self, hidden_states, positions, keys):
        query = self.current_queries(hidden_states, positions, keys) * self.head_dim**-0.5
        return SynthesizedLogits(query=query, key=keys)


class PairwiseDotProductSynthesizer(SymmetricDotProductSynthesizer):
    """Symmetric attention with a learned pairwise coefficient matrix per head: S = Q P_h Q^T / sqrt(d_h)."""

    name = "pairwise_dot"
    aliases = ("pairwise",)
    paper_name = "Symmetric attention with pairwise coefficient (Courtois et al., 2024)"
    logits = "(X W_Q) P_h (X W_Q)^T / sqrt(d_h)"
    summary = "symmetric projection with a learned d_h x d_h matrix per head"

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        self.pairwise_coefficients = nn.Parameter(torch.empty(self.num_heads, self.head_dim, self.head_dim))

    def forward(self, hidden_states, positions, keys):
        query = self.current_queries(hidden_states, positions, keys) @ self.pairwise_coefficients.unsqueeze(0)
        return SynthesizedLogits(query=query * self.head_dim**-0.5, key=keys)

    def reset_synthesizer_parameters(self, config):
        init.normal_(self.pairwise_coefficients, mean=0.0, std=config.pairwise_initializer_range)

    def start_with_zero_logits(self):
        nn.init.zeros_(self.pairwise_coefficients)


class LengthBoundSynthesizer(Synthesizer):
    """A synthesizer with one parameter entry per position: refuses sequences longer than L."""

    config_fields = ("synthesizer_length",)

    length_bound = True

    @classmethod
    def check_config(cls, config):
        if config.synthesizer_length > config.max_position_embeddings:
            raise ValueError(
                f"synthesizer_length ({config.synthesizer_length}) cannot exceed max_position_embeddings "
                f"({config.max_position_embeddings}): longer inputs have no position embedding."
            )

    def check_length(self, positions: Positions) -> None:
        if positions.key_length > self.synthesizer_length:
            raise ValueError(
                f"Sequence length {positions.key_length} exceeds the synthesizer length "
                f"{self.synthesizer_length} of this {type(self).__name__}. Truncate the inputs "
                f"(e.g. tokenizer(..., truncation=True, max_length={self.synthesizer_length})) or build the "
                "model with a larger `synthesizer_length` (and `max_position_embeddings`)."
            )


class RandomSynthesizer(LengthBoundSynthesizer):
    """Random synthesizer (eq. 4): S = R, one learned `L x L` matrix per head, independent of the input."""

    name = "random"
    aliases = ("r",)
    paper_name = "Random"
    logits = "R, a learned L x L matrix (eq. 4)"
    summary = "attention weights that ignore the input: a learned global alignment per position"
    input_independent = True
    gives_bias = True

    def __init__(self, config: SynthesizerConfig, trainable: bool = True):
        super().__init__(config)
        shape = (self.num_heads, config.synthesizer_length, config.synthesizer_length)
        if trainable:
            self.random_logits = nn.Parameter(torch.empty(shape))
        else:  # a persistent buffer: saved and reloaded, but never trained (a frozen Parameter would thaw on load)
            self.register_buffer("random_logits", torch.empty(shape))

    def forward(self, hidden_states, positions, keys):
        self.check_length(positions)
        rows = select_positions(
            self.random_logits, positions.query, positions.past_length, positions.query_length
        )
        return SynthesizedLogits(bias=select_columns(rows, positions.key, positions.key_length))

    def reset_synthesizer_parameters(self, config):
        init.normal_(self.random_logits, mean=0.0, std=config.synthesizer_initializer_range)

    def start_with_zero_logits(self):
        nn.init.zeros_(self.random_logits)


class FixedRandomSynthesizer(RandomSynthesizer):
    """Fixed random synthesizer: R stays at its initial value (a buffer, still saved in the checkpoint)."""

    name = "fixed_random"
    aliases = ("fix", "fixed")
    paper_name = "Fixed Random"
    logits = "R, frozen at its initial value (a saved buffer)"
    summary = "a random, untrained alignment per position"

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config, trainable=False)

    def start_with_zero_logits(self):
        raise ValueError("fixed_random cannot start with zero logits and still learn: its R is frozen.")


class FactorizedRandomSynthesizer(LengthBoundSynthesizer):
    """Factorized random synthesizer (eq. 7): S = R1 R2^T with R1, R2 of shape `L x k` per head."""

    name = "factorized_random"
    aliases = ("fr",)
    paper_name = "Factorized Random"
    logits = "R1 R2^T, R1 and R2 of L x k (eq. 7)"
    summary = "a low-rank learned alignment that ignores the input"
    input_independent = True
    # Its logits are factors, which SDPA's fused kernel takes per row without an L x L tensor: in training,
    # materialising one [heads, L, L] softmax (and its backward) for the batch pays off only from 4 rows on
    # (small size, 1 CPU thread: 1.4x slower than per row at batch 1, L = 4096; 10% faster at batch 8, L = 512).
    shared_softmax_min_batch = 4
    config_fields = ("synthesizer_length", "factorized_random_rank")

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        if not config.factorized_random_rank <= config.synthesizer_length:
            raise ValueError(
                f"factorized_random_rank (k={config.factorized_random_rank}) must be at most "
                f"synthesizer_length ({config.synthesizer_length})."
            )

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        shape = (self.num_heads, config.synthesizer_length, config.factorized_random_rank)
        self.random_query_factors = nn.Parameter(torch.empty(shape))
        self.random_key_factors = nn.Parameter(torch.empty(shape))

    def forward(self, hidden_states, positions, keys):
        self.check_length(positions)
        query = select_positions(
            self.random_query_factors, positions.query, positions.past_length, positions.query_length
        )
        key = select_positions(self.random_key_factors, positions.key, 0, positions.key_length)
        return SynthesizedLogits(query=query, key=key)

    def reset_synthesizer_parameters(self, config):
        init.normal_(self.random_query_factors, mean=0.0, std=config.synthesizer_initializer_range)
        init.normal_(self.random_key_factors, mean=0.0, std=config.synthesizer_initializer_range)

    def start_with_zero_logits(self):
        nn.init.zeros_(self.random_key_factors)  # R2 = 0; R1 keeps its random init


def check_divisible_by_heads(config: SynthesizerConfig, field: str, variant: str) -> None:
    """The hidden features of the dense family are split into one slice per head (for W2_h)."""
    width = getattr(config, field)
    if width % config.num_attention_heads:
        raise ValueError(
            f"{field} ({width}) must be divisible by num_attention_heads ({config.num_attention_heads}) "
            f"for {variant}."
        )


def sequence_conv(
    conv: nn.Module, width: int, inputs: torch.Tensor, mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    """`conv` (of kernel `width`) over the tokens of `[batch, tokens, channels]` inputs, zeros outside the
    sequence and at padding; causal windows end at their token, others are centred.
    Returns `[batch, tokens, out_channels]`."""
    if mask is not None:
        inputs = inputs * mask[..., None].to(inputs.dtype)
    left = width - 1 if causal else (width - 1) // 2
    padded = nn.functional.pad(inputs.transpose(1, 2), (left, width - 1 - left))
    return conv(padded).transpose(1, 2)


# F's first map in the dense family (A.2, Table 8), by the name a variant gives as `feature_map`: W1 with a ReLU
# (the dense synthesizer), a gated linear unit, a d -> r -> hidden bottleneck, or a convolution over the tokens
# without or with a ReLU. The convolutions read neighbouring tokens; the others token i alone.
FEATURE_MAPS = ("relu_mlp", "glu", "bottleneck", "conv", "conv_relu")
CONVOLUTIONS = ("conv", "conv_relu")


class DenseSynthesizer(LengthBoundSynthesizer):
    """Dense synthesizer (eq. 1-3): S_i = W2_h relu(W1 x_i + b1)_h + b2_h, conditioned on token i alone.

    W1 maps d -> d for all heads together; each head maps its own d_h slice to L with W2_h. That gives
    Table 1's d^2 + d*L parameters at the cost of Q K^T (a full d -> heads*L map costs `heads` times more).
    In factored form the bias rides along as one more feature: query = [relu(W1 x)_h, 1] and
    key_j = [column j of W2_h, b2_h[j]], so the whole logit is one product (and fused kernels take it).

    The whole dense family of appendix A.2 is this class: a variant is a subclass that names F's first map
    (`feature_map`, one of FEATURE_MAPS), the config field of its width, and whether the second map W2_h reads
    the features of token i alone or of a window of tokens around it (a convolution of the width in
    `second_map_width_field`), and describes itself. `__init__` builds the chosen maps; their layers are
    attributes of the synthesizer itself, so their names are the checkpoint's keys.

    The convolutions see zeros outside the sequence and at padded positions, so padding never changes the rows
    of real tokens. In a decoder their windows end at the token (causal: no later token is read); in an encoder
    they are centred. The layer caches the inputs of these variants (`cached_per_token`), so cached decoding
    recomputes the windows of the new tokens exactly.
    """

    name = "dense"
    aliases = ("d",)
    paper_name = "Dense"
    logits = "W2_h relu(W1 X_i + b1)_h + b2_h (eq. 1-3)"
    summary = "each token predicts its attention row from itself alone, without looking at other tokens"
    config_fields = ("synthesizer_length", "dense_synthesizer_hidden_size")

    feature_map: ClassVar[str] = "relu_mlp"  # F's first map: one of FEATURE_MAPS
    hidden_width_field: ClassVar[str] = "dense_synthesizer_hidden_size"  # the width of its features
    second_map_width_field: ClassVar[str | None] = None  # W2_h reads a window this wide; None: token i alone

    def __init_subclass__(cls, **kwargs):
        if cls.feature_map not in FEATURE_MAPS:
            raise TypeError(
                f"{cls.__name__}.feature_map must be one of {FEATURE_MAPS}, not {cls.feature_map!r}."
            )
        # a trait the layer reads: cache this variant's inputs, as its rows read other tokens
        cls.reads_neighbours = cls.feature_map in CONVOLUTIONS or cls.second_map_width_field is not None
        super().__init_subclass__(**kwargs)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        check_divisible_by_heads(config, cls.hidden_width_field, cls.name)

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        width = getattr(config, self.hidden_width_field)
        if self.feature_map in ("relu_mlp", "glu"):
            self.dense = nn.Linear(config.hidden_size, width)
        if self.feature_map == "glu":
            self.gate = nn.Linear(config.hidden_size, width)
        if self.feature_map == "bottleneck":
            self.down = nn.Linear(config.hidden_size, config.synthesizer_bottleneck_size)
            self.up = nn.Linear(config.synthesizer_bottleneck_size, width)
        if self.feature_map in CONVOLUTIONS:
            # the width is kept here, not read off the conv: an adapter (PEFT's LoRA Conv1d) may replace the conv
            self.conv_width = config.synthesizer_conv_width
            self.conv = nn.Conv1d(config.hidden_size, width, self.conv_width)
        self.second_width = (
            1 if self.second_map_width_field is None else getattr(config, self.second_map_width_field)
        )
        features = width // self.num_heads * self.second_width
        self.position_weights = nn.Parameter(torch.empty(self.num_heads, config.synthesizer_length, features))
        self.position_bias = nn.Parameter(torch.empty(self.num_heads, config.synthesizer_length))

    def hidden_features(self, inputs: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """F's first map: `[batch, tokens, width]` features of `[batch, tokens, d]` inputs."""
        if self.feature_map == "relu_mlp":
            return torch.relu(self.dense(inputs))
        if self.feature_map == "glu":
            return self.dense(inputs) * torch.sigmoid(self.gate(inputs))
        if self.feature_map == "bottleneck":
            return torch.relu(self.up(self.down(inputs)))
        convolved = sequence_conv(self.conv, self.conv_width, inputs, mask, causal)
        return torch.relu(convolved) if self.feature_map == "conv_relu" else convolved

    def cached_per_token(self, hidden_states):
        return split_heads(
            hidden_states, self.num_heads
        )  # the inputs: new tokens' windows reach back over them

    def forward(self, hidden_states, positions, cached_inputs):
        self.check_length(positions)
        if self.reads_neighbours:
            hidden = self.window_features(positions, cached_inputs)
        else:
            hidden = split_heads(self.hidden_features(hidden_states, None, positions.causal), self.num_heads)
        query = torch.cat([hidden, hidden.new_ones(*hidden.shape[:-1], 1)], dim=-1)
        key_table = torch.cat([self.position_weights, self.position_bias.unsqueeze(-1)], dim=-1)
        key = select_positions(key_table, positions.key, 0, positions.key_length)
        return SynthesizedLogits(query=query, key=key)

    def window_features(self, positions: Positions, cached_inputs: torch.Tensor) -> torch.Tensor:
        """`[batch, heads, q, e * second_width]`: per query token, the features of the tokens W2_h reads."""
        # every input so far, cached ones included: [batch, k, d]
        inputs = cached_inputs.transpose(1, 2).flatten(2)
        mask = positions.key_mask
        if (
            positions.causal and positions.slots is None
        ):  # the new windows reach back `receptive_field` tokens
            start = max(0, inputs.shape[1] - positions.query_length - self.receptive_field())
            inputs, mask = inputs[:, start:], None if mask is None else mask[:, start:]
        hidden = self.hidden_features(inputs, mask, positions.causal)
        if mask is not None:
            hidden = hidden * mask[..., None].to(hidden.dtype)
        windows = self.second_map_windows(hidden, positions.causal)
        if (
            positions.slots is not None
        ):  # a static cache: the current tokens sit at their slots, not at the end
            return windows.index_select(2, positions.slots)
        return windows[:, :, windows.shape[2] - positions.query_length :]

    def receptive_field(self) -> int:
        """How many earlier tokens a token's row reads, through both maps."""
        first = self.conv_width - 1 if self.feature_map in CONVOLUTIONS else 0
        return first + self.second_width - 1

    def second_map_windows(self, hidden: torch.Tensor, causal: bool) -> torch.Tensor:
        """Per head, the hidden features of the `second_width` tokens the map to L reads, side by side:
        that map is then W2_h applied to them, a convolution in factored form. `[batch, heads, tokens, e * f]`."""
        width = self.second_width
        per_head = hidden.view(*hidden.shape[:2], self.num_heads, -1).transpose(1, 2)  # [batch, heads, t, e]
        if width == 1:
            return per_head
        left = width - 1 if causal else (width - 1) // 2
        padded = nn.functional.pad(per_head, (0, 0, left, width - 1 - left))
        return padded.unfold(2, width, 1).transpose(-1, -2).flatten(-2)

    def reset_synthesizer_parameters(self, config):
        init.normal_(self.position_weights, mean=0.0, std=config.initializer_range)
        init.zeros_(self.position_bias)

    def start_with_zero_logits(self):
        nn.init.zeros_(self.position_weights)  # W2 = 0 and b2 = 0; F's first map keeps its init
        nn.init.zeros_(self.position_bias)


class GLUSynthesizer(DenseSynthesizer):
    """Dense synthesizer with Gated Linear Units (Dauphin et al., 2017) in place of the ReLU layer (A.2):
    S_i = W2_h ((W1 x_i + b1) * sigmoid(V x_i + c))_h + b2_h.

    Our reading of "applying the GLU units as the synthesizing function": the GLU replaces the first,
    nonlinear layer of F, the map to L stays, so the row still depends on token i alone.
    """

    name = "glu"
    paper_name = "GLU (Table 8)"
    logits = "W2_h ((W1 X_i + b1) * sigmoid(V X_i + c))_h + b2_h"
    summary = "a dense synthesizer whose hidden layer is a gated linear unit"
    feature_map = "glu"


class BottleneckDenseSynthesizer(DenseSynthesizer):
    """Bottleneck + Dense (A.2): W1 becomes a d -> r -> d bottleneck (the paper's 512 -> 16 -> 512):
    S_i = W2_h relu(U (D x_i + b_D) + b_U)_h + b2_h, r = `synthesizer_bottleneck_size`.

    Our reading: "converting the 2 layered feed forward network to a bottleneck layer" factors its first
    layer through r dimensions; the ReLU and the map to L stay as in the dense synthesizer.
    """

    name = "bottleneck_dense"
    paper_name = "Bottleneck + Dense (Table 8)"
    logits = "W2_h relu(U (D X_i + b_D) + b_U)_h + b2_h, D: d -> r, U: r -> d"
    summary = "a dense synthesizer whose first layer passes through an r-dimensional bottleneck"
    config_fields = ("synthesizer_length", "dense_synthesizer_hidden_size", "synthesizer_bottleneck_size")
    feature_map = "bottleneck"


class ConvLinearSynthesizer(DenseSynthesizer):
    """Conv (f) Linear (A.2): a 1D convolution of width f in place of the 2-layer network's first layer and
    ReLU, then the linear map to L: S_i = W2_h Conv_f(X)_i,h + b2_h.

    Our reading of "applying a 1D convolution instead of a 2 layer nonlinear network": the name lists no
    ReLU (unlike ConvReluConv), so the row is a linear function of the f tokens around (or before) i.
    """

    name = "conv_linear"
    paper_name = "Conv Linear (Table 8)"
    logits = "W2_h Conv_f(X)_i,h + b2_h, f = synthesizer_conv_width"
    summary = "each token predicts its attention row from a window of f neighbouring tokens, linearly"
    config_fields = ("synthesizer_length", "dense_synthesizer_hidden_size", "synthesizer_conv_width")
    feature_map = "conv"


class ConvReluConvSynthesizer(DenseSynthesizer):
    """ConvReluConv (A.2): both layers of F are convolutions over the tokens, with a ReLU between:
    S_i = Conv_f2(relu(Conv_f1(X)))_i, the second convolution mapping to the L logits of each head.

    The paper's f = 3 and f = 5 use one width for both, f = (3, 5) gives (f1, f2)
    (`synthesizer_conv_width`, `synthesizer_second_conv_width`).
    """

    name = "conv_relu_conv"
    paper_name = "ConvReluConv (Table 8)"
    logits = "Conv_f2(relu(Conv_f1(X)))_i,h: the second convolution maps to L"
    summary = "each token predicts its attention row from its neighbourhood, through two convolutions"
    config_fields = (*ConvLinearSynthesizer.config_fields, "synthesizer_second_conv_width")
    feature_map = "conv_relu"
    second_map_width_field = "synthesizer_second_conv_width"


class BottleneckConvReluConvSynthesizer(DenseSynthesizer):
    """Bottleneck + ConvReluConv (A.2, the best row of Table 8): ConvReluConv through r channels:
    the first convolution projects d -> r (`synthesizer_bottleneck_size`), the second maps r -> L per head.

    Our reading of "projecting to low dimension space and then projecting back to high dimensions": the
    high dimensions are the L logits, so the hidden width is r.
    """

    name = "bottleneck_conv_relu_conv"
    paper_name = "Bottleneck + ConvReluConv (Table 8)"
    logits = "Conv_f2(relu(Conv_f1(X): d -> r))_i,h: the second convolution maps r -> L"
    summary = "two convolutions over the neighbourhood through an r-channel bottleneck"
    config_fields = (*ConvReluConvSynthesizer.config_fields, "synthesizer_bottleneck_size")
    feature_map = "conv_relu"
    hidden_width_field = "synthesizer_bottleneck_size"
    second_map_width_field = "synthesizer_second_conv_width"


class FactorizedDenseSynthesizer(LengthBoundSynthesizer):
    """Factorized dense synthesizer (eq. 5-6): per head A = F_A(x_i) in R^a, B = F_B(x_i) in R^b, a*b = L.

    The logit of key position j is A[j // b] * B[j % b]: the tilings H_A, H_B are composed so that every
    (element of A, element of B) pair appears once, i.e. the row is the flattened outer product of A and B.
    """

    name = "factorized_dense"
    aliases = ("fd",)
    paper_name = "Factorized Dense"
    logits = "flatten(A_i outer B_i), A in R^a, B in R^b, a*b = L (eq. 5-6)"
    summary = "a dense synthesizer whose L outputs are the outer product of an a- and a b-vector"
    gives_bias = True
    config_fields = (
        "synthesizer_length",
        "dense_synthesizer_hidden_size",
        "factorized_dense_a",
        "factorized_dense_b",
    )

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        check_divisible_by_heads(config, "dense_synthesizer_hidden_size", cls.name)
        a, b = config.factorized_dense_a, config.factorized_dense_b
        if a * b != config.synthesizer_length:
            raise ValueError(
                f"factorized_dense_a * factorized_dense_b must equal synthesizer_length "
                f"({config.synthesizer_length}), got {a} * {b} = {a * b}."
            )

    def __init__(self, config: SynthesizerConfig):
        super().__init__(config)
        hidden = config.dense_synthesizer_hidden_size
        per_head = hidden // self.num_heads
        self.factor_b = config.factorized_dense_b
        self.dense = nn.Linear(config.hidden_size, hidden)
        self.weight_a = nn.Parameter(torch.empty(self.num_heads, per_head, config.factorized_dense_a))
        self.bias_a = nn.Parameter(torch.empty(self.num_heads, config.factorized_dense_a))
        self.weight_b = nn.Parameter(torch.empty(self.num_heads, per_head, config.factorized_dense_b))
        self.bias_b = nn.Parameter(torch.empty(self.num_heads, config.factorized_dense_b))

    def factors(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A `[batch, heads, q, a]` and B `[batch, heads, q, b]` of eq. 5."""
        hidden = split_heads(torch.relu(self.dense(hidden_states)), self.num_heads)
        factor_a = hidden @ self.weight_a.unsqueeze(0) + self.bias_a[None, :, None]
        factor_b = hidden @ self.weight_b.unsqueeze(0) + self.bias_b[None, :, None]
        return factor_a, factor_b

    def forward(self, hidden_states, positions, keys):
        self.check_length(positions)
        factor_a, factor_b = self.factors(hidden_states)
        if positions.key is None:  # keys 0..k-1: the flattened outer product, cut to k
            outer = factor_a.unsqueeze(-1) @ factor_b.unsqueeze(-2)  # a matmul: a cheaper backward than *
            # cut to k by select_columns: a slice eagerly, gathered under torch.export
            return SynthesizedLogits(bias=select_columns(outer.flatten(-2), None, positions.key_length))
        index = positions.key[:, None, None, :].expand(
            factor_a.shape[0], self.num_heads, factor_a.shape[2], -1
        )
        bias = factor_a.gather(-1, index // self.factor_b) * factor_b.gather(-1, index % self.factor_b)
        return SynthesizedLogits(bias=bias)

    def reset_synthesizer_parameters(self, config):
        for weight in (self.weight_a, self.weight_b):
            init.normal_(weight, mean=0.0, std=config.initializer_range)
        for bias in (self.bias_a, self.bias_b):
            init.zeros_(bias)

    def start_with_zero_logits(self):
        nn.init.zeros_(self.weight_b)  # B = 0, so every A[j // b] * B[j % b] is 0
        nn.init.zeros_(self.bias_b)


def combine_logits(parts: list[SynthesizedLogits], weights: torch.Tensor | None) -> SynthesizedLogits:
    """Weighted sum of factored logits: queries/keys concatenate along features, biases add up.

    sum_c w_c (q_c k_c^T + b_c) = [w_1 q_1, w_2 q_2, ...] [k_1, k_2, ...]^T + sum_c w_c b_c.
    """
    queries, keys, bias = [], [], None
    for index, part in enumerate(parts):
        query, part_bias = part.query, part.bias
        if weights is not None:  # a single synthesizer has no mixture weight (not even a copy times 1.0)
            query = None if query is None else query * weights[index]
            part_bias = None if part_bias is None else part_bias * weights[index]
        if query is not None:
            queries.append(query)
            keys.append(part.key)
        if part_bias is not None:
            bias = part_bias if bias is None else bias + part_bias
    if not queries:
        return SynthesizedLogits(bias=bias)
    if len(queries) == 1:
        return SynthesizedLogits(query=queries[0], key=keys[0], bias=bias)
    batch = max(q.shape[0] for q in queries)
    query = torch.cat([q.expand(batch, -1, -1, -1) for q in queries], dim=-1)
    key = torch.cat([k.expand(batch, -1, -1, -1) for k in keys], dim=-1)
    return SynthesizedLogits(query=query, key=key, bias=bias)


# the registered variants' classes by their names, so that a new variant is exported with no edit here
__all__ = [
    "CONVOLUTIONS",
    "FEATURE_MAPS",
    "SYNTHESIZERS",
    "LengthBoundSynthesizer",
    "Positions",
    "SynthesizedLogits",
    "Synthesizer",
    "combine_logits",
    *(cls.__name__ for cls in SYNTHESIZERS.values()),
]
