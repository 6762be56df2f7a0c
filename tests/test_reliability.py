"""Reliability: the model family survives bad input, odd configs, precision changes and interrupted training.

Every guarantee checked here is listed, with its test, in docs/GUARANTEES.md (which also lists what is NOT
guaranteed). Sizes are tiny and hypothesis runs a fixed, bounded number of examples so the file stays fast.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from transformers import set_seed

from conftest import ALL_VARIANTS, tiny_config
from synthesizer_hf import (
    SynthesizerConfig,
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerModel,
)
from synthesizer_hf.configuration_synthesizer import ATTENTION_COMPONENTS, POSITIVE_FIELDS
from synthesizer_hf.modeling_synthesizer import additive_attention_mask
from synthesizer_hf.synthesizers import SYNTHESIZERS

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Paper abbreviations and other spellings that must parse to each canonical name.
# Every accepted spelling of each synthesizer: its name, upper-cased, and its aliases in any case.
SPELLINGS = {
    name: [name, name.upper(), *(alias.upper() if i % 2 else alias for i, alias in enumerate(cls.aliases))]
    for name, cls in SYNTHESIZERS.items()
}


def state_dicts_equal(first: torch.nn.Module, second: torch.nn.Module) -> None:
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def all_finite_gradients(model: torch.nn.Module) -> None:
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    assert grads, "backward reached no parameter"
    for name, grad in grads:
        assert torch.isfinite(grad).all(), f"non-finite gradient in {name}"


# ---------------------------------------------------------------------------------------------------------
# Config space
# ---------------------------------------------------------------------------------------------------------


@st.composite
def attention_specs(draw, max_components=3):
    """One layer's spec: 1-3 distinct components, each in a random accepted spelling, joined by '+'."""
    names = draw(
        st.lists(st.sampled_from(ATTENTION_COMPONENTS), min_size=1, max_size=max_components, unique=True)
    )
    spelled = [draw(st.sampled_from(SPELLINGS[name])) for name in names]
    return "+".join(spelled), "+".join(names)


@st.composite
def valid_configs(draw):
    """Keyword arguments of a valid SynthesizerConfig, the expected canonical spec, and a model kind."""
    heads = draw(st.sampled_from([1, 2, 4]))
    hidden = heads * draw(st.sampled_from([2, 4, 8]))
    max_positions = draw(st.integers(1, 12))
    length = draw(st.integers(1, max_positions))
    layers = draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["masked_lm", "masked_lm", "causal_lm", "seq2seq"]))

    def stack_spec(num_layers):
        if draw(st.booleans()):  # one spec for all layers
            spelled, canonical = draw(attention_specs())
            return spelled, canonical
        specs = [draw(attention_specs()) for _ in range(num_layers)]
        return [s for s, _ in specs], [c for _, c in specs]

    attention_type, canonical = stack_spec(layers)
    kwargs = dict(
        vocab_size=23,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=draw(st.integers(1, 12)),
        max_position_embeddings=max_positions,
        attention_type=attention_type,
        factorized_random_rank=draw(st.integers(1, length)),
        hidden_dropout_prob=draw(st.sampled_from([0.0, 0.1])),
        attention_probs_dropout_prob=draw(st.sampled_from([0.0, 0.1])),
        synthesizer_initializer_range=0.5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if length != max_positions or draw(st.booleans()):
        kwargs["synthesizer_length"] = length
    if draw(st.booleans()):
        a = draw(st.sampled_from([a for a in range(1, length + 1) if length % a == 0]))
        kwargs["factorized_dense_a"], kwargs["factorized_dense_b"] = a, length // a
    if draw(st.booleans()):
        kwargs["dense_synthesizer_hidden_size"] = heads * draw(st.integers(1, 3))
    decoder_canonical = canonical
    if kind == "seq2seq":
        kwargs["num_decoder_layers"] = draw(st.integers(1, 3))
        spelled, decoder_canonical = stack_spec(kwargs["num_decoder_layers"])
        kwargs["decoder_attention_type"] = spelled
    kwargs["attn_implementation"] = draw(st.sampled_from(["eager", "sdpa"]))
    return kwargs, canonical, decoder_canonical, kind


MODEL_CLASSES = {
    "masked_lm": SynthesizerForMaskedLM,
    "causal_lm": SynthesizerForCausalLM,
    "seq2seq": SynthesizerForSeq2SeqLM,
}


def random_batch(vocab, length, generator):
    """Two rows: the first unpadded, the second with 0 .. length - 1 real tokens (right padding)."""
    ids = torch.randint(3, vocab, (2, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, int(torch.randint(0, length, (), generator=generator)) :] = 0
    return ids, mask


def run_with_loss(model, kind, length, generator):
    """Forward with labels on a batch of 2 (the second row right-padded) and backward; returns the outputs."""
    vocab = model.config.vocab_size
    ids, mask = random_batch(vocab, length, generator)
    if kind == "seq2seq":
        labels = torch.randint(3, vocab, (2, int(torch.randint(1, length + 1, (), generator=generator))))
        outputs = model(ids, attention_mask=mask, labels=labels)
    elif kind == "causal_lm" and length == 1:  # no next token to predict: train on the logits directly
        outputs = model(ids, attention_mask=mask)
        outputs.loss = outputs.logits.square().mean()
    else:
        outputs = model(ids, attention_mask=mask, labels=ids)
    assert torch.isfinite(outputs.logits).all()
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    all_finite_gradients(model)
    return ids, mask


@SETTINGS
@given(drawn=valid_configs(), seed=st.integers(0, 2**16))
def test_random_valid_configs_build_train_save_and_reload_exactly(drawn, seed):
    kwargs, canonical, decoder_canonical, kind = drawn
    implementation = kwargs.pop("attn_implementation")
    config = SynthesizerConfig(**kwargs)
    config._attn_implementation = implementation
    assert config.attention_type == canonical, "aliases are stored in their canonical form"
    if kind == "seq2seq":
        assert config.decoder_attention_type == decoder_canonical
    torch.manual_seed(seed)
    model = MODEL_CLASSES[kind](config)
    generator = torch.Generator().manual_seed(seed)
    length = int(torch.randint(1, config.synthesizer_length + 1, (), generator=generator))
    ids, mask = run_with_loss(model, kind, length, generator)

    model.eval()
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        reloaded = type(model).from_pretrained(directory, attn_implementation=implementation).eval()
    assert reloaded.config.attention_type == config.attention_type
    state_dicts_equal(model, reloaded)
    extra = {"decoder_input_ids": ids} if kind == "seq2seq" else {}
    with torch.no_grad():
        before = model(ids, attention_mask=mask, **extra).logits
        after = reloaded(ids, attention_mask=mask, **extra).logits
    assert torch.equal(before, after)


@SETTINGS
@given(
    drawn=valid_configs(), seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float16, torch.bfloat16])
)
def test_random_valid_configs_are_finite_in_half_precision(drawn, seed, dtype):
    kwargs, _, _, kind = drawn
    implementation = kwargs.pop("attn_implementation")
    config = SynthesizerConfig(**kwargs)
    config._attn_implementation = implementation
    torch.manual_seed(seed)
    model = MODEL_CLASSES[kind](config).to(dtype).eval()
    generator = torch.Generator().manual_seed(seed)
    ids, mask = random_batch(config.vocab_size, config.synthesizer_length, generator)  # full length L
    mask[0] = 0  # and an entirely padded row
    extra = {"decoder_input_ids": ids} if kind == "seq2seq" else {}
    with torch.no_grad():
        logits = model(ids, attention_mask=mask, **extra).logits
    assert logits.dtype == dtype
    assert torch.isfinite(logits).all()


