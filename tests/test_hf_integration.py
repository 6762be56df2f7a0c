"""Auto classes, save/reload, trust_remote_code, pipelines, Trainer and torch.compile."""

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    pipeline,
)

import synthesizer_hf
from helpers import ALL_VARIANTS, run_without_package, tiny_config
from synthesizer_hf import (
    SynthesizerConfig,
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForQuestionAnswering,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerModel,
)

HEADS = [
    SynthesizerModel,
    SynthesizerForMaskedLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerForMultipleChoice,
    SynthesizerForQuestionAnswering,
    SynthesizerForCausalLM,
    SynthesizerForSeq2SeqLM,
]


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_save_and_reload_is_exact(variant, tmp_path):
    model = SynthesizerForMaskedLM(tiny_config(variant))
    with torch.no_grad():  # make mixture weights non-trivial so that a reset would show
        for name, param in model.named_parameters():
            if "mixture_logits" in name:
                param.copy_(torch.randn_like(param))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")), "only safetensors are written"
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(reloaded) is SynthesizerForMaskedLM
    original, loaded = model.state_dict(), reloaded.state_dict()
    assert original.keys() == loaded.keys()
    for key in original:
        assert torch.equal(original[key], loaded[key]), key
    assert reloaded.lm_head.decoder.weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr()
    if variant == "fixed_random":
        assert not any("random_logits" in name for name, _ in reloaded.named_parameters()), (
            "fixed R is not trained"
        )
        assert any("random_logits" in name for name, _ in reloaded.named_buffers())


