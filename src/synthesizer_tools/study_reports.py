"""Reports of a study: the per-variant summary rows, Markdown tables and matplotlib plots.

`studies.run_study` trains the runs; this module turns their records (one JSON per run) into `results.json`,
`tables.md` and PNGs. It needs no training library, only numpy (and matplotlib for the plots).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .tasks import get_task

# objective -> (metric key, label, higher is better) of its headline number
HEADLINE_METRICS: dict[str, tuple[str, str, bool]] = {
    "mlm": ("loss", "valid log-ppl", False),
    "causal_lm": ("loss", "valid log-ppl", False),
    "classification": ("accuracy", "accuracy (%)", True),
    "token_classification": ("accuracy", "token accuracy (%)", True),
    "glue": ("score", "score (x100)", True),
}
OBJECTIVES = tuple(HEADLINE_METRICS)
LM_OBJECTIVES = ("mlm", "causal_lm")
PERCENT_OBJECTIVES = ("classification", "token_classification", "glue")
LOCALITY_OFFSETS = (-3, -2, -1, 0, 1, 2, 3)  # key offsets j - i reported by `attention_by_offset`


class ReportedStudy(Protocol):
    """What the reports read of a study (a `study_config.StudyConfig`, which reads OBJECTIVES from here)."""

    name: str
    objective: str
    variants: Sequence[str]
    convergence_baseline: str | None
    attention_plot_variants: Sequence[str] | None


# ----------------------------------------------------------------------------------------------------------
# Summary and tables
# ----------------------------------------------------------------------------------------------------------


def headline_metric(objective: str) -> tuple[str, str, bool]:
    """(metric key, label, higher is better) of an objective."""
    return HEADLINE_METRICS[objective]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def steps_to_reach(curve: Sequence[Sequence[float]], target: float) -> float | None:
    """First logged step whose value is at or below `target` (None if never)."""
    return next((step for step, value in curve if value <= target), None)


def summarize_runs(study: ReportedStudy, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, variant): headline metric mean/std and per seed, throughput, parameters."""
    key, _, _ = headline_metric(study.objective)
    scale = 100.0 if study.objective in PERCENT_OBJECTIVES else 1.0
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[(record["dataset"], record["variant"])].append(record)
    rows = []
    for (dataset, variant), runs in grouped.items():
        values = [scale * r["metrics"][key] for r in runs]
        mean, std = mean_std(values)
        row = {
            "dataset": dataset,
            "variant": variant,
            "mean": mean,
            "std": std,
            "per_seed": {r["seed"]: v for r, v in zip(runs, values)},
            # Contention from other jobs only slows a run down, so the fastest seed is the cleanest timing.
            "steps_per_second": max(r["steps_per_second"] for r in runs),
            "samples_per_second": max(r["samples_per_second"] for r in runs),
            "num_parameters": runs[0]["num_parameters"],
        }
        if study.objective in LM_OBJECTIVES:
            row["perplexity"] = mean_std([r["metrics"]["perplexity"] for r in runs])
        if runs[0]["tokens_per_second"]:
            row["tokens_per_second"] = max(r["tokens_per_second"] for r in runs)
        if all(r.get("peak_rss_bytes") for r in runs):
            row["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
        rows.append(row)
    for row in rows:  # the speed claims of the paper are relative to dot-product attention
        reference = [r for r in rows if r["dataset"] == row["dataset"] and r["variant"] == "dot"]
        if reference:
            row["steps_per_second_vs_dot"] = row["steps_per_second"] / reference[0]["steps_per_second"]
    add_convergence(study, records, rows)
    return rows


def add_convergence(
    study: ReportedStudy, records: Sequence[Mapping[str, Any]], rows: list[dict[str, Any]]
) -> None:
    """With `convergence_baseline`, add the steps each run needs to reach the baseline's mean final eval loss."""
    baseline = study.convergence_baseline
    if baseline is None:
        return
    for row in rows:
        reference = [r for r in rows if r["dataset"] == row["dataset"] and r["variant"] == baseline]
        if not reference:
            continue
        target = reference[0]["mean"]
        runs = [r for r in records if r["dataset"] == row["dataset"] and r["variant"] == row["variant"]]
        row["baseline_loss"] = target
        row["steps_to_baseline"] = {
            r["seed"]: steps_to_reach(r["curves"].get("eval_loss", []), target) for r in runs
        }


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def format_tables(study: ReportedStudy, rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: the per-variant table of each dataset (mean ± std, every seed, throughput, parameters)."""
    _, label, _ = headline_metric(study.objective)
    digits = 3 if study.objective in LM_OBJECTIVES else 1
    convergence = any("steps_to_baseline" in row for row in rows)
    lines = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        header = ["variant", f"{label} mean ± std", "per seed"]
        if study.objective in LM_OBJECTIVES:
            header.append("perplexity")
        header += ["train steps/s*", "samples/s*"]
        if any("tokens_per_second" in row for row in rows):
            header.append("tokens/s*")
        speed_vs_dot = any("steps_per_second_vs_dot" in row for row in rows)
        if speed_vs_dot:
            header.append("steps/s vs `dot`")
        memory = any("peak_rss_bytes" in row for row in rows)
        if memory:
            header.append("peak RSS (MB)**")
        header.append("parameters")
        if convergence:
            header.append(f"steps to reach {study.convergence_baseline}'s final loss (per seed)")
        lines += [f"**{dataset}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in (r for r in rows if r["dataset"] == dataset):
            seeds = ", ".join(f"s{seed}: {_fmt(v, digits)}" for seed, v in row["per_seed"].items())
            cells = [
                f"`{row['variant']}`",
                f"{_fmt(row['mean'], digits)} ± {_fmt(row['std'], digits)}",
                seeds,
            ]
            if "perplexity" in row:
                cells.append(_fmt(row["perplexity"][0], 1))
            cells += [_fmt(row["steps_per_second"], 2), _fmt(row["samples_per_second"], 1)]
            if "tokens_per_second" in row:
                cells.append(f"{row['tokens_per_second']:,.0f}")
            if speed_vs_dot:
                cells.append(
                    f"{row['steps_per_second_vs_dot']:.2f}x" if "steps_per_second_vs_dot" in row else "—"
                )
            if memory:
                cells.append(f"{row['peak_rss_bytes'] / 2**20:,.0f}" if "peak_rss_bytes" in row else "—")
            cells.append(f"{row['num_parameters']:,}")
            if convergence:
                steps = row.get("steps_to_baseline", {})
                cells.append(", ".join(f"s{s}: {'—' if v is None else v}" for s, v in steps.items()))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "\\* throughput of the fastest seed (optimisation steps only; other jobs can only slow a run down).\n"
    )
    if any("peak_rss_bytes" in row for row in rows):
        lines.append(
            "\\*\\* peak resident memory of the whole process while training (highest seed; data included).\n"
        )
    if study.objective == "glue":
        lines.append(format_task_matrix(rows))
    return "\n".join(lines)


def format_task_matrix(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown matrix variant x task (mean over seeds) with GLUE / SuperGLUE / overall averages."""
    tasks = list(dict.fromkeys(row["dataset"] for row in rows))
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    by_cell = {(row["variant"], row["dataset"]): row for row in rows}
    groups = {
        "GLUE avg": [t for t in tasks if get_task(t).benchmark == "glue"],
        "SuperGLUE avg": [t for t in tasks if get_task(t).benchmark == "superglue"],
        "all avg": tasks,
    }
    groups = {name: members for name, members in groups.items() if members}
    header = ["variant", *tasks, *groups]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in variants:
        cells = [f"`{variant}`"]
        for task in tasks:
            row = by_cell.get((variant, task))
            cells.append("" if row is None else f"{row['mean']:.1f} ± {row['std']:.1f}")
        for members in groups.values():
            present = [by_cell[(variant, t)]["mean"] for t in members if (variant, t) in by_cell]
            cells.append(f"{np.mean(present):.1f}" if len(present) == len(members) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def attention_by_offset(maps: np.ndarray, offsets: Sequence[int] = LOCALITY_OFFSETS) -> np.ndarray:
    """Head-averaged attention at key offset j - i, as a multiple of uniform attention: `[layers, offsets]`.

    Uniform means spreading each query's weight evenly over the keys it can see (the non-zero entries of its
    row: the causal mask and padding are respected), so 1.0 is "no preference" and a learned local window
    (paper Appendix A.5) shows as values above 1 next to offset 0.
    """
    mean = maps.astype(np.float64).mean(axis=1)  # [layers, L, L]
    visible = (mean > 0).sum(axis=-1, keepdims=True)  # keys each query can see
    ratio = mean * np.maximum(visible, 1)  # weight / (1 / visible)
    length = mean.shape[-1]
    result = np.zeros((mean.shape[0], len(offsets)))
    for column, offset in enumerate(offsets):
        queries = np.arange(max(0, -offset), min(length, length - offset))
        on_support = mean[:, queries, queries + offset] > 0
        values = ratio[:, queries, queries + offset]
        result[:, column] = [v[m].mean() if m.any() else 0.0 for v, m in zip(values, on_support)]
    return result


def format_locality_table(maps: Mapping[tuple[str, str], np.ndarray]) -> str:
    """Markdown: `attention_by_offset` per (dataset, variant, layer) of the first seed's saved maps."""
    header = ["dataset", "variant", "layer", *(f"{offset:+d}" for offset in LOCALITY_OFFSETS)]
    lines = [
        "**attention at key offset j - i, x uniform (mean over heads and queries; seed of the maps)**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (dataset, variant), value in maps.items():
        for layer, row in enumerate(attention_by_offset(value)):
            cells = [dataset, f"`{variant}`", str(layer + 1), *(f"{x:.2f}" for x in row)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------


def make_plots(
    study: ReportedStudy,
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping],
    maps: Mapping[tuple[str, str], np.ndarray],
    output_dir: Path,
) -> list[Path]:
    """Every plot that applies to the study, as PNGs in `output_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    name = study.name
    paths = [plot_learning_curves(study, records, output_dir / f"{name}_curves.png")]
    paths.append(plot_metric_and_throughput(study, rows, output_dir / f"{name}_metric_vs_throughput.png"))
    shown = study.attention_plot_variants  # a study of many variants may plot the maps of a few
    maps = {key: value for key, value in maps.items() if shown is None or key[1] in shown}
    if maps:
        paths.append(plot_attention_maps(maps, output_dir / f"{name}_attention.png"))
        paths.append(plot_attention_histograms(maps, output_dir / f"{name}_attention_hist.png"))
    return paths


def _curve_key(study: ReportedStudy) -> str:
    accuracy = ("classification", "token_classification")
    return "eval_accuracy" if study.objective in accuracy else "eval_loss"


def plot_learning_curves(study: ReportedStudy, records: Sequence[Mapping], path: Path) -> Path:
    """Validation curve per variant and dataset: mean over seeds, shaded min-max band."""
    import matplotlib.pyplot as plt

    key = _curve_key(study)
    datasets_ = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = plt.subplots(1, len(datasets_), figsize=(5 * len(datasets_), 3.6), squeeze=False)
    colours = plt.cm.tab10 if len(study.variants) <= 10 else plt.cm.tab20  # one colour per variant
    for ax, dataset in zip(axes[0], datasets_):
        for index, variant in enumerate(study.variants):
            curves = [
                r["curves"].get(key, [])
                for r in records
                if r["dataset"] == dataset and r["variant"] == variant
            ]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            steps = np.array([point[0] for point in curves[0][:length]])
            values = np.array([[point[1] for point in c[:length]] for c in curves])
            (line,) = ax.plot(steps, values.mean(0), marker=".", label=variant, color=colours(index % 20))
            ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
        ax.set(title=f"{study.name}: {dataset}", xlabel="training step", ylabel=key.removeprefix("eval_"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metric_and_throughput(study: ReportedStudy, rows: Sequence[Mapping], path: Path) -> Path:
    """Bars of the headline metric (mean ± std) and of training throughput per variant and dataset."""
    import matplotlib.pyplot as plt

    _, label, _ = headline_metric(study.objective)
    datasets_ = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(2, len(datasets_), figsize=(max(4.5, 3.2 * len(datasets_)), 6), squeeze=False)
    for column, dataset in enumerate(datasets_):
        subset = [r for r in rows if r["dataset"] == dataset]
        names = [r["variant"] for r in subset]
        x = np.arange(len(subset))
        colors = [f"C{i}" for i in range(len(subset))]
        top, bottom = axes[0][column], axes[1][column]
        top.bar(x, [r["mean"] for r in subset], yerr=[r["std"] for r in subset], color=colors, capsize=3)
        low = min(r["mean"] - r["std"] for r in subset)
        high = max(r["mean"] + r["std"] for r in subset)
        pad = max(0.15 * (high - low), 0.01 * abs(high), 1e-3)  # equal bars still get a readable axis
        top.set_ylim(low - pad, high + pad)
        top.set(title=dataset, ylabel=label)
        bottom.bar(x, [r["samples_per_second"] for r in subset], color=colors)
        bottom.set(ylabel="train samples / s (fastest seed)")
        for ax in (top, bottom):
            ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_attention_maps(maps: Mapping[tuple[str, str], np.ndarray], path: Path) -> Path:
    """One row per (dataset, variant, layer), one column per head: the attention map averaged over a batch."""
    import matplotlib.pyplot as plt

    panels = [(key, layer) for key, value in maps.items() for layer in range(value.shape[0])]
    heads = max(value.shape[1] for value in maps.values())
    fig, axes = plt.subplots(len(panels), heads, figsize=(2.2 * heads, 2.2 * len(panels)), squeeze=False)
    for row, ((dataset, variant), layer) in enumerate(panels):
        for head in range(heads):
            ax = axes[row][head]
            ax.imshow(maps[(dataset, variant)][layer, head], cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if head == 0:
                label = f"{variant}\nlayer {layer + 1}"
                ax.set_ylabel(label if len({d for d, _ in maps}) == 1 else f"{dataset}\n{label}", fontsize=8)
            if row == 0:
                ax.set_title(f"head {head + 1}", fontsize=8)
    fig.suptitle(
        "attention weights (rows: queries, columns: keys), mean over 8 validation inputs", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / len(panels)))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_attention_histograms(maps: Mapping[tuple[str, str], np.ndarray], path: Path) -> Path:
    """Histogram of the (non-masked) attention weights per variant and layer, as the paper's Figure 2."""
    import matplotlib.pyplot as plt

    keys = list(maps)
    layers = max(value.shape[0] for value in maps.values())
    fig, axes = plt.subplots(len(keys), layers, figsize=(3.2 * layers, 1.9 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        for layer in range(maps[key].shape[0]):
            weights = maps[key][layer].ravel()
            ax = axes[row][layer]
            ax.hist(weights[weights > 0], bins=50, log=True, color=f"C{row}")
            ax.set_title(f"{key[1]} L{layer + 1}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = [
    "LM_OBJECTIVES",
    "OBJECTIVES",
    "attention_by_offset",
    "format_locality_table",
    "format_tables",
    "make_plots",
    "summarize_runs",
]