@st.composite
def invalid_configs(draw):
    """A valid base config with exactly one field broken; returns (kwargs, fragment the message must name)."""
    heads = draw(st.sampled_from([2, 4]))
    hidden = heads * draw(st.sampled_from([2, 4, 8]))
    max_positions = draw(st.integers(2, 16))
    length = draw(st.integers(1, max_positions))
    layers = draw(st.integers(1, 3))
    kwargs = dict(
        vocab_size=23,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_positions,
        synthesizer_length=length,
        factorized_random_rank=1,
        attention_type=draw(attention_specs())[0],
    )
    fault = draw(
        st.sampled_from(
            [
                "unknown_variant",
                "duplicate_component",
                "factor_product",
                "rank_too_large",
                "heads_do_not_divide_hidden",
                "heads_do_not_divide_dense_hidden",
                "per_layer_list_length",
                "decoder_per_layer_list_length",
                "length_beyond_positions",
            ]
        )
    )
    if fault == "unknown_variant":
        bogus = draw(st.sampled_from(["linformer", "randm", "dot-product", "XYZ", "dense*dot"]))
        kwargs["attention_type"] = draw(st.sampled_from([bogus, f"random+{bogus}", f"{bogus}+dense"]))
        return kwargs, "attention_type"
    if fault == "duplicate_component":
        name = draw(st.sampled_from(ATTENTION_COMPONENTS))
        first, second = draw(st.sampled_from(SPELLINGS[name])), draw(st.sampled_from(SPELLINGS[name]))
        kwargs["attention_type"] = f"{first}+{second}"
        if draw(st.booleans()):
            kwargs["attention_type"] = [kwargs["attention_type"]] * layers
        return kwargs, "attention_type"
    if fault == "factor_product":
        a, b = draw(st.integers(1, 8)), draw(st.integers(1, 8))
        if a * b == length:
            b += 1
        kwargs["factorized_dense_a"], kwargs["factorized_dense_b"] = a, b
        kwargs["attention_type"] = draw(
            st.sampled_from(["factorized_dense", "FD+V", "random+factorized_dense"])
        )
        return kwargs, "factorized_dense_a \\* factorized_dense_b"
    if fault == "rank_too_large":
        kwargs["factorized_random_rank"] = length + draw(st.integers(1, 5))
        kwargs["attention_type"] = draw(
            st.sampled_from(["factorized_random", "FR+V", "dense+factorized_random"])
        )
        return kwargs, "factorized_random_rank"
    if fault == "heads_do_not_divide_hidden":
        kwargs["num_attention_heads"] = draw(st.sampled_from([3, 5, 7]))
        kwargs["hidden_size"] = kwargs["num_attention_heads"] * 2 + draw(st.integers(1, 2))
        return kwargs, "num_attention_heads"
    if fault == "heads_do_not_divide_dense_hidden":
        kwargs["dense_synthesizer_hidden_size"] = heads * draw(st.integers(1, 3)) + 1
        kwargs["attention_type"] = draw(st.sampled_from(["dense", "D+V", "factorized_dense"]))
        return kwargs, "dense_synthesizer_hidden_size"
    if fault == "per_layer_list_length":
        wrong = draw(st.integers(0, 4).filter(lambda n: n != layers))
        kwargs["attention_type"] = ["random"] * wrong
        return kwargs, "attention_type"
    if fault == "decoder_per_layer_list_length":
        kwargs["num_decoder_layers"] = layers
        kwargs["decoder_attention_type"] = ["dot"] * draw(st.integers(0, 4).filter(lambda n: n != layers))
        return kwargs, "decoder_attention_type"
    kwargs["synthesizer_length"] = max_positions + draw(st.integers(1, 8))
    kwargs.pop("factorized_random_rank")
    kwargs["attention_type"] = draw(st.sampled_from(["random", "R+V", "fixed_random", "dense"]))
    return kwargs, "synthesizer_length"


