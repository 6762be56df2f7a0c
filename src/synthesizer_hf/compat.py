"""Every difference between the transformers releases the project supports (5.4 .. newest), in one place.

Each shim names the release that lets it go: when the lower bound in pyproject reaches it, delete the shim and
use the newer spelling directly. Nothing else in the package compares transformers versions.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable

from transformers.cache_utils import Cache
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils.deprecation import deprecate_kwarg

# --- The cache rename (goes when the lower bound is 5.24) ------------------------------------------------------
# transformers 5.24 renamed the cache argument and output field `past_key_values` to `cache`; earlier 5.x releases
# know only the old name. Forward methods take `cache` (decorated with `accepts_old_cache_name`); layer calls and
# outputs use the installed release's name, the one generation, gradient checkpointing and output classes read.
CACHE_RENAMED = "cache" in {field.name for field in dataclasses.fields(Seq2SeqLMOutput)}
CACHE_ARGUMENT = "cache" if CACHE_RENAMED else "past_key_values"
# the release in which transformers' own models (BERT, BART) drop the old name
OLD_CACHE_NAME_REMOVED_IN = "5.40.0"


def accepts_old_cache_name(forward: Callable) -> Callable:
    """Let a `forward(..., cache=...)` also be called with `past_key_values=`.

    On releases that renamed it (5.24 on), exactly as transformers' own models do (`@deprecate_kwarg`): the old
    name works with a FutureWarning (both names: the new one wins, with a warning). On earlier releases the old
    name is the only one their generation passes, so it is taken silently (both names: a ValueError), and the
    signature lists it, as those releases' generation inspects signatures for it.
    """
    if CACHE_RENAMED:
        return deprecate_kwarg("past_key_values", OLD_CACHE_NAME_REMOVED_IN, new_name="cache")(forward)

    @functools.wraps(forward)
    def forward_taking_past_key_values(*args, **kwargs):
        if "past_key_values" in kwargs:
            old = kwargs.pop("past_key_values")
            if kwargs.get("cache") is not None and old is not None and kwargs["cache"] is not old:
                raise ValueError("Pass the cache once: `cache` and `past_key_values` name the same argument.")
            kwargs["cache"] = kwargs.get("cache") if kwargs.get("cache") is not None else old
        return forward(*args, **kwargs)

    signature = inspect.signature(forward)
    parameters = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    old_name = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    var_keyword = [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    forward_taking_past_key_values.__signature__ = signature.replace(
        parameters=[*parameters, old_name, *var_keyword]
    )
    return forward_taking_past_key_values


def output_cache(outputs) -> Cache | None:
    """The cache of a model output, read under the installed release's field name (no deprecation warning)."""
    return getattr(outputs, CACHE_ARGUMENT)


# --- The meaning of `crop` (goes when the lower bound is 5.24) -------------------------------------------------
def length_after_crop(argument: int, length: int) -> int:
    """Tokens a cache layer of `length` tokens keeps after `crop(argument)`. From 5.24 on, transformers passes
    only `-n` (remove the last n); earlier releases also pass a positive `max_length` (keep the first that many).
    0 removes nothing."""
    if argument == 0:
        return length
    return min(argument, length) if argument > 0 else max(0, length + argument)


__all__ = [
    "CACHE_ARGUMENT",
    "CACHE_RENAMED",
    "OLD_CACHE_NAME_REMOVED_IN",
    "accepts_old_cache_name",
    "length_after_crop",
    "output_cache",
]
