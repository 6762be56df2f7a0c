"""Bad inputs (token ids, lengths, masks, labels) are clear errors; odd but valid ones (all-padding rows, left
padding) give finite, documented results. The guarantees, with their tests: docs/GUARANTEES.md."""

import pytest
import torch

from helpers import ALL_VARIANTS, all_finite_gradients, tiny_config
from synthesizer_hf import (
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerModel,
)


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
    with pytest.raises(ValueError, match=r"exceeds the synthesizer length 8.*synthesizer_length"):
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