@pytest.mark.parametrize(
    "fields",
    [
        dict(max_position_embeddings=4),  # the default factorized_random_rank 8 exceeds L = 4
        dict(factorized_dense_a=3, factorized_dense_b=3),
        dict(dense_synthesizer_hidden_size=7),
    ],
)
@pytest.mark.parametrize("attention_type", ["random", "dot", "symmetric_dot+random"])
def test_fields_of_synthesizers_not_in_use_are_not_constrained(fields, attention_type):
    """Only the synthesizers a config uses check their fields (their sizes must still be positive)."""
    SynthesizerConfig(attention_type=attention_type, hidden_size=32, num_attention_heads=4, **fields)
    with pytest.raises(ValueError, match="factorized_random_rank"):
        SynthesizerConfig(attention_type=attention_type, factorized_random_rank=0)


def test_the_config_names_are_the_registry():
    """Every name, alias and size check comes from the synthesizer classes."""
    assert tuple(SYNTHESIZERS) == ATTENTION_COMPONENTS
    for name, cls in SYNTHESIZERS.items():
        assert cls.name == name and cls.paper_name and cls.logits and cls.summary
        for alias in cls.aliases:
            assert SynthesizerConfig(attention_type=alias.upper()).attention_type == name
        assert set(cls.config_fields) <= set(POSITIVE_FIELDS)


@SETTINGS
@given(drawn=invalid_configs())
def test_invalid_configs_raise_a_value_error_naming_the_field(drawn):
    kwargs, field = drawn
    with pytest.raises(ValueError, match=field):
        SynthesizerConfig(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(synthesizer_length=0), "synthesizer_length"),
        (dict(synthesizer_length=-4), "synthesizer_length"),
        (dict(max_position_embeddings=0), "max_position_embeddings|synthesizer_length"),
        (dict(factorized_dense_b=0), "factorized_dense"),
        (dict(num_attention_heads=0), "num_attention_heads"),
    ],
)
def test_zero_or_negative_sizes_raise_a_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config("random", **overrides)


@pytest.mark.parametrize("use", ["forward", "generate"])
def test_seq2seq_with_more_decoder_than_encoder_layers(use):
    model = SynthesizerForSeq2SeqLM(tiny_config("dot", num_hidden_layers=1, num_decoder_layers=2)).eval()
    ids = torch.randint(3, 99, (2, 6))
    if use == "forward":  # use_cache defaults to True, as in a Trainer step
        assert torch.isfinite(model(ids, labels=ids).loss)
    else:
        assert model.generate(ids, max_new_tokens=3).shape == (2, 4)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        (dict(factorized_random_rank=99), "factorized_random_rank"),
        (dict(synthesizer_length=64), "synthesizer_length"),
        (dict(attention_type="random+bogus"), "attention_type"),
    ],
)
def test_invalid_override_in_from_pretrained_is_a_value_error(tmp_path, override, field):
    tiny_config("factorized_random+dot").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=field):
        SynthesizerConfig.from_pretrained(tmp_path, **override)


