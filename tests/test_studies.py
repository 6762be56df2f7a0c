"""Smoke test of the study runner: a two-variant MLM study on a tiny corpus written here, end to end."""

import gzip
import json
import random
import re
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
from synthesizer_tools.records import eta
from synthesizer_tools.studies import (
    BYTE_CLS_ID,
    CORPUS_LOADERS,
    GENERATED_TASKS,
    LOADER_USES,
    PeakMemory,
    byte_features,
    load_study_config,
    parse_study_config,
    plan_runs,
    run_key,
    run_study,
)
from synthesizer_tools.study_config import MODEL_DEFAULTS, StudyConfig, StudyFileError
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
def test_causal_lm_study_end_to_end(tmp_path, capsys):
    """The `causal_lm` objective: decoders of two variants train, evaluate (perplexity) and are tabulated; the
    log says how many runs are left and, once one has run, the time to the end."""
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
    log = capsys.readouterr().out
    assert "wikitext2__dot__seed0: training (2 of 2 left; 0:00:00 elapsed; ETA after the first run" in log
    assert re.search(r"wikitext2__random__seed0: training \(1 of 2 left; \d:\d\d:\d\d elapsed; ETA \d:", log)


def test_the_eta_waits_for_a_run_of_each_kind_then_adds_up_their_means():
    assert eta(["a", "b"], {"a": [10.0]}) == "ETA after the first run of each kind"
    assert eta(["a", "a", "b"], {"a": [10.0, 20.0], "b": [60.0]}) == "ETA 0:01:30"


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
    """Every config in studies/ (full and smoke) reads as a checked StudyConfig: known variants, loaders and
    options, Trainer settings the Trainer accepts, and sibling studies that exist."""
    for smoke in (False, True):
        config = load_study_config(path, smoke=smoke)
        assert isinstance(config, StudyConfig) and config.name == path.stem
        for variant in config.variants:
            SynthesizerConfig(attention_type=variant)
        for dataset, options in config.datasets.items():
            if config.objective == "glue":
                get_task(dataset)
            else:
                loader = options.loader or dataset
                assert loader in CORPUS_LOADERS or loader in GENERATED_TASKS
        for sibling in [*config.reuse_from, config.pretrained_from]:
            assert sibling is None or (path.parent / f"{sibling}.json").is_file()


def test_every_loader_says_what_it_serves_and_reads():
    assert set(LOADER_USES) == set(CORPUS_LOADERS) | set(GENERATED_TASKS)


RUN_KEYS = json.loads((Path(__file__).parent / "data" / "study_run_keys.json").read_text())


@pytest.mark.parametrize("path", STUDIES, ids=lambda path: path.stem)
def test_the_runs_of_shipped_studies_keep_the_keys_their_records_were_written_with(path):
    """A run's key (the hash of its spec) is how a rerun finds its record instead of retraining: the typed
    schema must give every run of every shipped study (full and smoke) the key the free-dict runner gave it
    (tests/data/study_run_keys.json, recorded by that runner before the schema replaced it)."""
    for mode in ("full", "smoke"):
        study = load_study_config(path, smoke=mode == "smoke")
        keys = {run.name: run.key for run in plan_runs(study)}
        assert keys == RUN_KEYS[path.stem][mode]


def test_a_run_spec_is_the_file_as_written_not_its_defaults():
    """The model and data sections enter a run's key as the file gives them (no defaults filled in), and the
    dataset's `train` is merged over the study's; Trainer flags of the command line come last."""
    study = load_study_config(Path(__file__).parent.parent / "studies" / "text_classification.json")
    (run,) = [run for run in plan_runs(study, {"optim": "sgd"}) if run.name == "imdb__dot__seed0"]
    assert run.spec == {
        "objective": "classification",
        "dataset": "imdb",
        "data": {"train_samples": 3200, "eval_samples": 1000, "max_length": 128, "data_seed": 0},
        "model": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "intermediate_size": 512, "hidden_dropout_prob": 0.1},
        "train": {"max_steps": 100, "per_device_train_batch_size": 16, "learning_rate": 0.001, "eval_steps": 25,
                  "optim": "sgd"},
        "variant": "dot",
        "seed": 0,
        "vocab_size": 8000,
        "max_length": 128,
        "pretrained_from": None,
    }  # fmt: skip
    assert run.key == run_key(run.spec)


