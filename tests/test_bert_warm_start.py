"""Warm start from BERT (`synthesizer_hf.bert_warm_start`): the converted `dot` model and the mixtures with `dot`
compute what `transformers`' own BERT computes; the new synthesizers start at zero logits and learn; what
cannot map is a clear error; the converter script and the training workflows run from a converted model.

The BERTs are tiny, randomly initialised, saved here (no Hub) and perturbed so that no weight keeps an
init value (zero biases, unit LayerNorm gains) that would hide a wrong mapping.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForSequenceClassification,
    BertLMHeadModel,
    BertModel,
    GPT2Config,
    GPT2Model,
    MegatronBertConfig,
    MegatronBertForMaskedLM,
)

from helpers import load_script, run_without_package
from synthesizer_hf import SynthesizerConfig, SynthesizerForMaskedLM
from synthesizer_hf.bert_warm_start import from_bert
from synthesizer_hf.synthesizers import SYNTHESIZERS, Positions
from synthesizer_tools.bundled import DEMO_DATA_DIR, DEMO_PRETRAIN_FILE
from synthesizer_tools.tokenization import iter_text_files, train_tokenizer

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
# Non-default activation and LayerNorm epsilon: a converted model that ignored them would differ by >1e-4.
BERT = dict(**SIZES, max_position_embeddings=32, hidden_act="gelu_new", layer_norm_eps=1e-3)
MIXTURES = [
    "random+dot",
    "dense+dot",
    "factorized_random+dot",
    "factorized_dense+dot",
    "pairwise_dot+dot",
    "random+dense+factorized_dense+dot",
]
QUIET = ["--disable_tqdm", "--logging_steps", "1", "--seed", "0", "--report_to", "none"]


def save_bert(model, folder: Path, tokenizer=None) -> Path:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    """A WordPiece tokenizer trained on the bundled SST-2 sample, as a BERT folder would hold one."""
    lines = (DEMO_DATA_DIR / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return train_tokenizer([line.split("\t")[0] for line in lines], vocab_size=300, model_max_length=32)


@pytest.fixture(scope="module")
def berts(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """Saved BertForMaskedLM, BertForSequenceClassification (3 labels) and BertForMultipleChoice folders."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("berts")
    labels = {"id2label": {0: "no", 1: "maybe", 2: "yes"}, "label2id": {"no": 0, "maybe": 1, "yes": 2}}
    config = dict(BERT, vocab_size=len(tokenizer))
    return {
        "mlm": save_bert(BertForMaskedLM(BertConfig(**config)), root / "mlm", tokenizer),
        "sequence_classification": save_bert(
            BertForSequenceClassification(BertConfig(**config, **labels, classifier_dropout=0.2)),
            root / "cls",
            tokenizer,
        ),
        "multiple_choice": save_bert(BertForMultipleChoice(BertConfig(**config)), root / "mc"),
    }


BERT_CLASSES = {
    "model": BertModel,
    "mlm": BertForMaskedLM,
    "sequence_classification": BertForSequenceClassification,
    "multiple_choice": BertForMultipleChoice,
}