def test_valid_override_in_from_pretrained_gives_a_consistent_config(tmp_path):
    SynthesizerForMaskedLM(tiny_config("dot")).save_pretrained(tmp_path / "saved")
    # a dot-product model has no length-bound tensor, so a shorter synthesizer_length loads...
    model = SynthesizerForMaskedLM.from_pretrained(
        tmp_path / "saved", synthesizer_length=8, attention_type="V"
    )
    assert model.config.attention_type == "dot", "aliases are canonicalised"
    assert model.config.factorized_dense_a * model.config.factorized_dense_b == 8, "default factors follow L"
    # ...and what it saves must load again
    model.save_pretrained(tmp_path / "resaved")
    SynthesizerForMaskedLM.from_pretrained(tmp_path / "resaved")


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masked_lm():
    torch.manual_seed(0)
    return SynthesizerForMaskedLM(tiny_config("random+dot")).eval()


@pytest.mark.parametrize("bad", ["too_large", "negative"])
@pytest.mark.parametrize("model_class", [SynthesizerForMaskedLM, SynthesizerForCausalLM])
def test_token_ids_outside_the_vocabulary_are_a_value_error(model_class, bad):
    model = model_class(tiny_config("dense")).eval()
    ids = torch.randint(3, 99, (2, 6))
    ids[1, 2] = 99 if bad == "too_large" else -1
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 99\)"):
        model(ids)


@pytest.mark.parametrize(
    "variant", ["random", "factorized_random", "dense", "factorized_dense", "random+dot"]
)
def test_sequence_longer_than_the_synthesizer_length_is_a_value_error(variant):
    model = SynthesizerForMaskedLM(tiny_config(variant, max_position_embeddings=12, synthesizer_length=8))
    model(torch.randint(3, 99, (1, 8)))  # exactly L is fine
    with pytest.raises(ValueError, match="exceeds the synthesizer length 8"):
        model(torch.randint(3, 99, (1, 9)))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.randint(3, 99, (1, 13)))


@pytest.mark.parametrize(
    "model_class", [SynthesizerForMaskedLM, SynthesizerForCausalLM, SynthesizerForSeq2SeqLM]
)
@pytest.mark.parametrize("shape", [(0, 5), (2, 0)])
def test_empty_inputs_are_a_value_error(model_class, shape):
    model = model_class(tiny_config("random")).eval()
    with pytest.raises(ValueError, match="Empty input"):
        model(torch.zeros(shape, dtype=torch.long))


@pytest.mark.parametrize(
    ("model_class", "mask_shape"),
    [
        (model_class, shape)
        for model_class in (SynthesizerForMaskedLM, SynthesizerForCausalLM)
        for shape in ((2, 7), (2, 9), (1, 8), (3, 8), (2, 8, 8), (16,))
        if (model_class, shape) != (SynthesizerForCausalLM, (16,))
    ]
    + [
        pytest.param(
            SynthesizerForCausalLM,
            (16,),
            id="SynthesizerForCausalLM-1d_mask",
        )
    ],
)
def test_attention_mask_of_the_wrong_shape_is_a_value_error(model_class, mask_shape):
    model = model_class(tiny_config("random+dot")).eval()
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(2, 8\)"):
        model(torch.randint(3, 99, (2, 8)), attention_mask=torch.ones(mask_shape, dtype=torch.long))


def test_wrong_attention_mask_shape_in_seq2seq_and_multiple_choice():
    seq2seq = SynthesizerForSeq2SeqLM(tiny_config("random")).eval()
    ids = torch.randint(3, 99, (2, 8))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        seq2seq(ids, attention_mask=torch.ones(2, 5), labels=ids)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        seq2seq(ids, labels=ids, decoder_attention_mask=torch.ones(2, 3))
    choice = SynthesizerForMultipleChoice(tiny_config("random")).eval()
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        choice(torch.randint(3, 99, (2, 3, 8)), attention_mask=torch.ones(2, 8))
    with pytest.raises(ValueError, match=r"\(batch, num_choices, length\)"):
        choice(ids)


