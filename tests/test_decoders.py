"""Causal LM and encoder-decoder: no future leakage, cached == uncached, left padding, generation, training."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import EncoderDecoderCache, GenerationConfig

from helpers import ALL_VARIANTS, tiny_config
from synthesizer_hf import (
    SynthesizerForCausalLM,
    SynthesizerForSeq2SeqLM,
    SynthesizerModel,
    SynthesizerSeq2SeqModel,
)
from synthesizer_hf.caching import cache_storage_bytes
from synthesizer_hf.compat import output_cache


def causal_lm(variant, **overrides):
    return SynthesizerForCausalLM(tiny_config(variant, **overrides)).eval()


def seq2seq(variant, decoder_variant=None, **overrides):
    config = tiny_config(variant, decoder_attention_type=decoder_variant or variant, **overrides)
    return SynthesizerForSeq2SeqLM(config).eval()


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_causal_lm_never_looks_ahead(variant):
    model = causal_lm(variant)
    ids = torch.randint(3, 99, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = torch.randint(3, 99, (2, 5))
    with torch.no_grad():
        before, after = model(ids).logits, model(changed).logits
    torch.testing.assert_close(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_incremental_decoding_equals_full_forward(variant):
    model = causal_lm(variant)
    ids = torch.randint(3, 99, (2, 11))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :4], use_cache=True)
        steps = [out.logits]
        cache = output_cache(out)
        for t in range(4, 11):
            out = model(ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = output_cache(out)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_seq2seq_incremental_decoding_equals_full_forward(variant):
    model = seq2seq("random+dot", variant)
    source = torch.randint(3, 99, (2, 9))
    source_mask = torch.ones_like(source)
    source_mask[1, 6:] = 0
    target = torch.randint(3, 99, (2, 8))
    with torch.no_grad():
        full = model(source, attention_mask=source_mask, decoder_input_ids=target).logits
        encoder_outputs = model.get_encoder()(source, attention_mask=source_mask)
        cache, steps = None, []
        for t in range(8):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=source_mask,
                decoder_input_ids=target[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            cache = output_cache(out)
            steps.append(out.logits)
    assert isinstance(cache, EncoderDecoderCache)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "variant", ["random", "factorized_dense", "dense+dot", "pairwise_dot", "factorized_random"]
)
def test_generate_with_cache_equals_without(variant):
    model = causal_lm(variant)
    prompt = torch.randint(3, 99, (2, 4))
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        cached = model.generate(prompt, use_cache=True, return_dict_in_generate=True, **settings)
        uncached = model.generate(prompt, use_cache=False, **settings)
    assert cached.sequences.shape == (2, 12)
    assert torch.equal(cached.sequences, uncached)
    # generation really decoded from the cache (a model that ignored it would still match, recomputing)
    assert output_cache(cached).get_seq_length() == 11


@pytest.mark.parametrize("variant", ["random", "dense", "factorized_random+dot", "factorized_dense"])
def test_left_padded_prompt_generates_like_the_prompt_alone(variant):
    model = causal_lm(variant)
    short, long = torch.randint(3, 99, (1, 3)), torch.randint(3, 99, (1, 6))
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    settings = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        alone = model.generate(short, **settings)[0, 3:]
        together = model.generate(batch, attention_mask=mask, **settings)[0, 6:]
        # and the logits of the real tokens match too, not only the argmax
        logits_alone = model(short).logits
        logits_padded = model(batch[:1], attention_mask=mask[:1]).logits[:, 3:]
    assert torch.equal(alone, together)
    torch.testing.assert_close(logits_padded, logits_alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["random", "dense", "factorized_dense", "random+dot"])
def test_left_padding_does_not_change_a_batch_with_inner_padding(variant):
    """transformers' left-padding check: a batch whose mask already has holes (here inner and right padding),
    with `position_ids = cumsum(mask) - 1`, gives the same last-token logits after 32 more left pads."""
    model = causal_lm(variant, max_position_embeddings=48)
    ids = torch.randint(3, 99, (2, 7))
    mask = torch.tensor([[1, 1, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0]])
    padded_ids = torch.cat([torch.zeros(2, 32, dtype=torch.long), ids], 1)
    padded_mask = torch.cat([torch.zeros(2, 32, dtype=torch.long), mask], 1)

    def positions(m):
        return (m.cumsum(-1) - 1).masked_fill(m == 0, 1)

    with torch.no_grad():
        plain = model(ids, attention_mask=mask, position_ids=positions(mask)).logits[:, -1]
        padded = model(padded_ids, attention_mask=padded_mask, position_ids=positions(padded_mask)).logits[
            :, -1
        ]
    torch.testing.assert_close(padded, plain, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("variant", ["random", "factorized_dense", "dense+dot", "pairwise_dot"])
@pytest.mark.parametrize("decoder", [True, False])
def test_packed_sequences_equal_the_padded_batch(variant, decoder):
    """Padding-free batches (`DataCollatorWithFlattening`: sequences concatenated, position_ids restarting at
    0, no mask) give every token what the same sequences give in a padded batch."""
    model = causal_lm(variant) if decoder else SynthesizerModel(tiny_config(variant)).eval()
    lengths = [5, 3, 6]
    sequences = [torch.randint(3, 99, (n,)) for n in lengths]
    padded = torch.zeros(3, max(lengths), dtype=torch.long)
    mask = torch.zeros_like(padded)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)], mask[row, : len(sequence)] = sequence, 1
    packed = torch.cat(sequences)[None]
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        reference = model(padded, attention_mask=mask)
        flat = model(packed, position_ids=position_ids)
    key = "logits" if decoder else "last_hidden_state"
    expected = torch.cat([reference[key][row, :n] for row, n in enumerate(lengths)])
    torch.testing.assert_close(flat[key][0], expected, atol=1e-5, rtol=1e-5)


def test_packed_sequences_with_a_convolutional_synthesizer_are_a_clear_error():
    model = causal_lm("conv_relu_conv")
    with pytest.raises(ValueError, match="Packed sequences"):
        model(torch.randint(3, 99, (1, 6)), position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]]))


def test_beam_search_and_sampling_run_for_both_decoders():
    lm = causal_lm("random+dot")
    s2s = seq2seq("dense", "random")
    prompt = torch.randint(3, 99, (2, 4))
    with torch.no_grad():
        beams = lm.generate(prompt, num_beams=3, max_new_tokens=5, pad_token_id=0, eos_token_id=None)
        sampled = lm.generate(
            prompt, do_sample=True, top_k=10, max_new_tokens=5, pad_token_id=0, eos_token_id=None
        )
        s2s_beams = s2s.generate(prompt, num_beams=3, max_new_tokens=5, eos_token_id=None)
        s2s_sampled = s2s.generate(prompt, do_sample=True, max_new_tokens=5, eos_token_id=None)
    assert beams.shape == sampled.shape == (2, 9)
    assert s2s_beams.shape == s2s_sampled.shape == (2, 6)  # decoder_start + 5


def test_seq2seq_generate_with_cache_equals_without():
    model = seq2seq("factorized_random+dot", "random")
    source = torch.randint(3, 99, (2, 7))
    with torch.no_grad():
        cached = model.generate(source, max_new_tokens=7, use_cache=True, eos_token_id=None)
        uncached = model.generate(source, max_new_tokens=7, use_cache=False, eos_token_id=None)
    assert torch.equal(cached, uncached)


def test_generation_past_the_synthesizer_length_is_a_clear_error():
    model = causal_lm("random", max_position_embeddings=16, synthesizer_length=12)
    with pytest.raises(ValueError, match="exceeds the synthesizer length 12"):
        model.generate(torch.randint(3, 99, (1, 10)), max_new_tokens=10, pad_token_id=0, eos_token_id=None)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        causal_lm("dot").generate(
            torch.randint(3, 99, (1, 10)), max_new_tokens=10, pad_token_id=0, eos_token_id=None
        )


def cache_bytes_per_token(model):
    with torch.no_grad():
        cache = output_cache(model(torch.randint(3, 99, (1, 10)), use_cache=True))
    return cache_storage_bytes(cache) / 10


def test_pure_synthesizer_layers_cache_values_only():
    dot = cache_bytes_per_token(causal_lm("dot"))
    for variant in ("random", "dense", "factorized_dense", "factorized_random", "fixed_random"):
        assert cache_bytes_per_token(causal_lm(variant)) == dot / 2, variant
    assert cache_bytes_per_token(causal_lm("random+dot")) == dot


@pytest.mark.parametrize("variant", ["random", "factorized_dense", "random+dot"])
def test_the_cache_has_the_standard_format(variant):
    """Every layer presents keys and values as [batch, heads, length, head_dim], value-only layers included
    (their keys are a zero view), through beam reordering and cropping as generation does them."""
    model = causal_lm(variant)
    with torch.no_grad():
        cache = output_cache(model(torch.randint(3, 99, (2, 7)), use_cache=True))
    cache.reorder_cache(torch.tensor([1, 0]))
    cache.crop(-2)  # the argument every 5.x release reads as 'remove 2 tokens'
    for layer in cache.layers:
        assert layer.keys.shape == layer.values.shape == (2, 4, 5, 8)
    assert cache.get_seq_length() == 5


@pytest.mark.parametrize("variant", ["random", "dense+dot"])
def test_assisted_decoding_matches_greedy(variant):
    """Assisted generation crops the cache when draft tokens are rejected."""
    model, assistant = causal_lm(variant), causal_lm(variant, num_hidden_layers=1)
    prompt = torch.randint(3, 99, (2, 4))
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        greedy = model.generate(prompt, **settings)
        assisted = model.generate(prompt[:1], assistant_model=assistant, **settings)
    assert torch.equal(assisted, greedy[:1])


@pytest.mark.slow
def test_seq2seq_base_model_and_head_load_each_other(tmp_path):
    """`SynthesizerSeq2SeqModel` is the head's `model` (as BartModel under BartForConditionalGeneration)."""
    lm = seq2seq("random+dot", "random")
    source, target = torch.randint(3, 99, (2, 7)), torch.randint(3, 99, (2, 5))
    with torch.no_grad():
        states = lm.model(source, decoder_input_ids=target).last_hidden_state
        logits = lm(source, decoder_input_ids=target).logits
    torch.testing.assert_close(lm.lm_head(states), logits)
    assert lm.base_model is lm.model and lm.get_encoder() is lm.model.encoder
    lm.save_pretrained(tmp_path / "lm")
    base, info = SynthesizerSeq2SeqModel.from_pretrained(tmp_path / "lm", output_loading_info=True)
    assert not info["missing_keys"]
    with torch.no_grad():
        torch.testing.assert_close(base.eval()(source, decoder_input_ids=target).last_hidden_state, states)
    base.save_pretrained(tmp_path / "base")
    head, info = SynthesizerForSeq2SeqLM.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert set(info["missing_keys"]) <= {"lm_head.weight"}  # tied to the shared embeddings
    with torch.no_grad():
        torch.testing.assert_close(head.eval()(source, decoder_input_ids=target).logits, logits)


