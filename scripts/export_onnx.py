"""Export a saved Synthesizer encoder (SynthesizerModel, ...ForMaskedLM, ...ForSequenceClassification,
...ForTokenClassification, ...ForQuestionAnswering) to ONNX, with a dynamic batch and length up to L.

Thin CLI over ``synthesizer_hf.onnx_export`` (`torch.onnx.export(..., dynamo=True)`). The head is the one the
folder was saved as (`architectures` in config.json) unless `--head` says otherwise. Inputs `input_ids`,
`attention_mask`, `token_type_ids` (int64, `[batch, length]`); outputs `logits` (or `last_hidden_state` and
`pooler_output`, or `start_logits` and `end_logits`). `--check` runs the graph in onnxruntime on CPU on random
inputs of several shapes and compares with the PyTorch model. Needs `pip install "synthesizer-hf[onnx]"`.

Examples:
    python scripts/export_onnx.py runs/glue/sst2 runs/sst2.onnx --check
    python scripts/export_onnx.py runs/mlm runs/mlm.onnx --opset 18 --head masked-lm
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

import synthesizer_hf
from synthesizer_hf.onnx_export import DEFAULT_OPSET, export_onnx, output_names

HEADS = {
    "model": "SynthesizerModel",
    "masked-lm": "SynthesizerForMaskedLM",
    "sequence-classification": "SynthesizerForSequenceClassification",
    "token-classification": "SynthesizerForTokenClassification",
    "question-answering": "SynthesizerForQuestionAnswering",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "model_dir", help="A folder saved with save_pretrained (config.json + model.safetensors)."
    )
    parser.add_argument("output", help="The .onnx file to write.")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version.")
    parser.add_argument(
        "--head",
        choices=sorted(HEADS),
        default=None,
        help="The head to export (default: the architecture the folder was saved as).",
    )
    parser.add_argument(
        "--no_token_type_ids",
        action="store_true",
        help="Leave token_type_ids out of the graph's inputs (every token gets type 0).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Run the graph with onnxruntime (CPU) and compare with PyTorch on random inputs.",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="Largest difference --check accepts.")
    return parser.parse_args(argv)


def check_model_folder(model_dir: str) -> None:
    """A usage error for what is not a saved model folder (a typo, a LoRA adapter), before anything loads."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise SystemExit(f"{model_dir}: no such folder (give a folder saved with save_pretrained).")
    if (folder / "adapter_config.json").is_file():
        raise SystemExit(
            f"{model_dir} holds a LoRA adapter (adapter_config.json), not a whole model: merge it into its base "
            "model and save that (docs/TRAINING.md, 'PEFT / LoRA'), then export the merged folder."
        )
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{model_dir} has no config.json: not a folder saved with save_pretrained.")


def head_class(model_dir: str, head: str | None) -> type:
    if head is not None:
        return getattr(synthesizer_hf, HEADS[head])
    config = synthesizer_hf.SynthesizerConfig.from_pretrained(model_dir)
    architecture = (config.architectures or ["SynthesizerModel"])[0]
    if architecture not in HEADS.values():
        raise SystemExit(
            f"{model_dir} holds a {architecture}, which does not export to ONNX; pass --head with one of "
            f"{', '.join(sorted(HEADS))} to export an encoder head of it."
        )
    return getattr(synthesizer_hf, architecture)


def check_with_onnxruntime(model, path: Path, token_type_ids: bool, atol: float) -> float:
    """The largest difference between onnxruntime and PyTorch over a few shapes (with padding); raises above atol."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names, longest, vocab = output_names(model), model.config.longest_input(), model.config.vocab_size
    worst = 0.0
    for batch, length in [(1, 1), (2, max(1, longest // 2)), (3, longest)]:
        ids = torch.randint(0, vocab, (batch, length))
        mask = torch.ones_like(ids)
        mask[-1, length // 2 + 1 :] = 0
        inputs = {"input_ids": ids, "attention_mask": mask}
        if token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(ids)
        with torch.no_grad():
            expected = model(**inputs)
        got = session.run(list(names), {key: value.numpy() for key, value in inputs.items()})
        for name, value in zip(names, got):
            worst = max(worst, (torch.from_numpy(value) - getattr(expected, name)).abs().max().item())
    if worst > atol:
        raise SystemExit(f"onnxruntime differs from PyTorch by {worst:.2e} (> --atol {atol}).")
    return worst


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    check_model_folder(args.model_dir)
    model = head_class(args.model_dir, args.head).from_pretrained(args.model_dir).eval()
    path = export_onnx(model, args.output, opset=args.opset, token_type_ids=not args.no_token_type_ids)
    print(
        f"Wrote {path} ({type(model).__name__}, attention {model.config.attention_type}, opset {args.opset}; "
        f"batch any, length 1 to {model.config.longest_input()})"
    )
    if args.check:
        worst = check_with_onnxruntime(model, path, not args.no_token_type_ids, args.atol)
        print(f"onnxruntime matches PyTorch: largest difference {worst:.2e}")
    return path


if __name__ == "__main__":
    main()
