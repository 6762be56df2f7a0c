"""Every synthesizing function against a direct, obviously-correct computation of the paper's equation.

The references below loop over heads and tokens and use the module's own weights; they share no code
with the library's factored (query @ key^T + bias) form.
"""

import math

import pytest
import torch

from helpers import ALL_VARIANTS, SINGLE_VARIANTS, tiny_config
from synthesizer_hf import SynthesizerForCausalLM, SynthesizerForMaskedLM, SynthesizerModel
from synthesizer_hf.attention_kernels import AttentionPath
from synthesizer_hf.modeling_synthesizer import SynthesizerSelfAttention
from synthesizer_hf.synthesizers import SYNTHESIZERS, Positions


def reference_conv(conv, x, keep, causal):
    """A 1D convolution over the tokens of x `[l, c]`, token by token: zeros outside and at padding."""
    width, length = conv.kernel_size[0], x.shape[0]
    left = width - 1 if causal else (width - 1) // 2
    out = torch.zeros(length, conv.out_channels, dtype=torch.float64)
    for i in range(length):
        out[i] = conv.bias.double()
        for t in range(width):
            j = i + t - left
            if 0 <= j < length and keep[j]:
                out[i] += conv.weight[:, :, t].double() @ x[j]
    return out


def reference_windowed_row(module, hidden, h, i, keep, causal):
    """Row i of head h: W2_h applied to the head-h hidden features of the tokens the map to L reads."""
    width, length = module.second_width, hidden.shape[0]
    e = hidden.shape[1] // module.num_heads
    left = width - 1 if causal else (width - 1) // 2
    row = module.position_bias[h].double().clone()
    for t in range(width):
        j = i + t - left
        if 0 <= j < length and keep[j]:
            row += (
                module.position_weights[h, :, t * e : (t + 1) * e].double() @ hidden[j, h * e : (h + 1) * e]
            )
    return row


def reference_component_logits(name, module, x, keep=None, causal=False):
    """S(X) of one component for a single sequence x `[l, d]`, as `[heads, l, l]`, straight from the paper
    (for appendix A.2, from the readings stated in the synthesizers' docstrings)."""
    heads, length = module.num_heads, x.shape[0]
    d_h = x.shape[1] // heads
    out = torch.zeros(heads, length, length, dtype=torch.float64)
    x = x.double()
    keep = torch.ones(length, dtype=torch.bool) if keep is None else keep.bool()

    def lin(layer, v):
        return v @ layer.weight.double().T + layer.bias.double()

    per_token = {  # F's hidden layer of the dense family, token by token
        "dense": lambda v: torch.relu(lin(module.dense, v)),
        "glu": lambda v: lin(module.dense, v) * torch.sigmoid(lin(module.gate, v)),
        "bottleneck_dense": lambda v: torch.relu(lin(module.up, lin(module.down, v))),
    }
    if name in per_token:
        hidden = torch.stack([per_token[name](x[i]) for i in range(length)])
    elif name == "conv_linear":
        hidden = reference_conv(module.conv, x, keep, causal)
    elif name in ("conv_relu_conv", "bottleneck_conv_relu_conv"):
        hidden = torch.relu(reference_conv(module.conv, x, keep, causal))

    for h in range(heads):
        cols = slice(h * d_h, (h + 1) * d_h)
        if name == "dot":
            q, k = lin(module.query, x)[:, cols], lin(module.key, x)[:, cols]
            out[h] = q @ k.T / math.sqrt(d_h)
        elif name == "symmetric_dot":
            q = lin(module.query, x)[:, cols]
            out[h] = q @ q.T / math.sqrt(d_h)
        elif name == "pairwise_dot":
            q = lin(module.query, x)[:, cols]
            out[h] = q @ module.pairwise_coefficients[h].double() @ q.T / math.sqrt(d_h)
        elif name in ("random", "fixed_random"):
            out[h] = module.random_logits[h, :length, :length].double()
        elif name == "factorized_random":
            r1 = module.random_query_factors[h, :length].double()
            r2 = module.random_key_factors[h, :length].double()
            out[h] = r1 @ r2.T  # eq. 7
        elif name in (
            "dense",
            "glu",
            "bottleneck_dense",
            "conv_linear",
            "conv_relu_conv",
            "bottleneck_conv_relu_conv",
        ):
            for i in range(length):  # eq. 2: F(X_i) = W2 hidden_i + b2, head h's slice (a window for convs)
                out[h, i] = reference_windowed_row(module, hidden, h, i, keep, causal)[:length]
        elif name == "factorized_dense":
            width = module.weight_a.shape[1]
            for i in range(length):
                hidden = torch.relu(lin(module.dense, x[i]))[h * width : (h + 1) * width]
                a = hidden @ module.weight_a[h].double() + module.bias_a[h].double()
                b = hidden @ module.weight_b[h].double() + module.bias_b[h].double()
                # eq. 6: composed tilings cover every (a_p, b_r) pair: the flattened outer product.
                out[h, i] = torch.outer(a, b).flatten()[:length]
        else:
            raise AssertionError(name)
    return out


