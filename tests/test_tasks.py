"""Task table, offline loading and submission files, on tiny copies of the official file formats.

Every fixture is written to ``tmp_path`` in exactly the layout of the GLUE / SuperGLUE releases
(MRPC's byte-order mark, CoLA's header-less train/dev files, unbalanced quotes in TSV text,
MultiRC's nested passages), so the tests need no downloaded data.
"""

from __future__ import annotations

import json
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import datasets
import pytest

from synthesizer_tools.tasks import TASKS, compute_task_metrics, get_task, load_task, write_test_predictions

MNLI_HEAD = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2"
MNLI_DEV_HEAD = MNLI_HEAD + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
STSB_HEAD = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"

# Official GLUE TSV files, line by line: "<Folder>/<file>" -> lines (tab-separated, quotes unescaped).
GLUE_LINES = {
    "CoLA/train.tsv": [  # no header row
        "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.",
        'gj04\t0\t*\tThe "book was read by.',
    ],
    "CoLA/dev.tsv": ["clc95\t0\t*\tHimself likes John."],
    "CoLA/test.tsv": ["index\tsentence", "0\tBill whistled past the house.", "1\tThe car honked."],
    "SST-2/train.tsv": ["sentence\tlabel", "hide new secretions \t0", 'a "charming journey \t1'],
    "SST-2/dev.tsv": ["sentence\tlabel", "unflinchingly bleak \t0"],
    "SST-2/test.tsv": ["index\tsentence", "0\tuneasy mishmash ."],
    "MRPC/train.tsv": [
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",  # the header starts with a byte-order mark
        '1\t702876\t702977\tHe called "the witness", of it.\t"Referring to him as only the witness.',
        "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's.",
    ],
    "MRPC/dev.tsv": [
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "1\t1355540\t1355592\tHe said so.\tHe did.",
    ],
    "MRPC/test.tsv": [
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "0\t1089874\t1089925\tPCCW's chief.\tCurrent chief.",
        "1\t3019446\t3019327\tSales declined.\tSales fell.",
    ],
    "QQP/train.tsv": [
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of math?\t0",
        "402555\t536040\t536041\tHow do I control my emotions?\tHow do you control it?\t1",
    ],
    "QQP/dev.tsv": [
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "201359\t303345\t303346\tWhy?\tWhy not?\t0",
    ],
    "QQP/test.tsv": ["id\tquestion1\tquestion2", "0\tWould a 'Dracula' reboot work?\tWho was it?"],
    "STS-B/train.tsv": [
        STSB_HEAD + "\tscore",
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane takes off.\tA plane.\t5.000",
        "1\tmain-news\theadlines\t2013\t0004\tnone\tnone\tA man plays.\tA flute.\t0.500",
    ],
    "STS-B/dev.tsv": [
        STSB_HEAD + "\tscore",
        "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA hat.\tA cap.\t3.800",
    ],
    "STS-B/test.tsv": [
        STSB_HEAD,
        "0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl is styling.\tA girl.",
    ],
    "MNLI/train.tsv": [
        MNLI_HEAD + "\tlabel1\tgold_label",
        "0\t31193\t31193n\tgovernment\t( ( b\t( c\t(ROOT b)\t(ROOT c)\tConceptually.\tProduct.\tneutral\tneutral",
        '1\t101457\t101457e\ttelephone\t( y\t( x\t(ROOT y)\t(ROOT x)\tyou "know\tYou lose.\tentailment\tentailment',
    ],
    "MNLI/dev_matched.tsv": [
        MNLI_DEV_HEAD,
        "0\t63735\t63735n\tslate\t( a\t( b\t(ROOT a)\t(ROOT b)\tThe new rights.\tEveryone.\t"
        "neutral\tentailment\tneutral\tneutral\tneutral\tneutral",
    ],
    "MNLI/dev_mismatched.tsv": [
        MNLI_DEV_HEAD,
        "0\t75290\t75290c\tletters\t( a\t( b\t(ROOT a)\t(ROOT b)\tYour contribution.\tNothing.\t"
        "contradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction",
    ],
    "MNLI/test_matched.tsv": [
        MNLI_HEAD,
        "0\t31349\t31349c\tgovernment\t( a\t( b\t(ROOT a)\t(ROOT b)\tHierbas.\tHierbas 2.",
    ],
    "MNLI/test_mismatched.tsv": [
        MNLI_HEAD,
        "0\t99999\t99999e\tletters\t( a\t( b\t(ROOT a)\t(ROOT b)\tDear.\tSir.",
    ],
    "QNLI/train.tsv": [
        "index\tquestion\tsentence\tlabel",
        "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it.\tnot_entailment",
        "1\tWhich missile batteries have launchers?\tWhen MANPADS is operated.\tentailment",
    ],
    "QNLI/dev.tsv": ["index\tquestion\tsentence\tlabel", "0\tWhat came into force?\tThe law.\tentailment"],
    "QNLI/test.tsv": ["index\tquestion\tsentence", "0\tWhat organization is it?\tProject Wikistart."],
    "RTE/train.tsv": [
        "index\tsentence1\tsentence2\tlabel",
        "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons Found.\tnot_entailment",
        '1\tA "place of sorrow.\tPope Benedict.\tentailment',
    ],
    "RTE/dev.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tDana Reeve died.\tReeve.\tnot_entailment"],
    "RTE/test.tsv": ["index\tsentence1\tsentence2", "0\tMangla was summoned.\tShukla is related."],
    "WNLI/train.tsv": [
        "index\tsentence1\tsentence2\tlabel",
        "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1",
        "1\tJohn couldn't see the stage.\tJohn is so short.\t0",
    ],
    "WNLI/dev.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tThe drain is clogged.\tThe hair.\t0"],
    "WNLI/test.tsv": ["index\tsentence1\tsentence2", "0\tMaude and Dora.\tHorses ran away."],
}

