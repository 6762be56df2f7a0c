"""Collators: BERT masking that a resumed run repeats exactly, and multiple choice with unlabeled examples."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling, DataCollatorForMultipleChoice


def content_seeded_generator(token_ids: torch.Tensor | Sequence[Sequence[int]], seed: int) -> torch.Generator:
    """A torch generator seeded by a hash of the batch's token ids and `seed`.

    The Trainer restores the global RNG only after it has collated the first batch of a resumed run, so
    masks drawn from the global RNG differ between a resumed and an uninterrupted run. Deriving them from the
    batch itself makes them identical (and evaluation masks the same at every evaluation, so eval losses are
    comparable across steps). Shuffling changes batch composition each epoch, so masks still vary over epochs.
    """
    if isinstance(token_ids, torch.Tensor):
        data = token_ids.to(torch.int64).cpu().numpy().tobytes()
    else:
        data = b"".join(np.asarray(ids, dtype=np.int64).tobytes() + b"|" for ids in token_ids)
    digest = hashlib.blake2b(data, digest_size=8, key=int(seed).to_bytes(8, "little", signed=True)).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class DataCollatorForReproducibleMLM(DataCollatorForLanguageModeling):
    """BERT's masking (80% [MASK], 10% random, 10% kept) drawn from `content_seeded_generator(batch, seed)`."""

    def torch_mask_tokens(
        self, inputs: Any, special_tokens_mask: Any | None = None, offset_mapping: Any = None
    ):
        self.generator = content_seeded_generator(inputs, self.seed or 0)
        return super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)


class MultipleChoiceCollator(DataCollatorForMultipleChoice):
    """Also collates unlabeled (test) examples, which the transformers collator requires labels for."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "label" in examples[0] or "labels" in examples[0]:
            return super().torch_call(examples)
        num_choices = len(examples[0]["input_ids"])
        flat = [{k: v[i] for k, v in example.items()} for example in examples for i in range(num_choices)]
        batch = self.tokenizer.pad(flat, padding=self.padding, return_tensors="pt")
        return {k: v.view(len(examples), num_choices, -1) for k, v in batch.items()}


__all__ = ["DataCollatorForReproducibleMLM", "MultipleChoiceCollator", "content_seeded_generator"]
