"""A newcomer's paths through the scripts and the API: each one gives the right result, or fails before any
training with an error that names the fix; never a silently wrong model, card or submission (issue 25)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    pipeline,
)

from helpers import load_script, run_without_package, tiny_config
from synthesizer_hf import (
    AUTO_CLASSES,
    SynthesizerConfig,
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
    SynthesizerModel,
)
from synthesizer_tools import finetuning
from synthesizer_tools.bundled import DEMO_DATA_DIR
from synthesizer_tools.tokenization import special_token_fields, train_tokenizer

QUIET = ["--disable_tqdm", "--logging_steps", "1", "--seed", "0", "--report_to", "none"]
SHORT_RUN = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--learning_rate", "1e-2"]
SST2_ROWS = 24


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user_paths")


@pytest.fixture(scope="module")
def task_data(workdir) -> Path:
    """The first rows of the bundled SST-2 sample (train, dev) and a test file, in the official layout."""
    source = DEMO_DATA_DIR / "glue" / "SST-2"
    folder = workdir / "data" / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        lines = (source / name).read_text(encoding="utf-8").splitlines()[: SST2_ROWS + 1]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    sentences = [line.split("\t")[0] for line in (folder / "dev.tsv").read_text().splitlines()[1:]]
    rows = ["index\tsentence", *(f"{i}\t{sentence}" for i, sentence in enumerate(sentences))]
    (folder / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return workdir / "data"


@pytest.fixture(scope="module")
def tokenizer_dir(workdir, task_data) -> Path:
    texts = (task_data / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    path = workdir / "tokenizer"
    train_tokenizer(texts * 4, vocab_size=200, min_frequency=1, model_max_length=32).save_pretrained(path)
    return path


def save_mlm(folder: Path, tokenizer_dir: Path, **config) -> Path:
    """A saved masked-LM checkpoint with its tokenizer, as pretrain_mlm.py leaves one (no pooler)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    values.update(max_position_embeddings=32, attention_type="random+dot", **config)
    SynthesizerForMaskedLM(SynthesizerConfig(**special_token_fields(tokenizer), **values)).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mlm_dir(workdir, tokenizer_dir) -> Path:
    return save_mlm(workdir / "mlm", tokenizer_dir)


@pytest.fixture(scope="module")
def bert_dir(workdir) -> Path:
    folder = workdir / "bert"
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def run_glue(*argv: str) -> dict:
    return load_script("run_glue").main([*argv, *QUIET])


# --- 1. no silently wrong result ------------------------------------------------------------------------


