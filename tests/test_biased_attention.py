"""The fused-forward / tiled-backward attention for trainable biases against autograd through the plain formula."""

import pytest
import torch

from synthesizer_hf import biased_attention as module
from synthesizer_hf.biased_attention import biased_attention


def plain_attention(query, key, value, bias, mask):
    logits = query @ key.transpose(-1, -2) + bias
    if mask is not None:
        logits = logits + mask
    return (torch.softmax(logits, dim=-1) @ value).transpose(1, 2)


def blocked(shape, blocked_keys):
    """An additive mask (0 = attend, dtype minimum = blocked) of `shape` with `blocked_keys[b]` keys blocked."""
    mask = torch.zeros(shape, dtype=torch.float64)
    for row, count in enumerate(blocked_keys):
        if count:
            mask[row, ..., -count:] = torch.finfo(torch.float64).min
    return mask


def causal(shape):
    """An additive causal mask of `shape` `[1, 1, q, k]`."""
    future = torch.ones(shape[-2:], dtype=torch.bool).triu(1)
    return torch.zeros(shape, dtype=torch.float64).masked_fill(future, torch.finfo(torch.float64).min)


CASES = {
    "shared bias, key padding": ((1, 3, 7, 7), lambda: blocked((3, 1, 1, 7), [0, 2, 5])),
    "per-row bias, key padding": ((3, 3, 7, 7), lambda: blocked((3, 1, 1, 7), [1, 0, 3])),
    "shared bias, causal": ((1, 3, 7, 7), lambda: causal((1, 1, 7, 7))),
    "no mask": ((1, 3, 7, 7), lambda: None),
    "head-shared bias, fewer queries": ((1, 1, 4, 7), lambda: blocked((3, 1, 1, 7), [0, 0, 2])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_gradients_equal_autograd_of_the_formula(case, monkeypatch):
    monkeypatch.setattr(
        module, "TILE_ELEMENTS", 21
    )  # 3 query rows per tile: several tiles, a partial last one
    bias_shape, make_mask = CASES[case]
    queries = bias_shape[2]
    query = torch.randn(3, 3, queries, 5, dtype=torch.float64, requires_grad=True)
    key, value = (torch.randn(3, 3, 7, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    bias = torch.randn(bias_shape, dtype=torch.float64, requires_grad=True)
    mask = make_mask()
    inputs = (query, key, value, bias)
    expected = plain_attention(*inputs, mask)
    grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, inputs, grad)
    output = biased_attention(*inputs, mask)
    torch.testing.assert_close(output, expected)
    for got, want in zip(torch.autograd.grad(output, inputs, grad), expected_grads):
        torch.testing.assert_close(got, want)