@pytest.mark.parametrize("mask_dtype", [torch.long, torch.bool, torch.float32])
def test_attention_mask_dtypes_are_equivalent(masked_lm, mask_dtype):
    ids = torch.randint(3, 99, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        expected = masked_lm(ids, attention_mask=mask).logits
        got = masked_lm(ids, attention_mask=mask.to(mask_dtype)).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_all_padding_rows_are_finite_in_every_head(variant):
    config = tiny_config(variant, num_labels=3)
    ids = torch.randint(3, 99, (3, 8))
    mask = torch.ones_like(ids)
    mask[0] = 0  # first row entirely padding
    mask[2, 3:] = 0
    for model in (
        SynthesizerForMaskedLM(config),
        SynthesizerForSequenceClassification(config),
        SynthesizerForCausalLM(tiny_config(variant)),
    ):
        labels = (
            ids if not isinstance(model, SynthesizerForSequenceClassification) else torch.tensor([0, 1, 2])
        )
        outputs = model(ids, attention_mask=mask, labels=labels)
        assert torch.isfinite(outputs.logits).all() and torch.isfinite(outputs.loss)
        outputs.loss.backward()
        all_finite_gradients(model)


def test_all_padding_encoder_rows_in_seq2seq_are_finite():
    model = SynthesizerForSeq2SeqLM(tiny_config("random+dot"))
    ids = torch.randint(3, 99, (2, 8))
    mask = torch.ones_like(ids)
    mask[1] = 0
    outputs = model(ids, attention_mask=mask, labels=ids)
    assert torch.isfinite(outputs.logits).all() and torch.isfinite(outputs.loss)
    outputs.loss.backward()
    all_finite_gradients(model)


@pytest.mark.parametrize(
    ("head", "labels", "message"),
    [
        ("masked_lm", lambda ids: ids.float(), "integer class ids"),
        ("masked_lm", lambda ids: ids[:, :5], r"must have shape \(2, 8\)"),
        ("masked_lm", lambda ids: ids.reshape(-1), r"must have shape \(2, 8\)"),
        ("token", lambda ids: torch.zeros(2, 8), "integer class ids"),
        ("token", lambda ids: torch.zeros(2, 9, dtype=torch.long), r"must have shape \(2, 8\)"),
        ("sequence", lambda ids: torch.tensor([0, 1, 2]), r"must have shape \(2,\)"),
        ("sequence", lambda ids: torch.tensor([0.0, 1.0]), r"multi-label labels must have shape \(2, 3\)"),
        ("multi_label", lambda ids: torch.tensor([0.0, 1.0]), r"must have shape \(2, 3\)"),
        ("choice", lambda ids: torch.tensor([0.0, 1.0]), "integer class ids"),
        ("choice", lambda ids: torch.tensor([[0], [1]]), r"must have shape \(2,\)"),
        ("causal_lm", lambda ids: ids.float(), "integer class ids"),
        ("causal_lm", lambda ids: ids[:, 1:], r"must have shape \(2, 8\)"),
    ],
)
def test_labels_of_the_wrong_dtype_or_shape_are_a_value_error(head, labels, message):
    config = tiny_config("random", num_labels=3)
    ids = torch.randint(3, 99, (2, 8))
    model_ids = ids
    if head == "masked_lm":
        model = SynthesizerForMaskedLM(config)
    elif head == "token":
        model = SynthesizerForTokenClassification(config)
    elif head == "sequence":
        model = SynthesizerForSequenceClassification(config)
    elif head == "multi_label":
        config.problem_type = "multi_label_classification"
        model = SynthesizerForSequenceClassification(config)
    elif head == "choice":
        model = SynthesizerForMultipleChoice(config)
        model_ids = torch.randint(3, 99, (2, 3, 8))
    else:
        model = SynthesizerForCausalLM(config)
    with pytest.raises(ValueError, match=message):
        model(model_ids, labels=labels(ids))


def test_well_formed_labels_give_finite_losses_for_every_head():
    ids = torch.randint(3, 99, (2, 8))
    cases = [
        (SynthesizerForMaskedLM(tiny_config("random")), ids, ids),
        (SynthesizerForTokenClassification(tiny_config("random", num_labels=3)), ids, ids % 3),
        (
            SynthesizerForSequenceClassification(tiny_config("random", num_labels=3)),
            ids,
            torch.tensor([0, 2]),
        ),
        (
            SynthesizerForSequenceClassification(tiny_config("random", num_labels=1)),
            ids,
            torch.tensor([0.5, 1.0]),
        ),
        (
            SynthesizerForSequenceClassification(
                tiny_config("random", num_labels=3, problem_type="multi_label_classification")
            ),
            ids,
            torch.tensor([[0, 1, 1], [1, 0, 0]]),  # integer multi-hot labels are converted
        ),
        (
            SynthesizerForMultipleChoice(tiny_config("random")),
            torch.randint(3, 99, (2, 3, 8)),
            torch.tensor([0, 2]),
        ),
    ]
    for model, inputs, labels in cases:
        loss = model(inputs, labels=labels).loss
        assert torch.isfinite(loss), type(model).__name__


def test_label_ids_out_of_range_raise_an_error():
    """Not a ValueError of ours: PyTorch's cross-entropy refuses them (IndexError), which is still loud."""
    ids = torch.randint(3, 99, (2, 8))
    with pytest.raises((IndexError, ValueError, RuntimeError), match="out of bounds"):
        SynthesizerForMaskedLM(tiny_config("random"))(ids, labels=ids + 99)
    with pytest.raises((IndexError, ValueError, RuntimeError), match="out of bounds"):
        SynthesizerForSequenceClassification(tiny_config("random", num_labels=2))(
            ids, labels=torch.tensor([0, 5])
        )


def test_no_labelled_token_gives_a_nan_loss_but_finite_zero_gradients():
    """Documented non-guarantee: mean cross-entropy over zero labelled tokens is 0/0 (as in PyTorch/BERT)."""
    model = SynthesizerForMaskedLM(tiny_config("random+dot"))
    ids = torch.randint(3, 99, (2, 8))
    loss = model(ids, labels=torch.full_like(ids, -100)).loss
    assert torch.isnan(loss)
    loss.backward()
    all_finite_gradients(model)
    assert all(p.grad.abs().sum() == 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("shape", [(2, 2), (1,)])
def test_regression_labels_of_the_wrong_shape_are_a_value_error(shape):
    model = SynthesizerForSequenceClassification(tiny_config("random", num_labels=1))
    with pytest.raises(ValueError, match="regression labels must have one value per output"):
        model(torch.randint(3, 99, (2, 8)), labels=torch.zeros(shape))


def test_a_rejected_batch_does_not_change_the_problem_type():
    model = SynthesizerForSequenceClassification(tiny_config("random", num_labels=3))
    ids = torch.randint(3, 99, (2, 8))
    with pytest.raises(ValueError):
        model(ids, labels=torch.tensor([0.0, 1.0]))
    assert torch.isfinite(model(ids, labels=torch.tensor([0, 1])).loss)


# ---------------------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------------------


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
    for weights in maps:
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights.float().sum(-1), torch.ones(3, 4, 16), atol=2e-2, rtol=0)
        assert torch.all(weights[2, :, :, 8:] == 0), "padded keys get exactly zero weight"
        # fully padded row: uniform attention over the (all padded) keys, finite rather than zero
        torch.testing.assert_close(weights[1].float(), torch.full((4, 16, 16), 1 / 16), atol=2e-3, rtol=0)


def test_left_padding_shifts_encoder_positions_but_not_decoder_positions():
    """Documented behaviour: encoders use sequence indices (BERT), decoders count real tokens only."""
    ids = torch.randint(3, 99, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], dim=1).long()
    encoder = SynthesizerModel(tiny_config("random")).eval()
    decoder = SynthesizerForCausalLM(tiny_config("random")).eval()
    with torch.no_grad():
        alone = encoder(ids).last_hidden_state
        shifted = encoder(padded, attention_mask=mask).last_hidden_state[:, 3:]
        assert not torch.allclose(shifted, alone, atol=1e-3)
        alone = decoder(ids).logits
        shifted = decoder(padded, attention_mask=mask).logits[:, 3:]
        torch.testing.assert_close(shifted, alone, atol=1e-5, rtol=1e-5)


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
    from synthesizer_hf.synthesizers import SYNTHESIZERS

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


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("random_checkpoint")
    torch.manual_seed(0)
    SynthesizerForMaskedLM(tiny_config("random")).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    ("saved", "override"),
    [
        ("random", "dense"),
        ("random", "fixed_random"),
        ("random", "random+dot"),
        ("random+dot", "random"),
        ("fixed_random", "random"),
        ("random", ["random", "factorized_random"]),  # only the second layer differs
    ],
)
def test_loading_a_checkpoint_of_another_variant_is_a_value_error(tmp_path, saved, override):
    SynthesizerForMaskedLM(tiny_config(saved)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="does not match this model"):
        SynthesizerForMaskedLM.from_pretrained(tmp_path, attention_type=override)


