"""What the CPU benchmark reports: ratios against HF BERT-sdpa and the project's `dot`, how cost scales with the
length, the project's performance targets (as data) and their verdicts, the markdown tables and the plots.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .benchmark_measure import (
    BASELINE,
    DECODER_BASELINE,
    EQUAL_ATTENTION_DROPOUT,
    MODES,
    PURE_SYNTHESIZERS,
    RANDOM_FAMILY,
    REFERENCE_VARIANT,
    SIZES,
    VARIANTS,
)


@dataclass(frozen=True)
class Target:
    """A performance goal: `metric` of each contender (a field of the summary rows, or of the decoding records
    for `mode == "decode"`) at each of `lengths`, compared with `threshold`."""

    description: str
    contenders: tuple[str, ...]
    mode: str  # "train", "inference" (summary rows, per length) or "decode" (decoding records)
    metric: str
    threshold: float
    lengths: tuple[int, ...] = ()  # empty for decoding, which has one prompt length
    at_least: bool = True


LONG = (512, 1024, 2048, 4096)
TARGETS = (
    Target("training >= 1.5x BERT at L=2048", RANDOM_FAMILY, "train", "train_vs_bert", 1.5, (2048,)),
    Target("training >= 1.2x BERT at L=512", RANDOM_FAMILY, "train", "train_vs_bert", 1.2, (512,)),
    Target("inference >= 1.2x BERT at L=2048", RANDOM_FAMILY, "inference", "inference_vs_bert", 1.2, (2048,)),
    Target(
        "training peak memory <= 0.75x BERT at L=2048",
        RANDOM_FAMILY,
        "train",
        "train_memory_vs_bert",
        0.75,
        (2048,),
        at_least=False,
    ),
    Target("training >= 1.1x BERT at L>=512", ("factorized_dense",), "train", "train_vs_bert", 1.1, LONG),
    Target("training >= 1.0x BERT at L>=512", ("dense",), "train", "train_vs_bert", 1.0, LONG),
    Target(
        "training >= 1.0x BERT at L=512",
        ("random+dot", "factorized_random+dot"),
        "train",
        "train_vs_bert",
        1.0,
        (512,),
    ),
    Target("training >= 0.9x BERT at L=512", ("dense+dot",), "train", "train_vs_bert", 0.9, (512,)),
    Target("training >= 40% of FLOP limit at L=512", VARIANTS, "train", "train_flop_fraction", 0.4, (512,)),
    # PURE_SYNTHESIZERS: decoders whose layers have no dot-product component cache values only
    Target(
        "decoder cache bytes/token <= 0.55x GPT-2",
        PURE_SYNTHESIZERS,
        "decode",
        "cache_vs_gpt2",
        0.55,
        at_least=False,
    ),
)


def compare_contenders(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (size, length, contender): ratios vs BERT-sdpa and vs dot, memory, FLOP-limit fraction."""
    peak = results["matmul_peak"]["peak_gflops"] * 1e9
    speed = {(r["size"], r["length"], r["contender"], r["mode"]): r for r in results["throughput"]}
    memory = {(r["size"], r["length"], r["contender"], r["mode"]): r for r in results["memory"]}
    rows = []
    for size, length, contender, mode in speed:
        if mode != "train":
            continue
        row: dict[str, Any] = {"size": size, "length": length, "contender": contender}
        for mode in MODES:
            record = speed[size, length, contender, mode]
            row[f"{mode}_tokens_per_s"] = record["tokens_per_s"]
            row[f"{mode}_flop_fraction"] = record["tokens_per_s"] * record["flops_per_token"] / peak
            row[f"{mode}_flop_fraction_cpu"] = record["tokens_per_cpu_s"] * record["flops_per_token"] / peak
            row[f"{mode}_flops_per_token"] = record["flops_per_token"]
            row[f"{mode}_cpu_utilisation"] = statistics.median(record["cpu_utilisation"])
            row[f"{mode}_faulted_bytes"] = record.get("faulted_bytes_per_step")
            for reference, key in ((BASELINE, "bert"), (REFERENCE_VARIANT, "dot")):
                other = speed.get((size, length, reference, mode))
                if other is not None:
                    row[f"{mode}_vs_{key}"] = record["tokens_per_s"] / other["tokens_per_s"]
                    row[f"{mode}_vs_{key}_cpu"] = record["tokens_per_cpu_s"] / other["tokens_per_cpu_s"]
            mine, bert = (
                memory.get((size, length, contender, mode)),
                memory.get((size, length, BASELINE, mode)),
            )
            if mine and "peak_rss_bytes" in mine:
                row[f"{mode}_peak_rss_bytes"] = mine["peak_rss_bytes"]
                row[f"{mode}_model_peak_bytes"] = mine["model_peak_bytes"]
                if bert and "peak_rss_bytes" in bert:
                    row[f"{mode}_memory_vs_bert"] = mine["model_peak_bytes"] / bert["model_peak_bytes"]
                    row[f"{mode}_rss_vs_bert"] = mine["peak_rss_bytes"] / bert["peak_rss_bytes"]
        row["parameters"] = speed[size, length, contender, "train"]["parameters"]
        rows.append(row)
    return rows