def tiny_study(**changes):
    """A valid study file's JSON, with `changes` merged in (None removes a key)."""
    values = {
        "name": "tiny", "objective": "mlm", "variants": ["dot", "random"], "seeds": [0],
        "model": {"hidden_size": 16}, "train": {"max_steps": 2},
        "datasets": {"wikitext2": {"eval_blocks": 4, "train": {"eval_steps": 1}}},
    }  # fmt: skip
    for key, value in changes.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    return values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": [0]}, "the study config: seed: unknown field; did you mean 'seeds'?"),
        ({"seeds": None}, "the study config: seeds: required field missing"),
        ({"seeds": [0, "1"]}, "seeds[1]: expected an integer, got '1'"),
        ({"seeds": []}, "seeds: empty; list at least one"),
        ({"max_length": 12.5}, "max_length: expected an integer, got 12.5"),
        ({"save_models": 1}, "save_models: expected true or false, got 1"),
        ({"reuse_from": "mlm_wikitext2"}, "reuse_from: expected a list of strings, got 'mlm_wikitext2'"),
        ({"objective": "seq2seq"}, "objective: unknown objective 'seq2seq'; use one of mlm, causal_lm"),
        ({"variants": ["dot", "randomm"]}, "variants[1] 'randomm'"),
        ({"model": {"num_layers": 2}}, "model.num_layers: unknown field; did you mean 'num_hidden_layers'?"),
        ({"model": {"hidden_size": "16"}}, "model.hidden_size: expected an integer, got '16'"),
        ({"model": {"hidden_size": None}}, "model.hidden_size: null is not a value here; leave the field out"),
        ({"train": {"max_step": 2}}, "train.max_step: unknown field; did you mean 'max_steps'?"),
        ({"train": {"max_steps": "2"}}, "train.max_steps: expected an integer, got '2'"),
        ({"train": {"seed": 3}}, "train.seed: set by the study runner itself (from the study's `seeds`"),
        ({"train": {"eval_strategy": "sometimes"}}, "train, datasets.wikitext2.train: the Trainer refuses these settings"),
        ({"datasets": {"wikitext2": {"train": {"learning_rat": 1e-3}}}},
         "datasets.wikitext2.train.learning_rat: unknown field; did you mean 'learning_rate'?"),
        ({"datasets": {"wikitext": {}}}, "datasets.wikitext: no loader 'wikitext' (the dataset name); name the"),
        ({"datasets": {"probe": {"loader": "pair_prob"}}}, "datasets.probe: no loader 'pair_prob' (loader)"),
        ({"datasets": {"wikitext2": {"eval_samples": 4}}},
         "datasets.wikitext2.eval_samples: the wikitext2 loader does not read it for mlm"),
        ({"datasets": {"wikitext2": {"encoding": "utf8"}}}, "datasets.wikitext2.encoding: expected 'bytes'"),
        ({"datasets": {"imdb": {"encoding": "bytes"}}}, "datasets.imdb.encoding: byte encoding is only offered"),
        ({"datasets": {"wikitext2": {"seeds": 0}}}, "datasets.wikitext2.seeds: expected a list of integers"),
        ({"datasets": {"membership": {"loader": "pair_probe"}}},
         "datasets.membership: the pair_probe loader serves token_classification, not the objective 'mlm'"),
        ({"objective": "token_classification", "datasets": {"m": {"loader": "pair_probe", "task": "copy"}}},
         "datasets.m.task: unknown pair-probe task 'copy'"),
        ({"objective": "glue"}, "pretrained_from: a glue study fine-tunes the saved models of another study"),
        ({"objective": "glue", "pretrained_from": "mlm", "pretrained_dataset": "wikitext2"},
         "datasets.wikitext2: unknown task 'wikitext2'"),
        ({"objective": "glue", "pretrained_from": "mlm", "pretrained_dataset": "wikitext2",
          "datasets": {"rte": {"eval_blocks": 4}}}, "datasets.rte.eval_blocks: a glue task takes only"),
        ({"pretrained_from": "mlm_wikitext2"}, "pretrained_from: only a glue study starts from pretrained models"),
        ({"convergence_baseline": "dense"}, "convergence_baseline: 'dense' is not one of the `variants`"),
        ({"attention_plot_variants": ["dense"]}, "attention_plot_variants: 'dense' is not one of the `variants`"),
        ({"smoke": {"datasets": {"imdb": {}}}}, "smoke.datasets.imdb: not a dataset of the study"),
    ],
)  # fmt: skip
def test_a_bad_study_file_is_refused_before_anything_trains_naming_the_field(changes, message):
    values = tiny_study(**changes)
    with pytest.raises(StudyFileError, match=re.escape(message)):
        parse_study_config(values, "the study config", smoke="smoke" in changes)