@pytest.mark.parametrize(
    "override",
    [
        dict(synthesizer_length=8),
        dict(max_position_embeddings=32),
        dict(max_position_embeddings=32, synthesizer_length=32),
        dict(num_attention_heads=2),
    ],
)
def test_loading_a_checkpoint_with_other_sizes_is_an_error(random_checkpoint, override):
    with pytest.raises((RuntimeError, ValueError), match="mismatched"):
        SynthesizerForMaskedLM.from_pretrained(random_checkpoint, **override)


@pytest.mark.parametrize(
    "override", [dict(factorized_random_rank=5), dict(factorized_dense_a=2, factorized_dense_b=8)]
)
def test_other_factor_sizes_are_an_error(tmp_path, override):
    SynthesizerForMaskedLM(tiny_config("factorized_random+factorized_dense")).save_pretrained(tmp_path)
    with pytest.raises((RuntimeError, ValueError), match="mismatched"):
        SynthesizerForMaskedLM.from_pretrained(tmp_path, **override)


def copy_config(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "config.json", target / "config.json")
    return target


@pytest.mark.parametrize("cut", ["empty", "length_prefix_only", "header_only", "half", "last_byte_missing"])
def test_truncated_safetensors_is_an_error(random_checkpoint, tmp_path, cut):
    data = (random_checkpoint / "model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    end = {"empty": 0, "length_prefix_only": 8, "header_only": header_end, "half": len(data) // 2}.get(
        cut, len(data) - 1
    )
    broken = copy_config(random_checkpoint, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(data[:end])
    with pytest.raises(Exception, match="deserializ"):  # safetensors' SafetensorError
        SynthesizerForMaskedLM.from_pretrained(broken)


@pytest.mark.parametrize("corruption", ["garbage", "invalid_json_header", "appended_bytes"])
def test_corrupt_safetensors_is_an_error(random_checkpoint, tmp_path, corruption):
    data = (random_checkpoint / "model.safetensors").read_bytes()
    if corruption == "garbage":
        data = (bytes(range(256)) * (len(data) // 256 + 1))[: len(data)]  # header length 0x0706050403020100
    elif corruption == "invalid_json_header":
        data = data[:8] + b"[" + data[9:]
    else:
        data = data + b"\x00" * 7
    broken = copy_config(random_checkpoint, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(data)
    with pytest.raises(Exception, match="deserializ"):
        SynthesizerForMaskedLM.from_pretrained(broken)


def test_a_folder_without_weights_is_an_error(random_checkpoint, tmp_path):
    with pytest.raises(OSError, match=r"no file named model\.safetensors"):
        SynthesizerForMaskedLM.from_pretrained(copy_config(random_checkpoint, tmp_path / "empty"))


@pytest.mark.parametrize(
    "dropped",
    [
        ["synthesizer.layers.0.output.weight"],  # a backbone tensor
        [
            "synthesizer.layers.1.self_attn.synthesizers.random.random_logits",
            "synthesizer.layers.1.self_attn.value.weight",
            "synthesizer.layers.1.self_attn.value.bias",
        ],  # a whole attention layer
        "all",  # transformers' own test: a weightless checkpoint
    ],
    ids=["backbone_tensor", "whole_attention_layer", "every_weight"],
)
def test_missing_weights_are_initialised_and_reported(random_checkpoint, tmp_path, dropped, monkeypatch):
    """transformers' loading contract: missing weights are initialised, listed in the loading info and logged
    (only attention weights of another variant are an error, above)."""
    tensors = load_file(random_checkpoint / "model.safetensors")
    dropped = list(tensors) if dropped == "all" else dropped
    kept = {name: tensor for name, tensor in tensors.items() if name not in dropped} or {
        "unused": torch.ones(1)
    }
    broken = copy_config(random_checkpoint, tmp_path / "broken")
    save_file(kept, broken / "model.safetensors", metadata={"format": "pt"})
    model, info = SynthesizerForMaskedLM.from_pretrained(broken, output_loading_info=True)
    assert set(dropped) - {"lm_head.decoder.weight"} <= set(info["missing_keys"])
    state = model.state_dict()
    for name in dropped:
        assert torch.isfinite(state[name]).all(), name
    for name, tensor in kept.items():
        if name in state:
            assert torch.equal(state[name], tensor), name


@pytest.mark.parametrize(
    "model_class", [SynthesizerForMaskedLM, SynthesizerForCausalLM, SynthesizerForSeq2SeqLM, SynthesizerModel]
)
def test_save_pretrained_writes_no_pickles(model_class, tmp_path):
    model_class(tiny_config("random+dot")).save_pretrained(tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert (tmp_path / "model.safetensors") in files
    for path in files:
        assert path.suffix in {".safetensors", ".json", ".py"}, f"unexpected file {path.name}"
        head = path.read_bytes()[:2]
        assert head != b"PK" and not head.startswith(b"\x80"), f"{path.name} looks like a torch/pickle file"


class PickleBomb:
    """Unpickling this calls os.makedirs(marker): proof that the loader ran arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_loading_never_runs_code_from_a_pickle(random_checkpoint, tmp_path):
    """transformers 5.x loads a lone pytorch_model.bin with torch.load(weights_only=True): code is refused."""
    marker = tmp_path / "pwned"
    folder = copy_config(random_checkpoint, tmp_path / "bin_only")
    state = dict(load_file(random_checkpoint / "model.safetensors"))
    torch.save({**state, "payload": PickleBomb(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(pickle.UnpicklingError, match=r"[Ww]eights only load failed"):
        SynthesizerForMaskedLM.from_pretrained(folder)
    assert not marker.exists(), "the pickle's code ran"


def test_a_clean_bin_checkpoint_loads_only_with_weights_only(random_checkpoint, tmp_path, monkeypatch):
    folder = copy_config(random_checkpoint, tmp_path / "bin_only")
    state = load_file(random_checkpoint / "model.safetensors")
    torch.save(state, folder / "pytorch_model.bin")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    model = SynthesizerForMaskedLM.from_pretrained(folder)
    assert calls and all(flag is True for flag in calls), calls
    assert torch.equal(
        model.synthesizer.layers[0].self_attn.synthesizers["random"].random_logits,
        state["synthesizer.layers.0.self_attn.synthesizers.random.random_logits"],
    )
    # safetensors-only loading refuses the pickle outright
    with pytest.raises(OSError):
        SynthesizerForMaskedLM.from_pretrained(folder, use_safetensors=True)
    # with both formats present the safetensors file wins and torch.load is never called
    shutil.copy(random_checkpoint / "model.safetensors", folder / "model.safetensors")
    calls.clear()
    SynthesizerForMaskedLM.from_pretrained(folder)
    assert calls == []


# ---------------------------------------------------------------------------------------------------------
# Training faults: SIGKILL after the first checkpoint, resume, same final weights
# ---------------------------------------------------------------------------------------------------------

TRAINING_SCRIPT = textwrap.dedent(
    '''
    """Three tiny Trainer runs in forked children, so torch/transformers are imported once. argv: work dir.

    reference: 12 uninterrupted steps; interrupted: SIGKILLed at step 6 (after checkpoint-4, before
    checkpoint-8); resumed: train(resume_from_checkpoint=True) in a fresh process on the same folder.
    """
    import json
    import os
    import signal
    import sys

    import torch

    torch.set_num_threads(1)
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from synthesizer_hf import SynthesizerConfig, SynthesizerForSequenceClassification

    KILL_AT_STEP = 6


    class Data(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            generator = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(3, 50, (n, 10), generator=generator)
            self.mask = torch.ones_like(self.ids)
            self.mask[::3, 7:] = 0
            self.labels = (self.ids[:, 0] > 25).long()

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


    class Probe(TrainerCallback):
        def __init__(self, crash):
            self.crash, self.steps = crash, 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1
            if self.crash and state.global_step == KILL_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)


    def train(output_dir, mode):
        config = SynthesizerConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=12, factorized_random_rank=3,
            attention_type=["random+dot", "factorized_dense"],
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=2,
        )
        args = TrainingArguments(
            output_dir=output_dir, max_steps=12, per_device_train_batch_size=8, learning_rate=3e-3,
            save_strategy="steps", save_steps=4, eval_strategy="no", logging_steps=1, seed=123,
            full_determinism=True, report_to=[], disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
        )
        set_seed(123)
        probe = Probe(crash=mode == "crash")
        trainer = Trainer(
            model=SynthesizerForSequenceClassification(config), args=args,
            train_dataset=Data(40, 0), eval_dataset=Data(16, 1), callbacks=[probe],
        )
        trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
        metrics = trainer.evaluate()
        trainer.save_model(os.path.join(output_dir, "final"))
        with open(os.path.join(output_dir, "final", "run.json"), "w") as f:
            json.dump({"eval_loss": metrics["eval_loss"], "global_step": trainer.state.global_step,
                       "steps_run": probe.steps}, f)


    def in_child(output_dir, mode):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                train(output_dir, mode)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return {"signal": os.WTERMSIG(status)}
        return {"exit": os.WEXITSTATUS(status)}


    work = sys.argv[1]
    interrupted = os.path.join(work, "interrupted")
    report = {"reference": in_child(os.path.join(work, "reference"), "full")}
    report["crash"] = in_child(interrupted, "crash")
    report["after_crash"] = sorted(os.listdir(interrupted))
    report["resume"] = in_child(interrupted, "resume")
    print("REPORT", json.dumps(report))
    '''
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the training script forks its runs")
def test_training_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINING_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert report["reference"] == {"exit": 0}, result.stderr[-3000:]
    assert report["crash"] == {"signal": 9}, "the interrupted run must die by SIGKILL"
    assert report["after_crash"] == ["checkpoint-4"], "killed after the first checkpoint, before the second"
    assert report["resume"] == {"exit": 0}, result.stderr[-3000:]

    reference = json.loads((tmp_path / "reference" / "final" / "run.json").read_text())
    resumed = json.loads((tmp_path / "interrupted" / "final" / "run.json").read_text())
    assert resumed["steps_run"] == 8, "the resumed run continues from step 4 instead of restarting"
    assert reference["steps_run"] == 12 and reference["global_step"] == resumed["global_step"] == 12
    assert resumed["eval_loss"] == reference["eval_loss"]
    expected = load_file(tmp_path / "reference" / "final" / "model.safetensors")
    got = load_file(tmp_path / "interrupted" / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


# ---------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_same_seed_same_logits_and_gradients(variant):
    ids = torch.randint(3, 99, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    for implementation in ("eager", "sdpa"):
        runs = []
        for _ in range(2):
            set_seed(1234)
            config = tiny_config(variant, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
            config._attn_implementation = implementation
            model = SynthesizerForMaskedLM(config).train()  # dropout on: the RNG stream must repeat too
            set_seed(99)
            outputs = model(ids, attention_mask=mask, labels=ids)
            outputs.loss.backward()
            runs.append((outputs.logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
        (logits_a, grads_a), (logits_b, grads_b) = runs
        assert torch.equal(logits_a, logits_b), implementation
        assert grads_a.keys() == grads_b.keys()
        for name in grads_a:
            assert torch.equal(grads_a[name], grads_b[name]), (implementation, name)
