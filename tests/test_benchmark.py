"""Smoke test of the benchmark: the --quick path on a minuscule config runs and writes the expected files.

Timings are never asserted (the machine is shared); only that every stage produced its fields.
"""

import json

import pytest

from synthesizer_tools.benchmarking import main


@pytest.mark.slow
def test_quick_benchmark_writes_results(tmp_path):
    argv = [
        "--quick",
        "--sizes", "micro",
        "--lengths", "32",
        "--tokens", "128",
        "--rounds", "1",
        "--min-time", "0",
        "--contenders", "bert-sdpa", "dot", "random",
        "--decode-batch", "2",
        "--decode-prompt", "8",
        "--decode-new-tokens", "2",
        "--profile",
        "--profile-size", "micro",
        "--out", str(tmp_path),
    ]  # fmt: skip
    main(argv)

    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("environment", "settings", "matmul_peak", "throughput", "memory", "decoding", "profile"):
        assert results[key], key
    assert {"summary", "targets", "wall_seconds", "phase_seconds", "plots"} <= results.keys()
    assert {(r["contender"], r["mode"]) for r in results["throughput"]} == {
        (name, mode) for name in ("bert-sdpa", "dot", "random") for mode in ("train", "inference")
    }
    record = results["throughput"][0]
    for key in ("tokens_per_s", "tokens_per_cpu_s", "cpu_utilisation", "flops_per_token", "parameters"):
        assert key in record, key
    assert all(m["exitcode"] == 0 and m["peak_rss_bytes"] > 0 for m in results["memory"])
    random_row = next(r for r in results["summary"] if r["contender"] == "random")
    for key in (
        "train_vs_bert",
        "inference_vs_bert",
        "train_vs_dot",
        "train_memory_vs_bert",
        "train_flop_fraction",
    ):
        assert key in random_row, key
    decoders = {r["contender"]: r for r in results["decoding"]}
    assert set(decoders) == {"gpt2-sdpa", "dot", "random"}
    assert decoders["random"]["cache_bytes_per_token"] < decoders["gpt2-sdpa"]["cache_bytes_per_token"]
    assert set(results["profile"]) == {"bert-sdpa", "random", "random+dot"}
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results")
    for name in results["plots"]:
        assert (tmp_path / name).stat().st_size > 0


def test_equal_configuration_gives_every_contender_the_same_dropout_and_head_work():
    from synthesizer_tools.benchmarking import masked_lm_config

    bert, synthesizer = (
        masked_lm_config(name, "micro", 32, 100, "equal") for name in ("bert-sdpa", "random")
    )
    assert bert.attention_probs_dropout_prob == synthesizer.attention_probs_dropout_prob == 0.0
    assert not synthesizer.sparse_prediction  # vocabulary logits at every token, as BERT computes them
    bert, synthesizer = (
        masked_lm_config(name, "micro", 32, 100, "defaults") for name in ("bert-sdpa", "random")
    )
    assert bert.attention_probs_dropout_prob == 0.1 and synthesizer.sparse_prediction
    bert, synthesizer = (
        masked_lm_config(name, "micro", 32, 100, "equal-dropout") for name in ("bert-sdpa", "random+dot")
    )
    assert bert.attention_probs_dropout_prob == synthesizer.attention_probs_dropout_prob == 0.1
    assert not synthesizer.sparse_prediction
    with pytest.raises(ValueError, match="configuration"):
        masked_lm_config("random", "micro", 32, 100, "fastest")


def test_scaling_exponents_recover_known_powers_of_the_length():
    from synthesizer_tools.benchmarking import scaling_exponents, scaling_table

    summary = [
        {
            "size": "tiny",
            "contender": name,
            "length": length,
            "train_tokens_per_s": 1e6 / length**power,  # time per token ~ L^power
            "inference_tokens_per_s": 1e6,
            "train_model_peak_bytes": 1e3 * length**2,
        }
        for name, power in (("linear", 0.0), ("quadratic", 1.0), ("between", 0.5))
        for length in (512, 1024, 2048, 4096)
    ]
    rows = {row["contender"]: row for row in scaling_exponents(summary)}
    for name, power in (("linear", 0.0), ("quadratic", 1.0), ("between", 0.5)):
        assert rows[name]["train_time_exponent"] == pytest.approx(power, abs=1e-9)
        assert rows[name]["inference_time_exponent"] == pytest.approx(0.0, abs=1e-9)
        assert rows[name]["train_memory_exponent"] == pytest.approx(2.0)
    assert "inference_memory_exponent" not in rows["linear"]  # not measured
    assert "| quadratic | 1.00 | 0.00 | 2.00 |" in scaling_table(list(rows.values()), "tiny")