MULTIRC_PASSAGES = [
    {
        "idx": 0,
        "version": 1.1,
        "passage": {
            "text": "<b>Sent 1: </b>Forces cause changes in motion.<br>",
            "questions": [
                {
                    "question": "What causes a change in motion?",
                    "answers": [
                        {"text": "A force", "idx": 0, "label": 1},
                        {"text": "Nothing", "idx": 1, "label": 0},
                    ],
                    "idx": 0,
                },
                {
                    "question": "Is mass relevant?",
                    "answers": [{"text": "Yes", "idx": 2, "label": 1}],
                    "idx": 1,
                },
            ],
        },
    },
    {
        "idx": 1,
        "version": 1.1,
        "passage": {
            "text": "A second passage.",
            "questions": [{"question": "Who?", "answers": [{"text": "Him", "idx": 3, "label": 0}], "idx": 2}],
        },
    },
]

# Official SuperGLUE train.jsonl files, line by line (val.jsonl gets the same lines in the fixture).
SUPERGLUE_LINES = {
    "BoolQ": [
        '{"question": "do iran and afghanistan speak the same language", "passage": "Persian language -- ...", "idx": 0, "label": true}',
        '{"question": "is elder scrolls online the same as skyrim", "passage": "Online -- ...", "idx": 1, "label": false}',
    ],
    "CB": [
        '{"premise": "It was a complex language.", "hypothesis": "the language was peeled", "label": "contradiction", "idx": 0}',
        '{"premise": "``Who knows?\'\'", "hypothesis": "there is a shipment", "label": "neutral", "idx": 1}',
        '{"premise": "He said it.", "hypothesis": "it was said", "label": "entailment", "idx": 2}',
    ],
    "COPA": [
        '{"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.", "choice2": "The grass was cut.", "question": "cause", "label": 0, "idx": 0}',
        '{"premise": "The man turned on the faucet.", "choice1": "The toilet filled.", "choice2": "Water flowed.", "question": "effect", "label": 1, "idx": 1}',
    ],
    "RTE": [
        '{"premise": "Dana Reeve died.", "hypothesis": "Reeve had an accident.", "label": "not_entailment", "idx": 0}',
        '{"premise": "Bacteria win.", "hypothesis": "Bacteria is winning.", "label": "entailment", "idx": 1}',
    ],
    "WiC": [
        '{"word": "place", "sentence1": "Do you want to come over to my place later?", "sentence2": "A political system with no place for the less prominent groups.", "idx": 0, "label": false, "start1": 31, "start2": 27, "end1": 36, "end2": 32, "version": 1.1}',
        '{"word": "class", "sentence1": "An emerging class.", "sentence2": "Showed real class.", "idx": 1, "label": true, "start1": 12, "start2": 12, "end1": 17, "end2": 17, "version": 1.1}',
    ],
    "WSC": [
        '{"text": "Mark told Pete many lies about himself. He should have been more skeptical.", "target": {"span2_index": 7, "span1_index": 0, "span1_text": "Mark", "span2_text": "He"}, "idx": 0, "label": false}',
        '{"text": "The mothers of Arthur and Celeste have come to fetch them.", "target": {"span2_index": 10, "span1_index": 3, "span1_text": "Arthur and Celeste", "span2_text": "them"}, "idx": 1, "label": true}',
    ],
    "MultiRC": [json.dumps(passage) for passage in MULTIRC_PASSAGES],
}


