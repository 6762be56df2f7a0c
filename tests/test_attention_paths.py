"""Which kernel a call takes (`choose_attention_path`, asked through `attention_path`), and the batch-shared
kernel's training step with kept working tensors against the eager reference."""

import copy
import dataclasses
import pickle

import pytest
import torch

from helpers import ALL_VARIANTS, tiny_config
from synthesizer_hf import SynthesizerForMaskedLM, SynthesizerModel
from synthesizer_hf.attention_kernels import AttentionCall, AttentionPath, LayerTraits, choose_attention_path
from synthesizer_hf.synthesizers import SYNTHESIZERS, Positions

SHARED = LayerTraits(input_independent=True, shared_softmax_min_batch=1, has_factors=False, has_bias=True)
MIXTURE = LayerTraits(input_independent=False, shared_softmax_min_batch=1, has_factors=True, has_bias=True)
TRAINING = AttentionCall(
    implementation="sdpa",
    batch_size=8,
    training=True,
    dropout=0.0,
    per_row_positions=False,
    grad_enabled=True,
    bias_needs_gradient=True,
    device_type="cpu",
    dtype=torch.float32,
    empty=False,
    compiling=False,
)


@pytest.mark.parametrize(
    ("traits", "change", "expected"),
    [
        (SHARED, {}, AttentionPath.BATCH_SHARED),
        (SHARED, {"implementation": "eager"}, AttentionPath.BIAS_SOFTMAX),  # the reference forms the weights
        (SHARED, {"dropout": 0.1}, AttentionPath.BIAS_SOFTMAX),  # a dropout mask per row
        (SHARED, {"per_row_positions": True}, AttentionPath.BIAS_SOFTMAX),  # left padding
        (dataclasses.replace(SHARED, shared_softmax_min_batch=9), {}, AttentionPath.BIAS_SOFTMAX),
        (
            dataclasses.replace(SHARED, shared_softmax_min_batch=9),
            {"training": False},
            AttentionPath.BATCH_SHARED,
        ),
        (
            dataclasses.replace(SHARED, has_factors=True, has_bias=False),
            {"dropout": 0.1},
            AttentionPath.INTERFACE,
        ),
        (MIXTURE, {}, AttentionPath.BIASED_FLASH),
        (MIXTURE, {"implementation": "eager"}, AttentionPath.INTERFACE),
        (MIXTURE, {"bias_needs_gradient": False}, AttentionPath.INTERFACE),  # SDPA's fused backward takes it
        (MIXTURE, {"bias_needs_gradient": False, "grad_enabled": False}, AttentionPath.BIASED_FLASH),
        (MIXTURE, {"dropout": 0.1}, AttentionPath.INTERFACE),  # the CPU flash kernel has no dropout
        (MIXTURE, {"dtype": torch.bfloat16}, AttentionPath.INTERFACE),
        (MIXTURE, {"device_type": "cuda"}, AttentionPath.INTERFACE),
        (MIXTURE, {"compiling": True}, AttentionPath.INTERFACE),
        (MIXTURE, {"empty": True}, AttentionPath.INTERFACE),
        (dataclasses.replace(MIXTURE, has_bias=False), {}, AttentionPath.INTERFACE),
    ],
)
def test_choose_attention_path(traits, change, expected):
    assert choose_attention_path(traits, dataclasses.replace(TRAINING, **change)) is expected


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_each_synthesizer_gives_the_logits_its_trait_says(variant):
    """`gives_bias` (a `[q, k]` table, no query/key factors) is what the layer's path is chosen from."""
    config = tiny_config(variant)
    model = SynthesizerModel(config)
    layer = model.layers[0].self_attn
    x = torch.randn(2, 9, config.hidden_size)
    positions = Positions(0, 9, 9)
    for name in layer.components:
        keys = layer.synthesizer(name).cached_per_token(x) if name in layer.token_key_components else None
        logits = layer.synthesizers[name](x, positions, keys)
        assert (logits.query is None) == SYNTHESIZERS[name].gives_bias, name
        assert (logits.bias is not None) == SYNTHESIZERS[name].gives_bias, name


def test_a_layer_asks_for_its_path_from_its_traits_and_the_call():
    model = SynthesizerModel(tiny_config("random"))
    layer = model.layers[0].self_attn
    x, positions = torch.randn(2, 8, 32), Positions(0, 8, 8)
    assert layer.attention_path(x, positions) is AttentionPath.BATCH_SHARED
    assert layer.attention_path(x, positions, batch_shared=False) is AttentionPath.BIAS_SOFTMAX
    assert layer.attention_path(x, Positions(0, 8, 8, query=torch.zeros(2, 8, dtype=torch.long))) is (
        AttentionPath.BIAS_SOFTMAX
    )
    model.config._attn_implementation = "eager"
    assert layer.attention_path(x, positions) is AttentionPath.BIAS_SOFTMAX
    factorized = SynthesizerModel(tiny_config("factorized_random")).layers[0].self_attn
    assert SYNTHESIZERS["factorized_random"].shared_softmax_min_batch == 4
    assert factorized.attention_path(x, positions) is AttentionPath.INTERFACE  # 2 training rows: per row
    assert factorized.attention_path(torch.randn(4, 8, 32), positions) is AttentionPath.BATCH_SHARED
    assert factorized.eval().attention_path(x, positions) is AttentionPath.BATCH_SHARED  # P kept in inference
    mixture = SynthesizerModel(tiny_config("random+dot")).layers[0].self_attn
    assert mixture.attention_path(x, positions) is AttentionPath.BIASED_FLASH
    with torch.no_grad():
        assert mixture.attention_path(x.bfloat16(), positions) is AttentionPath.INTERFACE
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 hidden states, bfloat16 projections
        assert mixture.attention_path(x, positions) is AttentionPath.INTERFACE