def scaling_exponents(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How cost grows with L, per (size, contender): the least-squares slope b of log(time per token) against
    log(L), time per token ~ L^b. b = 0: cost linear in L (the FFN and projections dominate); b = 1: quadratic
    (the L x L attention dominates). Also the slope of peak memory above baseline, where measured."""
    rows = []
    for size, contender in dict.fromkeys((r["size"], r["contender"]) for r in summary):
        points = sorted(
            (r["length"], r) for r in summary if r["size"] == size and r["contender"] == contender
        )
        if len(points) < 2:
            continue
        row: dict[str, Any] = {"size": size, "contender": contender, "lengths": [n for n, _ in points]}
        fits = {f"{mode}_time_exponent": (f"{mode}_tokens_per_s", -1) for mode in MODES}
        fits.update({f"{mode}_memory_exponent": (f"{mode}_model_peak_bytes", 1) for mode in MODES})
        for name, (key, sign) in fits.items():
            measured = [(math.log(n), sign * math.log(r[key])) for n, r in points if r.get(key)]
            if len(measured) == len(points):
                x, y = zip(*measured)
                mean_x, mean_y = statistics.fmean(x), statistics.fmean(y)
                covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y))
                row[name] = covariance / sum((a - mean_x) ** 2 for a in x)
        rows.append(row)
    return rows


def scaling_table(exponents: list[dict[str, Any]], size: str) -> str:
    columns = [
        ("train time/token", "train_time_exponent"),
        ("inference time/token", "inference_time_exponent"),
        ("train memory", "train_memory_exponent"),
        ("inference memory", "inference_memory_exponent"),
    ]
    columns = [
        (label, key) for label, key in columns if any(key in r for r in exponents if r["size"] == size)
    ]
    body = [
        [r["contender"], *(f"{r[key]:.2f}" if key in r else "–" for _, key in columns)]
        for r in exponents
        if r["size"] == size
    ]
    return markdown_table(["contender", *(label for label, _ in columns)], body)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Met / missed for each target on the largest size measured (`small` in the full run)."""
    size = max(results["settings"]["sizes"], key=lambda name: SIZES[name]["hidden_size"])
    rows = {(r["length"], r["contender"]): r for r in results["summary"] if r["size"] == size}
    decoding = {r["contender"]: r for r in results["decoding"] if r["size"] == size}
    if DECODER_BASELINE in decoding:
        reference = decoding[DECODER_BASELINE]["cache_bytes_per_token"]
        for name, record in decoding.items():
            rows[None, name] = {"cache_vs_gpt2": record["cache_bytes_per_token"] / reference}
    verdicts = []
    for target in TARGETS:
        for contender in target.contenders:
            lengths = [n for n in target.lengths if (n, contender) in rows] or [None]
            for length in lengths:
                row = rows.get((length, contender), {})
                value = row.get(target.metric)
                verdicts.append(
                    {
                        "size": size,
                        "target": target.description,
                        "contender": contender,
                        "length": length,
                        "value": value,
                        "met": None if value is None else (value >= target.threshold) == target.at_least,
                        "value_cpu_time": row.get(f"{target.metric}_cpu"),
                        "cpu_utilisation": row.get(f"{target.mode}_cpu_utilisation"),
                    }
                )
    return verdicts


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pivot(summary: list[dict[str, Any]], size: str, key: str, fmt: Callable[[float], str]) -> str:
    """Contenders x lengths table of one summary field."""
    lengths = sorted({r["length"] for r in summary if r["size"] == size})
    contenders = list(dict.fromkeys(r["contender"] for r in summary if r["size"] == size))
    cells = {(r["length"], r["contender"]): r.get(key) for r in summary if r["size"] == size}
    body = [
        [c] + [fmt(cells[n, c]) if cells.get((n, c)) is not None else "–" for n in lengths]
        for c in contenders
    ]
    return markdown_table(["contender"] + [f"L={n}" for n in lengths], body)


def ratio(value: float) -> str:
    return f"{value:.2f}x"


TABLES = (
    ("Training throughput, ratio vs BERT-sdpa (higher is faster)", "train_vs_bert", ratio),
    ("Inference throughput, ratio vs BERT-sdpa", "inference_vs_bert", ratio),
    ("Training, ratio vs BERT-sdpa from CPU time (robust to descheduling)", "train_vs_bert_cpu", ratio),
    ("Inference, ratio vs BERT-sdpa from CPU time", "inference_vs_bert_cpu", ratio),
    ("Training throughput, ratio vs the project's `dot`", "train_vs_dot", ratio),
    ("Inference throughput, ratio vs the project's `dot`", "inference_vs_dot", ratio),
    ("Training tokens/s (forward + backward + AdamW)", "train_tokens_per_s", lambda v: f"{v:,.0f}"),
    ("Inference tokens/s", "inference_tokens_per_s", lambda v: f"{v:,.0f}"),
    ("Training peak RSS (MiB, fresh process)", "train_peak_rss_bytes", lambda v: f"{v / 2**20:,.0f}"),
    (
        "Training peak RSS above the post-import baseline (MiB)",
        "train_model_peak_bytes",
        lambda v: f"{v / 2**20:,.0f}",
    ),
    ("Training peak memory above baseline, ratio vs BERT-sdpa", "train_memory_vs_bert", ratio),
    ("Training peak RSS (total), ratio vs BERT-sdpa", "train_rss_vs_bert", ratio),
    ("Inference peak RSS above baseline (MiB)", "inference_model_peak_bytes", lambda v: f"{v / 2**20:,.0f}"),
    ("Inference peak memory above baseline, ratio vs BERT-sdpa", "inference_memory_vs_bert", ratio),
    (
        "Training matmul MFLOP per token (forward + backward)",
        "train_flops_per_token",
        lambda v: f"{v / 1e6:.1f}",
    ),
    ("Training: fraction of the FLOP limit reached", "train_flop_fraction", lambda v: f"{100 * v:.0f}%"),
    (
        "Training: fraction of the FLOP limit, from CPU time",
        "train_flop_fraction_cpu",
        lambda v: f"{100 * v:.0f}%",
    ),
    ("Inference: fraction of the FLOP limit reached", "inference_flop_fraction", lambda v: f"{100 * v:.0f}%"),
    (
        "Training: memory faulted in per step (MiB; fresh pages the allocator mapped, median over rounds)",
        "train_faulted_bytes",
        lambda v: f"{v / 2**20:,.0f}",
    ),
    ("Parameters (millions)", "parameters", lambda v: f"{v / 1e6:.2f}"),
)


def allocator_text(allocator_environment: dict[str, str]) -> str:
    """Whether the run had the memory allocator users have: a headline figure needs glibc's defaults, a run with
    tuned malloc variables or a preloaded allocator is a labelled extra."""
    if not allocator_environment:
        return "Allocator: glibc's defaults, as users run the models (figures fit for a headline)."
    settings = " ".join(f"{name}={value}" for name, value in allocator_environment.items())
    return f"Allocator: **tuned** ({settings}), not what users run: report these figures as a labelled extra row."


def render_markdown(results: dict[str, Any]) -> str:
    """All tables of a run as markdown (the source of docs/BENCHMARKS.md)."""
    env, settings = results["environment"], results["settings"]
    end_digest = env.get("model_source_sha256_at_end", env["model_source_sha256"])
    changed = "" if end_digest == env["model_source_sha256"] else f", CHANGED during the run to {end_digest}"
    parts = [
        "# Benchmark results",
        f"Command: `{env['command']}`  ",
        f"Machine: {env['cpu_model']}, {env['logical_cpus']} logical CPUs; torch threads used: "
        f"{settings['threads']}; torch {env['torch']}, transformers {env['transformers']}; "
        f"synthesizer-hf {env.get('synthesizer_hf', '?')} (model source sha256 {env['model_source_sha256']}{changed}); "
        f"started {env['started']}; wall time {results['wall_seconds']:.0f} s.  ",
        allocator_text(env.get("allocator_environment", {})) + "  ",
        f"Batch: {settings['tokens']} token positions (batch = tokens / L), "
        f"{100 * settings['pad_fraction']:.0f}% of rows (rounded up) right-padded to a random shorter length; "
        f"vocab {settings['vocab_size']}; medians over {settings['rounds']} interleaved rounds.  ",
        f"fp32 matmul peak of this machine at {settings['threads']} thread(s): "
        f"{results['matmul_peak']['peak_gflops']:.1f} GFLOP/s (FLOP limit = peak / FLOPs per token).  ",
        "Configuration: " + configuration_text(settings.get("configuration", "equal")),
    ]
    for size in settings["sizes"]:
        dims = SIZES[size]
        parts.append(
            f"\n## Size `{size}` (hidden {dims['hidden_size']}, {dims['num_hidden_layers']} layers, "
            f"{dims['num_attention_heads']} heads, FFN {dims['intermediate_size']})"
        )
        for title, key, fmt in TABLES:
            if any(r.get(key) is not None for r in results["summary"] if r["size"] == size):
                parts += [f"\n### {title}\n", pivot(results["summary"], size, key, fmt)]
        if any(r["size"] == size for r in results.get("scaling", [])):
            parts += [
                "\n### Scaling exponents: cost ~ L^b, least-squares b over the lengths measured\n",
                "Time per token: b = 0 means cost linear in L (projections and FFN dominate), b = 1 quadratic "
                "(the L x L attention dominates). Memory: the peak above baseline, ~ L^b at a fixed number of "
                "tokens per batch.\n",
                scaling_table(results["scaling"], size),
            ]
        parts += ["\n### CPU utilisation (process CPU time / wall time, median [min] over rounds)\n"]
        parts.append(utilisation_table(results["throughput"], size))
        decoding = [r for r in results["decoding"] if r["size"] == size]
        if decoding:
            parts += ["\n### Decoding (greedy `generate`, causal LMs)\n", decoding_table(decoding)]
        compiled = [r for r in results.get("compiled_decoding", []) if r["size"] == size]
        if compiled:
            parts += ["\n### Compiled decoding (static cache, `torch.compile(fullgraph=True)`)\n"]
            parts.append(compiled_decoding_table(compiled))
    if results["targets"]:
        rows = [
            [
                v["target"],
                v["contender"],
                str(v["length"] or ""),
                "–" if v["value"] is None else f"{v['value']:.2f}",
                {True: "met", False: "MISSED", None: "not measured"}[v["met"]],
                "" if v["value_cpu_time"] is None else f"{v['value_cpu_time']:.2f}",
                "" if v["cpu_utilisation"] is None else f"{v['cpu_utilisation']:.2f}",
            ]
            for v in results["targets"]
        ]
        header = ["target", "contender", "L", "value", "verdict", "value from CPU time", "CPU util."]
        parts += [
            f"\n## Targets (size `{results['targets'][0]['size']}`)\n\nVerdicts use wall-clock throughput and, for "
            "memory, the peak RSS above the post-import baseline (total-RSS ratios are in the tables above). "
            "Where the contender's CPU utilisation was well below 1, other processes took the core: trust the "
            "CPU-time value more.\n",
            markdown_table(header, rows),
        ]
    for name, ops in results["profile"].items():
        parts.append(
            f"\n## Profile: `{name}` training, size `{settings['profile_size']}`, "
            f"L={settings['profile_length']} (top ops by self CPU time)\n"
        )
        rows = [
            [
                f"`{op['op']}`",
                f"{op['self_cpu_ms_per_step']:.0f}",
                f"{op['self_cpu_percent']:.1f}%",
                f"{op['calls_per_step']:.0f}",
            ]
            for op in ops
        ]
        parts.append(markdown_table(["op", "self CPU ms / step", "share", "calls / step"], rows))
    return "\n".join(parts) + "\n"


def utilisation_table(throughput: list[dict[str, Any]], size: str) -> str:
    """Per mode and length: median [min] CPU time / wall time, and the 1-min load average before -> after."""
    records = [r for r in throughput if r["size"] == size]
    lengths = sorted({r["length"] for r in records})
    body = []
    for mode in MODES:
        cells = []
        for length in lengths:
            block = [r for r in records if r["mode"] == mode and r["length"] == length]
            values = [u for r in block for u in r["cpu_utilisation"]]
            load = f"{block[0]['machine_before']['loadavg_1min']:.1f}→{block[0]['machine_after']['loadavg_1min']:.1f}"
            cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}], load {load}")
        body.append([mode, *cells])
    return markdown_table(["mode"] + [f"L={n}" for n in lengths], body)


