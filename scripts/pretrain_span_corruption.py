"""T5-style span-corruption pretraining of an encoder-decoder Synthesizer (SynthesizerForSeq2SeqLM).

15% of the tokens of each block (mean span length 3) are replaced by sentinel tokens `<extra_id_k>` in the
encoder input; the decoder writes the removed spans, each after its sentinel, then [SEP] (end of sequence).
The sentinels are added to the tokenizer when missing, and blocks are sized so that every corrupted input
has exactly --max_seq_length tokens. The encoder uses --attention_type, the decoder self-attention
--decoder_attention_type (cross-attention is always dot-product, as in the paper).

Every `TrainingArguments` flag works too (--optim, --max_grad_norm, --report_to, ...: see --help), and one
.json/.yaml argument file can hold all the arguments (see docs/TRAINING.md, "Arguments").

Examples:
    python scripts/pretrain_span_corruption.py --train_files src/synthesizer_tools/demo_data/pretrain.txt.gz \\
        --attention_type dense --decoder_attention_type dense+dot --hidden_size 128 --num_layers 2 \\
        --num_heads 2 --intermediate_size 512 --max_steps 300 --output_dir runs/span
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
        parse_pretraining_arguments(
            "span", argv, program="scripts/pretrain_span_corruption.py", description=__doc__
        )
    )


if __name__ == "__main__":
    run_script(main)
