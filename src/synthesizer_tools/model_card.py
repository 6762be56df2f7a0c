"""Model cards and Hub-ready folders for Synthesizer checkpoints.

`render_model_card` fills the card template (`templates/model_card.md`, shipped with this package) from what a
checkpoint folder records about itself:
`config.json` (the attention variant, sizes), `run_info.json` (written by the training scripts: command, data,
steps, timings) and result files (`eval_results.json` of pretraining, `summary.json` of `run_glue.py`), so
every number in a card comes with the command that produced it. `prepare_hub_folder` writes the exact folder
to push: safetensors weights, config with `auto_map`, the modeling code, tokenizer files and the card.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

from synthesizer_hf import AUTO_CLASSES
from synthesizer_hf import modeling_synthesizer as modeling
from synthesizer_hf.configuration_synthesizer import SynthesizerConfig, parse_attention_type
from synthesizer_hf.synthesizers import SYNTHESIZERS

from .bundled import DEMO_PRETRAIN_FILE, MODEL_CARD_TEMPLATE
from .records import EVAL_RESULTS_FILE, RUN_INFO_FILE, count_parameters, read_json

PathLike = str | os.PathLike

# name -> (paper name, one-line equation of the logits S_h(X), what it means), from the registry
ATTENTION_VARIANTS: dict[str, tuple[str, str, str]] = {
    name: (cls.paper_name, f"S(X) = {cls.logits}", cls.summary) for name, cls in SYNTHESIZERS.items()
}
TOKEN_KEY_COMPONENTS = {name for name, cls in SYNTHESIZERS.items() if cls.uses_token_keys}
LENGTH_BOUND_COMPONENTS = {name for name, cls in SYNTHESIZERS.items() if cls.length_bound}
INPUT_INDEPENDENT_COMPONENTS = {name for name, cls in SYNTHESIZERS.items() if cls.input_independent}

PIPELINE_TAGS = {
    "SynthesizerForMaskedLM": "fill-mask",
    "SynthesizerForSequenceClassification": "text-classification",
    "SynthesizerForTokenClassification": "token-classification",
    "SynthesizerForMultipleChoice": "multiple-choice",
    "SynthesizerForQuestionAnswering": "question-answering",
    "SynthesizerForCausalLM": "text-generation",
    "SynthesizerForSeq2SeqLM": "text2text-generation",
    "SynthesizerModel": "feature-extraction",
}

# Result keys that describe the run rather than the model.
_BOOKKEEPING_KEYS = (
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "epoch",
    "wall_time_s",
    "train_steps",
)


AVERAGE_LABELS = {
    "glue_average": "GLUE average",
    "glue_courtois": "GLUE, Courtois et al. (2024) mean of 9 (no WNLI)",
    "superglue_average": "SuperGLUE average",
}


def architecture_class(config: SynthesizerConfig) -> type[PreTrainedModel]:
    """The head class named in `config.architectures` (the bare encoder if none is recorded)."""
    name = (config.architectures or ["SynthesizerModel"])[0]
    model_class = getattr(modeling, name, None)
    if model_class is None:
        raise ValueError(
            f"{name!r} is not a Synthesizer class (config.architectures = {config.architectures})"
        )
    return model_class


def parameter_count(config: SynthesizerConfig) -> int:
    """Parameters of the config's head (tied weights once; a frozen R is a buffer), built on the meta device."""
    with torch.device("meta"):
        model = architecture_class(config)(config)
    return count_parameters(model)["parameters"]


def describe_attention(config: SynthesizerConfig, decoder: bool = False) -> str:
    """Markdown: each distinct layer spec with the paper name and one-line equation of every component."""
    spec = config.decoder_attention_type if decoder else config.attention_type
    specs = [spec] if isinstance(spec, str) else spec
    lines = []
    for layer_spec in dict.fromkeys(specs):
        components = parse_attention_type(layer_spec)
        layers = "all layers" if isinstance(spec, str) else _layer_list(specs, layer_spec)
        where = f"{'Decoder' if decoder else 'Encoder'} self-attention, {layers}"
        if len(components) > 1:
            lines.append(
                f"- **{where}: mixture `{layer_spec}`** (eq. 8): `S(X) = sum_c alpha_c S_c(X)`, with "
                "`alpha = softmax(a)` learned per layer, over:"
            )
        else:
            lines.append(f"- **{where}: `{layer_spec}`**")
        for component in components:
            paper_name, equation, meaning = ATTENTION_VARIANTS[component]
            lines.append(f"  - {paper_name}: `{equation}`, {meaning}.")
    return "\n".join(lines)