def test_seq2seq_checkpoint_of_the_earlier_layout_loads(tmp_path):
    """Checkpoints saved before the base model existed (`encoder.`, `decoder.`, `shared.` at the top) load."""
    lm = seq2seq("factorized_random+dot", "dense")
    lm.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    save_file({k.removeprefix("model."): v for k, v in tensors.items()}, tmp_path / "model.safetensors")
    reloaded, info = SynthesizerForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    source, target = torch.randint(3, 99, (2, 7)), torch.randint(3, 99, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded.eval()(source, decoder_input_ids=target).logits,
            lm(source, decoder_input_ids=target).logits,
        )


def test_seq2seq_loss_ignores_minus_100_and_does_not_shift_labels():
    model = seq2seq("dot")
    source, labels = torch.randint(3, 99, (2, 6)), torch.randint(3, 99, (2, 5))
    labels[1, 3:] = -100
    out = model(source, labels=labels)
    logits = model(source, decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels)).logits
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 99), labels.reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)
    assert model.prepare_decoder_input_ids_from_labels(labels)[0, 0] == model.config.decoder_start_token_id


def copy_task(size=64, length=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(5, 20, (size, length), generator=generator)
    return [{"input_ids": r.tolist(), "labels": r.tolist()} for r in rows]


@pytest.mark.slow
def test_seq2seq_trainer_learns_a_copy_task_with_generation(tmp_path):
    from datasets import Dataset
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    model = SynthesizerForSeq2SeqLM(tiny_config("random+dot", decoder_attention_type="random"))
    model.generation_config = GenerationConfig(
        max_new_tokens=7, decoder_start_token_id=0, pad_token_id=0, eos_token_id=None
    )
    data = Dataset.from_list(copy_task())
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        max_steps=40,
        learning_rate=3e-3,
        logging_steps=5,
        predict_with_generate=True,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data, eval_dataset=data.select(range(16)))
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < 0.7 * losses[0]
    predictions = trainer.predict(data.select(range(16))).predictions
    assert predictions.shape[0] == 16