def inputs(head: str, vocab_size: int) -> dict[str, torch.Tensor]:
    """Three sentence pairs with token types and right padding (as pairs of choices for multiple choice)."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, vocab_size, (6, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    attention_mask[4, 3:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    batch = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    if head == "multiple_choice":
        return {name: tensor.view(3, 2, 12) for name, tensor in batch.items()}
    return batch


def outputs(model, batch) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(**batch)
    if "logits" in out:
        return [out.logits]
    return [out.last_hidden_state, out.pooler_output]


@pytest.mark.parametrize("attention_type", ["dot", *MIXTURES, ["dot", "factorized_random+dot"]])
@pytest.mark.parametrize("head", list(BERT_CLASSES))
def test_dot_and_mixtures_with_dot_compute_what_bert_computes(berts, head, attention_type):
    folder = berts["sequence_classification" if head == "model" else head]
    model = from_bert(folder, head=head, attention_type=attention_type)
    batch = inputs(head, model.config.vocab_size)
    for implementation in ("eager", "sdpa"):
        bert = BERT_CLASSES[head].from_pretrained(folder, attn_implementation=implementation).eval()
        model.set_attn_implementation(implementation)
        for ours, theirs in zip(outputs(model, batch), outputs(bert, batch), strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_in_the_original_bert_layout(tmp_path):
    """As google-bert/bert-base-uncased is saved: a BertForPreTraining (pooler, next-sentence head), LayerNorm
    `gamma`/`beta` names, a `position_ids` buffer and the tied decoder weight stored once more."""
    torch.manual_seed(0)
    save_bert(BertForPreTraining(BertConfig(**BERT, vocab_size=60)), tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    legacy = {key.replace("LayerNorm.weight", "LayerNorm.gamma"): value for key, value in weights.items()}
    legacy = {key.replace("LayerNorm.bias", "LayerNorm.beta"): value for key, value in legacy.items()}
    legacy["bert.embeddings.position_ids"] = torch.arange(32)[None]
    legacy["cls.predictions.decoder.weight"] = weights["bert.embeddings.word_embeddings.weight"].clone()
    save_file(legacy, tmp_path / "model.safetensors", metadata={"format": "pt"})
    batch = inputs("mlm", 60)
    for head in ("model", "mlm"):
        bert = BERT_CLASSES[head].from_pretrained(tmp_path).eval()
        model = from_bert(tmp_path, head=head, attention_type="random+dot")
        for ours, theirs in zip(outputs(model, batch), outputs(bert, batch), strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_the_converted_model_saves_and_reloads_exactly(berts, tmp_path):
    model = from_bert(berts["mlm"], head="mlm", attention_type="random+dot")
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    batch = inputs("mlm", model.config.vocab_size)
    torch.testing.assert_close(outputs(reloaded, batch), outputs(model, batch), atol=0, rtol=0)


def test_the_config_is_berts(berts):
    bert = BertConfig.from_pretrained(berts["sequence_classification"])
    config = from_bert(berts["sequence_classification"], head="sequence_classification").config
    for field in (
        *SIZES,
        "vocab_size",
        "max_position_embeddings",
        "type_vocab_size",
        "hidden_act",
        "layer_norm_eps",
        "hidden_dropout_prob",
        "classifier_dropout",
        "pad_token_id",
        "id2label",
        "label2id",
        "problem_type",
    ):
        assert getattr(config, field) == getattr(bert, field), field
    assert config.attention_probs_dropout_prob == 0.1, "BERT's attention dropout, not this project's 0"
    assert config.attention_type == "random+dot" and config.synthesizer_length == 32


def test_head_weights_the_checkpoint_lacks_start_new(berts, caplog):
    bert = BertForSequenceClassification.from_pretrained(berts["sequence_classification"])
    with caplog.at_level("INFO", logger="synthesizer_hf"):
        model = from_bert(
            berts["sequence_classification"],
            head="sequence_classification",
            num_labels=2,
            synthesizer_length=16,
        )
    assert model.classifier.out_features == 2 and model.config.synthesizer_length == 16
    assert "classifier" in caplog.text and "pooler" not in caplog.text
    torch.testing.assert_close(model.synthesizer.pooler.dense.weight, bert.bert.pooler.dense.weight)
    caplog.clear()
    with caplog.at_level("INFO", logger="synthesizer_hf"):
        from_bert(berts["mlm"], head="sequence_classification")  # an MLM checkpoint has no pooler
    assert "synthesizer.pooler.dense" in caplog.text and "classifier" in caplog.text


def test_an_mlm_head_on_a_bert_model_checkpoint_starts_new_as_transformers_initialises_it(
    tmp_path, tokenizer, caplog
):
    """all-MiniLM-L6-v2 is a `BertModel` folder: the MLM transform is new (N(0, initializer_range), LayerNorm
    1 / 0), the decoder is tied to BERT's word embeddings and only its bias (zeros) is new; the log says so."""
    folder = save_bert(
        BertModel(BertConfig(**BERT, vocab_size=len(tokenizer))), tmp_path / "model", tokenizer
    )
    with caplog.at_level("WARNING", logger="synthesizer_hf"):
        model = from_bert(folder, head="mlm", attention_type="random+dot")
    reported = caplog.text.split("missing weights")[-1]
    assert "lm_head.dense.weight" in reported and "lm_head.decoder.bias" in reported
    assert "lm_head.decoder.weight" not in reported and "synthesizer." not in reported
    head = model.lm_head
    assert head.decoder.weight is model.synthesizer.embeddings.word_embeddings.weight
    torch.testing.assert_close(
        model.synthesizer.embeddings.word_embeddings.weight,
        load_file(folder / "model.safetensors")["embeddings.word_embeddings.weight"],
    )
    assert abs(head.dense.weight.std().item() - model.config.initializer_range) < 0.005
    assert torch.all(head.LayerNorm.weight == 1) and torch.all(head.decoder.bias == 0)


# What `start_with_zero_logits` zeroes (R, R2, the dense W2 and b2, factor B, P) and the mixture logits.
ZEROED = (
    "random_logits",
    "random_key_factors",
    "position_weights",
    "position_bias",
    "_b",
    "pairwise_coefficients",
)