def without_labels(line: str) -> str:
    """The unlabeled test-file form of a SuperGLUE jsonl line (MultiRC: labels removed from answers)."""
    record = json.loads(line)
    record.pop("label", None)
    if isinstance(record.get("passage"), dict):
        for question in record["passage"]["questions"]:
            for answer in question["answers"]:
                answer.pop("label")
    return json.dumps(record)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory holding every task in the official release layout."""
    for name, lines in GLUE_LINES.items():
        write_lines(tmp_path / "glue" / name, lines)
    for folder, lines in SUPERGLUE_LINES.items():
        for name in ["train.jsonl", "val.jsonl"]:
            write_lines(tmp_path / "superglue" / folder / name, lines)
        write_lines(tmp_path / "superglue" / folder / "test.jsonl", [without_labels(line) for line in lines])
    return tmp_path


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Local loading must never reach for the Hub."""

    def refuse(*args, **kwargs):
        raise AssertionError("load_dataset called while loading local files")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def first(dataset: datasets.Dataset) -> tuple:
    row = dataset[0]
    return row["idx"], row["text_a"], row["text_b"], row["label"]


# ---------------------------------------------------------------- task table


def test_task_table_is_complete_and_consistent():
    glue = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    superglue = {"boolq", "cb", "copa", "multirc", "superglue_rte", "wic", "wsc"}
    assert set(TASKS) == glue | superglue
    for name, spec in TASKS.items():
        assert spec.benchmark == ("glue" if name in glue else "superglue")
        assert {"train", "validation", "test"} <= set(spec.files)
        assert len(spec.label_names) == len(spec.label_values)
        assert spec.num_labels == (1 if name == "stsb" else len(spec.label_values))
        extension = ".tsv" if spec.benchmark == "glue" else ".jsonl"
        assert all(file.endswith(extension) for file in spec.submission_files.values())
    assert get_task("copa").problem_type == "multiple_choice"
    assert get_task("stsb").problem_type == "regression"
    assert get_task("mnli").submission_files == {"test": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown task 'glue_rte'; valid tasks: cola, sst2, .*superglue_rte"
    ):
        get_task("glue_rte")
    with pytest.raises(ValueError, match="valid tasks"):
        load_task("sst-2", data_dir=".")


# ---------------------------------------------------------------- GLUE


