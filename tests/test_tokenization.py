"""Tests for the local WordPiece tokenizer recipe, its CLI, and the bundled demo data (all offline)."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from helpers import load_script
from synthesizer_tools.bundled import DEMO_DATA_DIR, DEMO_PRETRAIN_FILE
from synthesizer_tools.tokenization import (
    MODEL_INPUT_NAMES,
    SPECIAL_TOKENS,
    iter_text_files,
    train_tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "train_tokenizer.py"

CORPUS = [
    "The cat sat on the mat.",
    "A dog sat on the log, and the cat watched the dog.",
    "Synthesizer models learn attention weights without token-token dot products.",
    "Dense and random synthesizers replace the query-key attention matrix.",
    "The quick brown fox jumps over the lazy dog!",
    "Is the movie good? The movie is very good.",
] * 20


def _offline_env() -> dict[str, str]:
    """Environment for subprocesses: no Hub access, and the package importable even without `pip install -e`."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": pythonpath}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300, min_frequency=1)


def test_special_token_ids(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    assert ids == [0, 1, 2, 3, 4]
    assert tokenizer.pad_token_id == 0
    assert (tokenizer.cls_token_id, tokenizer.bos_token_id) == (2, 2)
    assert (tokenizer.sep_token_id, tokenizer.eos_token_id) == (3, 3)
    assert tokenizer.mask_token == "[MASK]" and tokenizer.unk_token_id == 1
    assert tokenizer.model_input_names == MODEL_INPUT_NAMES
    assert tokenizer.model_max_length == 512


def test_single_and_pair_encoding(tokenizer):
    single = tokenizer("the cat sat")
    assert tokenizer.convert_ids_to_tokens(single["input_ids"]) == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert single["token_type_ids"] == [0] * 5 and single["attention_mask"] == [1] * 5

    pair = tokenizer("the cat", "the dog sat")
    tokens = tokenizer.convert_ids_to_tokens(pair["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "[SEP]", "the", "dog", "sat", "[SEP]"]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_batch_padding_truncation_and_mask(tokenizer):
    batch = tokenizer(["the cat", "the dog sat on the mat"], padding=True, return_tensors="pt")
    assert set(batch) == set(MODEL_INPUT_NAMES)
    assert batch["input_ids"][0, -1].item() == tokenizer.pad_token_id
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    truncated = tokenizer("the cat " * 1000, truncation=True)["input_ids"]
    assert len(truncated) == 512 and truncated[-1] == tokenizer.sep_token_id
    masked = tokenizer("the [MASK] sat")["input_ids"]
    assert masked[2] == tokenizer.mask_token_id


def test_decode_round_trip(tokenizer):
    text = "The cat sat on the mats, and the dogs watched."
    ids = tokenizer(text)["input_ids"]
    assert "##s" in tokenizer.convert_ids_to_tokens(ids)  # "mats" is split into word pieces
    assert tokenizer.decode(ids, skip_special_tokens=True) == text.lower()


def test_cased_option_keeps_case():
    cased = train_tokenizer(CORPUS, vocab_size=300, min_frequency=1, lowercase=False)
    assert cased.tokenize("The") != cased.tokenize("the")


def test_save_and_reload_offline(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    sample = ("the quick brown fox", "jumps over the lazy dog")
    assert reloaded(*sample) == tokenizer(*sample)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    for attr in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token", "bos_token", "eos_token"):
        assert getattr(reloaded, attr) == getattr(tokenizer, attr)
    assert reloaded.model_input_names == MODEL_INPUT_NAMES
    assert reloaded.model_max_length == 512


def test_train_on_bundled_demo_pretrain_text():
    lines = list(itertools.islice(iter_text_files(DEMO_PRETRAIN_FILE), 2000))
    assert len(lines) == 2000 and all(line == line.strip() and line for line in lines)
    tok = train_tokenizer(lines, vocab_size=2000)
    assert len(tok) == 2000
    for word in ("the", "of", "game", "season"):
        assert tok.tokenize(word) == [word]
    ids = tok(lines[-1])["input_ids"]
    assert tok.unk_token_id not in ids


def test_demo_glue_files():
    expected = {
        "SST-2": (["sentence", "label"], 2000, 872),
        "RTE": (["index", "sentence1", "sentence2", "label"], 500, 277),
    }
    for task, (header, n_train, n_dev) in expected.items():
        for split, n_rows in (("train", n_train), ("dev", n_dev)):
            with open(DEMO_DATA_DIR / "glue" / task / f"{split}.tsv", encoding="utf-8", newline="") as handle:
                rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
            assert rows[0] == header
            assert len(rows) - 1 == n_rows
            assert all(len(row) == len(header) for row in rows[1:])


def test_iter_text_files_formats(tmp_path):
    (tmp_path / "a.txt").write_text(" first line \n\n   \nsecond\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("zipped\n\n")
    records = [{"text": "json one"}, {"text": "  "}, {"text": "json two", "label": 1}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"body": "other field"}) + "\n")

    paths = [tmp_path / name for name in ("a.txt", "b.txt.gz", "c.jsonl")]
    assert list(iter_text_files(paths)) == ["first line", "second", "zipped", "json one", "json two"]
    assert list(iter_text_files(str(tmp_path / "a.txt"))) == ["first line", "second"]
    assert list(iter_text_files(tmp_path / "d.jsonl.gz", text_field="body")) == ["other field"]
    with pytest.raises(KeyError, match="'text'"):
        list(iter_text_files(tmp_path / "d.jsonl.gz"))


def test_iter_text_files_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("hello\n", encoding="utf-8")
    missing = tmp_path / "missing.txt"
    # The missing file is reported before any line is yielded, not after the good file has been consumed.
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        next(iter_text_files([good, missing]))
    (tmp_path / "table.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Unsupported file type"):
        next(iter_text_files(tmp_path / "table.csv"))


@pytest.mark.slow
def test_script_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        env=_offline_env(),
        check=True,
    )
    for flag in ("--files", "--dataset", "--text_column", "--vocab_size", "--min_frequency", "--output_dir"):
        assert flag in result.stdout


def test_script_trains_and_saves(tokenizer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    out = tmp_path / "tok"
    args = ["--files", str(corpus), "--vocab_size", "300", "--min_frequency", "1", "--output_dir", str(out)]
    assert load_script("train_tokenizer").main(args) == str(out)
    assert str(out) in capsys.readouterr().out
    reloaded = AutoTokenizer.from_pretrained(out)
    # The corpus has fewer word pieces than 300; tie-breaking between equal-count merges is not stable across
    # runs in `tokenizers`, so compare the vocabulary size and the special tokens, not the exact vocabulary.
    assert len(reloaded) == len(tokenizer) < 300
    tokens = reloaded.convert_ids_to_tokens(reloaded("cat", "dog")["input_ids"])
    assert tokens == ["[CLS]", "cat", "[SEP]", "dog", "[SEP]"]


def test_script_requires_one_source(tmp_path, capsys):
    script = load_script("train_tokenizer")
    with pytest.raises(SystemExit):
        script.main(["--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        script.main(["--files", "a.txt", "--dataset", "wikitext", "--output_dir", str(tmp_path)])
    assert "not allowed with argument" in capsys.readouterr().err


def test_ids_are_a_fixed_function_of_the_learned_vocabulary():
    """The WordPiece trainer breaks frequency ties in hash order, so the ids it assigns (and, at ties, a few
    tokens) change between runs; the ids are renumbered in a fixed order so that the same vocabulary always
    gets the same ids: special tokens, then whole words, then "##" pieces, each sorted."""
    corpus = [f"word{i % 37} piece{i % 11} token{i % 5} common" for i in range(400)]
    vocab = train_tokenizer(corpus, vocab_size=120, min_frequency=1).get_vocab()
    learned = sorted(set(vocab) - set(SPECIAL_TOKENS), key=lambda token: (token.startswith("##"), token))
    assert vocab == {token: index for index, token in enumerate([*SPECIAL_TOKENS, *learned])}
