"""The dense family's checkpoints outlive changes to its code: the state-dict keys and shapes of every variant, and
its logits under fixed weights, equal those recorded in tests/data/dense_family.json by the code of 2026-12-05 (the
six-level class chain, before the family became one class that picks its two maps in `__init__`).

To record them anew (only when a change is meant to alter keys or numerics): `PYTHONPATH=src python
tests/test_dense_family_checkpoints.py`.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from synthesizer_hf import SynthesizerConfig
from synthesizer_hf.synthesizers import SYNTHESIZERS, Positions

RECORD = Path(__file__).parent / "data" / "dense_family.json"
DENSE_FAMILY = [
    "dense",
    "glu",
    "bottleneck_dense",
    "conv_linear",
    "conv_relu_conv",
    "bottleneck_conv_relu_conv",
]
CONFIG = dict(
    hidden_size=8,
    num_attention_heads=2,
    max_position_embeddings=6,
    dense_synthesizer_hidden_size=6,
    synthesizer_bottleneck_size=4,
    synthesizer_conv_width=3,
    synthesizer_second_conv_width=5,
)


def fixed_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights that depend only on each entry's name and shape (so no initialisation order can change them)."""
    weights = {}
    for index, (key, value) in enumerate(sorted(module.state_dict().items())):
        entries = torch.arange(value.numel(), dtype=torch.float64)
        weights[key] = torch.sin(0.37 * entries + index).reshape(value.shape) / math.sqrt(value.shape[-1])
    return weights


def logits(name: str, causal: bool) -> tuple[dict[str, list[int]], list]:
    """The state-dict shapes of `name` and its logits `[batch, heads, 5, 5]` on a padded batch of 2, float64."""
    synthesizer = SYNTHESIZERS[name](SynthesizerConfig(attention_type=name, **CONFIG)).double()
    shapes = {key: list(value.shape) for key, value in synthesizer.state_dict().items()}
    synthesizer.load_state_dict(fixed_weights(synthesizer))
    hidden = torch.cos(torch.arange(2 * 5 * 8, dtype=torch.float64)).reshape(2, 5, 8)
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    positions = Positions(0, 5, 5, key_mask=keep, causal=causal)
    with torch.no_grad():
        cached = synthesizer.cached_per_token(hidden) if synthesizer.reads_neighbours else None
        part = synthesizer(hidden, positions, cached)
        return shapes, (part.query @ part.key.transpose(-1, -2)).tolist()


def record() -> dict:
    recorded = {}
    for name in DENSE_FAMILY:
        (shapes, encoder), (_, decoder) = logits(name, causal=False), logits(name, causal=True)
        recorded[name] = {"state_dict": shapes, "encoder": encoder, "decoder": decoder}
    return recorded


@pytest.mark.parametrize("name", DENSE_FAMILY)
def test_dense_family_keeps_its_checkpoint_keys_and_logits(name):
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))[name]
    shapes, encoder = logits(name, causal=False)
    assert list(shapes.items()) == list(recorded["state_dict"].items()), "the keys, their order and shapes"
    torch.testing.assert_close(
        torch.tensor(encoder), torch.tensor(recorded["encoder"]), rtol=1e-12, atol=1e-12
    )
    _, decoder = logits(name, causal=True)
    torch.testing.assert_close(
        torch.tensor(decoder), torch.tensor(recorded["decoder"]), rtol=1e-12, atol=1e-12
    )


if __name__ == "__main__":
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(record()) + "\n", encoding="utf-8")