def test_attention_dropout_gives_each_row_its_own_mask():
    model = SynthesizerModel(tiny_config("random", attention_probs_dropout_prob=0.5)).train()
    ids = torch.randint(3, 99, (1, 8)).expand(2, -1)
    with torch.no_grad():
        same = model(ids).last_hidden_state
    assert not torch.equal(same[0], same[1])


def gradients_of(model, ids, mask, implementation):
    model.config._attn_implementation = implementation
    model.zero_grad()
    model(ids, attention_mask=mask, labels=ids).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "variant", ["random", "factorized_random", "random+factorized_random", "factorized_random+fixed_random"]
)
@pytest.mark.parametrize("causal", [False, True])
def test_the_kept_training_step_has_the_eager_gradients_and_reuses_its_memory(variant, causal):
    """float64 (eager: a float32 softmax), key padding, 4 rows (so factorized random shares too): every parameter's gradient equals the
    eager reference's, and a second step writes P into the same memory as the first."""
    torch.manual_seed(0)
    config = tiny_config(variant, is_decoder=causal) if causal else tiny_config(variant)
    model = SynthesizerForMaskedLM(config).double().train()
    ids = torch.randint(3, 99, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    reference = gradients_of(model, ids, mask, "eager")
    fast = gradients_of(model, ids, mask, "sdpa")
    layer = model.synthesizer.layers[0].self_attn
    assert layer.attention_path(torch.zeros(4, 12, 32, dtype=torch.float64), Positions(0, 12, 12)) is (
        AttentionPath.BATCH_SHARED
    )
    first = layer.kept_buffers._tensors["weights"].data_ptr()
    assert set(fast) == set(reference)
    for name in reference:
        torch.testing.assert_close(fast[name], reference[name], atol=1e-6, rtol=1e-5, msg=name)
    gradients_of(model, ids, mask, "sdpa")
    assert layer.kept_buffers._tensors["weights"].data_ptr() == first


def test_two_forward_passes_before_one_backward_keep_their_own_softmax():
    """Contrastive training calls the model twice and back-propagates once: the second call must not write
    over the P that the first one's backward reads."""
    torch.manual_seed(0)
    model = SynthesizerModel(tiny_config("random")).double().train()
    a, b = torch.randint(3, 99, (2, 2, 10))
    weights = torch.randn(2, 10, 32, dtype=torch.float64)

    def loss():
        return (model(a).last_hidden_state * weights).sum() + (model(b).last_hidden_state ** 2).sum()

    loss().backward()
    fast = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.config._attn_implementation = "eager"
    loss().backward()
    assert any("random" in name for name in fast)
    for name, parameter in model.named_parameters():
        if name in fast:
            torch.testing.assert_close(fast[name], parameter.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_kept_working_tensors_are_freed_in_eval_and_never_copied():
    model = SynthesizerForMaskedLM(tiny_config("random")).train()
    ids = torch.randint(3, 99, (2, 8))
    model(ids, labels=ids).loss.backward()
    layer = model.synthesizer.layers[0].self_attn
    assert layer.kept_buffers._tensors
    assert not copy.deepcopy(model).synthesizer.layers[0].self_attn.kept_buffers._tensors
    assert not pickle.loads(pickle.dumps(model)).synthesizer.layers[0].self_attn.kept_buffers._tensors
    model.eval()
    assert not layer.kept_buffers._tensors


def test_a_synthesizer_whose_logits_contradict_its_trait_is_named(monkeypatch):
    """The kernel is chosen from `gives_bias` before the logits exist: a class that sets it wrongly is an error
    naming the class and the trait, not a crash inside a kernel."""
    monkeypatch.setattr(SYNTHESIZERS["random"], "gives_bias", False)
    model = SynthesizerModel(tiny_config("random"))
    with pytest.raises(TypeError, match="'random' returned a bias but its class sets gives_bias = False"):
        model(torch.randint(3, 99, (2, 8)))


def test_a_backward_releases_only_the_softmax_of_its_own_call():
    """The second call's backward must not free the first call's kept P for a third call to write over."""
    torch.manual_seed(0)
    model = SynthesizerModel(tiny_config("random")).double().train()
    a, b, c = torch.randint(3, 99, (3, 2, 10))
    weights = torch.randn(2, 10, 32, dtype=torch.float64)
    first = (model(a).last_hidden_state * weights).sum()
    (model(b).last_hidden_state ** 2).sum().backward()
    (model(c).last_hidden_state ** 2).sum().backward()
    model.zero_grad()
    first.backward()
    fast = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.config._attn_implementation = "eager"
    (model(a).last_hidden_state * weights).sum().backward()
    for name, parameter in model.named_parameters():
        if name in fast:
            torch.testing.assert_close(fast[name], parameter.grad, atol=1e-6, rtol=1e-5, msg=name)
