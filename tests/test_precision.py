"""float16, bfloat16 and autocast stay finite, and masks stay exact, for every variant. The guarantees, with
their tests: docs/GUARANTEES.md."""

import pytest
import torch

from helpers import ALL_VARIANTS, all_finite_gradients, tiny_config
from synthesizer_hf import (
    SynthesizerForMaskedLM,
    SynthesizerModel,
)
from synthesizer_hf.modeling_synthesizer import additive_attention_mask


def precision_batch():
    """Three rows at the full synthesizer length 16: unpadded, entirely padding, half padding."""
    ids = torch.randint(3, 99, (3, 16))
    mask = torch.ones_like(ids)
    mask[1] = 0
    mask[2, 8:] = 0
    return ids, mask


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_reduced_precision_is_finite_for_every_variant(variant, implementation):
    ids, mask = precision_batch()
    for mode in ("bf16_autocast", torch.bfloat16, torch.float16):
        torch.manual_seed(0)
        config = tiny_config(variant)
        config._attn_implementation = implementation
        model = SynthesizerForMaskedLM(config)
        if mode == "bf16_autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outputs = model(ids, attention_mask=mask, labels=ids)
        else:
            model = model.to(mode)
            outputs = model(ids, attention_mask=mask, labels=ids)
            assert outputs.logits.dtype == mode
        assert torch.isfinite(outputs.logits).all(), mode
        assert torch.isfinite(outputs.loss), mode
        outputs.loss.backward()  # half-precision backward runs on the CPU in torch >= 2.1
        all_finite_gradients(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
def test_additive_mask_uses_the_dtype_minimum_not_minus_1e9(dtype, causal):
    padding = torch.ones(2, 6, dtype=torch.long)
    padding[1] = 0
    padding[0, 4:] = 0
    mask = additive_attention_mask(padding, 2, 6, 6, causal, dtype, torch.device("cpu"))
    assert mask.dtype == dtype
    assert torch.isfinite(mask).all(), "-1e9 would overflow to -inf in float16"
    assert mask.min() == torch.finfo(dtype).min
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(dtype).min}


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", ["random", "fixed_random", "random+dot"])
def test_float16_bias_plus_mask_does_not_overflow_to_minus_inf(variant, implementation):
    """Very negative synthetic logits + the float16 minimum would be -inf; a fully padded row then NaN."""
    config = tiny_config(variant)
    config._attn_implementation = implementation
    model = SynthesizerModel(config).to(torch.float16).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("random_logits"):
                tensor.fill_(-60000.0)  # queries 8-15 of the fully padded row: -60000 + min = -inf everywhere
                tensor[:, :8, 3] = 60000.0  # key 3, padded in row 0, dominates queries 0-7
    ids, mask = precision_batch()
    mask[0, 3] = 0
    with torch.no_grad():
        hidden = model(ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_attention_maps_in_every_dtype_block_padding_and_stay_normalised(dtype):
    config = tiny_config("random+dense+dot")
    config._attn_implementation = "eager"
    model = SynthesizerModel(config).to(dtype).eval()
    ids, mask = precision_batch()
    with torch.no_grad():
        maps = model(ids, attention_mask=mask, output_attentions=True).attentions
        unpadded = model(ids, output_attentions=True).attentions
    for weights in maps:
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights.float().sum(-1), torch.ones(3, 4, 16), atol=2e-2, rtol=0)
        assert torch.all(weights[2, :, :, 8:] == 0), "padded keys get exactly zero weight"
    # A fully padded sequence sees no key: it is left unmasked (finite, exact softmax, as transformers' SDPA
    # does), so its first layer attends exactly as the sequence without a mask does.
    torch.testing.assert_close(maps[0][1].float(), unpadded[0][1].float(), atol=2e-3, rtol=0)