def decoding_table(records: list[dict[str, Any]]) -> str:
    reference = next(r for r in records if r["contender"] == DECODER_BASELINE)
    first = records[0]
    body = [
        [
            r["contender"],
            f"{r['tokens_per_s']:,.0f}",
            ratio(r["tokens_per_s"] / reference["tokens_per_s"]),
            f"{r['cache_bytes_per_token']:,.0f}",
            ratio(r["cache_bytes_per_token"] / reference["cache_bytes_per_token"]),
            f"{statistics.median(r['cpu_utilisation']):.2f}",
        ]
        for r in records
    ]
    header = ["decoder", "generated tokens/s", "vs GPT-2", "cache bytes/token", "vs GPT-2", "CPU util."]
    return (
        f"Batch {first['batch_size']}, prompt {first['prompt_length']} (25% of rows left-padded), "
        f"{first['new_tokens']} new tokens per row.\n\n" + markdown_table(header, body)
    )


def compiled_decoding_table(records: list[dict[str, Any]]) -> str:
    body = [
        [
            r["contender"],
            f"{r['eager_dynamic_tokens_per_s']:,.0f}",
            f"{r['eager_static_tokens_per_s']:,.0f}",
            f"{r['compiled_static_tokens_per_s']:,.0f}",
            ratio(r["compiled_vs_eager_dynamic"]),
            f"{r['compile_seconds']:.0f}",
            "yes" if r["same_tokens"] else "NO",
        ]
        for r in records
    ]
    header = ["decoder", "eager, dynamic cache", "eager, static cache", "compiled, static cache",
              "compiled vs eager", "first (compiling) run s", "same tokens"]  # fmt: skip
    first = records[0]
    return (
        f"Decoding steps' tokens/s (prefill excluded), one prompt of {first['prompt_length']} tokens, "
        f"{first['new_tokens']} new tokens.\n\n" + markdown_table(header, body)
    )