def test_a_lora_adapter_reloads_to_the_model_that_was_evaluated(workdir, mlm_dir, task_data, monkeypatch):
    """On an MLM checkpoint the classifier's pooler is new: it must be trained and saved with the adapter,
    or the model reloaded as docs/TRAINING.md shows differs from the evaluated one (and from seed to seed)."""
    peft = pytest.importorskip("peft", reason="peft is not installed: pip install 'synthesizer-hf[peft]'")
    trainers = []

    def recording_trainer(*args, **kwargs):
        trainers.append(make_trainer(*args, **kwargs))
        return trainers[-1]

    make_trainer = finetuning.make_trainer
    monkeypatch.setattr(finetuning, "make_trainer", recording_trainer)
    output_dir = workdir / "lora"
    run_glue("--tasks", "sst2", "--data_dir", str(task_data), "--model_name_or_path", str(mlm_dir),
             "--max_seq_length", "32", "--lora", "--lora_r", "4", "--no_predict", "--output_dir", str(output_dir),
             *SHORT_RUN)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(output_dir / "sst2")
    inputs = tokenizer(["a fine film", "a dull and tired one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        evaluated = trainers[0].model.eval()(**inputs).logits
    for seed in (0, 1):
        torch.manual_seed(seed)
        base = AutoModelForSequenceClassification.from_pretrained(
            mlm_dir, num_labels=2, trust_remote_code=True
        )
        reloaded = peft.PeftModel.from_pretrained(base, output_dir / "sst2").eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(**inputs).logits, evaluated)


@pytest.mark.parametrize(
    "head", [SynthesizerForMaskedLM, SynthesizerForSequenceClassification, SynthesizerModel]
)
def test_a_bert_folder_is_refused_with_the_way_to_convert_it(head, bert_dir):
    with pytest.raises(ValueError, match=r"'bert' checkpoint.*from_bert.*convert_bert\.py"):
        head.from_pretrained(bert_dir)


def test_output_attentions_under_sdpa_says_why_it_returns_none():
    """As transformers' SDPA does: a warning that names eager, not an empty tuple without a word."""
    model = SynthesizerModel(tiny_config("random+dot")).eval()
    assert model.config._attn_implementation == "sdpa"
    logging.Logger.warning_once.cache_clear()
    with transformers.testing_utils.CaptureLogger(
        transformers.utils.logging.get_logger("synthesizer_hf")
    ) as log:
        outputs = model(torch.tensor([[3, 4, 5]]), output_attentions=True)
    assert outputs.attentions == ()
    assert "attn_implementation='eager'" in log.out
    model.set_attn_implementation("eager")
    assert len(model(torch.tensor([[3, 4, 5]]), output_attentions=True).attentions) == 2


@pytest.mark.parametrize(
    ("start", "flags", "named"),
    [
        ("--model_name_or_path", ["--attention_type", "dense", "--hidden_size", "512"],
         "--attention_type, --hidden_size"),
        ("--init_from_bert", ["--attention_type", "dense", "--hidden_size", "512", "--dropout", "0.2"],
         "--hidden_size, --dropout"),
    ],
)  # fmt: skip
def test_run_glue_refuses_flags_that_the_checkpoint_overrides(start, flags, named, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_glue("--tasks", "sst2", start, "somewhere", *flags, "--output_dir", str(tmp_path / "out"))
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_glue_lora_needs_a_saved_checkpoint_to_be_reloaded_onto(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_glue("--tasks", "sst2", "--init_from_bert", "bert", "--lora", "--output_dir", str(tmp_path))
    assert "--lora needs --model_name_or_path" in capsys.readouterr().err


def test_a_failed_pretraining_run_leaves_no_tokenizer_behind(tmp_path):
    """A bad --attention_type fails before the tokenizer is trained and saved in --output_dir, where the next
    run would reuse it (with another vocabulary than its --vocab_size)."""
    output_dir = tmp_path / "mlm"
    argv = ["--train_files", str(DEMO_DATA_DIR / "pretrain.txt.gz"), "--output_dir", str(output_dir),
            "--attention_type", "randon", "--max_steps", "1", *QUIET]  # fmt: skip
    with pytest.raises(ValueError, match="randon"):
        load_script("pretrain_mlm").main(argv)
    assert not output_dir.exists() or not any(output_dir.iterdir())


def glue_summary(folder: Path, model: str | None) -> Path:
    path = folder / "summary.json"
    scores = {"sst2": 0.5, "glue_average": 0.5}
    summary = {"command": "x", "model": model, "tasks": {"sst2": {"accuracy": 0.5}}, "scores": scores}
    path.write_text(json.dumps(summary), encoding="utf-8")
    return path


def test_prepare_hub_folder_refuses_results_of_another_model(tmp_path, mlm_dir):
    other = glue_summary(tmp_path, str(tmp_path / "another-model"))
    with pytest.raises(ValueError, match="another-model"):
        load_script("prepare_hub_folder").main(
            ["--model_dir", str(mlm_dir), "--output_dir", str(tmp_path / "hub"), "--results", str(other)]
        )
    own = glue_summary(tmp_path, str(mlm_dir))
    load_script("prepare_hub_folder").main(
        ["--model_dir", str(mlm_dir), "--output_dir", str(tmp_path / "hub"), "--results", str(own)]
    )
    assert "| sst2 |" in (tmp_path / "hub" / "README.md").read_text()


def test_the_card_names_the_corpus_it_was_pretrained_on():
    from synthesizer_tools.model_card import corpus_limitation

    assert "WikiText-2 sample bundled" in corpus_limitation([str(DEMO_DATA_DIR / "pretrain.txt.gz")])
    mine = corpus_limitation(["corpora/pretrain.txt"])
    assert "WikiText" not in mine and "pretrain.txt" in mine
    assert corpus_limitation([]) is None


@pytest.mark.slow
def test_a_truncated_submission_warns(workdir, mlm_dir, task_data, caplog):
    with caplog.at_level(logging.WARNING, logger="synthesizer_tools"):
        run_glue("--tasks", "sst2", "--data_dir", str(task_data), "--model_name_or_path", str(mlm_dir),
                 "--max_seq_length", "32", "--max_predict_samples", "4", "--no_save_model", "--max_steps", "1",
                 "--output_dir", str(workdir / "truncated"))  # fmt: skip
    assert "--max_predict_samples 4" in caplog.text
    assert (workdir / "truncated" / "submission" / "glue" / "SST-2.tsv").is_file()


# --- 2. no late or obscure failure ----------------------------------------------------------------------


def test_save_pretrained_lists_every_head_in_auto_map(tmp_path):
    SynthesizerForMaskedLM(tiny_config("random+dot")).save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map.keys() == {"AutoConfig", *(auto.__name__ for auto in AUTO_CLASSES)}


@pytest.mark.slow
def test_any_head_loads_a_saved_checkpoint_without_the_package(tmp_path):
    """What pretrain_mlm.py saves is fine-tuned with another head where only transformers is installed."""
    SynthesizerForMaskedLM(tiny_config("random+dot")).save_pretrained(tmp_path / "mlm")
    result = run_without_package(
        f"""
        import transformers
        for auto in ("AutoModelForSequenceClassification", "AutoModelForMultipleChoice",
                     "AutoModelForTokenClassification", "AutoModelForQuestionAnswering", "AutoModel"):
            model = getattr(transformers, auto).from_pretrained({str(tmp_path / "mlm")!r}, trust_remote_code=True)
            print(type(model).__name__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SynthesizerForMultipleChoice" in result.stdout


@pytest.mark.parametrize("text_to_text", [False, True])
def test_run_glue_checks_the_length_against_the_synthesizer_before_training(
    text_to_text, tmp_path, task_data
):
    """A checkpoint with L = 16 (as pretrain_mlm.py --init_from_bert --max_seq_length 16 leaves) and the
    default --max_seq_length 128: an error before the first task trains, not inside trainer.train()."""
    tokenizer_dir = tmp_path / "tokenizer"
    train_tokenizer(["a b c d"] * 8, vocab_size=50, min_frequency=1).save_pretrained(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = SynthesizerConfig(**special_token_fields(tokenizer), **dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, synthesizer_length=16))  # fmt: skip
    head = SynthesizerForSeq2SeqLM if text_to_text else SynthesizerForMaskedLM
    head(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    extra = ["--text_to_text"] if text_to_text else []
    with pytest.raises(ValueError, match="--max_seq_length 128 exceeds the longest input of the model, 16"):
        run_glue("--tasks", "sst2", "--data_dir", str(task_data), "--model_name_or_path", str(tmp_path / "model"),
                 "--output_dir", str(tmp_path / "out"), *extra)  # fmt: skip
    assert not (tmp_path / "out" / "sst2").exists()


def test_run_glue_checks_every_task_file_before_the_first_task_trains(tmp_path, mlm_dir, task_data):
    with pytest.raises(FileNotFoundError, match=r"qqp train: .*QQP"):
        run_glue("--tasks", "sst2", "qqp", "--data_dir", str(task_data), "--model_name_or_path", str(mlm_dir),
                 "--max_seq_length", "32", "--output_dir", str(tmp_path / "out"))  # fmt: skip
    assert not (tmp_path / "out" / "sst2").exists()


def test_export_onnx_names_what_is_wrong_with_the_folder(tmp_path):
    export = load_script("export_onnx")
    with pytest.raises(SystemExit, match="no such folder"):
        export.main([str(tmp_path / "nonexistent"), str(tmp_path / "x.onnx")])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="LoRA adapter"):
        export.main([str(adapter), str(tmp_path / "x.onnx")])


def test_text_generation_pipeline_on_a_seq2seq_folder_points_to_text2text(tmp_path, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = tiny_config("random+dot", **special_token_fields(tokenizer), max_position_embeddings=32)
    SynthesizerForSeq2SeqLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="text2text-generation"):
        pipeline("text-generation", model=str(tmp_path))


def test_attention_type_none_is_a_clear_error():
    with pytest.raises(ValueError, match="attention_type must be a synthesizing function"):
        SynthesizerConfig(attention_type=None)


@pytest.mark.parametrize("head", [SynthesizerModel, SynthesizerForSequenceClassification])
def test_one_dimensional_input_ids_ask_for_the_batch_dimension(head):
    model = head(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, length\], got shape \(3,\)"):
        model(torch.tensor([3, 4, 5]))


def test_multiple_choice_inputs_keep_their_own_shape():
    """[batch, choices, length] is the multiple-choice head's own layout, reshaped before the encoder."""
    model = SynthesizerForMultipleChoice(tiny_config()).eval()
    assert model(torch.randint(3, 99, (2, 3, 5))).logits.shape == (2, 3)


def test_a_glue_study_without_its_pretraining_study_says_which_to_run(tmp_path):
    from synthesizer_tools.studies import load_study_config, run_study

    study = load_study_config(Path(__file__).resolve().parents[1] / "studies" / "glue_finetune.json")
    with pytest.raises(FileNotFoundError, match=r"mlm_wikitext2.*has not been run"):
        run_study(study, tmp_path / "data", tmp_path / "glue_finetune")


# --- 3. attention dropout apart from hidden dropout -----------------------------------------------------


def test_attention_dropout_is_its_own_flag_defaulting_to_the_library(tmp_path):
    from synthesizer_tools.arguments import parse_finetuning_arguments
    from synthesizer_tools.models import architecture_fields

    def fields(*flags):
        argv = [
            "--tasks",
            "sst2",
            "--from_scratch",
            "--tokenizer",
            "t",
            "--output_dir",
            str(tmp_path),
            *flags,
        ]
        arguments = parse_finetuning_arguments(argv, program="run_glue.py")
        return architecture_fields(arguments.model, 128)

    default = fields()
    assert default["hidden_dropout_prob"] == 0.1
    assert default["attention_probs_dropout_prob"] == SynthesizerConfig().attention_probs_dropout_prob
    assert (
        fields("--dropout", "0.3")["attention_probs_dropout_prob"] == default["attention_probs_dropout_prob"]
    )
    assert fields("--attention_dropout", "0.2")["attention_probs_dropout_prob"] == 0.2


def test_the_no_flags_read_as_what_they_do(capsys):
    with pytest.raises(SystemExit):
        load_script("run_glue").main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no_predict, --no-predict Turn --predict off." in text
    assert "--no_save_model, --no-save-model Turn --save_model off." in text


def test_a_reused_tokenizer_is_announced(tmp_path, caplog):
    """An earlier run's tokenizer in the output folder wins over --vocab_size: say so."""
    from synthesizer_tools.tokenization import load_or_train_tokenizer

    texts = ["the cat sat on the mat", "a dog ran in the park"] * 8
    first = load_or_train_tokenizer(tmp_path, texts, vocab_size=60, model_max_length=16)
    with caplog.at_level(logging.WARNING, logger="synthesizer_tools"):
        again = load_or_train_tokenizer(tmp_path, texts, vocab_size=500, model_max_length=16)
    assert len(again) == len(first) and "Reusing the tokenizer" in caplog.text
