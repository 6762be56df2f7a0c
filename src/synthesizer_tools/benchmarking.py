"""CPU benchmark of the Synthesizer variants against Hugging Face BERT (sdpa) and GPT-2 of the same size.

Every number is measured in the run that reports it. Contenders share dims, batch and thread count; they
are interleaved in a rotating order and summarised by medians over rounds, and the report gives ratios
against HF `BertForMaskedLM` (sdpa) and against the project's own `dot`, so that the noise of a shared
machine cancels as far as it can. Peak memory comes from a fresh process per configuration (a child forked
from a forkserver that has only imported the libraries), decoding from `generate` on causal LMs.

`main(argv)` is the command line (`python -m synthesizer_tools.benchmarking --help`). The variants measured by
default are every synthesizer of the registry alone and, for those without token keys, mixed with `dot`.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import math
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, PreTrainedModel

import synthesizer_hf
from synthesizer_hf.caching import cache_storage_bytes
from synthesizer_hf.configuration_synthesizer import SynthesizerConfig
from synthesizer_hf.modeling_synthesizer import SynthesizerForCausalLM, SynthesizerForMaskedLM, output_cache
from synthesizer_hf.synthesizers import SYNTHESIZERS

from .records import command_line, count_parameters, environment_info

# Model dims; "micro" only exists so that the smoke test finishes in seconds.
SIZES: dict[str, dict[str, int]] = {
    "micro": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "small": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
}
BASELINE = "bert-sdpa"
BERT_WITHOUT_ATTENTION_DROPOUT = "bert-sdpa-attn-dropout-0"
DECODER_BASELINE = "gpt2-sdpa"
REFERENCE_VARIANT = "dot"
# Every synthesizer alone, then those without token keys mixed with dot-product attention (the paper's R+V,
# D+V, FR+V, ...): a new synthesizer class is benchmarked without editing this module.
PURE_SYNTHESIZERS = tuple(name for name, cls in SYNTHESIZERS.items() if not cls.uses_token_keys)
VARIANTS = (*SYNTHESIZERS, *(f"{name}+{REFERENCE_VARIANT}" for name in PURE_SYNTHESIZERS))
# Input-independent synthesizers (random and its relatives): one softmax serves the whole batch.
RANDOM_FAMILY = tuple(name for name, cls in SYNTHESIZERS.items() if cls.input_independent)
MODES = ("train", "inference")
PAD_TOKEN_ID = 0


@dataclass
class Settings:
    """Everything that defines a run (stored in the JSON next to the results)."""

    sizes: list[str]
    lengths: list[int]
    tokens: int
    rounds: int
    threads: int
    min_time: float
    contenders: list[str]
    memory: bool
    decode: bool
    profile: bool
    out: str
    pad_fraction: float = 0.25
    vocab_size: int = 8000
    decode_batch: int = 8
    decode_prompt: int = 128
    decode_new_tokens: int = 128
    profile_size: str = "small"
    profile_length: int = 512
    profile_contenders: list[str] = field(default_factory=lambda: [BASELINE, "random", "random+dot"])
    profile_steps: int = 2
    seed: int = 0
    size_lengths: dict[str, list[int]] = field(default_factory=dict)
    configuration: str = "equal"  # see masked_lm_config

    def lengths_of(self, size: str) -> list[int]:
        """The sequence lengths measured for one size (`size_lengths` overrides `lengths`)."""
        return self.size_lengths.get(size, self.lengths)


# equal configurations: the attention dropout every contender gets (and logits at every token)
EQUAL_ATTENTION_DROPOUT = {"equal": 0.0, "equal-dropout": 0.1}
CONFIGURATIONS = (*EQUAL_ATTENTION_DROPOUT, "defaults")


def masked_lm_config(contender: str, size: str, length: int, vocab_size: int, configuration: str = "equal"):
    """Config of one encoder contender; position tables (and the synthesizer length L) cover `length`.

    `equal` (the headline comparison): every contender does the same work besides attention: attention
    dropout 0 (so HF BERT-sdpa takes its fused kernel, as the Synthesizers' fast paths do) and vocabulary
    logits at every token. `equal-dropout`: the same with attention dropout 0.1 for every contender (BERT's
    default; on CPU every model then takes a materialising path). `defaults`: each library's defaults: HF BERT with attention dropout 0.1, the
    Synthesizers with attention dropout 0 and `sparse_prediction` (vocabulary logits only at the masked
    positions, as the pretraining script trains); `bert-sdpa-attn-dropout-0` then shows BERT without
    attention dropout.
    """
    if configuration not in CONFIGURATIONS:
        raise ValueError(f"configuration must be one of {CONFIGURATIONS}, got {configuration!r}.")
    dims = SIZES[size]
    equal = configuration in EQUAL_ATTENTION_DROPOUT
    if contender in (BASELINE, BERT_WITHOUT_ATTENTION_DROPOUT):
        if equal:
            extra = {"attention_probs_dropout_prob": EQUAL_ATTENTION_DROPOUT[configuration]}
        else:
            extra = (
                {"attention_probs_dropout_prob": 0.0} if contender == BERT_WITHOUT_ATTENTION_DROPOUT else {}
            )
        return BertConfig(
            vocab_size=vocab_size, max_position_embeddings=length, attn_implementation="sdpa", **dims, **extra
        )
    return SynthesizerConfig(
        attention_type=contender,
        vocab_size=vocab_size,
        max_position_embeddings=length,
        attn_implementation="sdpa",
        attention_probs_dropout_prob=EQUAL_ATTENTION_DROPOUT.get(configuration, 0.0),
        sparse_prediction=not equal,
        **dims,
    )


def build_masked_lm(
    contender: str, size: str, length: int, vocab_size: int, seed: int, configuration: str = "equal"
) -> PreTrainedModel:
    """HF BERT-sdpa or `SynthesizerForMaskedLM`, built from a config with seeded weights."""
    torch.manual_seed(seed)
    config = masked_lm_config(contender, size, length, vocab_size, configuration)
    return BertForMaskedLM(config) if isinstance(config, BertConfig) else SynthesizerForMaskedLM(config)


def build_causal_lm(contender: str, size: str, length: int, vocab_size: int, seed: int) -> PreTrainedModel:
    """HF GPT-2 (sdpa) of the same dims, or `SynthesizerForCausalLM` with the given attention type."""
    torch.manual_seed(seed)
    dims = SIZES[size]
    if contender == DECODER_BASELINE:
        config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=dims["hidden_size"],
            n_layer=dims["num_hidden_layers"],
            n_head=dims["num_attention_heads"],
            n_inner=dims["intermediate_size"],
            n_positions=length,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=PAD_TOKEN_ID,
            attn_implementation="sdpa",
        )
        return GPT2LMHeadModel(config)
    config = SynthesizerConfig(
        attention_type=contender,
        vocab_size=vocab_size,
        max_position_embeddings=length,
        attn_implementation="sdpa",
        **dims,
    )
    return SynthesizerForCausalLM(config)


def padded_rows(batch_size: int, pad_fraction: float) -> int:
    """How many rows of a batch are padded: ceil(fraction * batch), none for a single row."""
    return math.ceil(pad_fraction * batch_size) if batch_size > 1 else 0


def make_batch(
    batch_size: int, length: int, vocab_size: int, pad_fraction: float, seed: int, left: bool = False
) -> dict[str, torch.Tensor]:
    """Random tokens; `pad_fraction` of the rows padded (right, or left for prompts) to a random length.

    Padded rows keep between a quarter of the length and all but one token. MLM labels: 15% of the real
    tokens, -100 elsewhere.
    """
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    rows = torch.randperm(batch_size, generator=generator)[: padded_rows(batch_size, pad_fraction)]
    for row in rows.tolist():
        keep = int(torch.randint(max(1, length // 4), length, (1,), generator=generator))
        padding = slice(0, length - keep) if left else slice(keep, length)
        attention_mask[row, padding] = 0
        input_ids[row, padding] = PAD_TOKEN_ID
    chosen = torch.rand(batch_size, length, generator=generator) < 0.15
    labels = torch.where(chosen & attention_mask.bool(), input_ids, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _cpu_flash_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward_flops(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels only; the CPU flash kernel gets the same formulas.
CPU_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
}


def count_flops(step: Callable[[], None]) -> int:
    """Matmul FLOPs (mm, bmm, addmm, attention kernels) that one call of `step` performs."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_FLOP_FORMULAS)
    with counter:
        step()
    return counter.get_total_flops()


def matmul_peak(repeats: int = 5) -> dict[str, float]:
    """fp32 matmul GFLOP/s of this machine at the current thread count (median per shape, best shape)."""
    shapes = {"1024x1024x1024": (1024, 1024, 1024), "2048x2048x2048": (2048, 2048, 2048)}
    result = {}
    for name, (n, k, m) in shapes.items():
        a, b = torch.randn(n, k), torch.randn(k, m)
        a @ b
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - start)
        result[name] = 2 * n * k * m / statistics.median(seconds) / 1e9
    result["peak_gflops"] = max(result.values())
    return result


