"""When the batch-shared softmax of input-independent synthesizers is taken, and that it computes what eager does."""

import pytest
import torch

from helpers import tiny_config
from synthesizer_hf import (
    SynthesizerModel,
)
from synthesizer_hf.synthesizers import SYNTHESIZERS


@pytest.mark.parametrize("variant", ["random", "factorized_random+fixed_random"])
def test_batch_shared_fast_path_is_off_under_attention_dropout_and_eager(variant, monkeypatch):
    from synthesizer_hf import modeling_synthesizer

    calls = []
    real = modeling_synthesizer.batch_shared_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_synthesizer, "batch_shared_attention", spy)
    model = SynthesizerModel(tiny_config(variant, attention_probs_dropout_prob=0.5))
    ids = torch.randint(3, 99, (2, 8))
    with torch.no_grad():
        model.eval()(ids)
        assert len(calls) == 2, "inference with sdpa takes the batch-shared path in both layers"
        calls.clear()
        same = model.train()(ids[:1].expand(2, -1)).last_hidden_state
        assert calls == [], "attention dropout needs a mask per batch row"
        assert not torch.equal(same[0], same[1]), "each row gets its own dropout mask"
        model.config._attn_implementation = "eager"
        model.eval()(ids)
        assert calls == [], "eager is the reference path"


def test_factorized_random_shares_its_softmax_in_training_only_from_four_rows(monkeypatch):
    """Below `shared_softmax_min_batch` rows a training batch takes the per-row (fused SDPA) path, from it on the
    batch-shared softmax; both give the same outputs and gradients. `random` shares at any batch size."""
    from synthesizer_hf import modeling_synthesizer

    assert SYNTHESIZERS["factorized_random"].shared_softmax_min_batch == 4
    calls = []
    real = modeling_synthesizer.batch_shared_attention
    monkeypatch.setattr(
        modeling_synthesizer, "batch_shared_attention", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    for variant, rows, shared in [
        ("factorized_random", 2, False),
        ("factorized_random", 4, True),
        ("random", 1, True),
    ]:
        torch.manual_seed(0)
        model = SynthesizerModel(tiny_config(variant)).train()
        ids = torch.randint(3, 99, (rows, 8))
        calls.clear()
        output = model(ids).last_hidden_state
        assert (len(calls) == 2) == shared, (variant, rows)
        output.square().sum().backward()
        gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        model.config._attn_implementation = "eager"  # the reference path
        reference = model(ids).last_hidden_state
        reference.square().sum().backward()
        torch.testing.assert_close(output, reference, atol=1e-5, rtol=1e-5)
        assert any("random" in name for name in gradients), "the tables get gradients"
        for name, parameter in model.named_parameters():
            if name in gradients:  # atol: sums that cancel through LayerNorm (token types) keep only rounding
                torch.testing.assert_close(gradients[name], parameter.grad, atol=5e-5, rtol=1e-3)
        model.config._attn_implementation = "sdpa"
        calls.clear()
        with torch.no_grad():
            model.eval()(ids)
        assert len(calls) == 2, "in inference the shared softmax is kept, so it is shared at any batch size"
