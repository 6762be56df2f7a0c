"""Masked-language-model pretraining of a Synthesizer encoder (SynthesizerForMaskedLM) with the HF Trainer.

Texts are tokenized, concatenated and cut into `[CLS] ... [SEP]` blocks of --max_seq_length tokens; 15% of
the tokens are masked (BERT's 80/10/10 rule). Without --tokenizer a WordPiece tokenizer is trained on the
training text and saved with the model. Writes the model (safetensors), tokenizer, checkpoints,
eval_results.json (eval loss, perplexity) and run_info.json into --output_dir.

Every `TrainingArguments` flag works too (--optim, --max_grad_norm, --report_to, ...: see --help), and one
.json/.yaml argument file can hold all the arguments (see docs/TRAINING.md, "Arguments").

Examples:
    # a few minutes on a laptop CPU, with the bundled WikiText-2 sample
    python scripts/pretrain_mlm.py --train_files src/synthesizer_tools/demo_data/pretrain.txt.gz \\
        --attention_type factorized_random+dot --hidden_size 128 --num_layers 2 --num_heads 2 \\
        --intermediate_size 512 --max_steps 300 --output_dir runs/mlm
    # continue after an interruption: same command plus
    python scripts/pretrain_mlm.py ... --resume_from_checkpoint
    # two CPU processes (DDP over gloo)
    accelerate launch --num_processes 2 --cpu scripts/pretrain_mlm.py ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthesizer_tools.arguments import parse_pretraining_arguments
from synthesizer_tools.pretraining import run_pretraining
from synthesizer_tools.trainer import run_script


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line (or one .json/.yaml argument file) and pretrain; returns the final metrics."""
    return run_pretraining(
        parse_pretraining_arguments("mlm", argv, program="scripts/pretrain_mlm.py", description=__doc__)
    )


if __name__ == "__main__":
    run_script(main)
