"""Smoke test of the study runner: a two-variant MLM study on a tiny corpus written here, end to end."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script
from synthesizer_hf import SynthesizerConfig
from synthesizer_tools.studies import CORPUS_LOADERS, load_study_config, run_study
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


STUDIES = sorted((Path(__file__).parent.parent / "studies").glob("*.json"))


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
                assert dataset in CORPUS_LOADERS
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