@pytest.mark.parametrize("attention_type", MIXTURES)
def test_new_synthesizers_start_at_zero_and_learn(berts, attention_type):
    """At init the mixtures equal BERT (above). The zeroed factors and the mixture weights get a gradient from
    the first backward pass; the factors behind a zeroed one (R1, the dense W1, factor A) from the second."""
    model = from_bert(berts["mlm"], head="mlm", attention_type=attention_type)
    new = {
        name: parameter
        for name, parameter in model.named_parameters()
        if ".self_attn.mixture_logits" in name
        or (".synthesizers." in name and ".synthesizers.dot." not in name)
    }
    zeroed = {name for name in new if name.endswith(ZEROED) or name.endswith("mixture_logits")}
    assert zeroed and all(not new[name].any() for name in zeroed)
    batch = inputs("mlm", model.config.vocab_size)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        expected = zeroed if step == 1 else set(new)
        silent = sorted(name for name in expected if new[name].grad is None or not new[name].grad.any())
        assert not silent, f"no gradient at step {step}: {silent}"
        optimizer.step()


@pytest.mark.parametrize("name", ["random", "factorized_random", "dense", "factorized_dense", "pairwise_dot"])
def test_start_with_zero_logits_gives_exactly_zero_logits(name):
    config = SynthesizerConfig(
        hidden_size=32, num_attention_heads=4, max_position_embeddings=16, factorized_random_rank=3
    )
    synthesizer = SYNTHESIZERS[name](config)
    for parameter in synthesizer.parameters():
        torch.nn.init.normal_(parameter)
    synthesizer.start_with_zero_logits()
    hidden = torch.randn(2, 10, 32)
    keys = synthesizer.cached_per_token(hidden) if synthesizer.uses_token_keys else None
    part = synthesizer(hidden, Positions(0, 10, 10), keys)
    logits = 0 if part.bias is None else part.bias
    if part.query is not None:
        logits = logits + part.query @ part.key.transpose(-1, -2)
    assert torch.count_nonzero(logits) == 0


@pytest.mark.parametrize(
    ("attention_type", "message"),
    [("symmetric_dot+dot", "zero gradient at Q = 0"), ("fixed_random+dot", "R is frozen")],
)
def test_mixtures_that_cannot_start_at_bert_are_refused(berts, attention_type, message):
    with pytest.raises(ValueError, match=message):
        from_bert(berts["mlm"], attention_type=attention_type)


def test_pure_synthesizers_reuse_everything_but_the_attention_logits(berts):
    bert = BertForMaskedLM.from_pretrained(berts["mlm"])
    attention_type = ["random", "symmetric_dot"]
    model = from_bert(berts["mlm"], attention_type=attention_type)
    fresh = SynthesizerForMaskedLM(model.config)
    random_layer, symmetric_layer = model.synthesizer.layers
    bert_layers = bert.bert.encoder.layer
    assert set(random_layer.self_attn.synthesizers) == {"random"}
    assert random_layer.self_attn.synthesizers["random"].random_logits.std() > 0.01  # its normal init
    torch.testing.assert_close(
        symmetric_layer.self_attn.synthesizers["symmetric_dot"].query.weight,
        bert_layers[1].attention.self.query.weight,
    )
    model_weights, bert_weights = model.state_dict(), bert.state_dict()
    for ours, theirs in [
        ("synthesizer.embeddings.position_embeddings.weight", "bert.embeddings.position_embeddings.weight"),
        ("synthesizer.layers.0.self_attn.value.weight", "bert.encoder.layer.0.attention.self.value.weight"),
        ("synthesizer.layers.1.output_layer_norm.bias", "bert.encoder.layer.1.output.LayerNorm.bias"),
        ("lm_head.bias", "cls.predictions.bias"),
    ]:
        torch.testing.assert_close(model_weights[ours], bert_weights[theirs])
    assert set(model_weights) == set(fresh.state_dict()), "the layout of a model built from the config"
    assert model.config.attention_type == attention_type


def edited_copy(source: Path, target: Path, **config_changes) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **config_changes}))
    return target


