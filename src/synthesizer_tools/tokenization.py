"""Train a BERT-style WordPiece tokenizer locally, so nothing has to be downloaded from the Hub.

The Synthesizer checkpoints are trained from scratch, so the project ships its own tokenizer recipe instead of
borrowing ``bert-base-uncased``: it runs offline and is trained on the same text as the model.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

logger = logging.getLogger("synthesizer_tools")

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The order fixes the ids: [PAD] = 0 is what pad_token_id / decoder_start_token_id defaults in the configs assume.
SPECIAL_TOKENS = [PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN]
MODEL_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]

_TEXT_SUFFIXES = (".txt", ".txt.gz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")

PathLike = str | os.PathLike


def _open_text(path: Path) -> IO[str]:
    """Open plain or gzip'd files the same way, so callers never have to decompress first."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_text_files(paths: PathLike | Iterable[PathLike], text_field: str = "text") -> Iterator[str]:
    """Yield the non-empty lines of text files (``.txt``/``.txt.gz``) or the ``text_field`` of jsonl records.

    Streams line by line so corpora larger than memory can feed the tokenizer trainer. All paths are checked
    before anything is yielded, so a typo fails immediately rather than after minutes of training.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    resolved = [Path(p) for p in paths]
    for path in resolved:
        if not path.is_file():
            raise FileNotFoundError(f"Text file not found: {path}")
        if not path.name.endswith(_TEXT_SUFFIXES + _JSONL_SUFFIXES):
            raise ValueError(
                f"Unsupported file type: {path} (expected one of {', '.join(_TEXT_SUFFIXES + _JSONL_SUFFIXES)})"
            )
    for path in resolved:
        is_jsonl = path.name.endswith(_JSONL_SUFFIXES)
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if is_jsonl:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    if text_field not in record:
                        raise KeyError(f"{path}:{line_number}: jsonl record has no {text_field!r} field")
                    line = record[text_field]
                text = line.strip()
                if text:
                    yield text


def build_wordpiece_tokenizer(lowercase: bool = True) -> Tokenizer:
    """Return an untrained ``tokenizers.Tokenizer`` with the BERT normalizer, pre-tokenizer and decoder."""
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
    model_max_length: int = 512,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a WordPiece vocabulary on ``texts`` and wrap it as a Transformers fast tokenizer.

    The special tokens are wired for every head in the package: ``[MASK]`` for MLM / fill-mask,
    ``[CLS] a [SEP] b [SEP]`` with token_type_ids for sentence-pair classification, and ``bos=[CLS]``,
    ``eos=[SEP]``, ``pad=[PAD]`` (id 0) so encoder-decoder and causal-LM heads can use
    ``decoder_start_token_id = pad_token_id`` and stop on ``[SEP]``.
    """
    tokenizer = build_wordpiece_tokenizer(lowercase=lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        show_progress=show_progress,
        continuing_subword_prefix="##",
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # The trainer breaks frequency ties in hash order, so the ids it assigns (and, at ties, a few tokens)
    # differ between runs; renumber in a fixed order so that the same vocabulary always gets the same ids:
    # special tokens first, then whole words, then "##" pieces, each sorted. Keep the trained tokenizer with
    # its checkpoint (the scripts never retrain one that a run already saved).
    learned = sorted(set(tokenizer.get_vocab()) - set(SPECIAL_TOKENS), key=lambda t: (t.startswith("##"), t))
    tokenizer.model = models.WordPiece(
        {token: index for index, token in enumerate([*SPECIAL_TOKENS, *learned])},
        unk_token=UNK_TOKEN,
        continuing_subword_prefix="##",
    )

    cls_id, sep_id = tokenizer.token_to_id(CLS_TOKEN), tokenizer.token_to_id(SEP_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0",
        pair=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0 $B:1 {SEP_TOKEN}:1",
        special_tokens=[(CLS_TOKEN, cls_id), (SEP_TOKEN, sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        cls_token=CLS_TOKEN,
        sep_token=SEP_TOKEN,
        mask_token=MASK_TOKEN,
        bos_token=CLS_TOKEN,
        eos_token=SEP_TOKEN,
        model_input_names=list(MODEL_INPUT_NAMES),
        padding_side="right",
        truncation_side="right",
    )


def load_or_train_tokenizer(
    folder: PathLike, texts: Iterable[str], vocab_size: int, model_max_length: int
) -> PreTrainedTokenizerBase:
    """The tokenizer saved in `folder`, or one trained on `texts` (read only then) and saved there.

    Reusing the saved tokenizer keeps a resumed or repeated run on the same vocabulary.
    """
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        logger.warning(
            "Reusing the tokenizer an earlier run saved in %s (%d tokens; --vocab_size applies to a new one "
            "only). Delete it, or pass --tokenizer, to use another.",
            folder,
            len(tokenizer),
        )
        return tokenizer
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, model_max_length=model_max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def special_token_fields(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Config fields that follow from a tokenizer of this recipe: the vocabulary size and [PAD] = pad,
    [CLS] = bos, [SEP] = eos (what generation starts and stops with)."""
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
