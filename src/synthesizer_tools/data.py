"""Text datasets and token blocks: local files or a Hub dataset -> `datasets.Dataset` -> blocks of N tokens."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

from .arguments import TextDataArguments
from .tokenization import iter_text_files


def _text_rows(paths: list[str], text_field: str, stamps: list[tuple[int, int]]) -> Iterator[dict[str, str]]:
    """Generator for `Dataset.from_generator`; `stamps` (size, mtime) only feed the cache fingerprint."""
    del stamps
    for text in iter_text_files(paths, text_field=text_field):
        yield {"text": text}


def text_dataset_from_files(
    paths: Sequence[str], text_field: str = "text", cache_dir: str | None = None
) -> datasets.Dataset:
    """Local text/jsonl files -> a `datasets.Dataset` with a "text" column, streamed through the Arrow cache.

    The file sizes and modification times are part of the cache key, so an edited file is re-read.
    """
    paths = [str(Path(p).resolve()) for p in paths]
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Text file not found: {path}")
    stamps = [(Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in paths]
    try:
        dataset = datasets.Dataset.from_generator(
            _text_rows,
            gen_kwargs={"paths": paths, "text_field": text_field, "stamps": stamps},
            features=datasets.Features({"text": datasets.Value("string")}),
            cache_dir=cache_dir,
        )
    except datasets.exceptions.DatasetGenerationError as err:  # surface the reader's own message
        cause = err.__cause__
        message = cause.args[0] if cause is not None and cause.args else str(err)
        raise ValueError(f"Could not read the text files: {message} (see --text_column)") from cause
    if len(dataset) == 0:
        raise ValueError(f"No text found in {', '.join(paths)}")
    return dataset


def load_pretraining_texts(data: TextDataArguments) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """(train, validation or None) text datasets from --train_files / --dataset_name."""
    if data.train_files:
        train = text_dataset_from_files(data.train_files, data.text_column, data.cache_dir)
        validation = (
            text_dataset_from_files(data.validation_files, data.text_column, data.cache_dir)
            if data.validation_files
            else None
        )
        return train, validation
    hub = datasets.load_dataset(data.dataset_name, data.dataset_config_name, cache_dir=data.cache_dir)
    if "train" not in hub:
        raise ValueError(f"{data.dataset_name} has no 'train' split (splits: {list(hub)})")
    if data.text_column not in hub["train"].column_names:
        raise ValueError(
            f"{data.dataset_name} has no column {data.text_column!r} (columns: {hub['train'].column_names}); "
            "pass --text_column"
        )

    def select(split: datasets.Dataset) -> datasets.Dataset:
        split = split.select_columns([data.text_column]).rename_column(data.text_column, "text")
        return split.filter(lambda row: bool(row["text"] and row["text"].strip()))

    validation = hub.get("validation")
    if data.validation_files:
        validation = text_dataset_from_files(data.validation_files, data.text_column, data.cache_dir)
    elif validation is not None:
        validation = select(validation)
    return select(hub["train"]), validation


def batched_text(dataset: datasets.Dataset, batch_size: int = 1000) -> Iterator[str]:
    """The "text" column, streamed (e.g. into the tokenizer trainer)."""
    for batch in dataset.iter(batch_size=batch_size):
        yield from batch["text"]


def group_into_blocks(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    block_length: int,
    wrap_special_tokens: bool,
    *,
    desc: str = "text",
    group_size: int | None = 1000,
    max_blocks: int | None = None,
) -> datasets.Dataset:
    """Tokenize all texts, concatenate them and cut the stream into blocks of `block_length` tokens.

    With `wrap_special_tokens` each block is `[CLS] ... [SEP]` with `block_length - 2` text tokens (BERT MLM);
    otherwise blocks are raw token ids (causal LMs; span corruption appends its own end-of-sequence token).
    The stream is cut per `group_size` texts, dropping the rest of each group as Hugging Face's `run_mlm.py`
    does, so that corpora of any size stream through; `group_size=None` cuts the whole dataset as one stream.
    At most `max_blocks` blocks are kept. In a distributed run, call it under `main_process_first`.
    """
    content = block_length - 2 if wrap_special_tokens else block_length
    if content < 2:
        raise ValueError(f"blocks of {block_length} tokens are too short: raise --max_seq_length")
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def tokenize(batch: Mapping[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False, verbose=False)
        return {"input_ids": ids["input_ids"]}

    def chunk(batch: Mapping[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        stream = [token for ids in batch["input_ids"] for token in ids]
        blocks = [stream[i : i + content] for i in range(0, len(stream) - content + 1, content)]
        if wrap_special_tokens:
            blocks = [[cls, *block, sep] for block in blocks]
        return {"input_ids": blocks}

    tokenized = dataset.map(
        tokenize, batched=True, remove_columns=dataset.column_names, desc=f"Tokenizing {desc}"
    )
    blocks = tokenized.map(
        chunk,
        batched=True,
        batch_size=group_size,
        remove_columns=tokenized.column_names,
        desc=f"Grouping {desc} into blocks of {block_length}",
    )
    return first_rows(blocks, max_blocks)


def first_rows(dataset: datasets.Dataset, count: int | None) -> datasets.Dataset:
    """The first `count` rows (all of them for None): the --max_*_samples caps of quick runs."""
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


def split_blocks(
    train: datasets.Dataset, validation: datasets.Dataset | None, data: TextDataArguments, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out a validation share when none was given, then apply the --max_*_samples caps."""
    if validation is None:
        if len(train) < 2:
            raise ValueError(
                f"Only {len(train)} block(s) of {data.max_seq_length} tokens in the training text: use more "
                "text or a smaller --max_seq_length"
            )
        held_out = max(1, round(len(train) * data.validation_split_percentage / 100))
        parts = train.train_test_split(test_size=held_out, seed=seed, shuffle=True)
        train, validation = parts["train"], parts["test"]
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(
            "No complete training or validation block: use more text or a smaller --max_seq_length"
        )
    return first_rows(train, data.max_train_samples), first_rows(validation, data.max_eval_samples)


__all__ = [
    "batched_text",
    "first_rows",
    "group_into_blocks",
    "load_pretraining_texts",
    "split_blocks",
    "text_dataset_from_files",
]