def _layer_list(specs: Sequence[str], layer_spec: str) -> str:
    indices = [str(i) for i, spec in enumerate(specs) if spec == layer_spec]
    return f"layer{'s' if len(indices) > 1 else ''} {', '.join(indices)}"


def _kind(components: set[str]) -> str:
    if not components & TOKEN_KEY_COMPONENTS:
        return "a *pure* synthesizer (attention weights without any token-token dot product)"
    if components <= TOKEN_KEY_COMPONENTS:
        return "dot-product-style attention (a baseline or a symmetric variant of it)"
    return "a mixture of synthesized and dot-product attention"


def _spec_text(spec: str | list[str]) -> str:
    return spec if isinstance(spec, str) else " / ".join(spec)


def variant_summary(config: SynthesizerConfig) -> str:
    """One sentence on what the attention of this checkpoint is."""
    encoder = f"`{_spec_text(config.attention_type)}`, {_kind(set(config.components_in_use(decoder=False)))}"
    if not getattr(config, "is_encoder_decoder", False):
        return f"attention {encoder}."
    decoder_components = set(config.components_in_use(encoder=False))
    decoder = f"`{_spec_text(config.decoder_attention_type)}`, {_kind(decoder_components)}"
    return f"encoder self-attention {encoder}; decoder self-attention {decoder}."


def details_table(config: SynthesizerConfig, num_parameters: int) -> str:
    """The size table of the card."""
    rows = [
        ("Head", f"`{architecture_class(config).__name__}`"),
        ("Parameters", f"{num_parameters:,}"),
        ("Attention (`attention_type`)", f"`{config.attention_type}`"),
    ]
    if getattr(config, "is_encoder_decoder", False):
        rows += [
            ("Decoder self-attention", f"`{config.decoder_attention_type}`"),
            ("Layers (encoder / decoder)", f"{config.num_hidden_layers} / {config.num_decoder_layers}"),
        ]
    else:
        rows.append(("Layers", str(config.num_hidden_layers)))
    rows += [
        (
            "Hidden size / heads / feed-forward",
            f"{config.hidden_size} / {config.num_attention_heads} / {config.intermediate_size}",
        ),
        ("Synthesizer length L (longest input)", str(config.synthesizer_length)),
        ("Max positions", str(config.max_position_embeddings)),
        ("Vocabulary", f"{config.vocab_size:,}"),
    ]
    for name in sorted(
        config.components_in_use()
    ):  # the sizes each synthesizer in use reads, from the registry
        synthesizer = SYNTHESIZERS[name]
        for field in synthesizer.config_fields:
            if field != "synthesizer_length":  # in the table already
                rows.append((f"{synthesizer.paper_name}: `{field}`", str(getattr(config, field))))
    if (
        getattr(config, "id2label", None)
        and len(config.id2label) > 1
        and "Classification" in str(config.architectures)
    ):
        rows.append(("Labels", ", ".join(str(v) for v in config.id2label.values())))
    return "\n".join(f"| {key} | {value} |" for key, value in rows)


