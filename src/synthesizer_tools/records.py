"""What every run writes about itself: the result files, the command, the environment, perplexity; and
the progress of a series of runs (elapsed time, ETA).

The training scripts, the study runner and the benchmark record runs the same way, and `model_card` reads these
records back, so the names of the files and the fields live here once.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RUN_INFO_FILE = "run_info.json"  # command, arguments, data sizes, timings of a training run
EVAL_RESULTS_FILE = "eval_results.json"  # final evaluation metrics of a training run
SUMMARY_FILE = "summary.json"  # per-task metrics and benchmark averages of run_glue.py

# The libraries whose versions are recorded with every run (those not installed are left out).
RECORDED_LIBRARIES = ("synthesizer-hf", "transformers", "torch", "datasets", "accelerate", "tokenizers")


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def eta(remaining_kinds: Sequence[str], seconds_by_kind: Mapping[str, Sequence[float]]) -> str:
    """The time left for runs of `remaining_kinds` (one entry per run), from the mean duration of this
    session's runs of each kind: unknown until one of each has run (runs of different kinds differ a lot)."""
    if not all(seconds_by_kind.get(kind) for kind in remaining_kinds):
        return "ETA after the first run of each kind"
    left = sum(statistics.fmean(seconds_by_kind[kind]) for kind in remaining_kinds)
    return f"ETA {format_duration(left)}"


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write indented JSON (creating parent folders), so results are diff- and human-friendly.

    Values JSON has no type for (paths, enums) are written as their string.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def command_line(argv: Sequence[str], program: str | None = None) -> str:
    """The shell command that reruns this run: `python <program> <argv>` (program: sys.argv[0] by default)."""
    return shlex.join(["python", program or sys.argv[0], *argv])


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux)."""
    with suppress(OSError, StopIteration):
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return platform.processor() or platform.machine()


def environment_info() -> dict[str, Any]:
    """Library versions and hardware, recorded with each run so results can be traced and reproduced."""
    info: dict[str, Any] = {}
    for library in RECORDED_LIBRARIES:
        with suppress(PackageNotFoundError):
            info[library.replace("-", "_")] = version(library)
    import torch

    info["python"] = platform.python_version()
    info["device"] = (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    )
    info["cpu_model"] = cpu_model()
    info["logical_cpus"] = os.cpu_count()
    # glibc malloc tunables and preloaded allocators change the cost of large tensors (page faults)
    info["allocator_environment"] = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("MALLOC_") or name == "LD_PRELOAD"
    }
    return info


def count_parameters(model: Any) -> dict[str, int]:
    """Parameters of a `torch.nn.Module` (tied weights once) and buffer elements (e.g. the frozen R of
    fixed_random); works on the meta device."""
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "buffer_elements": sum(b.numel() for b in model.buffers()),
    }


def perplexity(loss: float) -> float:
    """exp(loss); inf for a diverged run whose loss is too large for a float (not an OverflowError)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


__all__ = [
    "EVAL_RESULTS_FILE",
    "RUN_INFO_FILE",
    "SUMMARY_FILE",
    "command_line",
    "count_parameters",
    "environment_info",
    "perplexity",
    "read_json",
    "write_json",
]