class EncoderContender:
    """One masked LM with its AdamW optimizer and the batch it is measured on.

    The fused AdamW kernel, as the Trainer uses it (`adamw_torch_fused`, its default on torch >= 2.8): the
    per-tensor loop costs 7x more on the random synthesizers' L x L tables (0.42 s vs 0.06 s a step for
    4 x 4 x 2048^2 parameters on one CPU thread)."""

    def __init__(self, name: str, model: PreTrainedModel, batch: dict[str, torch.Tensor]):
        self.name = name
        self.model = model
        self.batch = batch
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def train_step(self, batch: dict[str, torch.Tensor] | None = None) -> None:
        """Forward + backward + AdamW step (dropout on, as in real training)."""
        self.model.train()
        self.model(**(batch or self.batch)).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def forward_backward(self, batch: dict[str, torch.Tensor] | None = None) -> None:
        """The part of a training step that does matmuls (what the FLOP count covers)."""
        self.model.train()
        self.model(**(batch or self.batch)).loss.backward()
        self.model.zero_grad(set_to_none=True)

    def inference_step(self, batch: dict[str, torch.Tensor] | None = None) -> None:
        """One forward pass without gradients, logits over the whole batch."""
        batch = batch or self.batch
        self.model.eval()
        with torch.inference_mode():
            self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def step(self, mode: str) -> Callable[[], None]:
        return self.train_step if mode == "train" else self.inference_step