def training_section(run_info: Mapping[str, Any] | None) -> str:
    """How the checkpoint was trained, from the run_info.json the training scripts write."""
    if not run_info:
        return "No training record (`run_info.json`) was found next to the weights."
    args = {**run_info.get("training_arguments", {}), **run_info.get("arguments", {})}
    lines = [f"- Script: `{run_info.get('script', '?')}` ({run_info.get('objective', 'fine-tuning')})."]
    if args.get("train_files"):
        lines.append(f"- Data: {', '.join(f'`{Path(p).name}`' for p in args['train_files'])}.")
    elif args.get("dataset_name"):
        lines.append(f"- Data: the `{args['dataset_name']}` dataset ({args.get('dataset_config_name')}).")
    elif run_info.get("task"):
        lines.append(f"- Task: {run_info['task']}, starting from `{run_info.get('base_model')}`.")
    if "train_blocks" in run_info:
        lines.append(
            f"- {run_info['train_blocks']:,} training blocks of {run_info.get('tokens_per_block')} tokens, "
            f"{run_info.get('validation_blocks', 0):,} held out for evaluation."
        )
    if "mlm_probability" in args:
        lines.append(
            f"- Masking: {args.get('mlm_probability', 0.15):.0%} of tokens (80% [MASK], 10% random, 10% kept)."
        )
    if "noise_density" in args:
        lines.append(
            f"- Span corruption: noise density {args['noise_density']}, mean span {args['mean_noise_span_length']}."
        )
    if args.get("tokenizer"):
        lines.append(f"- Tokenizer: `{args['tokenizer']}`.")
    elif "vocab_size" in args and args.get("train_files"):
        lines.append(f"- Tokenizer: WordPiece (vocabulary {args['vocab_size']:,}) trained on the same text.")
    steps = run_info.get("train_steps") or args.get("max_steps")
    batch = args.get("per_device_train_batch_size", 0) * args.get("gradient_accumulation_steps", 1)
    batch *= run_info.get("world_size", 1)
    optimisation = (
        f"- Optimisation: `{args.get('optim', 'adamw_torch')}`, learning rate {args.get('learning_rate')}, "
        f"warmup {args.get('warmup_steps')}, "
        f"weight decay {args.get('weight_decay')}, batch {batch}"
    )
    if steps and steps > 0:
        optimisation += f", {steps:,} steps"
    else:
        optimisation += f", {args.get('num_train_epochs')} epochs"
    lines.append(optimisation + f", seed {args.get('seed')}.")
    env = run_info.get("environment", {})
    if "wall_time_s" in run_info:
        lines.append(
            f"- Wall time: {run_info['wall_time_s']:.0f} s on {env.get('device', '?')} "
            f"({run_info.get('world_size', 1)} process(es)), transformers {env.get('transformers', '?')}, "
            f"torch {env.get('torch', '?')}."
        )
    if run_info.get("command"):
        lines.append(f"\nCommand:\n\n```bash\n{run_info['command']}\n```")
    return "\n".join(lines)


def _format_metric(key: str, value: Any) -> str:
    if isinstance(value, float) and key not in ("eval_loss", "loss", "perplexity", "train_loss"):
        return f"{100 * value:.2f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def results_section(results: Sequence[tuple[Path, Mapping[str, Any]]]) -> str:
    """Markdown tables of pretraining metrics and GLUE/SuperGLUE summaries, each with its command."""
    if not results:
        return "No evaluation results were provided."
    blocks = []
    for path, data in results:
        if "tasks" in data and "scores" in data:  # a run_glue.py summary
            rows = ["| Task | Metrics (x100) | Score |", "|---|---|---|"]
            for task, metrics in data["tasks"].items():
                detail = ", ".join(
                    f"{k} {_format_metric(k, v)}"
                    for k, v in metrics.items()
                    if isinstance(v, float) and k != "loss" and not k.endswith(_BOOKKEEPING_KEYS)
                )
                rows.append(f"| {task} | {detail} | {100 * data['scores'][task]:.2f} |")
            for key, label in AVERAGE_LABELS.items():
                if key in data["scores"]:
                    rows.append(f"| **{label}** | | **{100 * data['scores'][key]:.2f}** |")
            title = f"Fine-tuning results on validation splits (`{path.name}`)"
            command = data.get("command")
        else:  # flat metrics such as eval_results.json of pretraining
            rows = ["| Metric | Value |", "|---|---|"]
            rows += [
                f"| {key} | {_format_metric(key, value)} |"
                for key, value in data.items()
                if isinstance(value, int | float) and not key.endswith(_BOOKKEEPING_KEYS)
            ]
            title = f"Evaluation (`{path.name}`)"
            run_info = read_json(path.parent / RUN_INFO_FILE)
            command = run_info.get("command") if run_info else None
        block = f"### {title}\n\n" + "\n".join(rows)
        if command:
            block += f"\n\nProduced by:\n\n```bash\n{command}\n```"
        blocks.append(block)
    return "\n\n".join(blocks)


