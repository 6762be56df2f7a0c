"""synthesizer-tools: training, evaluation, studies, benchmarks and model cards for the `synthesizer_hf` models.

The model library (`synthesizer_hf`) is what a `from_pretrained` or `trust_remote_code` user needs; these tools
are built on it and are never imported by it. Their dependencies are the `[train]`, `[plots]` and
`[benchmark]` extras. The modules, each one idea:

- `arguments`: the dataclass arguments of the scripts, parsed with `transformers.HfArgumentParser` beside
  `TrainingArguments` (every Trainer flag, JSON/YAML argument files);
- `data`, `collators`, `span_corruption`: text datasets, token blocks, MLM and T5 span-corruption batches;
- `models`: configs and models built from the arguments (from scratch, from a checkpoint, from a BERT);
- `trainer`: the Trainer set-up every workflow shares (logging, checkpoints, resuming, saving);
- `pretraining`, `finetuning`, `text_to_text`: the workflows behind `scripts/pretrain_*.py` and `run_glue.py`;
- `tasks`, `metrics`: GLUE/SuperGLUE task table, offline loading, official metrics and submission files;
- `tokenization`: the project's WordPiece tokenizer recipe;
- `studies`, `benchmarking`, `model_card`: the paper's comparisons (their study files typed in `study_config`),
  the CPU benchmark, Hub folders and cards;
- `records`, `bundled`: what runs write about themselves, and the files shipped with the package.

Import the modules themselves (`from synthesizer_tools.pretraining import run_pretraining`); importing this
package loads nothing else.
"""
