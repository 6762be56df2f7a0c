"""Smoke test of the study runner: a two-variant MLM study on a tiny corpus written here, end to end."""

import gzip
import json
import random
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from helpers import load_script
from synthesizer_hf import SynthesizerConfig, SynthesizerForSequenceClassification
from synthesizer_tools.bundled import DEMO_DATA_DIR
from synthesizer_tools.pair_probe import (
    CLS_ID,
    IGNORED_LABEL,
    SEP_ID,
    make_probe_split,
    sample_pair,
    word_labels,
)
from synthesizer_tools.studies import (
    BYTE_CLS_ID,
    CORPUS_LOADERS,
    GENERATED_TASKS,
    MODEL_DEFAULTS,
    PeakMemory,
    byte_features,
    load_study_config,
    run_study,
)
from synthesizer_tools.study_reports import attention_by_offset
from synthesizer_tools.tasks import get_task

WORDS = [f"word{i}" for i in range(15)]


def write_corpus(data_dir):
    """A fake `wikitext-2/` folder (train.txt.gz + valid.txt) with deterministic pseudo-sentences."""
    folder = data_dir / "wikitext-2"
    folder.mkdir(parents=True)
    lines = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)) for i in range(120)]
    with gzip.open(folder / "train.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    (folder / "valid.txt").write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_mlm_study_end_to_end(tmp_path):
    write_corpus(tmp_path / "data")
    config_path = tmp_path / "study.json"
    config_path.write_text(
        json.dumps(
            {
                "name": "tiny",
                "objective": "mlm",
                "variants": ["dot", "random+dot"],
                "seeds": [0, 1],
                "vocab_size": 120,
                "max_length": 16,
                "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
                "train": {"max_steps": 2, "eval_steps": 1, "per_device_train_batch_size": 4},
                "datasets": {"wikitext2": {"eval_blocks": 4}},
                "smoke": {"seeds": [0]},
            }
        )
    )
    config = load_study_config(config_path, smoke=True)
    output = tmp_path / "out"
    summary = run_study(config, tmp_path / "data", output)

    assert [row["variant"] for row in summary["rows"]] == ["dot", "random+dot"]
    record = json.loads((output / "runs" / "wikitext2__dot__seed0.json").read_text())
    assert record["train_steps"] == 2 and record["metrics"]["loss"] > 0
    assert len(record["curves"]["eval_loss"]) == 2
    assert (output / "runs" / "wikitext2__random+dot__seed0.attention.npy").is_file()
    tables = (output / "tables.md").read_text()
    assert "| `random+dot` |" in tables
    assert "| wikitext2 | `random+dot` | 2 |" in tables  # attention-by-offset row of layer 2
    for name in ("curves", "metric_vs_throughput", "attention", "attention_hist"):
        assert (output / f"tiny_{name}.png").is_file()

    # A rerun finds every run's results and retrains nothing.
    rerun = run_study(config, tmp_path / "data", output)
    assert rerun["rows"][0]["per_seed"] == summary["rows"][0]["per_seed"]

    # Trainer flags of the command line override the study's `train` settings in every run (and its key).
    script = load_script("run_study")
    script.main(["--config", str(config_path), "--data_dir", str(tmp_path / "data"), "--output_dir",
                 str(tmp_path / "cli"), "--smoke", "--max_steps", "1", "--optim", "sgd"])  # fmt: skip
    record = json.loads((tmp_path / "cli" / "runs" / "wikitext2__dot__seed0.json").read_text())
    assert record["train_steps"] == 1 and record["spec"]["train"]["optim"] == "sgd"


@pytest.mark.slow
def test_causal_lm_study_end_to_end(tmp_path):
    """The `causal_lm` objective: decoders of two variants train, evaluate (perplexity) and are tabulated."""
    write_corpus(tmp_path / "data")
    config = {
        "name": "clm_tiny", "objective": "causal_lm", "variants": ["dot", "random"], "seeds": [0],
        "vocab_size": 120, "max_length": 16,
        "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
        "train": {"max_steps": 2, "eval_steps": 2, "per_device_train_batch_size": 4},
        "datasets": {"wikitext2": {"eval_blocks": 4}},
    }  # fmt: skip
    summary = run_study(config, tmp_path / "data", tmp_path / "out")
    assert [row["variant"] for row in summary["rows"]] == ["dot", "random"]
    record = json.loads((tmp_path / "out" / "runs" / "wikitext2__random__seed0.json").read_text())
    assert record["train_steps"] == 2 and record["metrics"]["perplexity"] > 1


@pytest.mark.slow
def test_glue_study_fine_tunes_the_saved_models_of_its_pretraining_study(tmp_path):
    """The `glue` objective end to end: an MLM study saves its models, the GLUE study fine-tunes each one."""
    data = tmp_path / "data"
    write_corpus(data)
    shutil.copytree(DEMO_DATA_DIR / "glue" / "RTE", data / "glue" / "RTE")
    shared = {"variants": ["dot", "random"], "seeds": [0], "vocab_size": 120, "max_length": 32}
    pretraining = {
        **shared, "name": "mlm_tiny", "objective": "mlm", "save_models": True,
        "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
        "train": {"max_steps": 2, "eval_steps": 2, "per_device_train_batch_size": 4},
        "datasets": {"wikitext2": {"eval_blocks": 4}},
    }  # fmt: skip
    run_study(pretraining, data, tmp_path / "mlm_tiny")
    glue = {
        **shared, "name": "glue_tiny", "objective": "glue", "pretrained_from": "mlm_tiny",
        "pretrained_dataset": "wikitext2",
        "train": {"max_steps": 2, "per_device_train_batch_size": 4, "eval_strategy": "no"},
        "datasets": {"rte": {"train_samples": 8}},
    }  # fmt: skip
    summary = run_study(glue, data, tmp_path / "glue_tiny")
    assert [row["variant"] for row in summary["rows"]] == ["dot", "random"]
    record = json.loads((tmp_path / "glue_tiny" / "runs" / "rte__random__seed0.json").read_text())
    assert record["train_steps"] == 2 and 0 <= record["metrics"]["score"] <= 1
    assert record["spec"]["pretrained_from"] == "mlm_tiny"


STUDIES = [  # warm-start studies have their own schema (tests/test_warm_start_study.py)
    path
    for path in sorted((Path(__file__).parent.parent / "studies").glob("*.json"))
    if json.loads(path.read_text())["objective"] != "warm_start"
]


@pytest.mark.parametrize("path", STUDIES, ids=lambda path: path.stem)
def test_shipped_study_configs_name_known_variants_and_data(path):
    """Every config in studies/ (full and smoke) names known variants, datasets and sibling studies."""
    for smoke in (False, True):
        config = load_study_config(path, smoke=smoke)
        assert config["name"] == path.stem
        for variant in config["variants"]:
            SynthesizerConfig(attention_type=variant)
        for dataset in config["datasets"]:
            if config["objective"] == "glue":
                get_task(dataset)
            else:
                loader = config["datasets"][dataset].get("loader", dataset)
                assert loader in CORPUS_LOADERS or loader in GENERATED_TASKS
        for sibling in [*config.get("reuse_from", []), config.get("pretrained_from")]:
            assert sibling is None or (path.parent / f"{sibling}.json").is_file()


def test_attention_by_offset_is_relative_to_uniform_over_visible_keys():
    length = 6
    bidirectional = np.full((1, 2, length, length), 1 / length)
    np.testing.assert_allclose(attention_by_offset(bidirectional), 1.0)

    causal = np.tril(np.ones((length, length))) / np.arange(1, length + 1)[:, None]
    ratios = attention_by_offset(causal[None, None])[0]
    np.testing.assert_allclose(ratios[:4], 1.0)  # offsets -3..0: every query sees these keys uniformly
    np.testing.assert_allclose(ratios[4:], 0.0)  # future keys are masked

    # Each query gives 0.9 to its left neighbour and spreads 0.1 over the other keys (head 1), while head 2
    # is uniform: the head mean at offset -1 is (0.9 * 6 + 1) / 2 = 3.2x uniform.
    local = np.full((length, length), 0.1 / (length - 1))
    local[np.arange(1, length), np.arange(length - 1)] = 0.9
    maps = np.stack([local, np.full((length, length), 1 / length)])[None]
    ratios = attention_by_offset(maps, offsets=(-1, 1))[0]
    assert ratios[0] == pytest.approx((0.9 * length + 1) / 2)
    assert ratios[1] == pytest.approx((0.1 / (length - 1) * length + 1) / 2)


def test_pair_probe_examples_follow_their_definition():
    rng = random.Random(0)
    shared_counts = []
    for _ in range(400):
        first, second = sample_pair(rng, vocabulary=32, segment_length=5)
        assert len(set(first)) == len(set(second)) == 5
        shared_counts.append(len(set(first) & set(second)))
        assert word_labels("membership", first, second, 32) == [int(w in first) for w in second]
        assert word_labels("aligned", first, second, 32) == [int(w < 16) for w in first]
    assert set(shared_counts) == set(range(6)), "B shares any number of A's words, 0 to all"
    with pytest.raises(ValueError, match="Unknown pair-probe task 'copy'"):
        word_labels("copy", first, second, 32)


def test_pair_probe_split_encodes_the_pair_and_labels_only_segment_b():
    membership = make_probe_split("membership", 300, vocabulary=64, segment_length=3, seed=5)
    aligned = make_probe_split("aligned", 300, vocabulary=64, segment_length=3, seed=5)
    assert membership["input_ids"] == aligned["input_ids"], "both tasks label the same inputs"
    row = membership[0]
    ids, labels = row["input_ids"], row["labels"]
    assert ids[0] == CLS_ID and ids[4] == SEP_ID and ids[8] == SEP_ID and len(ids) == 9
    assert row["token_type_ids"] == [0] * 5 + [1] * 4
    assert labels[:5] == [IGNORED_LABEL] * 5 and labels[8] == IGNORED_LABEL
    words_a, words_b = ids[1:4], ids[5:8]
    assert labels[5:8] == [int(word in words_a) for word in words_b]
    for name, split in (("membership", membership), ("aligned", aligned)):
        values = [label for row in split["labels"] for label in row if label != IGNORED_LABEL]
        assert 0.4 < np.mean(values) < 0.6, f"{name} labels are balanced"
    with pytest.raises(ValueError, match="cannot hold two segments"):
        make_probe_split("membership", 1, vocabulary=5, segment_length=3, seed=0)


def write_imdb(folder: Path, rows: int) -> None:
    """A fake `imdb/` folder: train sorted by label as the real files are; texts with <br /> and non-ASCII."""
    (folder / "imdb").mkdir(parents=True)
    for split in ("train", "test"):
        with gzip.open(folder / "imdb" / f"{split}.jsonl.gz", "wt", encoding="utf-8") as handle:
            for i in range(rows):
                text = f"{split} review {i}<br />très {'bon' if i >= rows // 2 else 'mal'}"
                handle.write(json.dumps({"text": text, "label": int(i >= rows // 2)}) + "\n")


def test_lra_text_keeps_the_markup_shuffles_training_and_encodes_bytes(tmp_path):
    write_imdb(tmp_path, rows=40)
    raw = CORPUS_LOADERS["lra_text"](tmp_path, {"eval_samples": 8})
    assert len(raw["train"]) == len(raw["test"]) == 40 and len(raw["validation"]) == 8
    assert raw["validation"]["text"] == raw["test"]["text"][:8], (
        "validation is a fixed subset of the test split"
    )
    assert "<br />" in raw["train"][0]["text"]
    assert raw["train"]["label"][:20] != sorted(raw["train"]["label"])[:20], (
        "the sorted training set is shuffled"
    )
    encoded = byte_features(raw["test"], max_length=24)
    text = raw["test"][0]["text"]
    expected = [BYTE_CLS_ID, *(b + 1 for b in text.encode("utf-8")[:23])]
    assert encoded[0]["input_ids"] == expected and encoded[0]["attention_mask"] == [1] * 24
    short = byte_features(datasets.Dataset.from_dict({"text": ["é"], "label": [0]}), max_length=6)[0]
    assert short["input_ids"] == [BYTE_CLS_ID, 0xC3 + 1, 0xA9 + 1, 0, 0, 0]  # UTF-8 bytes, then padding 0
    assert short["attention_mask"] == [1, 1, 1, 0, 0, 0]


def test_peak_memory_records_a_run_shorter_than_its_sampling_interval():
    """A run that ends before the sampling thread's first 10 ms wait still records the process's memory."""
    callback = PeakMemory()
    callback.on_train_begin(None, None, None)
    callback.on_train_end(None, None, None)
    assert callback.peak_bytes > 0


@pytest.mark.slow
def test_token_classification_study_on_the_pair_probe_and_a_byte_level_study(tmp_path):
    write_imdb(tmp_path / "data", rows=24)
    common = {"seeds": [0], "variants": ["dot", "random"], "threads": 1}
    common["model"] = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    common["train"] = {"max_steps": 2, "eval_steps": 1, "per_device_train_batch_size": 4}
    probe = {
        **common,
        "name": "probe",
        "objective": "token_classification",
        "datasets": {
            "membership": {"loader": "pair_probe", "vocabulary": 20, "segment_length": 3, "train_samples": 16,
                           "eval_samples": 8},
        },
    }  # fmt: skip
    summary = run_study(probe, tmp_path / "data", tmp_path / "probe")
    assert [row["variant"] for row in summary["rows"]] == ["dot", "random"]
    assert "token accuracy (%)" in summary["tables"] and "steps/s vs `dot`" in summary["tables"]
    record = json.loads((tmp_path / "probe" / "runs" / "membership__random__seed0.json").read_text())
    assert 0 <= record["metrics"]["accuracy"] <= 1 and record["peak_rss_bytes"] > 0
    lra = {
        **common,
        "name": "lra",
        "objective": "classification",
        "datasets": {"lra_text": {"encoding": "bytes", "max_length": 32, "eval_samples": 4}},
    }
    summary = run_study(lra, tmp_path / "data", tmp_path / "lra")
    record = json.loads((tmp_path / "lra" / "runs" / "lra_text__dot__seed0.json").read_text())
    assert record["spec"]["data"]["encoding"] == "bytes"
    sizes = {**MODEL_DEFAULTS, **common["model"]}
    expected = SynthesizerForSequenceClassification(
        SynthesizerConfig(
            attention_type="dot", vocab_size=258, max_position_embeddings=32, num_labels=2, **sizes
        )
    )
    assert record["num_parameters"] == expected.num_parameters(), "258 ids: 256 bytes + padding + [CLS]"


@pytest.mark.slow
def test_attention_plot_variants_limits_the_attention_figure(tmp_path):
    from matplotlib.image import imread

    from synthesizer_tools.study_reports import make_plots

    maps = {("d", name): np.full((2, 2, 4, 4), 0.25) for name in ("dot", "random", "dense")}
    records = [{"dataset": "d", "variant": "dot", "seed": 0, "curves": {}}]
    rows = [{"dataset": "d", "variant": "dot", "mean": 1.0, "std": 0.0, "samples_per_second": 1.0}]
    heights = {}
    for shown in (None, ["random"]):
        study = {
            "name": "s",
            "objective": "classification",
            "variants": ["dot"],
            "attention_plot_variants": shown,
        }
        out = tmp_path / str(shown)
        out.mkdir()
        make_plots(study, records, rows, maps, out)
        heights[str(shown)] = imread(out / "s_attention.png").shape[0]
    assert heights["['random']"] < heights["None"] / 2, "one variant's 2 layers instead of three variants' 6"
