"""The cache of a decoder layer whose attention logits do not depend on the key tokens.

A layer without a dot-product component (random, dense, factorized ... synthesizers) needs only the values of
past tokens, so it stores only those: about half the cache bytes of a standard decoder. To everything that
reads a transformers `Cache` (generation, beam search, assisted decoding, cropping) it still looks standard:
`keys` is a `[batch, heads, length, head_dim]` tensor, all zeros, as a broadcast view that owns no memory.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer, EncoderDecoderCache, StaticLayer

from .compat import length_after_crop


class ValueOnlyDynamicLayer(DynamicLayer):
    """A `DynamicLayer` that stores values only; its keys are a zero view of the values' shape."""

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self.values is None else self.values.new_zeros(()).expand(self.values.shape)

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        """Nothing to store: the base classes assign keys next to values (`None` on reset)."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = value_states.device
        self.values = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.values = torch.cat([self.values, value_states], dim=-2)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return 0 if not self.is_initialized else self.values.shape[-2]

    def reset(self) -> None:
        self.values, self.is_initialized = None, False

    def crop(self, length: int) -> None:
        """Drop tokens as `DynamicLayer.crop` does on the installed release (`compat.length_after_crop`)."""
        if self.is_initialized:
            self.values = self.values[..., : length_after_crop(length, self.get_seq_length()), :]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.get_seq_length() > 0:
            self.values = self.values.index_select(0, beam_idx.to(self.values.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self.values = self.values.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            self.values = self.values[indices, ...]

    def offload(self) -> None:
        if self.is_initialized:
            self.values = self.values.to("cpu", non_blocking=True)

    def prefetch(self) -> None:
        if self.is_initialized and self.values.device != self.device:
            self.values = self.values.to(self.device, non_blocking=True)


def update_value_only(cache: Cache, value: torch.Tensor, layer_idx: int) -> torch.Tensor:
    """Append `value` to layer `layer_idx` of a self-attention cache and return all cached values.

    A plain dynamic layer (what `DynamicCache` and `generate()` create) is replaced by a value-only one before
    its first update; any other layer type (static, sliding, quantized, offloaded) gets zero keys of the
    standard shape, which is correct but saves nothing.
    """
    if isinstance(cache, EncoderDecoderCache):
        cache = cache.self_attention_cache
    if getattr(cache, "layer_class_to_replicate", None) is not None:
        while len(cache.layers) <= layer_idx:
            cache.layers.append(cache.layer_class_to_replicate())
    layer = cache.layers[layer_idx]
    if type(layer) is DynamicLayer and not layer.is_initialized:
        cache.layers[layer_idx] = ValueOnlyDynamicLayer()
    _, values = cache.update(value.new_zeros(()).expand(value.shape), value, layer_idx)
    return values


def static_key_slots(cache: Cache | None) -> int | None:
    """The fixed number of key slots of a static self-attention cache (its `max_cache_len`: the keys and values
    it returns have that length, the slots after the tokens seen so far unwritten); None for a growing cache."""
    if isinstance(cache, EncoderDecoderCache):
        cache = cache.self_attention_cache
    layers = getattr(cache, "layers", None) or []
    if layers and isinstance(layers[0], StaticLayer) and not getattr(layers[0], "is_sliding", False):
        return layers[0].max_cache_len
    return None


def cache_storage_bytes(cache: Cache) -> int:
    """Bytes the cache tensors really hold; broadcast views (the keys of value-only layers) count nothing."""
    caches = (
        [cache.self_attention_cache, cache.cross_attention_cache]
        if isinstance(cache, EncoderDecoderCache)
        else [cache]
    )
    tensors = [t for c in caches for layer in c.layers for t in (layer.keys, layer.values) if t is not None]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage() for t in tensors if any(t.stride())}
    return sum(storage.nbytes() for storage in storages.values())
