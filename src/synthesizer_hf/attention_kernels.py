"""The kernels of Synthesizer self-attention, and the one rule that picks a kernel for a call.

Every path computes softmax(S + mask) V for the mixture's logits S = query @ key^T + bias (eq. 8); they
differ in what they materialise:

- `BATCH_SHARED`: logits that ignore the input (random, factorized random, their mixtures) are one
  `[heads, q, k]` table for the whole batch: one softmax, applied to every row's values.
- `BIAS_SOFTMAX`: logits with no query/key factors (factorized dense, gathered random): softmax(bias + mask) V.
- `BIASED_FLASH`: query/key factors plus a bias that needs a gradient, on CPU (random+dot, ...): a fused
  forward and a tiled backward (`biased_attention.py`), where SDPA would take its materialising math path.
- `INTERFACE`: the transformers attention interface of the config (`eager`, `sdpa`, `flash_attention_2`, ...),
  the bias (if any) added to the mask.

`eager` is the reference: under it every call takes `BIAS_SOFTMAX` or `INTERFACE`, which form (and return)
the weights. `choose_attention_path` is the only place that decides; `SynthesizerSelfAttention.attention_path`
asks it for a given call, so a test can see which kernel a call takes without running it.
"""

from __future__ import annotations

import enum
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from .synthesizers import SynthesizedLogits


class AttentionPath(enum.Enum):
    BATCH_SHARED = "batch_shared"
    BIAS_SOFTMAX = "bias_softmax"
    BIASED_FLASH = "biased_flash"
    INTERFACE = "interface"


@dataclass(frozen=True)
class LayerTraits:
    """What a layer's synthesizers are, as far as choosing a kernel goes."""

    input_independent: bool  # every component ignores the input: one softmax serves the batch
    shared_softmax_min_batch: int  # training batches smaller than this take a per-row path
    has_factors: bool  # some component gives query/key factors (else the logits are a bias alone)
    has_bias: bool  # some component gives a `[q, k]` bias


@dataclass(frozen=True)
class AttentionCall:
    """The facts of one call that choose its kernel."""

    implementation: str  # config._attn_implementation
    batch_size: int
    training: bool
    dropout: float  # attention dropout in effect (0 in eval)
    per_row_positions: bool  # left padding: each row reads its own table rows
    grad_enabled: bool
    bias_needs_gradient: bool
    device_type: str
    dtype: torch.dtype
    empty: bool  # no query or no key
    compiling: bool  # torch.compile / torch.export trace the call


def choose_attention_path(layer: LayerTraits, call: AttentionCall) -> AttentionPath:
    """The kernel for one call. Only the reference (`eager`) materialises per-row weights for the batch-shared
    logits; attention dropout needs a mask per row, and left padding rows of its own; a training batch below
    `shared_softmax_min_batch` rows is faster per row (factorized random at 2-3 rows)."""
    if (
        layer.input_independent
        and call.implementation != "eager"
        and not call.per_row_positions
        and call.dropout == 0.0
        and not (call.training and call.batch_size < layer.shared_softmax_min_batch)
    ):
        return AttentionPath.BATCH_SHARED
    if not layer.has_factors:
        return AttentionPath.BIAS_SOFTMAX
    if layer.has_bias and call.implementation == "sdpa" and uses_biased_attention(call):
        return AttentionPath.BIASED_FLASH
    return AttentionPath.INTERFACE


