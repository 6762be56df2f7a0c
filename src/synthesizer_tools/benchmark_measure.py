"""What the CPU benchmark runs and how it times it: the contenders (every synthesizer of the registry alone and,
for those without token keys, mixed with `dot`; HF BERT-sdpa and GPT-2 of the same dims), their batches, the FLOP
count, and the throughput, fresh-process peak memory, decoding and profile measurements. `Settings` holds what
defines a run, with the full run's defaults; `QUICK` what `--quick` changes.

Contenders share dims, batch and thread count; they are interleaved in a rotating order and summarised by medians
over rounds, so that the noise of a shared machine cancels as far as it can. Peak memory comes from a fresh process
per configuration (a child forked from a forkserver that has only imported the libraries).
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    StaticCache,
)

from synthesizer_hf.caching import cache_storage_bytes
from synthesizer_hf.compat import CACHE_ARGUMENT, output_cache
from synthesizer_hf.configuration_synthesizer import SynthesizerConfig
from synthesizer_hf.modeling_synthesizer import SynthesizerForCausalLM, SynthesizerForMaskedLM
from synthesizer_hf.synthesizers import SYNTHESIZERS

from .records import count_parameters

# Model dims; "micro" only exists so that the smoke test finishes in seconds. "minilm" has the dims of
# all-MiniLM-L6-v2, the pretrained BERT of experiment 8, so the study's throughput can be measured in one run.
SIZES: dict[str, dict[str, int]] = {
    "micro": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "small": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
    "minilm": {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
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
    """Everything that defines a run (stored in the JSON next to the results). The defaults are the full run's,
    written here only: the command line overrides them, `--quick` by `QUICK`."""

    sizes: list[str] = field(default_factory=lambda: ["tiny", "small"])
    lengths: list[int] = field(default_factory=lambda: [128, 512, 2048])
    size_lengths: dict[str, list[int]] = field(default_factory=lambda: {"small": [512, 1024, 2048]})
    tokens: int = 4096  # token positions per batch (batch = tokens / L)
    rounds: int = 3  # interleaved rounds; the median is reported
    threads: int = 1
    min_time: float = 0.5  # a step is repeated until one measurement lasts this long (s)
    contenders: list[str] = field(
        default_factory=lambda: [BASELINE, BERT_WITHOUT_ATTENTION_DROPOUT, *VARIANTS]
    )
    memory: bool = True  # the fresh-process peak-memory runs
    decode: bool = True  # the causal-LM decoding benchmark
    decode_compiled: bool = False  # compiled decoding (static cache, torch.compile) against eager decoding
    profile: bool = True  # torch.profiler's op table
    out: str = "runs/benchmark"
    pad_fraction: float = 0.25
    vocab_size: int = 8000
    decode_batch: int = 8
    decode_prompt: int = 128
    decode_new_tokens: int = 64
    profile_size: str = "small"
    profile_length: int = 512
    profile_contenders: list[str] = field(default_factory=lambda: [BASELINE, "random", "random+dot"])
    profile_steps: int = 2
    seed: int = 0
    configuration: str = "equal"  # see masked_lm_config
    # where the models run: throughput, decoding and matmul peak (memory and profile measure the CPU only)
    device: str = "cpu"

    def lengths_of(self, size: str) -> list[int]:
        """The sequence lengths measured for one size (`size_lengths` overrides `lengths`)."""
        return self.size_lengths.get(size, self.lengths)


# What `--quick` changes in the full run: the tiny size, L = 128 and 512, 1024 tokens, no profile (< 3 min).
QUICK: dict[str, Any] = {
    "sizes": ["tiny"],
    "lengths": [128, 512],
    "size_lengths": {},
    "tokens": 1024,
    "min_time": 0.2,
    "profile": False,
    "decode_batch": 4,
    "decode_prompt": 32,
    "decode_new_tokens": 32,
    "profile_size": "tiny",
}


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


def synchronize(device: str) -> None:
    """Wait for the device's queued kernels, so that a clock read after a step counts the step (CUDA runs
    asynchronously; on the CPU there is nothing to wait for)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """fp32 matmul GFLOP/s of the device (on the CPU at the current thread count; median per shape, best shape)."""
    shapes = {"1024x1024x1024": (1024, 1024, 1024), "2048x2048x2048": (2048, 2048, 2048)}
    result = {}
    for name, (n, k, m) in shapes.items():
        a, b = torch.randn(n, k, device=device), torch.randn(k, m, device=device)
        a @ b
        seconds = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
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