def usage_snippet(config: SynthesizerConfig, repo_id: str) -> str:
    """A runnable example for the card's head."""
    name = architecture_class(config).__name__
    tag = PIPELINE_TAGS.get(name)
    if tag == "fill-mask":
        return (
            "from transformers import pipeline\n\n"
            f'fill = pipeline("fill-mask", model="{repo_id}", trust_remote_code=True)\n'
            'print(fill("the capital of france is [MASK] ."))'
        )
    if tag == "text-classification":
        return (
            "from transformers import pipeline\n\n"
            f'classify = pipeline("text-classification", model="{repo_id}", trust_remote_code=True)\n'
            'print(classify("a gripping, beautifully made film ."))'
        )
    auto_name = next(
        (auto.__name__ for auto, cls in AUTO_CLASSES.items() if cls.__name__ == name), "AutoModel"
    )
    return (
        f"from transformers import AutoTokenizer, {auto_name}\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
        f'model = {auto_name}.from_pretrained("{repo_id}", trust_remote_code=True)'
    )


def limitations(config: SynthesizerConfig, num_parameters: int, run_info: Mapping[str, Any] | None) -> str:
    """Intended use and the limits that follow from the variant, the size and the data."""
    components = set(config.components_in_use())
    encoder_components = set(config.components_in_use(decoder=False))
    items = [
        "Research checkpoint for studying synthesized attention (Tay et al., 2020) and for testing "
        "pipelines; it is not a general-purpose English encoder and is not meant for decisions about people."
    ]
    steps = (run_info or {}).get("train_steps") or 0
    if num_parameters < 50_000_000 or (steps and steps < 50_000):
        items.append(
            f"Small model ({num_parameters:,} parameters"
            + (f", {steps:,} training steps" if steps else "")
            + "): expect scores far below the paper's T5-base-sized models; compare variants only at equal "
            "size and training budget."
        )
    if not encoder_components & TOKEN_KEY_COMPONENTS:
        items.append(
            "No dot-product component in the encoder: tokens never attend to each other based on their content. The paper "
            "reports that pure synthesizers trail dot-product attention on GLUE/SuperGLUE, most clearly on tasks "
            "that compare two sentences, while synthesizers mixed with dot-product attention (e.g. R+V) match "
            "or outperform it; prefer a mixture for sentence-pair tasks."
        )
    if components & LENGTH_BOUND_COMPONENTS:
        items.append(
            f"Length-bound: the synthesized weights exist for {config.synthesizer_length} positions only, so "
            f"inputs longer than {config.synthesizer_length} tokens raise an error (truncate them); the "
            "learned alignment is tied to absolute positions."
        )
    if components & INPUT_INDEPENDENT_COMPONENTS:
        names = " and ".join(
            SYNTHESIZERS[name].paper_name for name in sorted(components & INPUT_INDEPENDENT_COMPONENTS)
        )
        items.append(
            f"Input-independent synthesizers ({names}) attend by position, not content: the same weights are "
            "used for every input."
        )
    corpus = corpus_limitation((run_info or {}).get("arguments", {}).get("train_files") or [])
    if corpus:
        items.append(corpus)
    return "\n".join(f"- {item}" for item in items)


def corpus_limitation(train_files: Sequence[str]) -> str | None:
    """What the card can say about the pretraining text: WikiText only for the bundled sample or files named
    so; other corpora by their file names."""
    if not train_files:
        return None
    bundled = DEMO_PRETRAIN_FILE.resolve()
    if all(Path(name).resolve() == bundled for name in train_files):
        corpus = "the WikiText-2 sample bundled with synthesizer_tools"
    elif all("wikitext" in Path(name).as_posix().lower() for name in train_files):  # file or folder name
        corpus = f"WikiText ({', '.join(Path(name).name for name in train_files)})"
    else:
        return f"Pretrained on {', '.join(Path(name).name for name in train_files)}: see that text's license and biases."
    return (
        f"Pretrained on {corpus} (English Wikipedia, CC BY-SA): English only, encyclopedic style, and the "
        "topical and demographic biases of Wikipedia."
    )


def check_results_provenance(model_dir: Path, results: Sequence[tuple[Path, Mapping[str, Any]]]) -> None:
    """A run_glue.py summary must come from fine-tuning this checkpoint, or be the run that produced it (the
    task folder next to the summary), or the card would claim another model's results."""
    for path, data in results:
        if not ("tasks" in data and "scores" in data):
            continue
        source = data.get("model_dir") or data.get("model")
        fine_tuned_here = (
            model_dir.resolve().parent == path.resolve().parent and model_dir.name in data["tasks"]
        )
        if not fine_tuned_here and (source is None or Path(source).resolve() != model_dir.resolve()):
            raise ValueError(
                f"{path} holds the results of fine-tuning {data.get('model')!r}, not of {model_dir}: give the "
                f"summary.json of a run_glue.py run with --model_name_or_path {model_dir}, or of the run that "
                "wrote it."
            )


