"""Static caches, custom 4D masks and compiled decoding of the decoders: what `_can_compile_fullgraph` promises.

A static cache returns keys and values of a fixed number of slots and its length as a tensor; generation with it
must give what the default dynamic cache gives, left padding included, and a compiled decoding step must run as
one graph that is not recompiled from one step to the next.
"""

import pytest
import torch
from transformers import StaticCache

from helpers import ALL_VARIANTS, tiny_config
from synthesizer_hf import SynthesizerForCausalLM, SynthesizerForSeq2SeqLM, SynthesizerModel
from synthesizer_hf.compat import CACHE_ARGUMENT, output_cache

GREEDY = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
CONVOLUTIONAL = [name for name in ALL_VARIANTS if "conv" in name]


def left_padded_prompt():
    """Two prompts of 5 tokens, the first with 2 tokens of left padding."""
    prompt = torch.randint(3, 99, (2, 5))
    mask = torch.ones_like(prompt)
    mask[0, :2] = 0
    return prompt.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_static_cache_generation_equals_dynamic_cache_generation(variant):
    prompt, mask = left_padded_prompt()
    causal = SynthesizerForCausalLM(tiny_config(variant)).eval()
    seq2seq = SynthesizerForSeq2SeqLM(tiny_config(variant, decoder_attention_type=variant)).eval()
    with torch.no_grad():
        for model in (causal, seq2seq):
            scored = dict(GREEDY, output_scores=True, return_dict_in_generate=True)
            dynamic = model.generate(prompt, attention_mask=mask, **scored)
            static = model.generate(prompt, attention_mask=mask, cache_implementation="static", **scored)
            assert torch.equal(static.sequences, dynamic.sequences), type(model).__name__
            # the scores too: equal tokens alone would let a wrong but close distribution through
            torch.testing.assert_close(
                torch.stack(static.scores), torch.stack(dynamic.scores), atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_an_explicit_static_cache_works_in_generate_and_forward(variant):
    model = SynthesizerForCausalLM(tiny_config(variant)).eval()
    prompt, mask = left_padded_prompt()
    with torch.no_grad():
        dynamic = model.generate(prompt, attention_mask=mask, **GREEDY)
        cache = StaticCache(config=model.config, max_cache_len=prompt.shape[1] + GREEDY["max_new_tokens"])
        # generate takes the cache under the installed release's name
        static = model.generate(prompt, attention_mask=mask, **{CACHE_ARGUMENT: cache}, **GREEDY)
        assert torch.equal(static, dynamic)
        # forward, step by step, with a 2D mask of the tokens so far (the unwritten slots are blocked)
        ids = torch.randint(3, 99, (2, 7))
        full = model(ids).logits
        cache = StaticCache(config=model.config, max_cache_len=10)
        first = model(ids[:, :4], cache=cache, use_cache=True)
        assert int(output_cache(first).get_seq_length()) == 4
        steps = [first.logits] + [
            model(ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(4, 7)
        ]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", [name for name in ALL_VARIANTS if name not in CONVOLUTIONAL])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_a_custom_4d_mask_packs_prompts_with_a_shared_prefix(variant, attention):
    """Two continuations of one prefix, packed in one row with a 4D mask and their own positions, give the
    logits of the two sequences batched normally (as transformers' `test_custom_4d_attention_mask`)."""
    model = SynthesizerForCausalLM(tiny_config(variant, attn_implementation=attention)).eval()
    prefix, first, second = torch.randint(3, 99, (3,)), torch.randint(3, 99, (2,)), torch.randint(3, 99, (2,))
    batch = torch.stack([torch.cat([prefix, first]), torch.cat([prefix, second])])
    packed = torch.cat([prefix, first, second])[None]
    positions = torch.tensor([[0, 1, 2, 3, 4, 3, 4]])
    sees = torch.tril(torch.ones(7, 7, dtype=torch.bool))
    sees[5:, 3:5] = False  # the second continuation does not see the first
    with torch.no_grad():
        normal = model(batch).logits
        for mask in (
            sees[None, None],
            torch.zeros(1, 1, 7, 7).masked_fill(~sees, torch.finfo(torch.float32).min),
        ):
            logits = model(packed, attention_mask=mask, position_ids=positions).logits
            torch.testing.assert_close(logits[0, :5], normal[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logits[0, 5:], normal[1, 3:], atol=1e-5, rtol=1e-5)


def test_a_4d_mask_of_the_wrong_shape_or_with_convolutions_is_a_clear_error():
    model = SynthesizerForCausalLM(tiny_config("random")).eval()
    with pytest.raises(ValueError, match=r"A 4D attention_mask must have shape \(1, 1, 4, 4\)"):
        model(torch.randint(3, 99, (1, 4)), attention_mask=torch.ones(1, 1, 4, 5, dtype=torch.bool))
    model = SynthesizerForCausalLM(tiny_config("conv_linear")).eval()
    with pytest.raises(ValueError, match="Convolutional synthesizers do not take a 4D attention_mask"):
        model(torch.randint(3, 99, (1, 4)), attention_mask=torch.ones(1, 1, 4, 4, dtype=torch.bool))


def test_an_encoder_takes_a_custom_4d_mask():
    model = SynthesizerModel(tiny_config("random+dot")).eval()
    ids = torch.randint(3, 99, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    four_d = mask[:, None, None, :].bool().expand(2, 1, 6, 6)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).last_hidden_state
        got = model(ids, attention_mask=four_d).last_hidden_state
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :4], expected[1, :4], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant", ["random", "random+dot", "dense+dot", "factorized_dense", "conv_relu_conv"]
)
def test_compiled_decoding_runs_as_one_graph_without_recompiling(variant):
    """`torch.compile(fullgraph=True)` of the decoding step with a static cache: no graph break (fullgraph
    raises on one), no recompilation from one step to the next, and the eager model's tokens."""
    import torch._dynamo

    torch._dynamo.reset()
    model = SynthesizerForCausalLM(tiny_config(variant)).eval()
    prompt, mask = left_padded_prompt()
    with torch.no_grad():
        expected = model.generate(prompt, attention_mask=mask, **GREEDY)
        cache = StaticCache(config=model.config, max_cache_len=prompt.shape[1] + GREEDY["max_new_tokens"])
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        step_mask = model.create_masks_for_generate(model.config, None, mask, **{CACHE_ARGUMENT: cache})
        logits = model(
            prompt, attention_mask=step_mask, position_ids=positions, cache=cache, use_cache=True
        ).logits
        graphs = []

        def counting_backend(graph, example_inputs):
            graphs.append(graph)
            return graph.forward

        step = torch.compile(model.forward, fullgraph=True, backend=counting_backend)
        tokens, positions = [logits[:, -1:].argmax(-1)], positions[:, -1:]
        for _ in range(GREEDY["max_new_tokens"] - 1):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            positions = positions + 1
            step_mask = model.create_masks_for_generate(model.config, None, mask, **{CACHE_ARGUMENT: cache})
            logits = step(
                tokens[-1], attention_mask=step_mask, position_ids=positions, cache=cache, use_cache=True
            )
            tokens.append(logits.logits[:, -1:].argmax(-1))
    assert len(graphs) == 1, f"{len(graphs)} compilations for {GREEDY['max_new_tokens'] - 1} decoding steps"
    assert torch.equal(torch.cat([prompt, *tokens], 1), expected)


def test_the_decoders_declare_full_graph_compilation():
    assert SynthesizerForCausalLM._can_compile_fullgraph and SynthesizerForSeq2SeqLM._can_compile_fullgraph
