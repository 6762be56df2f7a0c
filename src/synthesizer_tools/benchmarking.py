"""Benchmark of the Synthesizer variants against Hugging Face BERT (sdpa) and GPT-2 of the same size (CPU by
default; `--device cuda` times throughput and decoding on a GPU).

Every number is measured in the run that reports it. Contenders share dims, batch and thread count; they
are interleaved in a rotating order and summarised by medians over rounds, and the report gives ratios
against HF `BertForMaskedLM` (sdpa) and against the project's own `dot`, so that the noise of a shared
machine cancels as far as it can. Peak memory comes from a fresh process per configuration (a child forked
from a forkserver that has only imported the libraries), decoding from `generate` on causal LMs.

`main(argv)` is the command line (`python -m synthesizer_tools.benchmarking --help`): it runs the measurements of
`benchmark_measure` and writes what `benchmark_report` makes of them. The variants measured by default are every
synthesizer of the registry alone and, for those without token keys, mixed with `dot`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import synthesizer_hf

from .benchmark_measure import (
    CONFIGURATIONS,
    QUICK,
    SIZES,
    Settings,
    machine_state,
    matmul_peak,
    measure_compiled_decoding,
    measure_decoding,
    measure_memory,
    measure_throughput,
    profile_training,
    start_memory_server,
)
from .benchmark_report import (
    compare_contenders,
    evaluate_targets,
    plot,
    render_markdown,
    scaling_exponents,
)
from .records import command_line, environment_info


def source_digest() -> str:
    """Short sha256 of the model sources: which model code the numbers belong to."""
    package = Path(synthesizer_hf.__file__).parent
    names = (
        "configuration_synthesizer.py",
        "modeling_synthesizer.py",
        "synthesizers.py",
        "attention_kernels.py",
        "biased_attention.py",
    )
    return hashlib.sha256(b"".join((package / name).read_bytes() for name in names)).hexdigest()[:12]


def environment(argv: list[str], program: str | None = None) -> dict[str, Any]:
    """Machine, versions and command, so every table can be traced to how it was made."""
    return {
        "command": command_line(argv, program),
        "model_source_sha256": source_digest(),
        **environment_info(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }


CONFIGURATIONS_HELP = (
    "equal: the same attention dropout (0) and head work (logits at every token) for every contender; "
    "equal-dropout: the same with attention dropout 0.1; defaults: each library's defaults"
)


def lengths_by_size(items: str) -> tuple[str, list[int]]:
    """`SIZE=L,L,...` of `--size-lengths`."""
    size, lengths = items.split("=")
    return size, [int(n) for n in lengths.split(",")]


def parse_args(argv: list[str]) -> Settings:
    """The run's Settings: the full run's defaults (`Settings`), changed by `--quick` (`QUICK`), then by what
    the command line gives (an option not given keeps the default: argparse adds no value of its own)."""
    full = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", default=False, help="what --quick changes: QUICK")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help=f"default {full.sizes}")
    parser.add_argument("--lengths", nargs="+", type=int, help=f"default {full.lengths}")
    parser.add_argument(
        "--size-lengths",
        nargs="*",
        type=lengths_by_size,
        metavar="SIZE=L,L",
        help=f"lengths for one size instead of --lengths (default {full.size_lengths})",
    )
    parser.add_argument(
        "--tokens", type=int, help=f"token positions per batch (batch = tokens / L; {full.tokens})"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"interleaved rounds, the median is reported ({full.rounds})"
    )
    parser.add_argument("--threads", type=int, help=f"torch.set_num_threads ({full.threads})")
    parser.add_argument(
        "--min-time", type=float, help="repeat a step until one measurement lasts this long (s)"
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        help="default: BERT-sdpa (with and without attention dropout) and every variant",
    )
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument(
        "--no-decode", dest="decode", action="store_false", help="skip the decoding benchmark"
    )
    parser.add_argument(
        "--decode-compiled",
        action="store_true",
        help="also time decoding with a static cache and a compiled step (torch.compile fullgraph) against eager "
        "decoding, one prompt per decoder (each model compiles once: seconds to minutes)",
    )
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, help="torch.profiler op table")
    parser.add_argument("--decode-batch", type=int)
    parser.add_argument("--decode-prompt", type=int)
    parser.add_argument("--decode-new-tokens", type=int)
    parser.add_argument("--profile-size", choices=list(SIZES))
    parser.add_argument(
        "--profile-length", type=int, help=f"length of the profiled steps ({full.profile_length})"
    )
    parser.add_argument("--profile-contenders", nargs="+", help=f"default {full.profile_contenders}")
    parser.add_argument(
        "--configuration",
        choices=CONFIGURATIONS,
        help=f"{CONFIGURATIONS_HELP} (default {full.configuration})",
    )
    parser.add_argument(
        "--device",
        help=f"torch device of the throughput, decoding and matmul-peak runs, e.g. cuda ({full.device})",
    )
    parser.add_argument("--out", help=f"results directory ({full.out})")
    given = vars(parser.parse_args(argv))
    quick = given.pop("quick")
    if "size_lengths" in given:
        given["size_lengths"] = dict(given["size_lengths"])
    settings = Settings(**{**(QUICK if quick else {}), **given})
    cpu_only = [
        flag for flag, on in (("--no-memory", settings.memory), ("--no-profile", settings.profile)) if on
    ]
    if torch.device(settings.device).type != "cpu" and cpu_only:
        parser.error(
            f"--device {settings.device}: the peak-memory runs (process RSS) and the profile (CPU op times) "
            f"measure the CPU only; add {' '.join(cpu_only)}."
        )
    return settings


def main(argv: list[str] | None = None, program: str | None = None) -> dict[str, Any]:
    """Run the benchmark, write results.json, results.md and the plots to `--out`; return the results.

    `program` names the command in the results (default: the running program, `sys.argv[0]`).
    """
    argv = sys.argv[1:] if argv is None else argv
    settings = parse_args(argv)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    memory_server = start_memory_server() if settings.memory else None
    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    machine_state()  # start psutil's CPU-percent interval
    results: dict[str, Any] = {"environment": environment(argv, program), "settings": asdict(settings)}
    peak_at_start = matmul_peak(device=settings.device)
    phases = results["phase_seconds"] = {}

    def phase(name: str, work: Callable[..., Any], *args: Any) -> Any:
        print(f"[benchmark] {name} (at {time.perf_counter() - start:.0f} s)", flush=True)
        began = time.perf_counter()
        value = work(*args, settings)
        phases[name] = time.perf_counter() - began
        return value

    results["throughput"] = [
        record
        for size in settings.sizes
        for length in settings.lengths_of(size)
        for record in phase(f"throughput {size} L={length}", measure_throughput, size, length)
    ]
    results["decoding"] = [
        record
        for size in (settings.sizes if settings.decode else [])
        for record in phase(f"decoding {size}", measure_decoding, size)
    ]
    results["compiled_decoding"] = [
        record
        for size in (settings.sizes if settings.decode_compiled else [])
        for record in phase(f"compiled decoding {size}", measure_compiled_decoding, size)
    ]
    results["profile"] = phase("profile", profile_training) if settings.profile else {}
    results["memory"] = phase("memory", measure_memory, memory_server) if settings.memory else []
    peak_at_end = matmul_peak(device=settings.device)
    best = max(peak_at_start["peak_gflops"], peak_at_end["peak_gflops"])
    results["matmul_peak"] = {"start": peak_at_start, "end": peak_at_end, "peak_gflops": best}
    results["environment"]["model_source_sha256_at_end"] = source_digest()
    results["summary"] = compare_contenders(results)
    results["scaling"] = scaling_exponents(results["summary"])
    results["targets"] = evaluate_targets(results)
    results["wall_seconds"] = time.perf_counter() - start
    results["plots"] = plot(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(render_markdown(results))
    print(
        f"[benchmark] done in {results['wall_seconds']:.0f} s; wrote {out}/results.json and results.md",
        flush=True,
    )
    return results


__all__ = ["main", "parse_args"]


if __name__ == "__main__":
    main()