def timed(step: Callable[[], None], repeats: int, device: str = "cpu") -> tuple[float, float]:
    """Wall seconds and process CPU seconds per call of `step` (on `device`, its kernels finished).

    With one torch thread, CPU time / wall time is the share of the core this process got: about 1 on a
    quiet machine, lower when other processes took the core away.
    """
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    synchronize(device)
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
    batch = {key: value.to(settings.device) for key, value in batch.items()}
    before = machine_state()
    contenders = [
        EncoderContender(
            name,
            build_masked_lm(
                name, size, length, settings.vocab_size, settings.seed, settings.configuration
            ).to(settings.device),
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
            warm, _ = timed(contender.step(mode), 1, settings.device)
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
                "faulted_bytes": [],
            }
    # All training rounds, then all inference rounds: a model in training keeps its working memory between steps
    # (as under the Trainer, which evaluates rarely), and `eval()` frees it; one untimed step restores it.
    for mode in MODES:
        for contender in contenders:
            contender.step(mode)()
        for order in rotations(contenders, settings.rounds):
            for contender in order:
                record = records[contender.name, mode]
                faults = minor_faults()
                seconds, cpu_seconds = timed(contender.step(mode), record["repeats"], settings.device)
                record["seconds"].append(seconds)
                record["cpu_seconds"].append(cpu_seconds)
                record["faulted_bytes"].append((minor_faults() - faults) * PAGE_BYTES / record["repeats"])
    after = machine_state()
    del contenders
    gc.collect()
    for record in records.values():
        finish(record, record["tokens_per_batch"])
        record["machine_before"], record["machine_after"] = before, after
    return list(records.values())


def minor_faults() -> int:
    """Pages this process has faulted in so far: memory the allocator mapped afresh (glibc maps every tensor
    above 32 MiB anew, and its pages fault in again at every step)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


PAGE_BYTES = resource.getpagesize()


def finish(record: dict[str, Any], tokens: int) -> None:
    """Medians over rounds: tokens per wall second, tokens per CPU second, and CPU utilisation per round."""
    record["cpu_utilisation"] = [cpu / wall for cpu, wall in zip(record["cpu_seconds"], record["seconds"])]
    if record.get("faulted_bytes"):
        record["faulted_bytes_per_step"] = statistics.median(record["faulted_bytes"])
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
    batch = {key: value.to(settings.device) for key, value in batch.items()}
    names = [DECODER_BASELINE] + [name for name in settings.contenders if not name.startswith("bert")]
    models = {
        name: build_causal_lm(name, size, length, settings.vocab_size, settings.seed).eval() for name in names
    }
    for model in models.values():
        model.to(settings.device)

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
            seconds, cpu_seconds = timed(generate(models[name]), 1, settings.device)
            records[name]["seconds"].append(seconds)
            records[name]["cpu_seconds"].append(cpu_seconds)
    for record in records.values():
        finish(record, settings.decode_batch * settings.decode_new_tokens)
    return list(records.values())


def decode_loop(
    step: Callable[..., Any], model: PreTrainedModel, prompt: torch.Tensor, new_tokens: int, static: bool
) -> tuple[float, torch.Tensor]:
    """Greedy decoding by hand: a prefill, then one `step` (the model's forward, compiled or not) per new
    token. Returns the decoding steps' tokens/s (prefill excluded) and the tokens."""
    cache = StaticCache(config=model.config, max_cache_len=prompt.shape[1] + new_tokens) if static else None
    with torch.inference_mode():
        output = model(prompt, use_cache=True, **({CACHE_ARGUMENT: cache} if static else {}))
        cache = output_cache(output)
        tokens = [output.logits[:, -1:].argmax(-1)]
        started = time.perf_counter()
        for _ in range(new_tokens - 1):
            output = step(tokens[-1], use_cache=True, **{CACHE_ARGUMENT: cache})
            tokens.append(output.logits[:, -1:].argmax(-1))
        synchronize(str(prompt.device))
        seconds = time.perf_counter() - started
    return (new_tokens - 1) / seconds, torch.cat(tokens, 1)


def measure_compiled_decoding(size: str, settings: Settings) -> list[dict[str, Any]]:
    """Decoding tokens/s of GPT-2 and each Synthesizer decoder, one prompt of `decode_prompt` tokens: eager
    with a dynamic cache (what `generate` does by default), eager with a static cache, and the decoding step
    compiled (`torch.compile(fullgraph=True)`) over the static cache. The median of `rounds` runs after one
    compiling run, whose time is reported apart."""
    names = [DECODER_BASELINE] + [name for name in settings.contenders if not name.startswith("bert")]
    length = settings.decode_prompt + settings.decode_new_tokens
    prompt = make_batch(1, settings.decode_prompt, settings.vocab_size, 0.0, settings.seed)["input_ids"]
    prompt = prompt.to(settings.device)
    records = []
    for name in names:
        model = (
            build_causal_lm(name, size, length, settings.vocab_size, settings.seed).eval().to(settings.device)
        )
        compiled = torch.compile(model.forward, fullgraph=True)

        began = time.perf_counter()
        new_tokens = settings.decode_new_tokens
        _, compiled_tokens = decode_loop(compiled, model, prompt, new_tokens, True)  # compiles
        compile_seconds = time.perf_counter() - began
        speeds: dict[str, list[float]] = {"eager_dynamic": [], "eager_static": [], "compiled_static": []}
        tokens = {}
        for _ in range(settings.rounds):
            for key, step, static in (
                ("eager_dynamic", model.forward, False),
                ("eager_static", model.forward, True),
                ("compiled_static", compiled, True),
            ):
                speed, tokens[key] = decode_loop(step, model, prompt, new_tokens, static)
                speeds[key].append(speed)
        medians = {f"{key}_tokens_per_s": statistics.median(values) for key, values in speeds.items()}
        records.append(
            {
                "size": size,
                "contender": name,
                "prompt_length": settings.decode_prompt,
                "new_tokens": settings.decode_new_tokens,
                **medians,
                "compiled_vs_eager_dynamic": medians["compiled_static_tokens_per_s"]
                / medians["eager_dynamic_tokens_per_s"],
                "compile_seconds": compile_seconds,
                "same_tokens": all(
                    torch.equal(t, tokens["eager_dynamic"]) for t in (*tokens.values(), compiled_tokens)
                ),
            }
        )
        torch._dynamo.reset()  # each model compiles anew, not against the previous one's cache
    return records


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


__all__ = [
    "PURE_SYNTHESIZERS",
    "QUICK",
    "RANDOM_FAMILY",
    "SIZES",
    "VARIANTS",
    "Settings",
    "build_causal_lm",
    "build_masked_lm",
    "masked_lm_config",
    "measure_decoding",
    "measure_memory",
    "measure_throughput",
    "profile_training",
]