def test_a_study_file_that_is_not_json_or_whose_smoke_section_is_wrong_is_refused(tmp_path):
    path = tmp_path / "study.json"
    path.write_text("{'name': 'tiny'}")
    with pytest.raises(StudyFileError, match=re.escape("study.json: not valid JSON")):
        load_study_config(path)
    path.write_text(json.dumps(tiny_study(smoke={"train": {"max_stesp": 1}})))
    with pytest.raises(StudyFileError, match=re.escape("(smoke): train.max_stesp: unknown field")):
        load_study_config(path)  # the smoke overrides are checked by a full read too


def test_the_command_line_may_not_set_what_the_runner_sets_for_each_run(tmp_path):
    with pytest.raises(StudyFileError, match=re.escape("--seed: set by the study runner itself")):
        run_study(tiny_study(), tmp_path / "data", tmp_path / "out", train_overrides={"seed": 3})
    assert not (tmp_path / "out").exists(), "refused before anything is written"


def test_run_study_py_ends_on_a_bad_study_file_with_the_field_not_a_traceback(tmp_path):
    script = load_script("run_study")
    path = tmp_path / "study.json"
    path.write_text(json.dumps(tiny_study(model={"hidden_sise": 16})))
    common = ["--config", str(path), "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(
        SystemExit, match=re.escape("model.hidden_sise: unknown field; did you mean 'hidden_size'")
    ):
        script.main(common)
    path.write_text(json.dumps(tiny_study()))
    with pytest.raises(SystemExit, match=re.escape("--seed: set by the study runner itself")):
        script.main([*common, "--seed", "3"])
    assert not (tmp_path / "out").exists()


def test_a_glue_study_names_the_pretrained_models_it_lacks_before_anything_trains(tmp_path):
    """The pretraining study ran, but without the `random` models (e.g. fewer variants): the glue study says
    which are missing instead of failing after fine-tuning `dot`."""
    (tmp_path / "mlm_tiny" / "models" / "wikitext2__dot__seed0").mkdir(parents=True)
    glue = tiny_study(
        objective="glue", name="glue_tiny", pretrained_from="mlm_tiny", pretrained_dataset="wikitext2",
        datasets={"rte": {"train_samples": 8}},
    )  # fmt: skip
    with pytest.raises(FileNotFoundError, match=re.escape("lacks 1 of them (wikitext2__random__seed0)")):
        run_study(glue, tmp_path / "data", tmp_path / "glue_tiny")
    assert not (tmp_path / "glue_tiny").exists(), "refused before anything is written"


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
    for shown in (None, ("random",)):
        study = StudyConfig(
            name="s",
            objective="classification",
            variants=("dot", "random", "dense"),
            seeds=(0,),
            datasets={},
            attention_plot_variants=shown,
        )
        out = tmp_path / str(shown)
        out.mkdir()
        make_plots(study, records, rows, maps, out)
        heights[str(shown)] = imread(out / "s_attention.png").shape[0]
    assert heights["('random',)"] < heights["None"] / 2, "one variant's 2 layers instead of three variants' 6"
