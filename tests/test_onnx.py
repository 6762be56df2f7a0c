"""ONNX export of the encoder heads (`torch.onnx.export(..., dynamo=True)`), checked against onnxruntime on CPU:
every variant, a dynamic batch and length 1 to L, padding; the script; plain `torch.onnx.export` with or without
`no_grad`; what does not export."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from helpers import ALL_VARIANTS, SINGLE_VARIANTS, tiny_config
from synthesizer_hf import (
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForQuestionAnswering,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerModel,
)

ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed: pip install 'synthesizer-hf[onnx]'"
)
for _name in ("onnx", "onnxscript"):
    pytest.importorskip(_name, reason=f"{_name} is not installed: pip install 'synthesizer-hf[onnx]'")

from synthesizer_hf.onnx_export import export_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
L = 16  # tiny_config's synthesizer length
# batch, length: one token, the longest input, and shapes other than the traced one (2 x 8)
SHAPES = [(1, 1), (3, L), (2, 5), (4, 11)]


def session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def inputs(batch: int, length: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 99, (batch, length))
    mask = torch.ones_like(ids)
    if batch > 1 and length > 2:
        mask[-1, length // 2 :] = 0  # a padded row
    token_types = torch.zeros_like(ids)
    if length > 3:
        token_types[:, length // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}


def assert_matches(model, path: Path, names: list[str], shapes=SHAPES) -> None:
    onnx_session = session(path)
    assert [i.name for i in onnx_session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in onnx_session.get_outputs()] == names
    for batch, length in shapes:
        feed = inputs(batch, length)
        with torch.no_grad():
            expected = model(**feed)
        got = onnx_session.run(names, {key: value.numpy() for key, value in feed.items()})
        for name, value in zip(names, got):
            torch.testing.assert_close(
                torch.from_numpy(value),
                getattr(expected, name),
                atol=1e-4,
                rtol=0,
                msg=f"{name} {batch}x{length}",
            )


@pytest.mark.slow
def test_every_variant_exports_with_a_dynamic_batch_and_length(tmp_path):
    """One masked LM whose layers hold every synthesizer and the mixtures, one per layer: each exports with
    symbolic shapes (no guard fixes the length), and onnxruntime gives PyTorch's logits from 1 token to L."""
    model = SynthesizerForMaskedLM(tiny_config(ALL_VARIANTS, num_hidden_layers=len(ALL_VARIANTS))).eval()
    assert model.config.longest_input() == L
    path = export_onnx(
        model, tmp_path / "every_variant.onnx", optimize=False
    )  # (the optimizer: the tests below)
    assert_matches(model, path, ["logits"])
    # the eager model keeps its clear errors (the export skips them only while tracing)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 99\)"):
        model(torch.tensor([[5, 99]]))
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.randint(5, 99, (1, L + 1)))


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_encoder_model_exports_hidden_states_and_pooler(attention, tmp_path):
    # random alone is input-independent: sdpa takes the batch-shared softmax, eager the reference path
    model = SynthesizerModel(tiny_config("random", attn_implementation=attention)).eval()
    assert model.config._attn_implementation == attention
    path = export_onnx(model, tmp_path / "encoder.onnx")
    assert_matches(model, path, ["last_hidden_state", "pooler_output"])


@pytest.mark.slow
def test_the_script_exports_a_saved_classifier_and_checks_it(tmp_path, capsys):
    """scripts/export_onnx.py on a saved folder: the head comes from `architectures`."""
    model = SynthesizerForSequenceClassification(
        tiny_config(["factorized_random+dot", "dense"], num_labels=3)
    ).eval()
    model.save_pretrained(tmp_path / "classifier")
    spec = importlib.util.spec_from_file_location("script_export_onnx", REPO / "scripts" / "export_onnx.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    path = script.main([str(tmp_path / "classifier"), str(tmp_path / "out" / "classifier.onnx"), "--check"])
    assert path.exists()
    out = capsys.readouterr().out
    assert "SynthesizerForSequenceClassification" in out and "onnxruntime matches PyTorch" in out
    assert "length 1 to 16" in out
    assert_matches(model, path, ["logits"], shapes=[(2, 7), (5, L)])

    import onnx

    assert onnx.load(str(path)).opset_import[0].version == 18


def export_plainly(model, no_grad: bool):
    """`torch.onnx.export(model, (ids, mask), dynamo=True, dynamic_shapes=...)` as PyTorch's tutorials call it,
    inside `torch.no_grad()` or not; returns the ONNX program, which runs on onnxruntime when called."""
    ids = torch.randint(5, 99, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("sequence", min=1, max=L)}
    with torch.set_grad_enabled(not no_grad):
        return torch.onnx.export(model, (ids, mask), dynamo=True, dynamic_shapes=(dims, dims), verbose=False)


def assert_program_matches(model, program, shapes=((3, 5), (1, L))) -> None:
    for batch, length in shapes:
        feed = inputs(batch, length)
        with torch.no_grad():
            expected = [
                t
                for t in model(feed["input_ids"], feed["attention_mask"], return_dict=False)
                if t is not None
            ]
        got = program(feed["input_ids"], feed["attention_mask"])
        assert len(got) == len(expected)
        for value, reference in zip(got, expected):
            torch.testing.assert_close(value, reference, atol=1e-4, rtol=0, msg=f"{batch}x{length}")


ENCODER_HEADS = [
    SynthesizerModel,
    SynthesizerForMaskedLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerForQuestionAnswering,
]


@pytest.mark.slow
@pytest.mark.parametrize("no_grad", [True, False], ids=["no_grad", "grad_enabled"])
@pytest.mark.parametrize("head", ENCODER_HEADS, ids=lambda head: head.__name__)
def test_every_encoder_head_exports_with_plain_torch_onnx_export(head, no_grad):
    """Outside `no_grad`, a trainable bias (random+dot) reaches SDPA as a mask that needs a gradient, which the
    exporter traces and decomposes with two different output layouts; the layer's output must hold on both."""
    model = head(tiny_config(["random+dot", "factorized_dense"])).eval()
    assert_program_matches(model, export_plainly(model, no_grad))


@pytest.mark.slow
def test_every_variant_exports_with_plain_torch_onnx_export_outside_no_grad():
    model = SynthesizerForMaskedLM(tiny_config(ALL_VARIANTS, num_hidden_layers=len(ALL_VARIANTS))).eval()
    assert_program_matches(model, export_plainly(model, no_grad=False))


def test_what_does_not_export_says_why(tmp_path):
    with pytest.raises(ValueError, match="Decoders"):
        export_onnx(SynthesizerForCausalLM(tiny_config("random")), tmp_path / "lm.onnx")


def test_the_export_length_is_max_position_embeddings_without_length_bound_synthesizers():
    unbounded = [name for name in SINGLE_VARIANTS if name in ("dot", "symmetric_dot", "pairwise_dot")]
    config = tiny_config("+".join(unbounded), max_position_embeddings=24, synthesizer_length=8)
    assert config.longest_input() == 24
    assert (
        tiny_config(["dot", "random"], max_position_embeddings=24, synthesizer_length=8).longest_input() == 8
    )