@pytest.mark.parametrize(
    ("task", "sizes", "train_first", "test_first"),
    [
        (
            "cola",
            (2, 1, 2),
            (0, "The sailors rode the breeze clear of the rocks.", None, 1),
            (0, "Bill whistled past the house.", None, -1),
        ),
        ("sst2", (2, 1, 1), (0, "hide new secretions ", None, 0), (0, "uneasy mishmash .", None, -1)),
        (
            "mrpc",
            (2, 1, 2),
            (0, 'He called "the witness", of it.', '"Referring to him as only the witness.', 1),
            (0, "PCCW's chief.", "Current chief.", -1),
        ),
        (
            "qqp",
            (2, 1, 1),
            (133273, "How is the life of a math student?", "Which level of math?", 0),
            (0, "Would a 'Dracula' reboot work?", "Who was it?", -1),
        ),
        (
            "stsb",
            (2, 1, 1),
            (0, "A plane takes off.", "A plane.", 5.0),
            (0, "A girl is styling.", "A girl.", -1.0),
        ),
        (
            "qnli",
            (2, 1, 1),
            (0, "When did the third Digimon series begin?", "Unlike the two seasons before it.", 1),
            (0, "What organization is it?", "Project Wikistart.", -1),
        ),
        (
            "rte",
            (2, 1, 1),
            (0, "No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons Found.", 1),
            (0, "Mangla was summoned.", "Shukla is related.", -1),
        ),
        (
            "wnli",
            (2, 1, 1),
            (0, "I stuck a pin through a carrot.", "The carrot had a hole.", 1),
            (0, "Maude and Dora.", "Horses ran away.", -1),
        ),
    ],
)
def test_glue_tasks_load_from_official_tsv(data_dir, task, sizes, train_first, test_first):
    dataset = load_task(task, data_dir)
    assert list(dataset) == ["train", "validation", "test"]
    assert tuple(len(dataset[split]) for split in dataset) == sizes
    assert first(dataset["train"]) == train_first
    assert first(dataset["test"]) == test_first
    assert list(dataset["train"].features) == ["idx", "text_a", "text_b", "label"]


def test_cola_train_has_no_header_and_keeps_quotes(data_dir):
    cola = load_task("cola", data_dir)
    # Both data lines are examples (none eaten as a header); the lone quote stays in the text.
    assert cola["train"]["text_a"] == [
        "The sailors rode the breeze clear of the rocks.",
        'The "book was read by.',
    ]
    assert cola["train"]["label"] == [1, 0]
    assert cola["train"]["idx"] == [0, 1]
    assert cola["train"].features["label"].names == ["unacceptable", "acceptable"]


def test_mrpc_byte_order_mark_is_not_part_of_the_label_column(data_dir):
    mrpc = load_task("mrpc", data_dir)
    assert mrpc["train"]["label"] == [1, 0]
    assert mrpc["test"]["idx"] == [0, 1]


def test_stsb_scores_are_floats(data_dir):
    stsb = load_task("stsb", data_dir)
    assert stsb["train"]["label"] == pytest.approx([5.0, 0.5])
    assert stsb["train"].features["label"] == datasets.Value("float32")


def test_mnli_has_matched_and_mismatched_splits(data_dir):
    mnli = load_task("mnli", data_dir)
    assert list(mnli) == ["train", "validation", "validation_mismatched", "test", "test_mismatched"]
    assert mnli["train"]["label"] == [1, 0]  # neutral, entailment
    assert first(mnli["train"]) == (0, "Conceptually.", "Product.", 1)
    assert first(mnli["validation_mismatched"]) == (0, "Your contribution.", "Nothing.", 2)
    assert mnli["test_mismatched"]["label"] == [-1]
    assert mnli["train"].features["label"].names == ["entailment", "neutral", "contradiction"]


# ---------------------------------------------------------------- SuperGLUE


