"""Shared fixtures: tiny configs so the whole suite runs in minutes on 2 CPU cores, fully offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from synthesizer_hf import SynthesizerConfig

torch.set_num_threads(1)

# Every synthesizing function on its own, plus the paper's main mixtures.
SINGLE_VARIANTS = [
    "dot",
    "symmetric_dot",
    "pairwise_dot",
    "random",
    "fixed_random",
    "factorized_random",
    "dense",
    "factorized_dense",
]
MIXTURES = [
    "random+dot",
    "dense+dot",
    "factorized_random+dot",
    "random+dense",
    "factorized_dense+symmetric_dot",
]
ALL_VARIANTS = SINGLE_VARIANTS + MIXTURES


def tiny_config(attention_type="random", **overrides) -> SynthesizerConfig:
    """A 2-layer, 4-head, hidden-32 model with L = 16 and no dropout (so outputs are deterministic)."""
    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=16,
        factorized_random_rank=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attention_type=attention_type,
        synthesizer_initializer_range=0.5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    values.update(overrides)
    return SynthesizerConfig(**values)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
