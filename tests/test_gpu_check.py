"""scripts/gpu_check.py, the prepared GPU check: its comparisons catch a wrong path, a refused static cache is a
SKIP, and its CPU dry run passes and reports every check (docs/BENCHMARKS.md, "GPU check")."""

import json

import pytest
import torch

from helpers import load_script
from synthesizer_hf import SynthesizerForCausalLM, SynthesizerForMaskedLM

gpu_check = load_script("gpu_check")


@pytest.mark.parametrize("head", [SynthesizerForMaskedLM, SynthesizerForCausalLM])
def test_the_sdpa_check_passes_the_library_and_fails_a_wrong_kernel(head, monkeypatch):
    """`dot` runs through torch's SDPA: 1% off in its output fails the float32 logits and gradients checks."""
    checks = gpu_check.attention_paths_agree("dot", head, "float32", gpu_check.DRY_RUN, "cpu")
    assert [check["status"] for check in checks] == ["PASS", "PASS"], checks
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional,
        "scaled_dot_product_attention",
        lambda *args, **kwargs: real(*args, **kwargs) * 1.01,
    )
    checks = gpu_check.attention_paths_agree("dot", head, "float32", gpu_check.DRY_RUN, "cpu")
    assert [check["status"] for check in checks] == ["FAIL", "FAIL"], checks


def test_a_refused_static_cache_is_a_skip_only_while_the_model_does_not_promise_one():
    def refuse(**settings):
        raise ValueError("attention_mask must have shape (3, 5)")

    skipped = gpu_check.generation_agrees("static", refuse, None, "static cache refused", max_new_tokens=2)
    assert skipped["status"] == "SKIP" and "attention_mask must have shape" in skipped["reason"]
    failed = gpu_check.generation_agrees("static", refuse, None, None, max_new_tokens=2)
    assert failed["status"] == "FAIL" and "ValueError: attention_mask must have shape" in failed["reason"]


@pytest.mark.slow
def test_the_dry_run_passes_and_reports_every_check_with_its_tolerance(tmp_path):
    assert gpu_check.main(["--dry_run", "--output_dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    status = {check["check"]: check["status"] for check in report["checks"]}
    assert report["failed"] == [] and "FAIL" not in status.values()
    for variant in gpu_check.VARIANTS:
        for model in ("encoder", "causal"):
            assert status[f"{variant} {model} float32 logits"] == "PASS"
            assert status[f"{variant} {model} float32 gradients"] == "PASS"
            assert status[f"{variant} {model} bfloat16 logits"] == "PASS"
            assert status[f"{variant} {model} bfloat16 gradients (vs float32 eager)"] == "PASS"
        for decoder in ("causal", "seq2seq"):
            assert status[f"{variant} {decoder} generate uncached"] == "PASS"
            assert status[f"{variant} {decoder} generate static cache"] in {"PASS", "SKIP"}
    for check in report["checks"]:
        if check["status"] == "PASS" and "error" in check:
            assert 0 <= check["error"] <= check["tolerance"], check
    assert {"torch", "transformers", "device"} <= report["environment"].keys()
    assert status["benchmark (equal configuration, vs HF BERT-sdpa and GPT-2)"] == "PASS"
    rows = {row["contender"]: row for row in report["benchmark"]["throughput"]}
    assert rows.keys() == {"bert-sdpa", "dot", "random", "random+dot"}
    assert rows["bert-sdpa"]["train_vs_bert"] == 1.0 and rows["random"]["inference_vs_bert"] > 0
    assert "--device" in report["benchmark"]["command"]
    assert {row["contender"] for row in report["benchmark"]["decoding"]} >= {"gpt2-sdpa", "random"}