def uses_biased_attention(call: AttentionCall) -> bool:
    """Whether `biased_attention` applies to a call with a bias: a float32/float64 CPU call with no attention
    dropout (the flash kernel has none on CPU), outside `torch.compile` and export (which trace SDPA); in
    training only a bias that needs a gradient (a frozen one keeps SDPA's fused backward), in inference any
    (SDPA would be given the bias plus the batch's mask materialised for every row; here only rows with
    blocked keys pay for it)."""
    return (
        not call.empty
        and (call.bias_needs_gradient or not call.grad_enabled)
        and call.dropout == 0.0
        and call.device_type == "cpu"
        and call.dtype in (torch.float32, torch.float64)
        and not call.compiling
    )


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float = 1.0,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference path: softmax(q k^T * scaling + mask) v, materialising (and returning) the weights."""
    logits = torch.matmul(query, key.transpose(2, 3))
    if scaling != 1.0:
        logits = logits * scaling
    if attention_mask is not None:
        logits = logits + attention_mask
    return softmax_attention(module, logits, value, dropout)


def softmax_attention(
    module: nn.Module, logits: torch.Tensor, value: torch.Tensor, dropout: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(logits) v with attention dropout; returns `[batch, q, heads, d]` and the weights."""
    weights = nn.functional.softmax(logits, dim=-1, dtype=torch.float32).to(value.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def future_keys(query_length: int, key_length: int, device: torch.device) -> torch.Tensor:
    """`[q, k]` True where a key comes after its query (the last `query_length` of the keys)."""
    rows = torch.arange(key_length - query_length, key_length, device=device)[:, None]
    return torch.arange(key_length, device=device)[None, :] > rows


def shared_softmax(logits: torch.Tensor, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """P = softmax(logits) for `[heads, q, k]` logits shared by the batch, future keys excluded in a decoder.

    One fused kernel forward and one backward over the `[heads, q, k]` table (the training cost of the random
    synthesizers at long L is these passes, not the matmuls)."""
    query_length, key_length = logits.shape[-2:]
    if causal and query_length > 1:
        logits = logits.masked_fill(future_keys(query_length, key_length, logits.device), float("-inf"))
    return torch.softmax(logits, dim=-1, dtype=torch.float32).to(dtype)


class KeptBuffers:
    """The `[heads, q, k]` working tensors of one layer's batch-shared softmax in training, kept between steps.

    Why: at long L each is larger than glibc's largest mmap threshold (32 MiB at L = 2,048 and 4 heads), so by
    default a fresh one is a new mapping whose pages fault in again at every step (tuning glibc with
    MALLOC_MMAP_MAX_ / MALLOC_TRIM_THRESHOLD_ hid this; kept buffers need no tuning). A buffer that a pending
    backward still reads is never handed out twice: a model called twice before one backward (contrastive
    training, checkpointed recomputation) gets a fresh tensor for its second call.
    """

    def __init__(self):
        self._tensors: dict[str, torch.Tensor] = {}
        self._readers: dict[str, weakref.ref] = {}

    def get(self, name: str, like: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """An uninitialised tensor of `shape` (dtype and device of `like`), the kept one where it is free."""
        reader = self._readers.get(name)
        if reader is not None and reader() is not None:
            return like.new_empty(shape)
        kept = self._tensors.get(name)
        if kept is None or kept.shape != shape or kept.dtype != like.dtype or kept.device != like.device:
            kept = self._tensors[name] = like.new_empty(shape)
        return kept

    def read_until_backward(self, name: str, tensor: torch.Tensor, ctx) -> None:
        """Mark the kept `name` as needed by the backward of `ctx` (until `release` or the graph is freed)."""
        if self._tensors.get(name) is tensor:
            self._readers[name] = weakref.ref(ctx)

    def release(self, name: str, ctx) -> None:
        """The backward of `ctx` has read the kept `name` (the backward of another call releases nothing)."""
        reader = self._readers.get(name)
        if reader is not None and reader() is ctx:
            del self._readers[name]

    def clear(self) -> None:
        self._tensors.clear()
        self._readers.clear()

    def __reduce__(self):  # copied or pickled, a model carries no working memory
        return KeptBuffers, ()


class KeptBatchSharedAttention(torch.autograd.Function):
    """P @ columns with P = softmax(bias + query key^T) (future keys excluded when causal): the batch-shared
    kernel's training step, its `[heads, q, k]` tensors in `KeptBuffers` (see there why). Call it through
    `batch_shared_attention`."""

    @staticmethod
    def forward(ctx, bias, query, key, columns, causal: bool, buffers: KeptBuffers):
        like = bias if bias is not None else query
        heads = max(t.shape[0] for t in (bias, query) if t is not None)
        shape = torch.Size(
            (heads, like.shape[-2] if bias is not None else query.shape[-2], columns.shape[-2])
        )
        logits = bias
        if query is not None or causal:
            logits = buffers.get("logits", like, shape)
            if query is None:
                logits.copy_(bias)
            else:
                torch.matmul(query, key.transpose(-1, -2), out=logits)
                if bias is not None:
                    logits.add_(bias)
            if causal and shape[-2] > 1:
                logits.masked_fill_(future_keys(shape[-2], shape[-1], logits.device), float("-inf"))
        weights = buffers.get("weights", like, shape)
        torch.ops.aten._softmax.out(logits, -1, False, out=weights)
        ctx.save_for_backward(weights, query, key, columns)
        buffers.read_until_backward("weights", weights, ctx)
        ctx.buffers, ctx.has_bias = buffers, bias is not None
        return weights @ columns

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        weights, query, key, columns = ctx.saved_tensors
        buffers = ctx.buffers
        grad_weights = torch.matmul(
            grad_output, columns.transpose(-1, -2), out=buffers.get("grad_weights", weights, weights.shape)
        )
        grad_columns = weights.transpose(-1, -2) @ grad_output
        # dS = P * (dP - rowsum(P * dP)): a fresh tensor where it is returned (the bias's gradient), else kept
        grad_logits = buffers.get("logits", weights, weights.shape) if not ctx.has_bias else None
        if grad_logits is None:
            grad_logits = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
        else:
            torch.ops.aten._softmax_backward_data.out(
                grad_weights, weights, -1, weights.dtype, grad_input=grad_logits
            )
        buffers.release("weights", ctx)
        grad_query = grad_key = None
        if query is not None:
            grad_query = grad_logits @ key if ctx.needs_input_grad[1] else None
            grad_key = grad_logits.transpose(-1, -2) @ query if ctx.needs_input_grad[2] else None
        grad_bias = grad_logits if ctx.has_bias and ctx.needs_input_grad[0] else None
        return grad_bias, grad_query, grad_key, grad_columns, None, None


def value_columns(value: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """`[batch, heads, k, d]` values as `[heads, k, batch * d]` columns: the batch folded into the matmul's
    columns (a broadcast matmul would copy P per batch row). With a key padding mask, each row's values are
    zeroed at its padded keys and followed by a column of its mask, which accumulates the denominator."""
    batch, heads, key_length, _ = value.shape
    if key_padding_mask is not None:
        keep = key_padding_mask.to(value.dtype)[:, None, :, None].expand(batch, heads, key_length, 1)
        value = torch.cat([value * keep, keep], dim=-1)
    return value.permute(1, 2, 0, 3).reshape(heads, key_length, -1)


def batch_shared_attention(
    weights: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """softmax(S) @ value for logits S shared by the whole batch (random synthesizers), given
    P = `shared_softmax(S)` `[heads, q, k]`.

    Key padding is handled by renormalising, Y_b = (P @ (m_b * V_b)) / (P @ m_b), so no
    `[batch, heads, q, k]` tensor exists. Returns `[batch, q, heads, d]`, or None when a row's real keys all
    underflow against a padded key that holds the row maximum (the caller then takes the exact path).
    """
    return rows_of_shared_totals(weights @ value_columns(value, key_padding_mask), value, key_padding_mask)


def kept_batch_shared_attention(
    logits: SynthesizedLogits,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    causal: bool,
    buffers: KeptBuffers,
) -> torch.Tensor | None:
    """`batch_shared_attention` in training, from the batch-shared logits (`[1, heads, q, k]` bias and/or
    query/key factors): the softmax and its backward run in `KeptBatchSharedAttention`, their `[heads, q, k]`
    tensors kept in `buffers`."""
    bias, query, key = (None if t is None else t.squeeze(0) for t in (logits.bias, logits.query, logits.key))
    columns = value_columns(value, key_padding_mask)
    totals = KeptBatchSharedAttention.apply(bias, query, key, columns, causal, buffers)
    return rows_of_shared_totals(totals, value, key_padding_mask)


def rows_of_shared_totals(
    totals: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """`[heads, q, batch * d (+ 1)]` products P @ columns back to `[batch, q, heads, d]` rows (renormalised)."""
    batch, heads, _, head_dim = value.shape
    query_length = totals.shape[1]
    if key_padding_mask is None:
        return totals.view(heads, query_length, batch, head_dim).permute(2, 1, 0, 3)
    totals = totals.view(heads, query_length, batch, head_dim + 1)
    denominator = totals[..., head_dim:]
    if not torch.compiler.is_compiling() and bool((denominator < torch.finfo(denominator.dtype).tiny).any()):
        return None
    return (totals[..., :head_dim] / denominator).permute(2, 1, 0, 3)


def equal_widths(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
    """Zero-pad queries/keys or values to one feature width: CPU/GPU fused SDPA kernels require it
    (zero query/key features add nothing to the logits; zero value features are sliced off the output)."""
    difference = query.shape[-1] - value.shape[-1]
    if difference > 0:
        value = nn.functional.pad(value, (0, difference))
    elif difference < 0:
        query, key = nn.functional.pad(query, (0, -difference)), nn.functional.pad(key, (0, -difference))
    return query, key, value


__all__ = [
    "AttentionCall",
    "AttentionPath",
    "KeptBuffers",
    "LayerTraits",
    "batch_shared_attention",
    "choose_attention_path",
    "eager_attention_forward",
    "equal_widths",
    "kept_batch_shared_attention",
    "shared_softmax",
    "softmax_attention",
]
