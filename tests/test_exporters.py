"""Hugging Face's own exporters (`transformers.exporters`, transformers 5.25 on): the encoder heads export with
`OnnxExporter().export`, the decoders with `export_for_generation`, and the exported decode loop (prefill, then
one decode step per token, on onnxruntime) reproduces `generate()`. Skipped where the module is absent."""

import pytest
import torch
from transformers import EncoderDecoderCache, GenerationConfig, StaticCache

from helpers import tiny_config
from synthesizer_hf import (
    SynthesizerForCausalLM,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
)
from synthesizer_hf.compat import output_cache

exporters = pytest.importorskip("transformers.exporters", reason="transformers.exporters arrives in 5.25")
for _name in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_name, reason=f"{_name} is not installed: pip install 'synthesizer-hf[onnx]'")

NEW_TOKENS = 6


def static_generation(prompt_length: int) -> GenerationConfig:
    return GenerationConfig(
        cache_implementation="static",
        max_cache_len=prompt_length + NEW_TOKENS,
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        decoder_start_token_id=0,
    )


pytestmark = pytest.mark.slow  # each export traces a whole model (seconds to minutes)


def test_an_encoder_head_exports_through_hf_onnx_exporter():
    model = SynthesizerForSequenceClassification(tiny_config(["random+dot", "factorized_dense"])).eval()
    ids = torch.randint(3, 99, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    exported = exporters.OnnxExporter().export(
        model, {"input_ids": ids, "attention_mask": mask}, exporters.OnnxConfig(dynamic=True)
    )
    other_ids = torch.randint(3, 99, (3, 11))
    other_mask = torch.ones_like(other_ids)
    other_mask[0, -4:] = 0
    with torch.no_grad():
        expected = model(input_ids=other_ids, attention_mask=other_mask).logits
    got = exported(input_ids=other_ids, attention_mask=other_mask).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["random+dot", "factorized_dense"])
def test_the_exported_causal_decode_loop_reproduces_generate(variant):
    model = SynthesizerForCausalLM(tiny_config(variant)).eval()
    prompt = torch.randint(3, 99, (2, 5))
    generation = static_generation(prompt.shape[1])
    exported = exporters.OnnxExporter().export_for_generation(
        model, {"input_ids": prompt}, exporters.OnnxConfig(dynamic=False), generation_config=generation
    )
    assert set(exported.components) == {"prefill", "decode"}
    with torch.no_grad():
        expected = model.generate(prompt, generation_config=generation)
    positions = torch.arange(prompt.shape[1]).expand_as(prompt)
    cache = StaticCache(config=model.config, max_cache_len=generation.max_cache_len)
    output = exported.runners["prefill"](input_ids=prompt, position_ids=positions, cache=cache)
    tokens = [output.logits[:, -1:].argmax(-1)]
    for _ in range(NEW_TOKENS - 1):
        positions = positions[:, -1:] + 1
        output = exported.runners["decode"](
            input_ids=tokens[-1], position_ids=positions, cache=output_cache(output)
        )
        tokens.append(output.logits[:, -1:].argmax(-1))
    assert torch.equal(torch.cat([prompt, *tokens], 1), expected)


def test_the_exported_seq2seq_decode_loop_reproduces_generate():
    model = SynthesizerForSeq2SeqLM(tiny_config("random+dot", decoder_attention_type="dense+dot")).eval()
    prompt = torch.randint(3, 99, (2, 5))
    mask = torch.ones_like(prompt)
    generation = static_generation(1)
    onnx = exporters.OnnxExporter()
    exported = onnx.export_for_generation(
        model,
        {"input_ids": prompt, "attention_mask": mask},
        exporters.OnnxConfig(dynamic=False),
        generation_config=generation,
    )
    encoder = onnx.export(
        model.get_encoder(),
        {"input_ids": prompt, "attention_mask": mask},
        exporters.OnnxConfig(dynamic=False),
    )
    with torch.no_grad():
        expected = model.generate(prompt, attention_mask=mask, generation_config=generation)
    encoder_outputs = encoder(input_ids=prompt, attention_mask=mask)
    cache = EncoderDecoderCache(
        StaticCache(config=model.config, max_cache_len=generation.max_cache_len),
        StaticCache(config=model.config, max_cache_len=prompt.shape[1]),
    )
    tokens = [torch.zeros(2, 1, dtype=torch.long)]  # decoder_start_token_id
    stage = "prefill"
    for _ in range(NEW_TOKENS):
        output = exported.runners[stage](
            attention_mask=mask, decoder_input_ids=tokens[-1], encoder_outputs=encoder_outputs, cache=cache
        )
        cache, stage = output_cache(output), "decode"
        tokens.append(output.logits[:, -1:].argmax(-1))
    assert torch.equal(torch.cat(tokens, 1), expected)