def _tags(config: SynthesizerConfig) -> str:
    tags = ["synthesizer", "custom_code", *sorted(config.components_in_use())]
    return "\n".join(f"- {tag}" for tag in tags)


def load_results(paths: Sequence[PathLike]) -> list[tuple[Path, dict[str, Any]]]:
    """(path, JSON) of each results file, with a clear error for a missing one."""
    loaded = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"results file not found: {path}")
        loaded.append((path, json.loads(path.read_text(encoding="utf-8"))))
    return loaded


def render_model_card(
    model_dir: PathLike,
    *,
    results: Sequence[PathLike] = (),
    repo_id: str | None = None,
    template: PathLike | None = None,
    license: str = "other",
) -> str:
    """The README.md of a checkpoint folder, filled from its config, run_info.json and the given results.

    The folder's own `eval_results.json` (written by pretraining) is always included; `results` adds more, such
    as the `summary.json` of `scripts/run_glue.py`.
    """
    model_dir = Path(model_dir)
    template_path = Path(template) if template else MODEL_CARD_TEMPLATE
    if not template_path.is_file():
        raise FileNotFoundError(f"model card template not found at {template_path}")
    config = AutoConfig.from_pretrained(model_dir)
    if not isinstance(config, SynthesizerConfig):
        raise ValueError(f"{model_dir} is not a Synthesizer checkpoint (model_type {config.model_type!r})")
    run_info = read_json(model_dir / RUN_INFO_FILE)
    own = [model_dir / EVAL_RESULTS_FILE] if (model_dir / EVAL_RESULTS_FILE).is_file() else []
    extra = [p for p in map(Path, results) if p.resolve() not in {o.resolve() for o in own}]
    check_results_provenance(model_dir, load_results(extra))
    num_parameters = parameter_count(config)
    head = architecture_class(config).__name__
    attention = describe_attention(config)
    if getattr(config, "is_encoder_decoder", False):
        attention += "\n" + describe_attention(config, decoder=True)
    values = {
        "title": repo_id.split("/")[-1] if repo_id else f"Synthesizer ({config.attention_type})",
        "head": head,
        "pipeline_tag": PIPELINE_TAGS.get(head, "feature-extraction"),
        "license": license,
        "tags": _tags(config),
        "variant_summary": variant_summary(config),
        "attention_section": attention,
        "details_table": details_table(config, num_parameters),
        "training_section": training_section(run_info),
        "results_section": results_section(load_results([*own, *extra])),
        "usage": usage_snippet(config, repo_id or "path/to/this/folder"),
        "limitations": limitations(config, num_parameters, run_info),
    }
    return Template(template_path.read_text(encoding="utf-8")).substitute(values)


def prepare_hub_folder(
    model_dir: PathLike,
    output_dir: PathLike,
    *,
    tokenizer: PathLike | None = None,
    results: Sequence[PathLike] = (),
    repo_id: str | None = None,
    template: PathLike | None = None,
    license: str = "other",
    overwrite: bool = False,
) -> Path:
    """Write the folder to push to the Hub: weights, config with auto_map, code, tokenizer, card, results.

    `config.json`'s `auto_map` lists every Synthesizer head (as `save_pretrained` writes it), so users can
    fine-tune the checkpoint with any Auto class and `trust_remote_code=True` without installing the package.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {model_dir}: not a saved checkpoint folder")
    if output_dir.resolve() == model_dir.resolve():
        raise ValueError("output_dir must differ from model_dir")
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir} is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(output_dir)
    card = render_model_card(model_dir, results=results, repo_id=repo_id, template=template, license=license)

    config = AutoConfig.from_pretrained(model_dir)
    model = architecture_class(config).from_pretrained(model_dir)
    model.config.use_cache = True  # the Trainer switches it off for training; generation wants it on
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(tokenizer or model_dir).save_pretrained(output_dir)
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    for name in (EVAL_RESULTS_FILE, RUN_INFO_FILE):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, output_dir / name)
    for path in map(Path, results):
        target = output_dir / path.name
        if not target.exists():
            shutil.copy2(path, target)
    return output_dir


__all__ = [
    "ATTENTION_VARIANTS",
    "describe_attention",
    "parameter_count",
    "prepare_hub_folder",
    "render_model_card",
]
