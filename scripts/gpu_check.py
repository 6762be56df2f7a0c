"""What no CUDA device has run yet, checked on one GPU in under 10 minutes, with a PASS/FAIL/SKIP table.

    PYTHONPATH=src python scripts/gpu_check.py --output_dir $OUT   # on a GPU (H100/H200): docs/BENCHMARKS.md
    python scripts/gpu_check.py --dry_run   # the same checks at tiny sizes on the CPU (~15 s)

1. The sdpa path of every variant (each synthesizer of the registry alone and the paper's main mixtures) against
   the eager reference on the device, in float32 and bfloat16, on right-padded batches, for the encoder
   (`SynthesizerForMaskedLM`) and the decoder (`SynthesizerForCausalLM`): the logits at the real tokens, and the
   parameter gradients of a training step (dropout 0) of the sdpa model and of eager copies with the same weights.
2. Greedy generation from left-padded prompts (`SynthesizerForCausalLM`; `SynthesizerForSeq2SeqLM` with padded
   sources): cached == uncached, and static cache == dynamic cache (a static cache the code refuses is a SKIP
   with the reason while the model does not declare `_can_compile_fullgraph`, a FAIL once it does); on the GPU
   also a compiled static-cache decode of two variants.
3. The equal-configuration benchmark against HF BERT-sdpa and GPT-2 (`scripts/benchmark.py --device`), in a
   child process with a time limit, its ratios copied into the report.

Writes report.json (versions, device, every check with its error and tolerance, the benchmark ratios) to
--output_dir (default: $OUT if set, else runs/gpu_check); exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

import synthesizer_tools
from synthesizer_hf import (
    SynthesizerConfig,
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForSeq2SeqLM,
)
from synthesizer_hf.synthesizers import SYNTHESIZERS
from synthesizer_tools.records import environment_info

MIXTURES = [
    "random+dot",
    "dense+dot",
    "factorized_random+dot",
    "random+dense",
    "factorized_dense+symmetric_dot",
]
VARIANTS = [*SYNTHESIZERS, *MIXTURES]
COMPILED_VARIANTS = ["random", "random+dot"]  # compiling takes ~30 s a model: two, on the GPU only
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Tolerance:
    """Largest allowed error, as max |sdpa - reference| / max |reference| over a tensor (relative to its scale,
    so one number serves logits and gradients of any size); the reference is the eager path in the same dtype.

    float32: both paths round at ~1e-7 per operation; kernels that sum in another order (flash or
    memory-efficient SDPA vs matmul + softmax) differ by ~1e-6 of the scale after two layers, so 1e-4 leaves
    room and still catches a wrong mask or a missing term (errors of order 1). Gradients sum over the batch:
    1e-3. bfloat16 logits: 8 significant bits, one rounding is 4e-3 of the value, and the paths round at
    different points (eager takes its softmax in float32): 3e-2. bfloat16 gradients: see BFLOAT16_GRADIENTS.
    """

    logits: float
    gradients: float | None


TOLERANCES = {
    "float32": Tolerance(logits=1e-4, gradients=1e-3),
    "bfloat16": Tolerance(logits=3e-2, gradients=None),
}
# The bfloat16 gradients of small tensors are mostly rounding on either path (dense+dot, 2 layers: 30% of the
# scale of a synthesizer weight's gradient for eager and sdpa alike), so sdpa and eager are not compared with each
# other but each with the float32 eager gradients: sdpa's error may be at most this factor times eager's own
# (and never has to be below one bfloat16 rounding, 2**-8).
BFLOAT16_GRADIENTS = 2.0
# Gradients that vanish in exact arithmetic hold only rounding (the key bias of dot-product attention: a softmax
# ignores a constant added to every key of a query), so a tensor's gradient error is measured against at least
# this fraction of the model's largest gradient.
GRADIENT_SCALE_FLOOR = 1e-2
GENERATION_TOLERANCE = 1e-4  # float32 logits of one generation step vs another (relative to the scale)


@dataclass(frozen=True)
class Sizes:
    """Model and batch sizes of a run, and the benchmark's command line."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int
    length: int  # max_position_embeddings = synthesizer_length = the batch length
    batch_size: int
    prompt_length: int
    new_tokens: int
    benchmark_options: str  # of scripts/benchmark.py, besides --device and --out
    benchmark_timeout_s: int
    compiled_variants: tuple[str, ...]