@pytest.mark.parametrize(
    ("task", "expected_first", "labels"),
    [
        (
            "boolq",
            (0, "do iran and afghanistan speak the same language", "Persian language -- ...", 1),
            [1, 0],
        ),
        ("cb", (0, "It was a complex language.", "the language was peeled", 1), [1, 2, 0]),
        ("superglue_rte", (0, "Dana Reeve died.", "Reeve had an accident.", 1), [1, 0]),
        (
            "wic",
            (
                0,
                "place: Do you want to come over to my place later?",
                "A political system with no place for the less prominent groups.",
                0,
            ),
            [0, 1],
        ),
        (
            "wsc",
            (
                0,
                "Mark told Pete many lies about himself. He should have been more skeptical.",
                "He refers to Mark",
                0,
            ),
            [0, 1],
        ),
    ],
)
def test_superglue_tasks_load_from_official_jsonl(data_dir, task, expected_first, labels):
    dataset = load_task(task, data_dir)
    assert list(dataset) == ["train", "validation", "test"]
    assert first(dataset["validation"]) == expected_first
    assert dataset["train"]["label"] == labels
    assert set(dataset["test"]["label"]) == {-1}


def test_copa_gives_the_two_choices(data_dir):
    copa = load_task("copa", data_dir)
    row = copa["train"][1]
    assert row["text_a"] == "The man turned on the faucet. What was the effect?"
    assert row["text_b"] is None
    assert row["choices"] == ["The toilet filled.", "Water flowed."]
    assert copa["train"]["label"] == [0, 1]
    assert copa["train"][0]["text_a"].endswith("What was the cause?")


def test_multirc_is_flattened_to_one_row_per_answer_option(data_dir):
    multirc = load_task("multirc", data_dir)
    validation = multirc["validation"]
    assert len(validation) == 4
    assert validation["idx"] == [0, 1, 2, 3]
    assert validation["question_id"] == [0, 0, 1, 2]
    assert validation["passage_id"] == [0, 0, 0, 1]
    assert validation["label"] == [1, 0, 1, 0]
    assert validation[1]["text_a"] == "<b>Sent 1: </b>Forces cause changes in motion.<br>"
    assert validation[1]["text_b"] == "What causes a change in motion? Nothing"
    assert multirc["test"]["label"] == [-1] * 4
    scores = compute_task_metrics(
        "multirc", [1, 1, 1, 0], validation["label"], question_ids=validation["question_id"]
    )
    assert scores == {"f1_a": pytest.approx(0.8), "exact_match": pytest.approx(2 / 3)}


# ---------------------------------------------------------------- splits and errors


def test_missing_test_file_is_fine_but_missing_train_is_not(data_dir):
    (data_dir / "glue" / "RTE" / "test.tsv").unlink()
    assert list(load_task("rte", data_dir)) == ["train", "validation"]
    (data_dir / "glue" / "RTE" / "train.tsv").unlink()
    expected = re.escape(str(data_dir / "glue" / "RTE" / "train.tsv"))
    with pytest.raises(FileNotFoundError, match=expected):
        load_task("rte", data_dir)


def test_splits_selects_what_to_load(data_dir):
    (data_dir / "superglue" / "BoolQ" / "train.jsonl").unlink()
    assert list(load_task("boolq", data_dir, splits=["validation"])) == ["validation"]
    with pytest.raises(FileNotFoundError, match=r"BoolQ/train\.jsonl"):
        load_task("boolq", data_dir, splits=["train"])
    with pytest.raises(ValueError, match=r"no split\(s\) \['dev'\]; valid splits"):
        load_task("boolq", data_dir, splits=["dev"])


def test_missing_tsv_column_names_column_and_file(data_dir):
    path = data_dir / "glue" / "RTE" / "dev.tsv"
    write_lines(path, ["index\tsentence1\tsentence_2\tlabel", "0\ta\tb\tentailment"])
    with pytest.raises(ValueError, match=r"RTE/dev\.tsv: missing column 'sentence2'"):
        load_task("rte", data_dir)


