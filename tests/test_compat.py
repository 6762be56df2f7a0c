"""The transformers-version shims of `synthesizer_hf.compat`: the 5.24 cache rename and the meaning of `crop`.

Each test holds on every supported release; what it expects follows the installed one (`CACHE_RENAMED`).
"""

import inspect
import logging
import warnings

import pytest
import torch
from transformers import DynamicCache

from helpers import tiny_config
from synthesizer_hf import SynthesizerForCausalLM, SynthesizerForSeq2SeqLM
from synthesizer_hf.compat import CACHE_RENAMED, length_after_crop, output_cache


def causal_lm(variant):
    return SynthesizerForCausalLM(tiny_config(variant)).eval()


def seq2seq(variant):
    return SynthesizerForSeq2SeqLM(tiny_config(variant, decoder_attention_type=variant)).eval()


def deprecation_messages(caught) -> list[str]:
    return [str(w.message) for w in caught if "past_key_values" in str(w.message)]


@pytest.mark.parametrize("variant", ["random", "random+dot"])
def test_the_old_cache_name_works_and_warns_only_where_transformers_renamed_it(variant):
    """transformers 5.24 renamed `past_key_values` to `cache`: there the old name must warn as BERT's does (a
    FutureWarning naming both); on earlier releases it is the only name and must stay silent."""
    model = causal_lm(variant)
    ids = torch.randint(3, 99, (2, 6))
    with torch.no_grad():
        full = model(ids).logits
        new_name = model(ids[:, 5:], cache=output_cache(model(ids[:, :5], use_cache=True)), use_cache=True)
        prefix_cache = output_cache(model(ids[:, :5], use_cache=True))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old_name = model(ids[:, 5:], past_key_values=prefix_cache, use_cache=True)
    torch.testing.assert_close(new_name.logits, full[:, 5:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(old_name.logits, full[:, 5:], atol=1e-5, rtol=1e-5)
    assert output_cache(old_name).get_seq_length() == 6
    messages = deprecation_messages(caught)
    if CACHE_RENAMED:
        assert len(messages) == 1 and "deprecated" in messages[0] and "`cache`" in messages[0], messages
        assert issubclass(
            next(w.category for w in caught if "past_key_values" in str(w.message)), FutureWarning
        )
    else:
        assert not messages


def test_the_old_cache_name_works_for_the_encoder_decoder_and_its_base_model():
    model = seq2seq("dense+dot")
    ids, decoder_ids = torch.randint(3, 99, (2, 5)), torch.randint(3, 99, (2, 4))
    with torch.no_grad():
        full = model(ids, decoder_input_ids=decoder_ids).logits
        for module in (model, model.model):
            cache = output_cache(module(ids, decoder_input_ids=decoder_ids[:, :3], use_cache=True))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step = module(
                    ids, decoder_input_ids=decoder_ids[:, 3:], past_key_values=cache, use_cache=True
                )
            hidden = step.logits if module is model else model.lm_head(step.last_hidden_state)
            torch.testing.assert_close(hidden, full[:, 3:], atol=1e-5, rtol=1e-5)
            assert bool(deprecation_messages(caught)) == CACHE_RENAMED


def test_both_cache_names_at_once_follow_the_installed_release():
    """As transformers' `deprecate_kwarg` where renamed (the new name wins, with a warning); an error before."""
    model = causal_lm("random+dot")
    ids = torch.randint(3, 99, (2, 6))
    with torch.no_grad():
        cache = output_cache(model(ids[:, :5], use_cache=True))
        if CACHE_RENAMED:
            with pytest.warns(FutureWarning, match="Both `past_key_values` and `cache`"):
                output = model(ids[:, 5:], cache=cache, past_key_values=DynamicCache(), use_cache=True)
            assert output_cache(output).get_seq_length() == 6
        else:
            with pytest.raises(ValueError, match="Pass the cache once"):
                model(ids[:, 5:], cache=cache, past_key_values=DynamicCache(), use_cache=True)


@pytest.mark.parametrize("model_builder", [causal_lm, seq2seq], ids=["causal", "seq2seq"])
def test_generation_passes_the_cache_without_any_deprecation_warning(model_builder, monkeypatch):
    model = model_builder("random+dot")
    ids = torch.randint(3, 99, (2, 6))
    # transformers warns once per process (`Logger.warning_once`), so record the calls themselves
    messages = []
    for method in ("warning", "warning_once"):
        monkeypatch.setattr(logging.Logger, method, lambda self, msg, *a, **k: messages.append(str(msg)))
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        output = model.generate(
            ids,
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            return_dict_in_generate=True,
        )
        output_cache(output)
    messages += [str(w.message) for w in caught]
    assert not [m for m in messages if "deprecat" in m.lower()], messages


def test_the_forward_signatures_name_the_cache_as_the_installed_generation_expects():
    """Generation before 5.24 inspects `forward` for `past_key_values`; from 5.24 on, `cache` is the name."""
    for forward in (SynthesizerForCausalLM.forward, SynthesizerForSeq2SeqLM.forward):
        parameters = inspect.signature(forward).parameters
        assert "cache" in parameters
        assert ("past_key_values" in parameters) != CACHE_RENAMED


@pytest.mark.parametrize(
    ("argument", "kept"), [(0, 7), (-2, 5), (-9, 0), (4, 4), (9, 7)], ids=["0", "-2", "-9", "4", "9"]
)
def test_length_after_crop_reads_both_meanings_of_crop(argument, kept):
    assert length_after_crop(argument, 7) == kept