GPU = Sizes(
    hidden_size=128,
    num_attention_heads=4,
    intermediate_size=256,
    vocab_size=1000,
    length=128,
    batch_size=4,
    prompt_length=24,
    new_tokens=16,
    # every contender at L = 512 and 2048 (16,384 tokens a batch) and greedy decoding: about 3 minutes on an H100
    benchmark_options=(
        "--configuration equal --sizes small --size-lengths small=512,2048 --tokens 16384 --rounds 3 "
        "--min-time 0.2 --decode-batch 8 --decode-prompt 128 --decode-new-tokens 64 --no-memory --no-profile"
    ),
    benchmark_timeout_s=300,
    compiled_variants=tuple(COMPILED_VARIANTS),
)
DRY_RUN = Sizes(
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=99,
    length=16,
    batch_size=4,
    prompt_length=5,
    new_tokens=4,
    benchmark_options=(
        "--sizes micro --lengths 32 --tokens 64 --rounds 1 --min-time 0 --contenders bert-sdpa dot random "
        "random+dot --decode-batch 2 --decode-prompt 8 --decode-new-tokens 2 --no-memory --no-profile"
    ),
    benchmark_timeout_s=180,
    compiled_variants=(),
)


def model_config(variant: str, sizes: Sizes) -> SynthesizerConfig:
    """Two layers, no dropout, synthesizer tables initialised wide enough that attention is far from uniform
    (so a wrong mask or a dropped term shows as a large error)."""
    return SynthesizerConfig(
        attention_type=variant,
        vocab_size=sizes.vocab_size,
        hidden_size=sizes.hidden_size,
        num_hidden_layers=2,
        num_attention_heads=sizes.num_attention_heads,
        intermediate_size=sizes.intermediate_size,
        max_position_embeddings=sizes.length,
        factorized_random_rank=4,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.1,
        synthesizer_initializer_range=0.5,
        attn_implementation="sdpa",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def padded_batch(
    batch_size: int, length: int, vocab_size: int, left: bool, device: str
) -> dict[str, torch.Tensor]:
    """Random tokens; row i keeps length * (1 - i / batch_size) of them (the first row unpadded), padded on the
    left (prompts) or the right. Labels: the real tokens, -100 at padding."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch_size):
        padding = length * row // batch_size
        attention_mask[row, slice(0, padding) if left else slice(length - padding, length)] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {key: value.to(device) for key, value in batch.items()}


def scaled_error(got: torch.Tensor, expected: torch.Tensor, floor: float = 1e-30) -> tuple[float, float]:
    """(max |got - expected| / max(max |expected|, floor), max |got - expected|), in float64; inf where either
    has a NaN or an infinity."""
    got, expected = got.double(), expected.double()
    if not (torch.isfinite(got).all() and torch.isfinite(expected).all()):
        return float("inf"), float("inf")
    absolute = (got - expected).abs().max().item() if got.numel() else 0.0
    return absolute / max(expected.abs().max().item(), floor), absolute


def check(name: str, error: float, tolerance: float, absolute: float | None = None, **detail: Any) -> dict:
    return {
        "check": name,
        "status": "PASS" if error <= tolerance else "FAIL",
        "error": error,
        "tolerance": tolerance,
        "max_abs_error": absolute,
        **detail,
    }


def training_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """One forward and backward: the logits at the real tokens and every parameter's gradient (or None)."""
    output = model(**batch)
    output.loss.backward()
    gradients = {name: parameter.grad for name, parameter in model.named_parameters()}
    return output.logits[batch["attention_mask"].bool()].detach(), gradients


def gradient_error(gradients: dict, references: dict) -> tuple[float, float, str]:
    """The worst tensor's (scaled error, max absolute error, name); a gradient on one side only is infinite."""
    floor = GRADIENT_SCALE_FLOOR * max(
        grad.abs().max().item() for grad in references.values() if grad is not None
    )
    worst = (0.0, 0.0, "")
    for name, reference in references.items():
        if (gradients[name] is None) != (reference is None):
            return float("inf"), float("inf"), f"{name}: a gradient on one path only"
        if reference is not None:
            worst = max(worst, (*scaled_error(gradients[name], reference, floor), name))
    return worst


def attention_paths_agree(
    variant: str, head: type, dtype_name: str, sizes: Sizes, device: str
) -> list[dict[str, Any]]:
    """Logits at the real tokens and parameter gradients of one training step (dropout 0) of the sdpa model and
    of eager copies with the same weights, on a right-padded batch (as training batches are; left padding is
    the generation checks')."""
    torch.manual_seed(0)
    model = head(model_config(variant, sizes)).to(device).train()

    def step(implementation: str, dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
        copied = copy.deepcopy(model).to(dtype)
        copied.set_attn_implementation(implementation)
        assert copied.config._attn_implementation == implementation
        return training_step(copied, batch)

    batch = padded_batch(sizes.batch_size, sizes.length, sizes.vocab_size, left=False, device=device)
    dtype, tolerance = DTYPES[dtype_name], TOLERANCES[dtype_name]
    (sdpa_logits, sdpa), (eager_logits, eager) = step("sdpa", dtype), step("eager", dtype)
    prefix = f"{variant} {'causal' if head is SynthesizerForCausalLM else 'encoder'} {dtype_name}"
    error, absolute = scaled_error(sdpa_logits, eager_logits)
    results = [check(f"{prefix} logits", error, tolerance.logits, absolute)]
    if tolerance.gradients is not None:
        error, absolute, worst = gradient_error(sdpa, eager)
        results.append(
            check(f"{prefix} gradients", error, tolerance.gradients, absolute, worst_parameter=worst)
        )
    else:
        exact = step("eager", torch.float32)[1]
        error, absolute, worst = gradient_error(sdpa, exact)
        eager_error = gradient_error(eager, exact)[0]
        allowed = max(BFLOAT16_GRADIENTS * eager_error, 2**-8)
        name = f"{prefix} gradients (vs float32 eager)"
        results.append(check(name, error, allowed, absolute, worst_parameter=worst, eager_error=eager_error))
    return results


def generation_agrees(
    name: str, generate: Callable[..., Any], reference: Any, refusal: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Greedy tokens equal the reference's and the step logits agree. An exception is a FAIL naming it (the
    other checks go on), or a SKIP where `refusal` says why the code may refuse."""
    try:
        output = generate(**settings)
    except Exception as error:  # the report names the error
        if refusal is None:
            traceback.print_exc()
        return {
            "check": name,
            "status": "FAIL" if refusal is None else "SKIP",
            "reason": f"{refusal or 'error'}: {type(error).__name__}: {error}"[:500],
        }
    if not torch.equal(output.sequences, reference.sequences):
        differing = (output.sequences != reference.sequences).any(0).nonzero()[0].item()
        step = differing - (reference.sequences.shape[1] - len(reference.logits))
        top2 = reference.logits[step].float().topk(2, dim=-1).values
        return {
            "check": name,
            "status": "FAIL",
            "error": float("inf"),
            "tolerance": GENERATION_TOLERANCE,
            "reason": f"tokens differ from step {step}; smallest top-2 logit gap of the reference there: "
            f"{(top2[:, 0] - top2[:, 1]).min().item():.3g}",
        }
    error, absolute = scaled_error(torch.stack(output.logits), torch.stack(reference.logits))
    return check(name, error, GENERATION_TOLERANCE, absolute)


def generation_checks(variant: str, head: type, sizes: Sizes, device: str) -> list[dict[str, Any]]:
    """Cached vs uncached, static vs dynamic cache (and compiled, for `sizes.compiled_variants`), float32."""
    torch.manual_seed(0)
    config = model_config(variant, sizes)
    if head is SynthesizerForSeq2SeqLM:
        config.decoder_start_token_id = 0
    model = head(config).to(device).eval()
    causal = head is SynthesizerForCausalLM
    batch = padded_batch(3, sizes.prompt_length, sizes.vocab_size, left=causal, device=device)
    greedy = dict(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=sizes.new_tokens,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        return_dict_in_generate=True,
        output_logits=True,
    )
    refusal = (
        None if model._can_compile_fullgraph else "static cache refused (_can_compile_fullgraph is False)"
    )
    prefix = f"{variant} {'causal' if causal else 'seq2seq'} generate"
    with torch.no_grad():
        dynamic = model.generate(**greedy)
        results = [
            generation_agrees(f"{prefix} uncached", model.generate, dynamic, use_cache=False, **greedy),
            generation_agrees(
                f"{prefix} static cache",
                model.generate,
                dynamic,
                refusal,
                cache_implementation="static",
                disable_compile=True,
                **greedy,
            ),
        ]
        if causal and variant in sizes.compiled_variants:
            results.append(
                generation_agrees(
                    f"{prefix} static cache compiled",
                    model.generate,
                    dynamic,
                    refusal,
                    cache_implementation="static",
                    **greedy,
                )
            )
    return results


def guarded(name: str, work: Callable[..., list[dict[str, Any]]], *args: Any) -> list[dict[str, Any]]:
    """The checks of `work(*args)`, or one FAIL naming the exception that stopped it (the run goes on)."""
    try:
        return work(*args)
    except Exception as error:  # the report names the error
        traceback.print_exc()
        return [{"check": name, "status": "FAIL", "reason": f"{type(error).__name__}: {error}"[:500]}]


def run_benchmark(sizes: Sizes, device: str, out: Path, seconds_left: float) -> tuple[dict, dict]:
    """The benchmark in a child process (its own CUDA context; a time limit keeps the whole run within its
    budget): its check and the ratios vs BERT-sdpa, `dot` and GPT-2 from its results.json."""
    name = "benchmark (equal configuration, vs HF BERT-sdpa and GPT-2)"
    timeout = min(sizes.benchmark_timeout_s, seconds_left)
    if timeout < 60:
        return {"check": name, "status": "SKIP", "reason": f"{seconds_left:.0f} s left of --budget_s"}, {}
    argv = [*shlex.split(sizes.benchmark_options), "--device", device, "--out", str(out)]
    command = [sys.executable, "-m", "synthesizer_tools.benchmarking", *argv]
    # the same package as this run's, installed or not
    source = str(Path(synthesizer_tools.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with open(out / "log.txt", "w") as log:
            finished = subprocess.run(command, env=env, timeout=timeout, stdout=log, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        reason = f"no result within {timeout:.0f} s (the time left of --budget_s)"
        return {"check": name, "status": "FAIL", "reason": reason}, {"command": command}
    seconds = time.perf_counter() - began
    if finished.returncode != 0:
        reason = f"exit {finished.returncode}: {(out / 'log.txt').read_text()[-1500:]}"
        return {"check": name, "status": "FAIL", "reason": reason}, {"command": command}
    results = json.loads((out / "results.json").read_text())
    ratios = ["train_vs_bert", "inference_vs_bert", "train_vs_dot", "inference_vs_dot"]
    decoding = {record["contender"]: record for record in results["decoding"]}
    gpt2 = decoding.get("gpt2-sdpa")
    summary = {
        "command": command,
        "seconds": seconds,
        "device": results["environment"]["device"],
        "matmul_peak_gflops": results["matmul_peak"]["peak_gflops"],
        "throughput": [
            {key: row[key] for key in ["size", "length", "contender", *ratios] if key in row}
            for row in results["summary"]
        ],
        "decoding": [
            {
                "contender": name,
                "tokens_per_s": record["tokens_per_s"],
                "vs_gpt2": record["tokens_per_s"] / gpt2["tokens_per_s"] if gpt2 else None,
                "cache_bytes_per_token": record["cache_bytes_per_token"],
            }
            for name, record in decoding.items()
        ],
    }
    return {"check": name, "status": "PASS", "seconds": seconds}, summary


def print_table(checks: list[dict[str, Any]]) -> None:
    width = max(len(entry["check"]) for entry in checks)
    print(f"\n{'status':6}  {'check':{width}}  error / tolerance")
    for entry in checks:
        figures = f"{entry['error']:.2e} / {entry['tolerance']:.1e}  " if "error" in entry else ""
        figures += entry.get("reason", "")[:160]
        print(f"{entry['status']:6}  {entry['check']:{width}}  {figures}".rstrip())
    counts = {
        status: sum(entry["status"] == status for entry in checks) for status in ("PASS", "FAIL", "SKIP")
    }
    print("\n" + ", ".join(f"{count} {status}" for status, count in counts.items()), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output_dir",
        default=os.environ.get("OUT") or "runs/gpu_check",
        help="($OUT if set, else runs/gpu_check)",
    )
    parser.add_argument(
        "--dry_run", action="store_true", help="tiny sizes on the CPU, to check the script itself"
    )
    parser.add_argument("--device", help="default: cuda (cpu with --dry_run)")
    parser.add_argument("--no_benchmark", dest="benchmark", action="store_false", help="the checks only")
    parser.add_argument(
        "--budget_s",
        type=float,
        default=540,
        help="seconds for the whole run: the benchmark gets what the checks leave, at most its own limit "
        "(540: within the device tool's 600 s with Python's start-up)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every check, print the table, write report.json; 0 if nothing failed, else 1."""
    args = parse_args(argv)
    sizes = DRY_RUN if args.dry_run else GPU
    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {device}: torch {torch.__version__} sees no CUDA device (--dry_run runs on the CPU)."
        )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if device == "cpu":
        torch.set_num_threads(
            1
        )  # tiny tensors: more threads only wait for each other (30x slower on 2 busy cores)
    torch.set_float32_matmul_precision("highest")  # no TF32: float32 tolerances assume float32 matmuls
    began = time.perf_counter()
    report: dict[str, Any] = {
        "environment": {
            **environment_info(),
            "torch_cuda": torch.version.cuda,
            "run_device": device,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
        "dry_run": args.dry_run,
        "sizes": asdict(sizes),
        "tolerances": {name: asdict(tolerance) for name, tolerance in TOLERANCES.items()},
        "generation_tolerance": GENERATION_TOLERANCE,
        "checks": [],
    }
    print(
        f"[gpu_check] {report['environment']['device']}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    checks = report["checks"]
    for variant in VARIANTS:
        for head in (SynthesizerForMaskedLM, SynthesizerForCausalLM):
            for dtype_name in DTYPES:
                name = f"{variant} {head.__name__} {dtype_name}"
                checks += guarded(name, attention_paths_agree, variant, head, dtype_name, sizes, device)
        for head in (SynthesizerForCausalLM, SynthesizerForSeq2SeqLM):
            name = f"{variant} {head.__name__} generate"
            checks += guarded(name, generation_checks, variant, head, sizes, device)
        print(f"[gpu_check] {variant} checked (at {time.perf_counter() - began:.0f} s)", flush=True)
    report["checks_seconds"] = time.perf_counter() - began
    report_path = output_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=1))  # kept if the benchmark runs out of time
    if args.benchmark:
        print("[gpu_check] benchmark", flush=True)
        benchmark_check, report["benchmark"] = run_benchmark(
            sizes, device, output_dir / "benchmark", args.budget_s - (time.perf_counter() - began)
        )
        checks.append(benchmark_check)
    report["seconds"] = time.perf_counter() - began
    report["failed"] = [entry["check"] for entry in checks if entry["status"] == "FAIL"]
    report_path.write_text(json.dumps(report, indent=1))
    print_table(checks)
    for row in report.get("benchmark", {}).get("throughput", []):
        ratios = ", ".join(
            f"{key} {value:.2f}" for key, value in row.items() if key.endswith(("_bert", "_dot"))
        )
        print(f"[benchmark] {row['size']} L={row['length']} {row['contender']}: {ratios}")
    print(f"[gpu_check] {len(report['failed'])} failed; wrote {report_path} in {report['seconds']:.0f} s")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
