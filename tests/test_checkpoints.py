"""A mismatched, damaged or pickled checkpoint is an error, never a silent substitution. The guarantees, with their
tests: docs/GUARANTEES.md."""

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import tiny_config
from synthesizer_hf import (
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForSeq2SeqLM,
    SynthesizerModel,
)


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
