"""ONNX export of the Synthesizer encoder heads with `torch.onnx.export(..., dynamo=True)`.

The graph takes `input_ids`, `attention_mask` (and `token_type_ids`, unless left out), each `[batch, length]`
int64, with a dynamic batch and a dynamic length of 1 to `config.longest_input()`: the synthesizer length L
when a layer has a length-bound synthesizer (random, factorized random, the dense family, factorized dense),
else `max_position_embeddings`. Longer inputs have no synthesized row or position embedding: onnxruntime then
fails on an out-of-range index instead of the model's clear ValueError, so truncate to that length.

Not exported (a ValueError says so): the decoders (`SynthesizerForCausalLM`, `SynthesizerForSeq2SeqLM`:
generation with a cache is a loop in Python around the model; from transformers 5.25 on,
`transformers.exporters.OnnxExporter().export_for_generation` exports them with a static cache, see
tests/test_exporters.py), `SynthesizerForMultipleChoice` (3-D inputs)
and attention maps (`output_attentions`). The eager checks that read tensor values (the input-id range, an
all-ones mask) are skipped while exporting, so the exported graph does not check the ids.

Needs `onnx` and `onnxscript` (`pip install "synthesizer-hf[onnx]"`, which also brings onnxruntime to run the
result); this module imports only torch, transformers and the standard library, and `import synthesizer_hf`
does not import it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from .modeling_synthesizer import (
    SynthesizerForMaskedLM,
    SynthesizerForQuestionAnswering,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerModel,
)

# The heads that export, with the output tensors the graph returns (in this order, under these names).
EXPORTABLE_HEADS: dict[type[nn.Module], tuple[str, ...]] = {
    SynthesizerModel: ("last_hidden_state", "pooler_output"),
    SynthesizerForMaskedLM: ("logits",),
    SynthesizerForSequenceClassification: ("logits",),
    SynthesizerForTokenClassification: ("logits",),
    SynthesizerForQuestionAnswering: ("start_logits", "end_logits"),
}
DEFAULT_OPSET = 18


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The graph's output names for `model`; a ValueError for a model that does not export."""
    for head, names in EXPORTABLE_HEADS.items():
        if type(model) is head:
            if head is SynthesizerModel and model.pooler is None:
                return names[:1]
            return names
    exportable = ", ".join(head.__name__ for head in EXPORTABLE_HEADS)
    raise ValueError(
        f"{type(model).__name__} does not export to ONNX here; the encoder heads do: {exportable}. Decoders "
        "(SynthesizerForCausalLM, SynthesizerForSeq2SeqLM) generate in a Python loop around a cache: from "
        "transformers 5.25 on, export them with transformers.exporters.OnnxExporter().export_for_generation and a "
        "static cache. SynthesizerForMultipleChoice takes 3-D inputs."
    )


class _TensorOutputs(nn.Module):
    """The head with positional tensor inputs and a tuple of tensor outputs, as the ONNX graph has them."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], token_type_ids: bool):
        super().__init__()
        self.model = model
        self.names = names
        self.token_type_ids = token_type_ids

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids if self.token_type_ids else None,
            return_dict=True,
        )
        return tuple(getattr(outputs, name) for name in self.names)


def export_onnx(
    model: nn.Module,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    token_type_ids: bool = True,
    example_length: int | None = None,
    optimize: bool = True,
    external_data: bool | None = None,
) -> Path:
    """Export an encoder head (`SynthesizerModel`, `...ForMaskedLM`, `...ForSequenceClassification`,
    `...ForTokenClassification`, `...ForQuestionAnswering`) to one ONNX file with a dynamic batch and a
    dynamic length of 1 to `model.config.longest_input()`.

    Inputs `input_ids`, `attention_mask` and (with `token_type_ids=True`) `token_type_ids`, all int64
    `[batch, length]`; outputs as `EXPORTABLE_HEADS` names them (`logits` for the MLM and classification
    heads). `example_length` is the length traced (default: half the maximum); the graph does not depend
    on it. `external_data` writes the weights to `<output_path>.data` beside the graph (needed past ONNX's 2 GB
    file limit; by default only then). The model is put in eval mode. Returns the path written.
    """
    names = output_names(model)
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'synthesizer-hf[onnx]' "
            "(or pip install onnx onnxscript onnxruntime)."
        )
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    max_length = model.config.longest_input()
    if example_length is None:
        example_length = max(2, max_length // 2) if max_length > 2 else max_length
    if not 1 <= example_length <= max_length:
        raise ValueError(f"example_length must be in [1, {max_length}], got {example_length}.")
    batch = 2
    first_id = 5 if model.config.vocab_size > 5 else 0
    ids = torch.randint(first_id, model.config.vocab_size, (batch, example_length))
    mask = torch.ones_like(ids)
    if example_length > 1:
        mask[1, -1] = 0  # a padded row: the masked path is the one traced (a mask is never dropped in export)
    args = (ids, mask, torch.zeros_like(ids)) if token_type_ids else (ids, mask)
    input_names = ["input_ids", "attention_mask", "token_type_ids"][: len(args)]
    batch_dim = torch.export.Dim("batch", min=1)
    length_dim = torch.export.Dim("sequence", min=1, max=max_length) if max_length > 1 else 1
    dynamic_shapes = tuple({0: batch_dim, 1: length_dim} for _ in args)
    if external_data is None:
        external_data = sum(p.numel() * p.element_size() for p in model.state_dict().values()) > 1.5 * 2**30
    wrapper = _TensorOutputs(model, names, token_type_ids).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the inputs share their batch and length axes, which the exporter reports once per input
        warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used", category=UserWarning)
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            input_names=input_names,
            output_names=list(names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            optimize=optimize,
            verbose=False,
        )
    program.save(str(output_path), external_data=external_data)
    return output_path


__all__ = ["DEFAULT_OPSET", "EXPORTABLE_HEADS", "export_onnx", "output_names"]