def test_what_cannot_map_is_a_clear_error(berts, tmp_path, tokenizer):
    tiny = dict(vocab_size=len(tokenizer), max_position_embeddings=32)
    GPT2Model(GPT2Config(n_embd=32, n_layer=1, n_head=4, n_positions=32, vocab_size=50)).save_pretrained(
        tmp_path / "gpt2"
    )
    megatron = MegatronBertForMaskedLM(MegatronBertConfig(**SIZES, **tiny))
    megatron.save_pretrained(tmp_path / "megatron")
    BertLMHeadModel(BertConfig(**SIZES, **tiny, is_decoder=True)).save_pretrained(tmp_path / "decoder")
    (tmp_path / "no_weights").mkdir()
    shutil.copy(berts["mlm"] / "config.json", tmp_path / "no_weights")
    BertForMaskedLM(BertConfig(**SIZES, **dict(tiny, vocab_size=len(tokenizer) + 1))).save_pretrained(
        tmp_path / "vocab"
    )
    tokenizer.save_pretrained(tmp_path / "vocab")
    cases = [
        (tmp_path / "absent", {}, "no config.json"),
        (tmp_path / "gpt2", {}, "'gpt2' checkpoint"),
        (tmp_path / "megatron", {}, "pre-LayerNorm model"),
        (
            edited_copy(tmp_path / "megatron", tmp_path / "as_bert", model_type="bert"),
            {},
            "post-LayerNorm layout",
        ),
        (tmp_path / "decoder", {}, "BERT decoder"),
        (tmp_path / "no_weights", {}, "has no weights"),
        (tmp_path / "vocab", {}, f"{len(tokenizer)} tokens but .* vocab_size is {len(tokenizer) + 1}"),
        (edited_copy(berts["mlm"], tmp_path / "heads", num_attention_heads=5), {}, "must be divisible by"),
        (berts["mlm"], {"synthesizer_length": 64}, r"synthesizer_length \(64\) cannot exceed"),
        (berts["mlm"], {"max_position_embeddings": 64}, "cannot be overridden"),
        (berts["mlm"], {"head": "token_classification"}, "head must be one of"),
    ]
    for folder, arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            from_bert(folder, **arguments)


@pytest.mark.slow
def test_convert_script_writes_a_folder_that_loads_with_trust_remote_code(berts, tmp_path):
    output_dir = tmp_path / "converted"
    load_script("convert_bert").main(
        ["--bert_path", str(berts["mlm"]), "--attention_type", "dense+dot", "--synthesizer_length", "16",
         "--output_dir", str(output_dir)]
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert tokenizer.model_max_length == 16, "capped at the synthesizer length"
    assert "auto_map" in json.loads((output_dir / "config.json").read_text())
    batch = inputs("mlm", tokenizer.vocab_size)
    expected = outputs(BertForMaskedLM.from_pretrained(berts["mlm"]).eval(), batch)[0]
    torch.save(batch, tmp_path / "inputs.pt")
    result = run_without_package(
        f"""
        import torch
        from transformers import AutoModelForMaskedLM
        model = AutoModelForMaskedLM.from_pretrained({str(output_dir)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(**torch.load({str(tmp_path / "inputs.pt")!r})).logits
        torch.save(logits, {str(tmp_path / "out.pt")!r})
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_run_glue_and_pretrain_mlm_from_a_converted_bert(berts, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(itertools.islice(iter_text_files(DEMO_PRETRAIN_FILE), 200)), encoding="utf-8")
    summary = load_script("run_glue").main(
        ["--tasks", "sst2", "--data_dir", str(DEMO_DATA_DIR), "--init_from_bert", str(berts["mlm"]),
         "--attention_type", "random+dot", "--max_seq_length", "32", "--max_train_samples", "24",
         "--max_eval_samples", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "1",
         "--output_dir", str(tmp_path / "glue"), *QUIET]
    )  # fmt: skip
    assert 0 <= summary["scores"]["sst2"] <= 1 and "converted from BERT" in summary["model"]
    saved = json.loads((tmp_path / "glue" / "sst2" / "config.json").read_text())
    assert saved["attention_type"] == "random+dot" and saved["synthesizer_length"] == 32
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    assert len(AutoTokenizer.from_pretrained(tmp_path / "glue" / "sst2")) == saved["vocab_size"]

    metrics = load_script("pretrain_mlm").main(
        ["--train_files", str(corpus), "--init_from_bert", str(berts["mlm"]),
         "--attention_type", "factorized_random+dot", "--max_seq_length", "32", "--max_train_samples", "16",
         "--max_eval_samples", "8", "--per_device_train_batch_size", "8", "--max_steps", "2",
         "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "mlm"), *QUIET]
    )  # fmt: skip
    assert metrics["train_steps"] == 2
    assert (
        json.loads((tmp_path / "mlm" / "config.json").read_text())["attention_type"]
        == "factorized_random+dot"
    )


def test_init_from_bert_refuses_another_tokenizer(berts, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("run_glue").main(
            ["--tasks", "sst2", "--init_from_bert", str(berts["mlm"]), "--tokenizer", str(berts["mlm"]),
             "--output_dir", "unused"]
        )  # fmt: skip
    assert exit_info.value.code == 2 and "drop --tokenizer" in capsys.readouterr().err