def test_causal_lm_loss_takes_pre_shifted_labels():
    """`shift_labels` (sequence/context parallelism shifts before sharding) are used as given, without a shift."""
    model = causal_lm("random+dot")
    ids = torch.randint(3, 99, (2, 9))
    shifted = torch.nn.functional.pad(ids[:, 1:], (0, 1), value=-100)
    with torch.no_grad():
        from_labels = model(ids, labels=ids).loss
        from_shifted = model(ids, shift_labels=shifted).loss
        ignoring_labels = model(ids, labels=torch.randint(3, 99, (2, 9)), shift_labels=shifted).loss
        other_targets = model(ids, shift_labels=torch.randint(3, 99, (2, 9))).loss
    torch.testing.assert_close(from_shifted, from_labels)
    torch.testing.assert_close(ignoring_labels, from_labels)
    assert not torch.allclose(other_targets, from_labels)


@pytest.mark.slow
def test_trainer_trains_the_causal_lm(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = SynthesizerForCausalLM(tiny_config("factorized_random+dot"))
    rows = [{"input_ids": list(range(5, 15)), "labels": list(range(5, 15))}] * 32
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        max_steps=20,
        learning_rate=3e-3,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < 0.8 * losses[0]


def test_text_generation_pipeline(tmp_path):
    from transformers import pipeline

    from synthesizer_tools.tokenization import train_tokenizer

    tokenizer = train_tokenizer(["a b c d e f g"] * 10, vocab_size=99, min_frequency=1)
    model = SynthesizerForCausalLM(
        tiny_config("random+dot", vocab_size=len(tokenizer), max_position_embeddings=32)
    )
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    out = generator("a b c", max_new_tokens=4, do_sample=False)
    assert isinstance(out[0]["generated_text"], str)
