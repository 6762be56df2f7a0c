"""Every valid configuration builds, trains, saves and reloads exactly; every invalid one is a ValueError naming
its field. Hypothesis runs a fixed, bounded number of examples so the file stays fast. The guarantees, with
their tests: docs/GUARANTEES.md."""

import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import all_finite_gradients, tiny_config
from synthesizer_hf import (
    SynthesizerConfig,
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForSeq2SeqLM,
)
from synthesizer_hf.configuration_synthesizer import ATTENTION_COMPONENTS, POSITIVE_FIELDS
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        for field in cls.config_fields:
            assert f"{field}" in SynthesizerConfig.__doc__, f"SynthesizerConfig's docstring explains {field}"


def test_the_longest_input_is_l_only_where_a_stack_the_model_runs_is_length_bound():
    """One rule for the tokenizer of a converted BERT and the ONNX export: L with a length-bound synthesizer in
    the encoder, or in the decoder of an encoder-decoder; else the position table."""
    sizes = dict(max_position_embeddings=24, synthesizer_length=8)
    assert SynthesizerConfig(attention_type="dot", **sizes).longest_input() == 24
    assert (
        SynthesizerConfig(attention_type=["dot", "random"], num_hidden_layers=2, **sizes).longest_input() == 8
    )
    # the decoder spec of an encoder-only model is checked, but no layer runs it
    encoder = SynthesizerConfig(attention_type="dot", decoder_attention_type="random", **sizes)
    assert encoder.components_in_use() == ["dot"] and encoder.longest_input() == 24
    assert encoder.components_in_use(decoder=True) == ["dot", "random"]
    seq2seq = SynthesizerConfig(
        attention_type="dot", decoder_attention_type="random", is_encoder_decoder=True, **sizes
    )
    assert seq2seq.components_in_use(encoder=False) == ["random"] and seq2seq.longest_input() == 8


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