def reference_attention(attention: SynthesizerSelfAttention, x, keep):
    """Y = softmax(sum_c alpha_c S_c(X) masked) G(X), one sequence at a time, float64."""
    heads = attention.num_heads
    alphas = (
        [1.0] if attention.mixture_logits is None else torch.softmax(attention.mixture_logits.double(), 0)
    )
    outputs = []
    for b in range(x.shape[0]):
        logits = sum(
            alpha
            * reference_component_logits(name, attention.synthesizers[name], x[b], keep[b], attention.causal)
            for alpha, name in zip(alphas, attention.components)
        )
        if attention.causal:
            logits = logits.masked_fill(torch.ones_like(logits[0]).triu(1).bool(), float("-inf"))
        logits = logits.masked_fill(~keep[b].bool()[None, None, :], float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        values = (x[b].double() @ attention.value.weight.double().T + attention.value.bias.double()).view(
            x.shape[1], heads, -1
        )
        outputs.append(torch.einsum("hij,jhd->ihd", weights, values).reshape(x.shape[1], -1))
    return torch.stack(outputs)


def run_attention(attention, x, keep, causal=False):
    from synthesizer_hf.modeling_synthesizer import additive_attention_mask

    length = x.shape[1]
    mask = additive_attention_mask(keep, x.shape[0], length, length, causal, x.dtype, x.device)
    positions = Positions(0, length, length, key_mask=keep.bool(), causal=causal)
    out, weights = attention(x, mask, positions, keep.bool())
    return out, weights


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_paper_equation(variant, implementation, causal):
    config = tiny_config(variant)
    config._attn_implementation = implementation
    attention = SynthesizerSelfAttention(config, config.layer_attention_types()[0], 0, causal).eval()
    with torch.no_grad():  # large random weights, so that every term visibly moves the softmax
        for param in [*attention.parameters(), *attention.buffers()]:  # fixed R is a buffer (torch.empty)
            param.normal_(0.0, 0.4)
    x = torch.randn(3, 11, config.hidden_size)
    keep = torch.ones(3, 11, dtype=torch.long)
    keep[1, 8:] = 0
    keep[2, 5:] = 0
    with torch.no_grad():
        out, _ = run_attention(attention, x, keep, causal)
    expected = reference_attention(attention, x, keep)
    rows = keep.bool()  # outputs at padded query positions are never used
    torch.testing.assert_close(out.double()[rows], expected[rows], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_training_gradients_equal_the_eager_reference(variant, causal):
    """In training (grad on) a trainable bias beside query/key factors takes `biased_attention`, the random
    family its batch-shared kernel, other mixtures SDPA: float64 outputs and gradients (inputs and every
    parameter) equal the eager path's."""
    config = tiny_config(variant)
    attention = SynthesizerSelfAttention(config, config.layer_attention_types()[0], 0, causal).double()
    with torch.no_grad():  # the module alone is not initialised (torch.empty)
        for param in [*attention.parameters(), *attention.buffers()]:
            param.normal_(0.0, 0.2)
    x = torch.randn(3, 11, config.hidden_size, dtype=torch.float64, requires_grad=True)
    keep = torch.ones(3, 11, dtype=torch.long)
    keep[1, 8:] = 0
    projection = (
        torch.randn(3, 11, config.hidden_size, dtype=torch.float64) * keep[..., None]
    )  # padded rows unused
    results = {}
    for implementation in ["eager", "sdpa"]:
        config._attn_implementation = implementation
        out, _ = run_attention(attention, x, keep, causal)
        loss = (out * projection).sum()
        results[implementation] = torch.autograd.grad(loss, [x, *attention.parameters()], allow_unused=True)
    for name, eager, sdpa in zip(["x", *dict(attention.named_parameters())], *results.values()):
        if eager is None:
            assert sdpa is None, name
        else:
            torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-4)  # eager: float32 softmax
    config._attn_implementation = "sdpa"
    path = attention.attention_path(x, Positions(0, 11, 11, key_mask=keep.bool(), causal=causal))
    # mixtures of a trainable-bias synthesizer (random, factorized dense) with a query-key one
    fused = variant in ("random+dot", "random+dense", "factorized_dense+symmetric_dot")
    assert (path is AttentionPath.BIASED_FLASH) == fused, path
    classes = [SYNTHESIZERS[name] for name in config.layer_attention_types()[0]]
    # three rows: factorized random shares its softmax in training from four
    shared = all(cls.input_independent and cls.shared_softmax_min_batch <= 3 for cls in classes)
    assert (path is AttentionPath.BATCH_SHARED) == shared, path


@pytest.mark.parametrize(
    "variant", ["dot", "random+dot", "random", "dense+dot", "factorized_random", "pairwise_dot"]
)
def test_left_padded_causal_training_has_the_eager_gradients_under_sdpa(variant):
    """The padding before a left-padded prompt sees no key; its output predicts the first real token, so its
    gradient reaches the shared weights. A row of dtype minima would lose its log-sum-exp to rounding and
    CPU SDPA's backward return gradients k times too large: such rows are left unmasked (in every path)."""
    model = SynthesizerForCausalLM(tiny_config(variant))
    ids = torch.randint(3, 99, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[2, :1] = 0
    labels = ids.masked_fill(mask == 0, -100)
    gradients = {}
    for implementation in ["eager", "sdpa"]:
        model.set_attn_implementation(implementation)
        model.zero_grad()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        gradients[implementation] = {
            name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None
        }
    assert gradients["eager"].keys() == gradients["sdpa"].keys()
    for name, eager in gradients["eager"].items():
        torch.testing.assert_close(gradients["sdpa"][name], eager, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_padding_does_not_change_unpadded_outputs(variant):
    model = SynthesizerModel(tiny_config(variant)).eval()
    ids = torch.randint(3, 99, (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        with_padding = model(padded, attention_mask=mask).last_hidden_state[:, :9]
    torch.testing.assert_close(with_padding, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_trainable_parameter_gets_a_gradient(variant):
    model = SynthesizerForMaskedLM(tiny_config(variant))
    ids = torch.randint(3, 99, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    model(ids, attention_mask=mask, labels=ids).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} got no gradient"
    fixed = [buffer for name, buffer in model.named_buffers() if "random_logits" in name]
    assert len(fixed) == (2 if variant == "fixed_random" else 0)
    assert all(not buffer.requires_grad and buffer.grad is None for buffer in fixed)


def attention_maps(model, ids, mask=None):
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        return model(ids, attention_mask=mask, output_attentions=True).attentions


@pytest.mark.parametrize("variant", ["random", "fixed_random", "factorized_random"])
def test_random_attention_does_not_depend_on_the_input(variant):
    model = SynthesizerModel(tiny_config(variant)).eval()
    first = attention_maps(model, torch.randint(3, 99, (2, 10)))
    second = attention_maps(model, torch.randint(3, 99, (2, 10)))
    for a, b in zip(first, second):
        assert a.shape == (2, 4, 10, 10)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("variant", ["dense", "factorized_dense", "glu", "bottleneck_dense"])
def test_dense_row_depends_only_on_its_own_token(variant):
    model = SynthesizerModel(tiny_config(variant)).eval()
    ids = torch.randint(3, 99, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 96 + 3
    before, after = attention_maps(model, ids)[0], attention_maps(model, changed)[0]
    unchanged_rows = [i for i in range(10) if i != 6]
    torch.testing.assert_close(before[:, :, unchanged_rows], after[:, :, unchanged_rows])
    assert not torch.allclose(before[:, :, 6], after[:, :, 6])


@pytest.mark.parametrize(
    ("variant", "reach"), [("conv_linear", 1), ("conv_relu_conv", 2), ("bottleneck_conv_relu_conv", 2)]
)
def test_convolutional_rows_read_exactly_their_window(variant, reach):
    """With widths 3 (and 3), row i reads tokens i-reach .. i+reach in an encoder, and no others."""
    model = SynthesizerModel(tiny_config(variant)).eval()
    ids = torch.randint(3, 99, (1, 12))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 96 + 3
    before, after = model.layers[0], None
    with torch.no_grad():
        hidden = model.embeddings(ids, None, None, Positions(0, 12, 12))
        hidden_changed = model.embeddings(changed, None, None, Positions(0, 12, 12))
        layer = before.self_attn.synthesizers[variant]
        rows = layer(hidden, Positions(0, 12, 12), layer.cached_per_token(hidden)).query
        after = layer(hidden_changed, Positions(0, 12, 12), layer.cached_per_token(hidden_changed)).query
    moved = [i for i in range(12) if not torch.allclose(rows[0, :, i], after[0, :, i])]
    assert moved == list(range(6 - reach, 6 + reach + 1))


def test_output_attentions_shape_and_rows_sum_to_one():
    model = SynthesizerModel(tiny_config("random+dot")).eval()
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 7:] = 0
    maps = attention_maps(model, torch.randint(3, 99, (2, 10)), mask)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 10, 10)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 4, 10))
    assert torch.all(maps[0][0, :, :, 7:] == 0), "padded keys must get zero weight"


def table1_synthesizer_parameters(variant, config):
    """|theta| of the synthesizing function (Table 1; A.2 from our readings), with the layers' biases."""
    d, heads, length = config.hidden_size, config.num_attention_heads, config.synthesizer_length
    k, a, b = config.factorized_random_rank, config.factorized_dense_a, config.factorized_dense_b
    r, f1, f2 = (
        config.synthesizer_bottleneck_size,
        config.synthesizer_conv_width,
        config.synthesizer_second_conv_width,
    )
    to_length = d * length + heads * length  # W2 and b2 of the dense family
    return {
        "dot": 2 * (d * d + d),
        "symmetric_dot": d * d + d,
        "pairwise_dot": d * d + d + heads * (d // heads) ** 2,
        "random": heads * length * length,
        "fixed_random": heads * length * length,
        "factorized_random": heads * 2 * length * k,
        "dense": d * d + d + to_length,
        "glu": 2 * (d * d + d) + to_length,
        "bottleneck_dense": (d * r + r) + (r * d + d) + to_length,
        "conv_linear": d * d * f1 + d + to_length,
        "conv_relu_conv": d * d * f1 + d + f2 * d * length + heads * length,
        "bottleneck_conv_relu_conv": d * r * f1 + r + f2 * r * length + heads * length,
        "factorized_dense": d * d + d + d * (a + b) + heads * (a + b),
    }[variant]


@pytest.mark.parametrize("variant", SINGLE_VARIANTS)
def test_parameter_counts_follow_table_1(variant):
    config = tiny_config(variant)
    attention = SynthesizerModel(config).layers[0].self_attn
    # fixed R is a buffer: counted by Table 1, but not trainable
    counted = sum(p.numel() for p in attention.synthesizers.parameters())
    counted += sum(b.numel() for b in attention.synthesizers.buffers())
    expected = table1_synthesizer_parameters(variant, config)
    assert counted == expected
    names = {n for n, _ in attention.named_parameters()}
    if variant not in ("dot",):
        assert not any(n.endswith("key.weight") for n in names), "synthesizers have no key projection"
    if variant in ("random", "fixed_random", "factorized_random", "dense", "factorized_dense"):
        assert not any("query" in n and "factors" not in n for n in names), "no query projection either"


def test_mixture_weights_are_a_learned_convex_combination():
    attention = SynthesizerModel(tiny_config("random+dense+dot")).layers[0].self_attn
    weights = attention.mixture_weights()
    torch.testing.assert_close(weights, torch.full((3,), 1 / 3))
    assert attention.mixture_logits.requires_grad


@pytest.mark.parametrize("variant", ["random", "factorized_random", "random+factorized_random"])
def test_batch_shared_path_matches_reference_even_when_a_padded_key_dominates(variant):
    config = tiny_config(variant)
    model = SynthesizerModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("random_logits"):
                param[:, :, 6] = 300.0  # key 6 is padded below: exp underflows for every real key
    ids = torch.randint(3, 99, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model.config._attn_implementation = implementation
        with torch.no_grad():
            outputs[implementation] = model(ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(outputs["sdpa"]).all()
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=1e-5, rtol=1e-5)


def test_sparse_prediction_gives_the_same_loss_and_gradients():
    model = SynthesizerForMaskedLM(tiny_config("random+dot"))
    ids = torch.randint(3, 99, (2, 10))
    labels = ids.masked_fill(torch.rand(2, 10) > 0.3, -100)
    labels[0, 0] = ids[0, 0]
    dense = model(ids, labels=labels)
    dense.loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.config.sparse_prediction = True
    sparse = model(ids, labels=labels)
    sparse.loss.backward()
    torch.testing.assert_close(sparse.loss, dense.loss)
    assert sparse.logits.shape == (int((labels != -100).sum()), 99)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], atol=1e-6, rtol=1e-5)
    assert model(ids).logits.shape == (2, 10, 99), "without labels the full logits come back (fill-mask)"


@pytest.mark.parametrize("variant", ["fixed_random", "random"])
def test_training_keeps_the_shared_softmax_only_of_frozen_tables(variant):
    """A frozen R (fixed_random) needs no gradient through P, so training computes softmax(R) once and keeps
    it until R changes; a trainable R recomputes it every step (into its kept working tensors). Gradients
    equal the eager path's."""
    model = SynthesizerForMaskedLM(tiny_config(variant)).train()
    layers = [layer.self_attn for layer in model.synthesizer.layers]
    ids = torch.randint(3, 99, (4, 9))
    kept = []
    for _ in range(2):
        model(ids, labels=ids).loss.backward()
        kept.append([layer._shared_weights for layer in layers])
    if variant == "fixed_random":
        assert all(first is second is not None for first, second in zip(*kept)), "P is computed once"
    else:
        assert all(weights is None for weights in kept[0] + kept[1]), "a trainable R keeps no P"
    gradients = {name: p.grad.clone() / 2 for name, p in model.named_parameters()}
    model.zero_grad()
    model.config._attn_implementation = "eager"
    model(ids, labels=ids).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(gradients[name], parameter.grad, atol=1e-5, rtol=1e-4)
    if variant == "fixed_random":
        model.config._attn_implementation = "sdpa"
        for name, buffer in model.named_buffers():
            if "random_logits" in name:
                buffer.mul_(3.0)
        model(ids, labels=ids)
        assert all(layer._shared_weights is not first for layer, first in zip(layers, kept[1])), (
            "an in-place change of R invalidates the kept softmax"
        )


@pytest.mark.parametrize("variant", ["random", "factorized_random+fixed_random"])
def test_inference_cache_of_the_shared_softmax_follows_parameter_updates(variant):
    model = SynthesizerModel(tiny_config(variant)).eval()
    ids = torch.randint(3, 99, (2, 9))
    with torch.no_grad():
        first = model(ids).last_hidden_state
        assert torch.equal(model(ids).last_hidden_state, first), "a cached softmax gives the same result"
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if "random" in name:
                tensor.mul_(3.0)  # an optimizer step or load_state_dict also changes tensors in place
        updated = model(ids).last_hidden_state
        model.config._attn_implementation = "eager"
        reference = model(ids).last_hidden_state
    assert not torch.allclose(updated, first)
    torch.testing.assert_close(updated, reference, atol=1e-5, rtol=1e-5)
