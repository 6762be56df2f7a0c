"""Synthetic sentence-pair tasks that test the paper's explanation of the synthesizers' pair-task gap.

Section 4.1 of Tay et al. (2020) argues that pure synthesizers trail dot-product attention on sentence-pair
tasks (MNLI, QQP, ...) because there self-attention acts as *cross-sentence* attention: a token of one
segment must find its match in the other, wherever it is, which needs weights that depend on both tokens.
These tasks isolate that ability. Every example is `[CLS] A [SEP] B [SEP]` with token types 0 / 1:

- segment A: `segment_length` distinct words out of a vocabulary of `vocabulary` words;
- segment B: `segment_length` distinct words, of which k (uniform in 0..segment_length) are words of A,
  in a random order (so a shared word sits at any position of B).

Two tasks label every word of B (token classification; the other positions are ignored, label -100):

- ``membership`` (the pair task): does this word of B occur anywhere in A? Only a comparison of contents
  across the segments answers it: the match can be at any position of A.
- ``aligned`` (the control): is the word at the *same position* of A from the first half of the vocabulary?
  It also moves information across the segments, but from a fixed position, so a synthesizer whose weights
  depend on positions only can route it; no content matching is needed.

Both are on identical inputs; both are balanced (membership: k is uniform; aligned: by symmetry). Labels are
per token because a single label per pair (does B share a word with A?) left every variant, `dot` included,
at chance within the budget (docs/RESULTS.md).
"""

from __future__ import annotations

import random
from typing import Any

import datasets

PROBE_TASKS = ("membership", "aligned")
IGNORED_LABEL = -100  # positions the loss and the accuracy skip
PAD_ID, CLS_ID, SEP_ID = 0, 1, 2
FIRST_WORD_ID = 3  # word w has id FIRST_WORD_ID + w


def probe_token_fields(vocabulary: int) -> dict[str, int]:
    """The config fields the probe's ids fix (vocabulary size and special ids)."""
    return {
        "vocab_size": FIRST_WORD_ID + vocabulary,
        "pad_token_id": PAD_ID,
        "bos_token_id": CLS_ID,
        "eos_token_id": SEP_ID,
    }


def sample_pair(rng: random.Random, vocabulary: int, segment_length: int) -> tuple[list[int], list[int]]:
    """Word ids of segments A and B: B holds a uniform number (0..segment_length) of A's words, shuffled."""
    words = rng.sample(range(vocabulary), 2 * segment_length)
    first, second = words[:segment_length], words[segment_length:]
    shared = rng.randint(0, segment_length)
    for slot, word in zip(rng.sample(range(segment_length), shared), rng.sample(first, shared)):
        second[slot] = word
    return first, second


def word_labels(task: str, first: list[int], second: list[int], vocabulary: int) -> list[int]:
    """The label of each word of segment B."""
    if task == "membership":
        return [int(word in first) for word in second]
    if task == "aligned":
        return [int(word < vocabulary // 2) for word in first]
    raise ValueError(f"Unknown pair-probe task {task!r}; known: {PROBE_TASKS}")


def encode_pair(first: list[int], second: list[int], labels: list[int]) -> dict[str, list[int]]:
    """`[CLS] A [SEP] B [SEP]` ids, token types and labels (only B's words are labelled)."""
    words_a = [FIRST_WORD_ID + word for word in first]
    words_b = [FIRST_WORD_ID + word for word in second]
    ignored = [IGNORED_LABEL] * (len(first) + 2)
    return {
        "input_ids": [CLS_ID, *words_a, SEP_ID, *words_b, SEP_ID],
        "token_type_ids": [0] * (len(first) + 2) + [1] * (len(second) + 1),
        "attention_mask": [1] * (len(first) + len(second) + 3),
        "labels": [*ignored, *labels, IGNORED_LABEL],
    }


def make_probe_split(
    task: str, count: int, vocabulary: int, segment_length: int, seed: int
) -> datasets.Dataset:
    """`count` encoded examples of `task` (the same inputs for every task at the same seed)."""
    if task not in PROBE_TASKS:
        raise ValueError(f"Unknown pair-probe task {task!r}; known: {PROBE_TASKS}")
    if 2 * segment_length > vocabulary:
        raise ValueError(f"a vocabulary of {vocabulary} words cannot hold two segments of {segment_length}")
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "labels": []}
    for _ in range(count):
        first, second = sample_pair(rng, vocabulary, segment_length)
        for key, value in encode_pair(first, second, word_labels(task, first, second, vocabulary)).items():
            rows[key].append(value)
    return datasets.Dataset.from_dict(rows)


__all__ = ["PROBE_TASKS", "make_probe_split", "probe_token_fields", "sample_pair", "word_labels"]