@pytest.mark.parametrize("head", HEADS)
def test_every_head_is_registered_with_an_auto_class(head, tmp_path):
    config = tiny_config("random+dot")
    head(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "synthesizer"
    assert saved["auto_map"]["AutoConfig"] == "configuration_synthesizer.SynthesizerConfig"
    auto_name = next(name for name, path in saved["auto_map"].items() if path.endswith("." + head.__name__))
    assert (tmp_path / "modeling_synthesizer.py").exists() and (tmp_path / "synthesizers.py").exists()
    import transformers

    reloaded = getattr(transformers, auto_name).from_pretrained(tmp_path)
    assert type(reloaded) is head
    assert type(AutoConfig.from_pretrained(tmp_path)) is SynthesizerConfig


OTHER_PYTHON = os.environ.get("SYNTHESIZER_OTHER_PYTHON")
INTERPRETERS = [
    pytest.param(sys.executable, id="this-release"),
    pytest.param(
        OTHER_PYTHON,
        id="other-release",
        marks=pytest.mark.skipif(
            not OTHER_PYTHON,
            reason="SYNTHESIZER_OTHER_PYTHON (the interpreter of the other end of the supported range, set by "
            "`make test`) is not set",
        ),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("python", INTERPRETERS)
def test_trust_remote_code_loads_without_the_package_installed(python, tmp_path):
    """A saved folder loads with trust_remote_code where the package is absent, also under the transformers
    release at the other end of the supported range (checkpoints outlive the release they were saved with)."""
    classifier = SynthesizerForSequenceClassification(
        tiny_config(["random+dot", "factorized_dense"], num_labels=3)
    ).eval()
    lm = SynthesizerForCausalLM(tiny_config("random+dot")).eval()
    classifier.save_pretrained(tmp_path / "classifier")
    lm.save_pretrained(tmp_path / "lm")
    ids = torch.randint(3, 99, (2, 7))
    prompt = torch.tensor([[0, 0, 11, 12, 13], [21, 22, 23, 24, 25]])  # left padding, decoded with the cache
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        expected_logits = classifier(ids).logits
        expected_tokens = lm.generate(prompt, attention_mask=(prompt != 0).long(), **settings)
    torch.save({"ids": ids, "prompt": prompt}, tmp_path / "inputs.pt")
    result = run_without_package(
        f"""
        import torch, transformers
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        classifier = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "classifier")!r}, trust_remote_code=True)
        lm = AutoModelForCausalLM.from_pretrained({str(tmp_path / "lm")!r}, trust_remote_code=True)
        prompt = inputs["prompt"]
        with torch.no_grad():
            logits = classifier.eval()(inputs["ids"]).logits
            tokens = lm.eval().generate(prompt, attention_mask=(prompt != 0).long(), **{settings!r})
        torch.save({{"logits": logits, "tokens": tokens}}, {str(tmp_path / "out.pt")!r})
        print(type(classifier).__module__, transformers.__version__)
        """,
        tmp_path,
        python=python,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    out = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(out["logits"], expected_logits)
    assert torch.equal(out["tokens"], expected_tokens)


@pytest.mark.slow
def test_the_model_code_needs_no_training_or_plotting_library():
    """The core install (`pip install synthesizer-hf`, no extras) declares only what the model code imports:
    `import synthesizer_hf` loads the model modules alone, and they import nothing but the core requirements."""
    core = [r for r in importlib.metadata.requires("synthesizer-hf") if "extra ==" not in r]
    declared = {re.split(r"[<>=!~ ;\[]", r)[0].lower().replace("-", "_") for r in core}
    assert declared == {"torch", "transformers", "huggingface_hub"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, synthesizer_hf; print(sorted(m for m in sys.modules if 'synthesizer_hf' in m))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = eval(result.stdout.strip().splitlines()[-1])
    assert loaded == [f"synthesizer_hf{suffix}" for suffix in CORE_MODULES]
    package = Path(synthesizer_hf.__file__).parent
    for suffix in CORE_MODULES:
        tree = ast.parse((package / f"{suffix.strip('.') or '__init__'}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= declared | sys.stdlib_module_names, (suffix, roots)


def test_the_model_file_imports_every_module_of_the_model_itself():
    """Loading remote code, transformers 5.4 copies only the direct relative imports of the model's file into its
    module cache: a module imported only through another (attention_kernels -> biased_attention) would be missing
    there."""
    from transformers.dynamic_module_utils import get_relative_import_files, get_relative_imports

    package = Path(synthesizer_hf.__file__).parent
    for name in ("modeling_synthesizer.py", "configuration_synthesizer.py"):
        direct = {package / f"{module}.py" for module in get_relative_imports(package / name)}
        needed = {Path(f) for f in get_relative_import_files(package / name)} - {package / name}
        assert needed == direct, name


CORE_MODULES = [
    "",
    ".attention_kernels",
    ".biased_attention",
    ".caching",
    ".compat",
    ".configuration_synthesizer",
    ".modeling_synthesizer",
    ".synthesizers",
]


def make_tokenizer(tmp_path) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained here, offline, on a toy corpus."""
    from synthesizer_tools.tokenization import train_tokenizer

    corpus = ["the movie was great", "the movie was awful", "a fine film", "an awful film"] * 20
    return train_tokenizer(corpus, vocab_size=99, min_frequency=1, model_max_length=16)


def test_fill_mask_and_text_classification_pipelines(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    config = tiny_config("factorized_random+dot", vocab_size=len(tokenizer))
    mlm = SynthesizerForMaskedLM(config)
    mlm.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    fill = pipeline("fill-mask", model=str(tmp_path / "mlm"))
    predictions = fill(f"the movie was {tokenizer.mask_token}")
    assert len(predictions) == 5 and {"score", "token_str"} <= predictions[0].keys()

    classifier = SynthesizerForSequenceClassification(config)
    classifier.config.id2label = {0: "negative", 1: "positive"}
    classifier.config.label2id = {"negative": 0, "positive": 1}
    classifier.save_pretrained(tmp_path / "cls")
    tokenizer.save_pretrained(tmp_path / "cls")
    classify = pipeline("text-classification", model=str(tmp_path / "cls"))
    result = classify(["a fine film", "an awful film"])
    assert [r["label"] in ("negative", "positive") for r in result] == [True, True]
    assert type(AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")) is type(classifier)


@pytest.mark.slow
def test_trainer_trains_a_classification_head(tmp_path):
    from datasets import Dataset

    tokenizer = make_tokenizer(tmp_path)
    texts = ["the movie was great", "a fine film", "the movie was awful", "an awful film"] * 8
    labels = [1, 1, 0, 0] * 8
    dataset = Dataset.from_dict({"text": texts, "label": labels}).map(
        lambda batch: tokenizer(batch["text"], padding="max_length", max_length=12), batched=True
    )
    model = SynthesizerForSequenceClassification(tiny_config("random", vocab_size=len(tokenizer)))
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_train_epochs=6,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4


@pytest.mark.parametrize("head", [SynthesizerForCausalLM, SynthesizerForMaskedLM])
def test_trainer_evaluation_reports_the_loss_of_a_language_model(tmp_path, head):
    """The Trainer computes an evaluation loss only when every label name it finds in `forward`'s signature is
    in the batch: a named `shift_labels` parameter would leave causal LMs without one."""
    from datasets import Dataset

    ids = torch.randint(5, 99, (8, 12))
    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=4,
        prediction_loss_only=True,
        report_to=[],
        use_cpu=True,
    )
    metrics = Trainer(model=head(tiny_config("random")), args=args).evaluate(dataset)
    assert metrics["eval_loss"] > 0


def test_automodel_builds_from_config():
    model = AutoModel.from_config(tiny_config("dense"))
    assert type(model) is SynthesizerModel


@pytest.mark.slow
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_torch_compile_forward_and_backward(variant):
    torch._dynamo.reset()
    model = SynthesizerForMaskedLM(tiny_config(variant))
    compiled = torch.compile(model, backend="aot_eager")
    ids = torch.randint(3, 99, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    out = compiled(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    eager = model(input_ids=ids, attention_mask=mask, labels=ids)
    torch.testing.assert_close(out.loss, eager.loss)


@pytest.mark.slow
def test_torch_compile_with_inductor():
    torch._dynamo.reset()
    model = SynthesizerForMaskedLM(tiny_config("random+dot")).eval()
    ids = torch.randint(3, 99, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(ids).logits, model(ids).logits, atol=1e-4, rtol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_config("dense+dot")
    model = SynthesizerForMaskedLM(config)
    ids = torch.randint(3, 99, (2, 10))
    model(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # `activation_checkpointing_enable` since transformers 5.23, `gradient_checkpointing_enable` before
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    model.train()
    model(ids, labels=ids).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_trainer_loss_does_not_scale_with_gradient_accumulation(tmp_path):
    """The heads average their own loss, so the Trainer must not treat them as summing over num_items."""
    from datasets import Dataset

    data = Dataset.from_dict({"input_ids": [[5, 6, 7, 8]] * 16, "labels": [0, 1] * 8})
    losses = []
    for accumulation in (1, 4):
        torch.manual_seed(0)
        model = SynthesizerForSequenceClassification(tiny_config("random"))
        args = TrainingArguments(
            output_dir=str(tmp_path / str(accumulation)),
            per_device_train_batch_size=16 // accumulation,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            logging_steps=1,
            learning_rate=0.0,
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        losses.append(next(log["loss"] for log in trainer.state.log_history if "loss" in log))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