def test_missing_jsonl_field_names_field_and_line(data_dir):
    write_lines(
        data_dir / "superglue" / "CB" / "val.jsonl", ['{"premise": "p", "label": "neutral", "idx": 0}']
    )
    with pytest.raises(ValueError, match=r"CB/val\.jsonl:1: missing field 'hypothesis'"):
        load_task("cb", data_dir)


def test_missing_nested_multirc_field_is_a_value_error(data_dir):
    broken = json.loads(json.dumps(MULTIRC_PASSAGES))
    del broken[1]["passage"]["questions"][0]["answers"][0]["text"]
    write_lines(data_dir / "superglue" / "MultiRC" / "val.jsonl", [json.dumps(passage) for passage in broken])
    with pytest.raises(ValueError, match=r"val\.jsonl:2: missing field 'text'"):
        load_task("multirc", data_dir)


def test_missing_label_in_a_labelled_file_is_a_value_error(data_dir):
    write_lines(data_dir / "superglue" / "WiC" / "train.jsonl", [without_labels(SUPERGLUE_LINES["WiC"][0])])
    with pytest.raises(ValueError, match="missing field 'label'"):
        load_task("wic", data_dir)


def test_unknown_label_lists_the_expected_ones(data_dir):
    write_lines(
        data_dir / "glue" / "RTE" / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"]
    )
    with pytest.raises(
        ValueError, match=r"unknown rte label 'maybe'; expected one of \['entailment', 'not_entailment'\]"
    ):
        load_task("rte", data_dir)


