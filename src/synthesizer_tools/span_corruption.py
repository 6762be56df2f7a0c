"""T5's span corruption (Raffel et al. 2020, section 3.1.4): noise masks, sentinels and the collator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from .collators import content_seeded_generator

NUM_SENTINELS = 100


def add_sentinel_tokens(tokenizer: PreTrainedTokenizerBase, count: int = NUM_SENTINELS) -> list[int]:
    """Ensure the T5 sentinels `<extra_id_0..count-1>` are special tokens; returns their ids in order."""
    sentinels = [f"<extra_id_{i}>" for i in range(count)]
    missing = [token for token in sentinels if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": sentinels}, replace_extra_special_tokens=False
        )
    return tokenizer.convert_tokens_to_ids(sentinels)


def _corrupted_lengths(tokens_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """(input, target) lengths, both with their end-of-sequence token, after corrupting `tokens_length`."""
    noise, spans = _noise_counts(tokens_length, noise_density, mean_span)
    return tokens_length - noise + spans + 1, noise + spans + 1


def _noise_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """Number of noise tokens and noise spans in a sequence of `length` tokens (as in T5)."""
    noise = min(max(round(length * noise_density), 1), length - 1)
    spans = max(round(noise / mean_span), 1)
    return noise, min(spans, noise, length - noise)


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw tokens per block, target length) such that a corrupted block has exactly `inputs_length` tokens.

    The T5 recipe: take the longest raw block whose corrupted input (kept tokens + one sentinel per span +
    end-of-sequence) still fits, so the encoder always sees full-length inputs without padding.
    """
    tokens_length = inputs_length
    while _corrupted_lengths(tokens_length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, _corrupted_lengths(tokens_length, noise_density, mean_noise_span_length)[1]


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Boolean mask of the corrupted tokens: alternating kept and noise spans, starting with a kept one.

    Span lengths are a uniformly random partition of the kept and noise counts (T5's `random_spans_noise_mask`).
    """
    noise, spans = _noise_counts(length, noise_density, mean_noise_span_length)

    def partition(total: int) -> torch.Tensor:
        cuts = torch.randperm(total - 1, generator=generator)[: spans - 1] + 1
        bounds = torch.cat([torch.tensor([0]), cuts.sort().values, torch.tensor([total])])
        return bounds.diff()

    span_lengths = torch.stack([partition(length - noise), partition(noise)], dim=1).reshape(-1)
    is_noise_span = torch.arange(2 * spans) % 2 == 1
    return torch.repeat_interleave(is_noise_span, span_lengths)


def corrupt_spans(
    ids: torch.Tensor, noise_mask: torch.Tensor, sentinel_ids: torch.Tensor, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 inputs and targets of one sequence: `a <X0> d <X1> g </s>` -> `<X0> b c <X1> e f </s>`."""
    previous = torch.cat([noise_mask.new_zeros(1), noise_mask[:-1]])
    starts = noise_mask & ~previous
    span_index = starts.cumsum(0) - 1
    if starts.sum() > len(sentinel_ids):
        raise ValueError(f"{int(starts.sum())} noise spans but only {len(sentinel_ids)} sentinel tokens")
    eos = ids.new_tensor([eos_id])
    with_sentinels = torch.where(starts, sentinel_ids[span_index.clamp_min(0)], ids)
    inputs = torch.cat([with_sentinels[~noise_mask | starts], eos])
    # Targets: each noise span preceded by its sentinel; order by (2 * position) for sentinels and
    # (2 * position + 1) for the noise tokens themselves.
    positions = torch.arange(len(ids))
    keys = torch.cat([2 * positions[starts], 2 * positions[noise_mask] + 1])
    values = torch.cat([sentinel_ids[span_index[starts]], ids[noise_mask]])
    targets = torch.cat([values[keys.argsort()], eos])
    return inputs, targets


@dataclass
class DataCollatorForSpanCorruption:
    """Turns raw token blocks into T5 span-corruption examples for `SynthesizerForSeq2SeqLM`.

    Input blocks have `span_corruption_lengths(...)[0]` tokens; outputs are `input_ids`/`attention_mask`
    (encoder) and `labels` (the sentinel-delimited noise spans, ending with [SEP] as end-of-sequence). The model
    derives `decoder_input_ids` by shifting the labels right after its `decoder_start_token_id` ([PAD]).
    Sequences are padded (labels with -100) only if a block was shorter than the others. The noise is drawn
    from `content_seeded_generator(batch, seed)`, so resumed runs repeat uninterrupted ones exactly.
    """

    tokenizer: PreTrainedTokenizerBase
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.sentinel_ids = torch.tensor(add_sentinel_tokens(self.tokenizer))
        self.eos_id = self.tokenizer.sep_token_id
        self.pad_id = self.tokenizer.pad_token_id

    def __call__(self, examples: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        inputs, targets = [], []
        generator = content_seeded_generator([example["input_ids"] for example in examples], self.seed)
        for example in examples:
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long)
            mask = random_spans_noise_mask(
                len(ids), self.noise_density, self.mean_noise_span_length, generator
            )
            source, target = corrupt_spans(ids, mask, self.sentinel_ids, self.eos_id)
            inputs.append(source)
            targets.append(target)
        input_ids = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True, padding_value=self.pad_id)
        labels = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-100)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.pad_id).long(), "labels": labels}


__all__ = [
    "DataCollatorForSpanCorruption",
    "add_sentinel_tokens",
    "corrupt_spans",
    "random_spans_noise_mask",
    "span_corruption_lengths",
]
