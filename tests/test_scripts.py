"""End-to-end checks of the training scripts on tiny models and fixture data (fully offline, ~1-2 min).

The scripts run in-process through their `main(argv)`; subprocesses only where the point is the process
boundary (two-process DDP with `accelerate launch`, loading a Hub folder without the package installed).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
)

from helpers import SUBPROCESS_TIMEOUT, free_port, load_script, run_without_package
from synthesizer_hf.synthesizers import SYNTHESIZERS
from synthesizer_tools.bundled import DEMO_DATA_DIR, DEMO_PRETRAIN_FILE
from synthesizer_tools.span_corruption import (
    add_sentinel_tokens,
    corrupt_spans,
    random_spans_noise_mask,
    span_corruption_lengths,
)
from synthesizer_tools.tasks import get_task
from synthesizer_tools.text_to_text import label_from_text, text_to_text_target
from synthesizer_tools.tokenization import iter_text_files, train_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TINY_MODEL = ["--hidden_size", "32", "--num_layers", "2", "--num_heads", "2", "--intermediate_size", "64"]
QUIET = ["--disable_tqdm", "--logging_steps", "1", "--seed", "0"]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scripts")


@pytest.fixture(scope="module")
def corpus(workdir) -> Path:
    """The first 250 non-empty lines of the bundled WikiText-2 sample."""
    path = workdir / "corpus.txt"
    write_lines(path, list(itertools.islice(iter_text_files(DEMO_PRETRAIN_FILE), 250)))
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(workdir, corpus) -> Path:
    """A small WordPiece tokenizer trained on the corpus plus the words of the task fixtures."""
    texts = [*iter_text_files(corpus), *GLUE_WORDS]
    path = workdir / "tokenizer"
    train_tokenizer(texts, vocab_size=400, min_frequency=1, model_max_length=32).save_pretrained(path)
    return path


def pretrain_argv(corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--train_files", str(corpus),
        "--max_seq_length", "32",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--max_eval_samples", "16",
        "--cache_dir", str(output_dir.parent / "datasets_cache"),
        "--output_dir", str(output_dir),
        *TINY_MODEL, *QUIET, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def mlm_dir(workdir, corpus, tokenizer_dir) -> Path:
    """A masked-LM checkpoint from pretrain_mlm.py (6 steps)."""
    output_dir = workdir / "mlm"
    load_script("pretrain_mlm").main(
        pretrain_argv(
            corpus, output_dir, "--tokenizer", str(tokenizer_dir), "--attention_type", "random+dot",
            "--max_steps", "6", "--eval_steps", "3", "--save_steps", "3",
        )
    )  # fmt: skip
    return output_dir


# Task fixtures in the official layouts: SST-2 and RTE rows from the bundled samples, STS-B, COPA and MultiRC
# examples written here (COPA and MultiRC have test files, to check their submission formats).
STSB_HEAD = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
STSB_PAIRS = [
    ("a man is playing a guitar .", "a man plays the guitar .", 4.8),
    ("a woman is slicing an onion .", "a dog runs in the park .", 0.2),
    ("the cat sat on the mat .", "a cat is sitting on a mat .", 4.2),
    ("a plane is taking off .", "an airplane takes off .", 5.0),
    ("a child is reading a book .", "the stock market fell today .", 0.0),
    ("two men are playing chess .", "two people play a board game .", 3.4),
]
MNLI_HEAD = "index\tgenre\tsentence1\tsentence2"
MNLI = [
    ("the cat sat on the mat .", "a cat is on the mat .", "entailment"),
    ("the game was released in 2010 .", "the game came out before 2000 .", "contradiction"),
    ("he played for the club .", "he was the best player .", "neutral"),
    ("the river flows to the sea .", "water moves toward the sea .", "entailment"),
]
COPA = [
    (
        "The man turned on the faucet.",
        "effect",
        "The toilet filled with water.",
        "Water flowed from the spout.",
        1,
    ),
    (
        "The girl found a bug in her cereal.",
        "effect",
        "She poured milk in the bowl.",
        "She lost her appetite.",
        1,
    ),
    ("The woman retired.", "effect", "She received her pension.", "She paid off her mortgage.", 0),
    ("My body cast a shadow over the grass.", "cause", "The sun was rising.", "The grass was cut.", 0),
]
MULTIRC_PASSAGE = {
    "text": "Forces cause changes in motion. The size of the force determines the change in motion.",
    "questions": [
        {
            "question": "What causes a change in motion?",
            "idx": 0,
            "answers": [{"text": "A force", "idx": 0, "label": 1}, {"text": "Nothing", "idx": 1, "label": 0}],
        },
        {
            "question": "What determines the change in motion?",
            "idx": 1,
            "answers": [
                {"text": "The size of the force", "idx": 2, "label": 1},
                {"text": "The color", "idx": 3, "label": 0},
            ],
        },
    ],
}
GLUE_WORDS = [p for a, b, _ in STSB_PAIRS + MNLI for p in (a, b)] + [" ".join(c[:4]) for c in COPA]


def copa_line(index: int, row: tuple, labelled: bool = True) -> str:
    premise, question, choice1, choice2, label = row
    record = {"premise": premise, "choice1": choice1, "choice2": choice2, "question": question, "idx": index}
    if labelled:
        record["label"] = label
    return json.dumps(record)


def multirc_line(index: int, labelled: bool = True) -> str:
    passage = json.loads(json.dumps(MULTIRC_PASSAGE))
    for question in passage["questions"]:
        for answer in question["answers"]:
            if not labelled:
                del answer["label"]
    return json.dumps({"idx": index, "version": 1.1, "passage": passage})


@pytest.fixture(scope="module")
def task_data(workdir) -> Path:
    root = workdir / "tasks"
    sst2 = (DEMO_DATA_DIR / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    write_lines(root / "glue/SST-2/train.tsv", sst2[:25])
    write_lines(root / "glue/SST-2/dev.tsv", [sst2[0], *sst2[25:37]])
    write_lines(
        root / "glue/SST-2/test.tsv",
        ["index\tsentence", *(f"{i}\t{row.split(chr(9))[0]}" for i, row in enumerate(sst2[37:42]))],
    )
    rte = (DEMO_DATA_DIR / "glue" / "RTE" / "train.tsv").read_text(encoding="utf-8").splitlines()
    write_lines(root / "glue/RTE/train.tsv", rte[:13])
    write_lines(root / "glue/RTE/dev.tsv", [rte[0], *rte[13:19]])
    stsb = [f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\t{a}\t{b}" for i, (a, b, _) in enumerate(STSB_PAIRS)]
    scores = [f"\t{score:.3f}" for _, _, score in STSB_PAIRS]
    write_lines(
        root / "glue/STS-B/train.tsv", [STSB_HEAD + "\tscore", *(r + s for r, s in zip(stsb, scores))]
    )
    write_lines(
        root / "glue/STS-B/dev.tsv", [STSB_HEAD + "\tscore", *(r + s for r, s in zip(stsb, scores))][:5]
    )
    write_lines(root / "glue/STS-B/test.tsv", [STSB_HEAD, *stsb[:3]])
    mnli = [f"{i}\tg\t{a}\t{b}\t{label}" for i, (a, b, label) in enumerate(MNLI)]
    write_lines(root / "glue/MNLI/train.tsv", [MNLI_HEAD + "\tgold_label", *mnli])
    for name in ("dev_matched", "dev_mismatched"):
        write_lines(root / f"glue/MNLI/{name}.tsv", [MNLI_HEAD + "\tgold_label", *mnli[:3]])
    for name in ("test_matched", "test_mismatched"):
        write_lines(
            root / f"glue/MNLI/{name}.tsv", [MNLI_HEAD, *(row.rsplit("\t", 1)[0] for row in mnli[:2])]
        )
    write_lines(root / "superglue/COPA/train.jsonl", [copa_line(i, row) for i, row in enumerate(COPA)])
    write_lines(root / "superglue/COPA/val.jsonl", [copa_line(i, row) for i, row in enumerate(COPA[:3])])
    write_lines(
        root / "superglue/COPA/test.jsonl", [copa_line(i, row, False) for i, row in enumerate(COPA[:2])]
    )
    write_lines(root / "superglue/MultiRC/train.jsonl", [multirc_line(0), multirc_line(1)])
    write_lines(root / "superglue/MultiRC/val.jsonl", [multirc_line(2)])
    write_lines(root / "superglue/MultiRC/test.jsonl", [multirc_line(3, labelled=False)])
    return root


@pytest.mark.parametrize("script", sorted(path.stem for path in SCRIPTS.glob("*.py")))
def test_every_script_has_working_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(script).main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.slow
def test_pretrain_mlm_end_to_end(mlm_dir):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "run_info.json", "checkpoint-6"):
        assert (mlm_dir / name).exists(), name
    assert not list(mlm_dir.glob("pytorch_model*.bin")), "weights are saved as safetensors only"
    results = json.loads((mlm_dir / "eval_results.json").read_text())
    assert math.isclose(results["perplexity"], math.exp(results["eval_loss"]))
    assert results["train_steps"] == 6
    info = json.loads((mlm_dir / "run_info.json").read_text())
    assert info["command"].startswith("python scripts/pretrain_mlm.py --train_files")
    config = json.loads((mlm_dir / "config.json").read_text())
    assert config["attention_type"] == "random+dot" and config["max_position_embeddings"] == 32
    assert config["use_cache"] is True and config["sparse_prediction"] is False, "saved for inference"

    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(mlm_dir)
    inputs = tokenizer(f"the {tokenizer.mask_token} of the game", return_tensors="pt")
    assert model(**inputs).logits.shape == (1, inputs["input_ids"].shape[1], len(tokenizer))


@pytest.mark.slow
def test_pretrain_mlm_trains_its_own_tokenizer(workdir, corpus):
    output_dir = workdir / "mlm_own_tokenizer"
    metrics = load_script("pretrain_mlm").main(
        pretrain_argv(
            corpus, output_dir, "--vocab_size", "300", "--max_steps", "2", "--attention_type", "dense"
        )
    )
    assert math.isfinite(metrics["eval_loss"])
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert len(tokenizer) <= 300 and tokenizer.mask_token == "[MASK]"


def test_span_corruption_round_trip():
    tokens_length, targets_length = span_corruption_lengths(32, 0.15, 3.0)
    ids = torch.arange(100, 100 + tokens_length)
    sentinels = torch.arange(1000, 1100)
    mask = random_spans_noise_mask(tokens_length, 0.15, 3.0, torch.Generator().manual_seed(0))
    inputs, targets = corrupt_spans(ids, mask, sentinels, eos_id=3)
    assert len(inputs) == 32 and len(targets) == targets_length
    assert inputs[-1] == targets[-1] == 3
    # Filling each sentinel of the input with the span that follows it in the target restores the block.
    spans, current = {}, None
    for token in targets[:-1].tolist():
        if token >= 1000:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    restored = [t for token in inputs[:-1].tolist() for t in (spans[token] if token >= 1000 else [token])]
    assert restored == ids.tolist()


@pytest.fixture(scope="module")
def span_run(workdir, corpus, tokenizer_dir) -> tuple[Path, dict]:
    """A span-corruption checkpoint from pretrain_span_corruption.py (3 steps) and its final metrics."""
    output_dir = workdir / "span"
    metrics = load_script("pretrain_span_corruption").main(
        pretrain_argv(
            corpus, output_dir, "--tokenizer", str(tokenizer_dir), "--attention_type", "dense",
            "--decoder_attention_type", "random+dot", "--max_steps", "3",
        )
    )  # fmt: skip
    return output_dir, metrics


@pytest.mark.slow
def test_pretrain_span_corruption_few_steps(span_run, tokenizer_dir):
    output_dir, metrics = span_run
    assert math.isfinite(metrics["eval_loss"]) and metrics["perplexity"] > 1
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    sentinel_ids = add_sentinel_tokens(tokenizer)
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(tokenizer_dir)) + 100, "sentinels were saved"
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    config = model.config
    assert config.is_encoder_decoder and config.vocab_size == len(tokenizer)
    assert (
        config.decoder_start_token_id == tokenizer.pad_token_id
        and config.eos_token_id == tokenizer.sep_token_id
    )
    assert (config.attention_type, config.decoder_attention_type) == ("dense", "random+dot")
    inputs = tokenizer(["the game <extra_id_0> released"], return_tensors="pt", return_token_type_ids=False)
    assert inputs["input_ids"][0].tolist().count(sentinel_ids[0]) == 1
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[0] == 1 and generated.shape[1] <= 5


@pytest.mark.slow
def test_run_glue_classification_regression_multiple_choice_and_multirc(workdir, mlm_dir, task_data, capsys):
    output_dir = workdir / "glue"
    summary = load_script("run_glue").main(
        [
            "--tasks", "sst2", "rte", "stsb", "mnli", "copa", "multirc",
            "--data_dir", str(task_data), "--model_name_or_path", str(mlm_dir), "--max_seq_length", "32",
            "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
            "--output_dir", str(output_dir), *QUIET,
        ]
    )  # fmt: skip
    expected_keys = {
        "sst2": {"accuracy"},
        "rte": {"accuracy"},
        "stsb": {"pearson", "spearmanr"},
        "copa": {"accuracy"},
        "multirc": {"f1_a", "exact_match"},
    }
    for task, keys in expected_keys.items():
        results = json.loads((output_dir / task / "eval_results.json").read_text())
        assert keys <= results.keys(), task
        assert all(math.isfinite(results[key]) for key in keys)
    saved = json.loads((output_dir / "summary.json").read_text())
    assert saved["tasks"] == summary["tasks"]
    assert {"glue_average", "superglue_average"} <= saved["scores"].keys()
    assert saved["command"].startswith("python scripts/run_glue.py --tasks sst2 rte stsb mnli copa multirc")
    table = capsys.readouterr().out
    assert "GLUE average" in table and "SuperGLUE average" in table and "multirc" in table

    stsb_config = AutoConfig.from_pretrained(output_dir / "stsb")
    assert stsb_config.num_labels == 1 and stsb_config.problem_type == "regression"
    mnli = json.loads((output_dir / "mnli" / "eval_results.json").read_text())
    assert {"accuracy", "accuracy_mismatched"} <= mnli.keys()
    assert json.loads((output_dir / "copa" / "config.json").read_text())["architectures"] == [
        "SynthesizerForMultipleChoice"
    ]
    # Official submission files for the test splits that exist (RTE has none here).
    submission = output_dir / "submission"
    sst2_rows = (submission / "glue" / "SST-2.tsv").read_text().splitlines()
    assert sst2_rows[0] == "index\tprediction" and len(sst2_rows) == 6
    assert all(row.split("\t")[1] in {"0", "1"} for row in sst2_rows[1:])
    stsb_rows = (submission / "glue" / "STS-B.tsv").read_text().splitlines()
    assert len(stsb_rows) == 4 and all(
        float(row.split("\t")[1]) == float(row.split("\t")[1]) for row in stsb_rows[1:]
    )
    assert not (submission / "glue" / "RTE.tsv").exists()
    for name in ("MNLI-m.tsv", "MNLI-mm.tsv"):
        rows = (submission / "glue" / name).read_text().splitlines()
        assert len(rows) == 3 and rows[1].split("\t")[1] in {"entailment", "neutral", "contradiction"}
    copa = [json.loads(line) for line in (submission / "superglue" / "COPA.jsonl").read_text().splitlines()]
    assert [row["idx"] for row in copa] == [0, 1] and all(row["label"] in (0, 1) for row in copa)
    multirc = [
        json.loads(line) for line in (submission / "superglue" / "MultiRC.jsonl").read_text().splitlines()
    ]
    assert multirc[0]["idx"] == 3 and len(multirc[0]["passage"]["questions"]) == 2


@pytest.mark.slow
def test_run_glue_from_scratch(workdir, tokenizer_dir, task_data):
    output_dir = workdir / "glue_scratch"
    summary = load_script("run_glue").main(
        [
            "--tasks", "sst2", "--data_dir", str(task_data), "--from_scratch", "--tokenizer", str(tokenizer_dir),
            "--attention_type", "factorized_dense", "--max_seq_length", "32", "--max_train_samples", "16",
            "--num_train_epochs", "1", "--no_predict", "--no_save_model", "--output_dir", str(output_dir),
            *TINY_MODEL, *QUIET,
        ]
    )  # fmt: skip
    assert 0 <= summary["scores"]["sst2"] <= 1
    assert (
        not (output_dir / "submission").exists() and not (output_dir / "sst2" / "model.safetensors").exists()
    )


@pytest.mark.slow
def test_run_glue_trains_a_lora_adapter(workdir, mlm_dir, task_data):
    """--lora: only the adapter and the classifier train; the task folder holds a peft adapter that reloads onto
    the base checkpoint with the fine-tuned model's predictions."""
    peft = pytest.importorskip("peft", reason="peft is not installed: pip install 'synthesizer-hf[peft]'")
    output_dir = workdir / "glue_lora"
    summary = load_script("run_glue").main(
        [
            "--tasks", "sst2", "copa", "--data_dir", str(task_data), "--model_name_or_path", str(mlm_dir),
            "--max_seq_length", "32", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
            "--learning_rate", "1e-2", "--lora", "--lora_r", "4", "--lora_target_parameters", "random_logits",
            "--no_predict", "--output_dir", str(output_dir), *QUIET,
        ]
    )  # fmt: skip
    assert 0 <= summary["scores"]["sst2"] <= 1 and 0 <= summary["scores"]["copa"] <= 1
    adapter = json.loads((output_dir / "sst2" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["target_parameters"] == ["random_logits"]
    assert {"pooler", "classifier"} <= set(adapter["modules_to_save"]) and adapter["task_type"] == "SEQ_CLS"
    copa = json.loads((output_dir / "copa" / "adapter_config.json").read_text())
    assert copa["modules_to_save"] == ["pooler", "classifier"], (
        "multiple choice: no peft task type, the head saved"
    )
    assert not (output_dir / "sst2" / "model.safetensors").exists(), "an adapter folder, not a full model"
    assert json.loads((output_dir / "sst2" / "run_info.json").read_text())["arguments"]["lora_r"] == 4

    tokenizer = AutoTokenizer.from_pretrained(output_dir / "sst2")
    base = AutoModelForSequenceClassification.from_pretrained(mlm_dir, num_labels=2)
    model = peft.PeftModel.from_pretrained(base, output_dir / "sst2").eval()
    inputs = tokenizer(["a fine film", "a dull one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        adapted = model(**inputs).logits
        plain = (
            AutoModelForSequenceClassification.from_pretrained(mlm_dir, num_labels=2).eval()(**inputs).logits
        )
    assert not torch.allclose(adapted, plain, atol=1e-4), "the adapter and trained classifier were reloaded"


@pytest.mark.slow
def test_run_glue_lora_refuses_dropout_on_tables(mlm_dir, task_data, capsys):
    with pytest.raises(SystemExit):
        load_script("run_glue").main(
            ["--tasks", "sst2", "--data_dir", str(task_data), "--model_name_or_path", str(mlm_dir), "--lora",
             "--lora_dropout", "0.1", "--lora_target_parameters", "random_logits", "--output_dir", "unused"]
        )  # fmt: skip
    assert "--lora_dropout 0" in capsys.readouterr().err


@pytest.mark.slow
def test_run_glue_text_to_text(workdir, span_run, task_data):
    output_dir = workdir / "glue_t2t"
    summary = load_script("run_glue").main(
        [
            "--tasks", "rte", "stsb", "copa", "--text_to_text", "--data_dir", str(task_data),
            "--model_name_or_path", str(span_run[0]), "--max_seq_length", "32", "--num_train_epochs", "1",
            "--output_dir", str(output_dir), *QUIET,
        ]
    )  # fmt: skip
    assert {"accuracy", "loss"} <= summary["tasks"]["rte"].keys()
    assert {"pearson", "spearmanr"} <= summary["tasks"]["stsb"].keys()
    assert (output_dir / "submission" / "glue" / "STS-B.tsv").exists()
    assert (output_dir / "submission" / "superglue" / "COPA.jsonl").exists()


@pytest.mark.parametrize(
    ("task", "text", "expected"),
    [("rte", "not _ entailment", 1), ("rte", "entailment", 0), ("rte", "gibberish", 0), ("stsb", "3. 4", 3.4),
     ("copa", "choice 2", 1), ("boolq", "True", 1)],
)  # fmt: skip
def test_text_to_text_answers_map_back_to_labels(task, text, expected):
    spec = get_task(task)
    assert label_from_text(spec, text) == pytest.approx(expected)
    if spec.problem_type != "regression" and text != "gibberish":
        assert label_from_text(spec, text_to_text_target(spec, expected)) == expected


@pytest.mark.slow
def test_run_glue_unknown_task_lists_valid_names(mlm_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("run_glue").main(
            ["--tasks", "sst2", "sst3", "--model_name_or_path", str(mlm_dir), "--output_dir", "x"]
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "'sst3'" in error and "sst2" in error and "multirc" in error and "copa" in error


@pytest.mark.slow
def test_run_glue_missing_files_give_a_clear_error(workdir, mlm_dir):
    with pytest.raises(FileNotFoundError, match=r"cola train: .*CoLA/train.tsv"):
        load_script("run_glue").main(
            ["--tasks", "cola", "--data_dir", str(workdir / "empty"), "--model_name_or_path", str(mlm_dir),
             "--output_dir", str(workdir / "glue_missing")]
        )  # fmt: skip


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(workdir, corpus, tokenizer_dir):
    """Stop after checkpoint-3 (simulated by copying it), resume, and land on the same weights and metrics."""
    common = ["--tokenizer", str(tokenizer_dir), "--attention_type", "factorized_random+dot", "--max_steps", "6",
              "--save_steps", "3", "--eval_steps", "3"]  # fmt: skip
    full, resumed = workdir / "resume_full", workdir / "resume_part"
    pretrain = load_script("pretrain_mlm").main
    full_metrics = pretrain(pretrain_argv(corpus, full, *common))
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    resumed_metrics = pretrain(pretrain_argv(corpus, resumed, *common, "--resume_from_checkpoint"))

    assert json.loads((resumed / "run_info.json").read_text())["resumed_from"].endswith("checkpoint-3")
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)
    assert resumed_metrics["eval_loss"] == pytest.approx(full_metrics["eval_loss"], abs=1e-6)


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(workdir, corpus, tokenizer_dir):
    """DDP over gloo: `accelerate launch --multi_gpu` starts torchrun workers; on a CPU-only host the script
    switches them to CPU data parallelism (use_cpu) itself."""
    output_dir = workdir / "ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(SCRIPTS / "pretrain_mlm.py"),
        *pretrain_argv(corpus, output_dir, "--tokenizer", str(tokenizer_dir), "--max_steps", "3",
                       "--eval_steps", "3", "--save_steps", "3"),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO, timeout=SUBPROCESS_TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["train_steps"] == 3 and info["distributed_type"] == "MULTI_CPU"
    # The loss is a per-token mean (about log(vocab) untrained), not multiplied by the number of processes.
    results = json.loads((output_dir / "eval_results.json").read_text())
    vocab_size = json.loads((output_dir / "config.json").read_text())["vocab_size"]
    assert results["eval_loss"] < 1.5 * math.log(vocab_size)


@pytest.mark.slow
def test_prepare_hub_folder_loads_without_the_package(workdir, mlm_dir):
    hub = load_script("prepare_hub_folder").main(
        ["--model_dir", str(mlm_dir), "--output_dir", str(workdir / "hub"), "--repo_id", "someone/synth-test"]
    )
    names = {path.name for path in hub.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_synthesizer.py", "configuration_synthesizer.py",
            "synthesizers.py", "tokenizer.json", "README.md", "eval_results.json"} <= names  # fmt: skip
    config = json.loads((hub / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_synthesizer.SynthesizerForMaskedLM"
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith(
        "SynthesizerForSequenceClassification"
    )
    card = (hub / "README.md").read_text()
    model = AutoModelForMaskedLM.from_pretrained(hub).eval()
    assert f"{model.num_parameters():,}" in card
    equations = [f"S(X) = {SYNTHESIZERS[name].logits}" for name in ("random", "dot")]  # from the registry
    for expected in ("pipeline_tag: fill-mask", "random+dot", *equations, "python scripts/pretrain_mlm.py",
                     "perplexity", "someone/synth-test", "Intended use and limitations"):  # fmt: skip
        assert expected in card, expected
    assert "$" not in card.split("-->", 1)[1], "unfilled template placeholder"

    ids = torch.randint(5, 300, (2, 9))
    torch.save(ids, workdir / "hub_ids.pt")
    expected = model(ids).logits
    result = run_without_package(
        f"""
        import torch
        from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
        folder = {str(hub)!r}
        model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        torch.save(model(torch.load({str(workdir / "hub_ids.pt")!r})).logits, {str(workdir / "hub_out.pt")!r})
        AutoTokenizer.from_pretrained(folder)
        head = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
        print(type(model).__module__, type(head).__name__)
        """,
        workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout and "SynthesizerForSequenceClassification" in result.stdout
    torch.testing.assert_close(torch.load(workdir / "hub_out.pt"), expected)


@pytest.mark.slow
def test_prepare_hub_folder_refuses_to_overwrite(workdir, mlm_dir):
    target = workdir / "occupied"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        load_script("prepare_hub_folder").main(["--model_dir", str(mlm_dir), "--output_dir", str(target)])


@pytest.fixture(scope="module")
def bert_dir(workdir, tokenizer_dir) -> Path:
    """A tiny pretrained-BERT stand-in: a `BertModel` folder (no MLM head, as all-MiniLM-L6-v2) with a tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    folder = workdir / "bert"
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TINY_DEMO = ["--max_seq_length", "32", "--finetune_epochs", "1", "--max_train_samples", "32",
             "--max_eval_samples", "32", "--disable_tqdm"]  # fmt: skip


@pytest.mark.slow
def test_demo_fine_tunes_the_bert_and_its_synthesizer_side_by_side(workdir, bert_dir, capsys):
    output_dir = workdir / "demo"
    summary = load_script("demo").main(["--output_dir", str(output_dir), "--bert", str(bert_dir), *TINY_DEMO])
    assert set(summary["sst2_accuracy"]) == {"BERT", "random+dot"}
    assert all(0 <= value <= 1 for value in summary["sst2_accuracy"].values())
    for path in summary["paths"].values():
        assert Path(path).exists(), path
    bert_run = json.loads((output_dir / "bert" / "sst2" / "config.json").read_text())
    assert bert_run["model_type"] == "bert"  # transformers' own BertForSequenceClassification, unconverted
    printed = capsys.readouterr().out
    assert "SST-2 dev accuracy" in printed and "BERT" in printed
    card = (output_dir / "hub" / "README.md").read_text()
    assert "sst2" in card and "--init_from_bert" in card


@pytest.mark.slow
def test_demo_from_scratch_pretrains_a_small_synthesizer_first(workdir, capsys):
    output_dir = workdir / "demo-scratch"
    summary = load_script("demo").main(
        ["--output_dir", str(output_dir), "--from_scratch", "--hidden_size", "32", "--num_layers", "1",
         "--num_heads", "2", "--vocab_size", "400", "--pretrain_steps", "3", *TINY_DEMO]
    )  # fmt: skip
    assert list(summary["sst2_accuracy"]) == ["random+dot"] and "from scratch" in summary["start"]
    card = (output_dir / "hub" / "README.md").read_text()
    assert "sst2" in card and "python scripts/run_glue.py" in card


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_trains_as_one_process(tmp_path, variant="random+dot"):
    """torch's FSDP2 over gloo, wrapping the `_no_split_modules` classes: the losses of 2 sharded processes on
    half a batch each equal those of one process on the whole batch. (accelerate does not turn FSDP on for a
    CPU-only launch: docs/TRAINING.md, "FSDP and DeepSpeed".)"""
    worker = REPO / "tests" / "workers" / "fsdp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    single, sharded = tmp_path / "single.json", tmp_path / "sharded.json"
    subprocess.run(
        [sys.executable, str(worker), str(single), variant], env=env, check=True, timeout=SUBPROCESS_TIMEOUT
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(worker), str(sharded), variant,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = json.loads(single.read_text()), json.loads(sharded.read_text())
    assert two["world_size"] == 2 and two["wrapped"] == [
        "SynthesizerEmbeddings",
        "SynthesizerLayer",
        "SynthesizerLayer",
    ]
    assert one["losses"][-1] < one["losses"][0]
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-5)