def test_invalid_json_names_the_line(data_dir):
    (data_dir / "superglue" / "COPA" / "val.jsonl").write_text('{"premise": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"COPA/val\.jsonl:2: invalid JSON"):
        load_task("copa", data_dir)


# ---------------------------------------------------------------- Hub fallback (faked, offline)


def test_hub_copy_is_normalised_like_the_local_files(data_dir, monkeypatch):
    """The Hub rows of MultiRC keep their ids in one dict; both paths must give the same dataset."""
    hub_rows = [
        {"paragraph": row["text_a"], "question": q, "answer": a, "idx": ids, "label": row["label"]}
        for row, q, a, ids in zip(
            load_task("multirc", data_dir, splits=["validation"])["validation"],
            [
                "What causes a change in motion?",
                "What causes a change in motion?",
                "Is mass relevant?",
                "Who?",
            ],
            ["A force", "Nothing", "Yes", "Him"],
            [
                {"paragraph": p, "question": q, "answer": a}
                for p, q, a in [(0, 0, 0), (0, 0, 1), (0, 1, 2), (1, 2, 3)]
            ],
        )
    ]
    calls = []

    def fake_load_dataset(path, config):
        calls.append((path, config))
        return datasets.DatasetDict({"validation": datasets.Dataset.from_list(hub_rows)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    from_hub = load_task("multirc", splits=["validation"])["validation"]
    local = load_task("multirc", data_dir, splits=["validation"])["validation"]
    assert calls == [("aps/super_glue", "multirc")]
    assert from_hub.to_list() == local.to_list()
    assert from_hub.features == local.features


def test_hub_split_names_of_mnli(monkeypatch):
    row = {"premise": "p", "hypothesis": "h", "label": 2, "idx": 5}
    hub = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_list([row])
            for name in ["train", "validation_matched", "validation_mismatched"]
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config: hub)
    mnli = load_task("mnli", splits=["validation", "validation_mismatched"])
    assert first(mnli["validation"]) == (5, "p", "h", 2)


# ---------------------------------------------------------------- submission files


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_glue_submission_uses_official_names_and_label_strings(tmp_path):
    rte = write_test_predictions("rte", [0, 1, 2], [1, 0, 1], tmp_path)
    assert rte == tmp_path / "RTE.tsv"
    assert read_lines(rte) == ["index\tprediction", "0\tnot_entailment", "1\tentailment", "2\tnot_entailment"]
    cola = write_test_predictions("cola", [0, 1], [1, 0], tmp_path)
    assert read_lines(cola) == ["index\tprediction", "0\t1", "1\t0"]
    stsb = write_test_predictions("stsb", [0, 1], [4.12345, 0.5], tmp_path)
    assert read_lines(stsb) == ["index\tprediction", "0\t4.123", "1\t0.500"]
    assert write_test_predictions("sst2", [0], [1], tmp_path).name == "SST-2.tsv"


def test_mnli_matched_and_mismatched_submissions(tmp_path):
    matched = write_test_predictions("mnli", [0, 1], [0, 2], tmp_path)
    mismatched = write_test_predictions("mnli", [0], [1], tmp_path, split="test_mismatched")
    assert (matched.name, mismatched.name) == ("MNLI-m.tsv", "MNLI-mm.tsv")
    assert read_lines(matched)[1:] == ["0\tentailment", "1\tcontradiction"]
    assert read_lines(mismatched)[1:] == ["0\tneutral"]


@pytest.mark.parametrize(
    ("task", "file", "labels"),
    [
        ("boolq", "BoolQ.jsonl", ["false", "true"]),
        ("cb", "CB.jsonl", ["entailment", "contradiction"]),
        ("copa", "COPA.jsonl", [0, 1]),
        ("superglue_rte", "RTE.jsonl", ["entailment", "not_entailment"]),
        ("wic", "WiC.jsonl", ["false", "true"]),
        ("wsc", "WSC.jsonl", ["False", "True"]),
    ],
)
def test_superglue_submission_lines(tmp_path, task, file, labels):
    path = write_test_predictions(task, [10, 11], [0, 1], tmp_path / "sub")
    assert path == tmp_path / "sub" / file
    assert [json.loads(line) for line in read_lines(path)] == [
        {"idx": 10, "label": labels[0]},
        {"idx": 11, "label": labels[1]},
    ]


def test_multirc_submission_is_nested_like_the_official_file(data_dir, tmp_path):
    test = load_task("multirc", data_dir)["test"]
    path = write_test_predictions(
        "multirc",
        test["idx"],
        [1, 0, 1, 1],
        tmp_path,
        question_ids=test["question_id"],
        passage_ids=test["passage_id"],
    )
    assert path.name == "MultiRC.jsonl"
    assert [json.loads(line) for line in read_lines(path)] == [
        {
            "idx": 0,
            "passage": {
                "questions": [
                    {"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 1, "label": 0}]},
                    {"idx": 1, "answers": [{"idx": 2, "label": 1}]},
                ]
            },
        },
        {"idx": 1, "passage": {"questions": [{"idx": 2, "answers": [{"idx": 3, "label": 1}]}]}},
    ]


def test_submission_round_trip_from_a_loaded_test_split(data_dir, tmp_path):
    test = load_task("mrpc", data_dir)["test"]
    path = write_test_predictions("mrpc", test["idx"], [0] * len(test), tmp_path)
    assert read_lines(path) == ["index\tprediction", "0\t0", "1\t0"]


def test_submission_errors(tmp_path):
    with pytest.raises(ValueError, match="no submission file for split 'validation'"):
        write_test_predictions("rte", [0], [0], tmp_path, split="validation")
    with pytest.raises(ValueError, match=r"not a class id in 0\.\.1"):
        write_test_predictions("rte", [0], [2], tmp_path)
    with pytest.raises(ValueError, match="2 predictions for 1 idx"):
        write_test_predictions("rte", [0], [0, 1], tmp_path)
    with pytest.raises(ValueError, match="question_ids and passage_ids"):
        write_test_predictions("multirc", [0], [1], tmp_path)
    with pytest.raises(ValueError, match="valid tasks"):
        write_test_predictions("RTE", [0], [1], tmp_path)