def timed(step: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Wall seconds and process CPU seconds per call of `step`.

    With one torch thread, CPU time / wall time is the share of the core this process got: about 1 on a
    quiet machine, lower when other processes took the core away.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def rotations(items: list, rounds: int) -> Iterable[list]:
    """The items in a different cyclic order each round, so no contender always runs first or last."""
    for index in range(rounds):
        shift = index % len(items)
        yield items[shift:] + items[:shift]


def machine_state() -> dict[str, float]:
    """Load averages and system-wide CPU % since the previous call (disturbed runs show up here)."""
    return {"loadavg_1min": os.getloadavg()[0], "system_cpu_percent": psutil.cpu_percent(interval=None)}


def measure_throughput(size: str, length: int, settings: Settings) -> list[dict[str, Any]]:
    """Training and inference tokens/s of every contender at one (size, length), interleaved by rounds."""
    batch_size = max(1, settings.tokens // length)
    batch = make_batch(batch_size, length, settings.vocab_size, settings.pad_fraction, settings.seed)
    before = machine_state()
    contenders = [
        EncoderContender(
            name,
            build_masked_lm(name, size, length, settings.vocab_size, settings.seed, settings.configuration),
            batch,
        )
        for name in settings.contenders
    ]
    # Matmul FLOPs per token do not depend on the batch size: count them on one row.
    one_row = {key: value[:1] for key, value in batch.items()}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for contender in contenders:
        sizes = count_parameters(contender.model)
        for mode in MODES:
            counted = contender.forward_backward if mode == "train" else contender.inference_step
            flops = count_flops(lambda counted=counted: counted(one_row))
            warm, _ = timed(contender.step(mode), 1)
            records[contender.name, mode] = {
                "size": size,
                "length": length,
                "contender": contender.name,
                "mode": mode,
                "batch_size": batch_size,
                "tokens_per_batch": batch_size * length,
                "real_tokens_per_batch": int(batch["attention_mask"].sum()),
                **sizes,
                "flops_per_token": flops / length,
                "repeats": max(1, math.ceil(settings.min_time / warm)),
                "seconds": [],
                "cpu_seconds": [],
            }
    for order in rotations(contenders, settings.rounds):
        for mode in MODES:
            for contender in order:
                record = records[contender.name, mode]
                seconds, cpu_seconds = timed(contender.step(mode), record["repeats"])
                record["seconds"].append(seconds)
                record["cpu_seconds"].append(cpu_seconds)
    after = machine_state()
    del contenders
    gc.collect()
    for record in records.values():
        finish(record, record["tokens_per_batch"])
        record["machine_before"], record["machine_after"] = before, after
    return list(records.values())


def finish(record: dict[str, Any], tokens: int) -> None:
    """Medians over rounds: tokens per wall second, tokens per CPU second, and CPU utilisation per round."""
    record["cpu_utilisation"] = [cpu / wall for cpu, wall in zip(record["cpu_seconds"], record["seconds"])]
    record["tokens_per_s"] = tokens / statistics.median(record["seconds"])
    record["tokens_per_cpu_s"] = tokens / statistics.median(record["cpu_seconds"])


def max_rss_bytes() -> int:
    """High-water mark of this process's resident set (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(spec: dict[str, Any], connection) -> None:
    """Run one configuration in this fresh process and send back its peak RSS.

    Training: a 1-row, 8-token step first materialises the AdamW state, then one full step is measured, so
    the peak holds weights, gradients, optimizer state and activations together, as in steady training.
    """
    torch.set_num_threads(spec["threads"])
    baseline = max_rss_bytes()
    model = build_masked_lm(
        spec["contender"],
        spec["size"],
        spec["length"],
        spec["vocab_size"],
        spec["seed"],
        spec["configuration"],
    )
    batch_size = max(1, spec["tokens"] // spec["length"])
    batch = make_batch(batch_size, spec["length"], spec["vocab_size"], spec["pad_fraction"], spec["seed"])
    contender = EncoderContender(spec["contender"], model, batch)
    if spec["mode"] == "train":
        contender.train_step({key: value[:1, :8] for key, value in batch.items()})
        contender.train_step()
    else:
        contender.inference_step()
    connection.send({"baseline_rss_bytes": baseline, "peak_rss_bytes": max_rss_bytes()})


def start_memory_server() -> multiprocessing.context.BaseContext:
    """Start a forkserver that imports the model code now, so that the memory children measure the same
    code as the rest of the run even if the sources change meanwhile; every child forks from it clean."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    multiprocessing.forkserver.ensure_running()
    return context


def measure_memory(context: multiprocessing.context.BaseContext, settings: Settings) -> list[dict[str, Any]]:
    """Peak RSS of every (size, length, contender, mode), each in its own freshly forked process."""
    records = []
    for size in settings.sizes:
        for length in settings.lengths_of(size):
            for contender in settings.contenders:
                for mode in MODES:
                    spec = {**asdict(settings), "size": size, "length": length, "contender": contender}
                    spec["mode"] = mode
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=memory_child, args=(spec, sender))
                    process.start()
                    sender.close()
                    try:
                        result = receiver.recv()
                    except EOFError:
                        result = {"error": "child process died (out of memory?)"}
                    process.join()
                    result.update(size=size, length=length, contender=contender, mode=mode)
                    result["exitcode"] = process.exitcode
                    if "peak_rss_bytes" in result:
                        result["model_peak_bytes"] = result["peak_rss_bytes"] - result["baseline_rss_bytes"]
                    records.append(result)
    return records


def cache_bytes_per_token(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> float:
    """Bytes of the returned cache tensors per cached token (batch x prompt positions)."""
    with torch.inference_mode():
        cache = output_cache(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=True)
        )
    return cache_storage_bytes(cache) / batch["input_ids"].numel()


def measure_decoding(size: str, settings: Settings) -> list[dict[str, Any]]:
    """Greedy generation tokens/s and cache bytes per token of each causal LM, interleaved by rounds.

    Prompts are left-padded (25% of rows by default), as a decoder batch is; every row generates exactly
    `decode_new_tokens` tokens. Tokens/s counts generated tokens (prefill time included).
    """
    length = settings.decode_prompt + settings.decode_new_tokens
    batch = make_batch(
        settings.decode_batch,
        settings.decode_prompt,
        settings.vocab_size,
        settings.pad_fraction,
        settings.seed,
        left=True,
    )
    names = [DECODER_BASELINE] + [name for name in settings.contenders if not name.startswith("bert")]
    models = {
        name: build_causal_lm(name, size, length, settings.vocab_size, settings.seed).eval() for name in names
    }

    def generate(model: PreTrainedModel) -> Callable[[], None]:
        def call() -> None:
            with torch.inference_mode():
                model.generate(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    max_new_tokens=settings.decode_new_tokens,
                    min_new_tokens=settings.decode_new_tokens,
                    do_sample=False,
                    pad_token_id=PAD_TOKEN_ID,
                )

        return call

    records = {}
    for name, model in models.items():
        generate(model)()  # warm-up
        records[name] = {
            "size": size,
            "contender": name,
            "batch_size": settings.decode_batch,
            "prompt_length": settings.decode_prompt,
            "new_tokens": settings.decode_new_tokens,
            **count_parameters(model),
            "cache_bytes_per_token": cache_bytes_per_token(model, batch),
            "seconds": [],
            "cpu_seconds": [],
        }
    for order in rotations(names, settings.rounds):
        for name in order:
            seconds, cpu_seconds = timed(generate(models[name]), 1)
            records[name]["seconds"].append(seconds)
            records[name]["cpu_seconds"].append(cpu_seconds)
    for record in records.values():
        finish(record, settings.decode_batch * settings.decode_new_tokens)
    return list(records.values())


def profile_training(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Top ops by self CPU time over `profile_steps` training steps (after one warm-up) per contender."""
    size, length = settings.profile_size, settings.profile_length
    batch_size = max(1, settings.tokens // length)
    batch = make_batch(batch_size, length, settings.vocab_size, settings.pad_fraction, settings.seed)
    result = {}
    for name in settings.profile_contenders:
        contender = EncoderContender(
            name,
            build_masked_lm(name, size, length, settings.vocab_size, settings.seed, settings.configuration),
            batch,
        )
        contender.train_step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            for _ in range(settings.profile_steps):
                contender.train_step()
        events = profiler.key_averages()
        total = sum(event.self_cpu_time_total for event in events)
        top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:15]
        result[name] = [
            {
                "op": event.key,
                "self_cpu_ms_per_step": event.self_cpu_time_total / 1000 / settings.profile_steps,
                "self_cpu_percent": 100 * event.self_cpu_time_total / total,
                "calls_per_step": event.count / settings.profile_steps,
            }
            for event in top
        ]
        del contender
        gc.collect()
    return result


@dataclass(frozen=True)
class Target:
    """A performance goal: `metric` of each contender at each length compared with `threshold`."""

    description: str
    contenders: tuple[str, ...]
    metric: str
    lengths: tuple[int, ...]
    threshold: float
    at_least: bool = True


LONG = (512, 1024, 2048, 4096)
TARGETS = (
    Target("training >= 1.5x BERT at L=2048", RANDOM_FAMILY, "train_vs_bert", (2048,), 1.5),
    Target("training >= 1.2x BERT at L=512", RANDOM_FAMILY, "train_vs_bert", (512,), 1.2),
    Target("inference >= 1.2x BERT at L=2048", RANDOM_FAMILY, "inference_vs_bert", (2048,), 1.2),
    Target(
        "training peak memory <= 0.75x BERT at L=2048",
        RANDOM_FAMILY,
        "train_memory_vs_bert",
        (2048,),
        0.75,
        False,
    ),
    Target("training >= 1.1x BERT at L>=512", ("factorized_dense",), "train_vs_bert", LONG, 1.1),
    Target("training >= 1.0x BERT at L>=512", ("dense",), "train_vs_bert", LONG, 1.0),
    Target(
        "training >= 1.0x BERT at L=512",
        ("random+dot", "factorized_random+dot"),
        "train_vs_bert",
        (512,),
        1.0,
    ),
    Target("training >= 0.9x BERT at L=512", ("dense+dot",), "train_vs_bert", (512,), 0.9),
    Target("training >= 40% of FLOP limit at L=512", VARIANTS, "train_flop_fraction", (512,), 0.4),
    Target("decoder cache bytes/token <= 0.55x GPT-2", PURE_SYNTHESIZERS, "cache_vs_gpt2", (0,), 0.55, False),
    # (PURE_SYNTHESIZERS: decoders whose layers have no dot-product component cache values only)
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
    values = {(r["length"], r["contender"]): r for r in results["summary"] if r["size"] == size}
    decoding = {r["contender"]: r for r in results["decoding"] if r["size"] == size}
    if DECODER_BASELINE in decoding:
        reference = decoding[DECODER_BASELINE]["cache_bytes_per_token"]
        for name, record in decoding.items():
            values[0, name] = {"cache_vs_gpt2": record["cache_bytes_per_token"] / reference}
    verdicts = []
    for target in TARGETS:
        for contender in target.contenders:
            lengths = [n for n in target.lengths if (n, contender) in values] or [None]
            for length in lengths:
                row = values.get((length, contender), {})
                value = row.get(target.metric)
                verdicts.append(
                    {
                        "size": size,
                        "target": target.description,
                        "contender": contender,
                        "length": length or None,
                        "value": value,
                        "met": None if value is None else (value >= target.threshold) == target.at_least,
                        "value_cpu_time": row.get(f"{target.metric}_cpu"),
                        "cpu_utilisation": row.get(f"{target.metric.split('_')[0]}_cpu_utilisation"),
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
    ("Parameters (millions)", "parameters", lambda v: f"{v / 1e6:.2f}"),
)


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
        f"started {env['started']}; wall time {results['wall_seconds']:.0f} s; allocator environment: "
        f"{' '.join(f'{k}={v}' for k, v in env.get('allocator_environment', {}).items()) or 'none (glibc defaults)'}.  ",
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


def plot(results: dict[str, Any], out: Path) -> list[str]:
    """Throughput vs length and memory vs length, one PNG of each per size (mixtures dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = []
    kinds = (
        ("throughput", ("train_tokens_per_s", "inference_tokens_per_s"), "tokens/s", 1),
        (
            "memory",
            ("train_model_peak_bytes", "inference_model_peak_bytes"),
            "peak RSS above baseline (MiB)",
            2**20,
        ),
    )
    for size in results["settings"]["sizes"]:
        rows = [r for r in results["summary"] if r["size"] == size]
        contenders = list(dict.fromkeys(r["contender"] for r in rows))
        lengths = sorted({r["length"] for r in rows})
        for kind, keys, ylabel, scale in kinds:
            if not any(r.get(keys[0]) for r in rows):
                continue
            figure, axes = plt.subplots(1, 2, figsize=(13, 5))
            for axis, key in zip(axes, keys):
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
                axis.set(xlabel="sequence length", ylabel=ylabel, title=f"{size}: {key.split('_')[0]}")
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


def source_digest() -> str:
    """Short sha256 of the model sources: which model code the numbers belong to."""
    package = Path(synthesizer_hf.__file__).parent
    names = (
        "configuration_synthesizer.py",
        "modeling_synthesizer.py",
        "synthesizers.py",
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


def parse_args(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny size, L=128/512, 1024 tokens: < 3 min")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES))
    parser.add_argument("--lengths", nargs="+", type=int)
    parser.add_argument(
        "--size-lengths",
        nargs="*",
        metavar="SIZE=L,L",
        help="lengths for one size instead of --lengths (full-run default: small=512,1024,2048)",
    )
    parser.add_argument("--tokens", type=int, help="token positions per batch (batch = tokens / L)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (the median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument(
        "--min-time", type=float, help="repeat a step until one measurement lasts this long (s)"
    )
    parser.add_argument(
        "--contenders", nargs="+", default=[BASELINE, BERT_WITHOUT_ATTENTION_DROPOUT, *VARIANTS]
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak-memory runs")
    parser.add_argument("--no-decode", action="store_true", help="skip the causal-LM decoding benchmark")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, help="torch.profiler op table")
    parser.add_argument("--decode-batch", type=int)
    parser.add_argument("--decode-prompt", type=int)
    parser.add_argument("--decode-new-tokens", type=int)
    parser.add_argument("--profile-size", choices=list(SIZES))
    parser.add_argument(
        "--profile-length", type=int, default=512, help="sequence length of the profiled steps"
    )
    parser.add_argument(
        "--profile-contenders",
        nargs="+",
        default=[BASELINE, "random", "random+dot"],
        help="profiled contenders",
    )
    parser.add_argument(
        "--configuration",
        choices=CONFIGURATIONS,
        default="equal",
        help="equal: the same attention dropout (0) and head work (logits at every token) for every contender; "
        "equal-dropout: the same with attention dropout 0.1; defaults: each library's defaults",
    )
    parser.add_argument("--out", default="runs/benchmark", help="results directory")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "sizes": ["tiny"] if quick else ["tiny", "small"],
        "lengths": [128, 512] if quick else [128, 512, 2048],
        "size_lengths": [] if quick else ["small=512,1024,2048"],
        "tokens": 1024 if quick else 4096,
        "rounds": 3,
        "min_time": 0.2 if quick else 0.5,
        "profile": not quick,
        "decode_batch": 4 if quick else 8,
        "decode_prompt": 32 if quick else 128,
        "decode_new_tokens": 32 if quick else 64,
        "profile_size": "tiny" if quick else "small",
    }
    chosen = {
        key: value if getattr(args, key) is None else getattr(args, key) for key, value in defaults.items()
    }
    chosen["size_lengths"] = {
        name: [int(n) for n in lengths.split(",")]
        for name, lengths in (item.split("=") for item in chosen["size_lengths"])
    }
    return Settings(
        configuration=args.configuration,
        threads=args.threads,
        contenders=args.contenders,
        memory=not args.no_memory,
        decode=not args.no_decode,
        out=args.out,
        profile_length=args.profile_length,
        profile_contenders=args.profile_contenders,
        **chosen,
    )


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
    peak_at_start = matmul_peak()
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
    results["profile"] = phase("profile", profile_training) if settings.profile else {}
    results["memory"] = phase("memory", measure_memory, memory_server) if settings.memory else []
    peak_at_end = matmul_peak()
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


__all__ = ["PURE_SYNTHESIZERS", "RANDOM_FAMILY", "SIZES", "TARGETS", "VARIANTS", "Settings", "main"]


if __name__ == "__main__":
    main()