def plot(results: dict[str, Any], out: Path) -> list[str]:
    """Throughput vs length and memory vs length, one PNG of each per size (mixtures dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = []
    kinds = (
        ("throughput", "tokens_per_s", "tokens/s", 1),
        ("memory", "model_peak_bytes", "peak RSS above baseline (MiB)", 2**20),
    )
    for size in results["settings"]["sizes"]:
        rows = [r for r in results["summary"] if r["size"] == size]
        contenders = list(dict.fromkeys(r["contender"] for r in rows))
        lengths = sorted({r["length"] for r in rows})
        for kind, quantity, ylabel, scale in kinds:
            if not any(r.get(f"train_{quantity}") for r in rows):
                continue
            figure, axes = plt.subplots(1, 2, figsize=(13, 5))
            for axis, mode in zip(axes, MODES):
                key = f"{mode}_{quantity}"
                for index, contender in enumerate(contenders):
                    points = sorted(
                        (r["length"], r[key] / scale)
                        for r in rows
                        if r["contender"] == contender and r.get(key)
                    )
                    style = {
                        "color": plt.cm.tab20(index % 20),
                        "linestyle": "--" if "+" in contender else "-",
                    }
                    if contender == BASELINE:
                        style = {"color": "black", "linewidth": 2.5}
                    axis.plot(*zip(*points), marker="o", label=contender, **style)
                axis.set_xscale("log", base=2)
                axis.set_yscale("log")
                axis.set(xlabel="sequence length", ylabel=ylabel, title=f"{size}: {mode}")
                axis.set_xticks(lengths, [str(n) for n in lengths])
                axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                axis.grid(True, alpha=0.3)
            axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
            figure.tight_layout()
            path = out / f"{kind}_{size}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            files.append(path.name)
    return files


def configuration_text(configuration: str) -> str:
    """One line on what the contenders of a run share."""
    if configuration in EQUAL_ATTENTION_DROPOUT:
        dropout = EQUAL_ATTENTION_DROPOUT[configuration]
        return f"**{configuration}** (every contender: attention dropout {dropout:g}, vocabulary logits at every token)."
    return (
        "**library defaults** (HF BERT: attention dropout 0.1; Synthesizers: attention dropout 0, "
        "logits only at masked positions)."
    )


__all__ = [
    "TARGETS",
    "Target",
    "compare_contenders",
    "evaluate_targets",
    "plot",
    "render_markdown",
    "scaling_exponents",
    "scaling_table",
]
