"""The warm-start study (`synthesizer_tools.warm_start_study`): a tiny BERT converted, adapted and fine-tuned
end to end through the training scripts' workflows, resumed without repeating a run, and study files checked
field by field before anything trains. Also the names `bert_folder` resolves (`minilm`)."""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from helpers import load_script
from synthesizer_hf.bert_warm_start import OFFLINE_BERTS, bert_folder
from synthesizer_tools import warm_start_study
from synthesizer_tools.bundled import DEMO_DATA_DIR
from synthesizer_tools.tokenization import train_tokenizer
from synthesizer_tools.warm_start_study import (
    StudyFileError,
    load_warm_start_study,
    run_warm_start_study,
    write_hub_folders,
)

WORDS = [f"word{i}" for i in range(15)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The bundled RTE sample, a small CB and a tiny WikiText-2, in the offline data layout the scripts read."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(DEMO_DATA_DIR / "glue" / "RTE", root / "glue" / "RTE")
    cb = root / "superglue" / "CB"
    cb.mkdir(parents=True)
    labels = ["entailment", "contradiction", "neutral"]
    for split, count in (("train", 24), ("val", 9)):
        rows = [
            {"premise": f"the {WORDS[i % 15]} is here", "hypothesis": f"a {WORDS[(i * 4) % 15]}",
             "label": labels[i % 3], "idx": i}
            for i in range(count)
        ]  # fmt: skip
        (cb / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    corpus = root / "wikitext-2"
    corpus.mkdir()
    lines = [" ".join(WORDS[(i * 7 + j * 3) % 15] for j in range(12)) for i in range(80)]
    with gzip.open(corpus / "train.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    (corpus / "valid.txt").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    """A tiny `BertModel` folder (no MLM head, as all-MiniLM-L6-v2) with its WordPiece tokenizer."""
    lines = (DEMO_DATA_DIR / "glue" / "RTE" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    tokenizer = train_tokenizer([" ".join(line.split("\t")[1:3]) for line in lines] + WORDS, 300, 32)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=32,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("bert")
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def study_file(tmp_path: Path, bert: Path, **changes) -> Path:
    study = {
        "objective": "warm_start",
        "name": "tiny",
        "bert": str(bert),
        "variants": ["dot", "random+dot"],
        "seeds": [0, 1],
        "stages": {"adapted": [0, 1], "converted": [0]},
        "adaptation": {
            "train_files": ["{data_dir}/wikitext-2/train.txt.gz"],
            "validation_files": ["{data_dir}/wikitext-2/valid.txt"],
            "max_seq_length": 32, "max_steps": 2, "per_device_train_batch_size": 4, "eval_steps": 2,
            "save_steps": 1, "max_eval_samples": 4, "logging_steps": 1, "disable_tqdm": True,
        },
        "finetuning": {
            "max_seq_length": 32, "max_train_samples": 12, "max_eval_samples": 8, "num_train_epochs": 1,
            "per_device_train_batch_size": 4, "eval_strategy": "no", "save_strategy": "no",
            "predict": False, "save_model": False, "disable_tqdm": True,
        },
        "tasks": {"rte": {}, "cb": {"seeds": [0], "stages": ["adapted"], "arguments": {"max_train_samples": 9}}},
        "selection": {"grid": {"learning_rate": [0.001, 0.0001]}, "tasks": ["cb"]},
    }  # fmt: skip
    study.update(changes)
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    return path


@pytest.mark.slow
def test_a_study_converts_adapts_and_fine_tunes_then_resumes_without_repeating_a_run(
    tmp_path, bert, data_dir, monkeypatch
):
    probe = {"task": "rte", "steps": 2, "rounds": 2}
    study = load_warm_start_study(study_file(tmp_path, bert, seeds=[0, 1], speed=probe))
    output = tmp_path / "out"
    executed = []
    execute = warm_start_study.execute
    monkeypatch.setattr(
        warm_start_study, "execute", lambda run, *args: (executed.append(run.name), execute(run, *args))
    )

    # A limit stops the study after that many runs; the next call goes on where it stopped.
    run_warm_start_study(study, data_dir, output, limit=1)
    assert executed == ["selection/learning_rate=0.001/cb"]
    summary = run_warm_start_study(study, data_dir, output)

    # The grid, then per variant: its adaptation, its adapted runs (every seed), its converted runs (seed 0).
    # The converted dot run on cb with the chosen point is the grid's run: it is copied, not repeated.
    selection = json.loads((output / "selection.json").read_text())
    chosen = selection["chosen"]
    assert chosen in ({"learning_rate": 0.001}, {"learning_rate": 0.0001})
    assert executed[:3] == [
        "selection/learning_rate=0.001/cb",
        "selection/learning_rate=0.0001/cb",
        "adapted_models/dot",
    ]
    finetuned = [name for name in executed if name.startswith("finetune/")]
    assert len(finetuned) == 2 * (3 + 1)  # per variant: rte x 2 seeds + cb, rte converted (cb: adapted only)
    assert not any(name.startswith("finetune/converted/") and "/cb/" in name for name in finetuned)
    assert executed.index("finetune/adapted/random+dot/rte/seed1") > executed.index(
        "adapted_models/random+dot"
    )

    # Each run is the script's own run: its command is recorded, and the adapted stage starts from the
    # adapted checkpoint, the converted stage from the BERT.
    record = json.loads((output / "finetune/adapted/random+dot/rte/seed1/study_run.json").read_text())
    assert "scripts/run_glue.py" in record["command"] and "adapted_models/random+dot" in record["command"]
    record = json.loads((output / "finetune/converted/random+dot/rte/seed0/study_run.json").read_text())
    assert "--init_from_bert" in record["command"] and "--learning_rate" in record["command"]
    adapted = json.loads((output / "adapted_models/random+dot/run_info.json").read_text())
    assert adapted["train_steps"] == 2
    # The adaptation's record outlives its checkpoint: metrics and learning curve, which the plot draws.
    record = summary["adaptation"]["random+dot"]
    assert "scripts/pretrain_mlm.py" in record["command"] and record["metrics"]["eval_loss"] > 0
    assert [entry["step"] for entry in record["log_history"] if "loss" in entry] == [1, 2]
    for name in ("scores_adapted", "scores_converted", "adaptation"):
        assert (output / f"{name}.png").is_file()

    table = summary["table"]
    assert table["adapted"]["dot"]["rte"]["seeds"] == 2 and table["adapted"]["dot"]["rte"]["sd"] is not None
    assert table["converted"]["random+dot"]["rte"]["seeds"] == 1 and "cb" not in table["converted"]["dot"]
    assert table["adapted"]["random+dot"]["superglue_average"]["tasks"] == 2  # RTE counts in SuperGLUE too
    # dot against itself: 1, unless these runs shared the cores (a busy test machine): then no speed at all
    assert table["adapted"]["dot"]["speed_vs_dot"] in (None, pytest.approx(1.0))
    run_metrics = json.loads((output / "finetune/adapted/dot/rte/seed0/summary.json").read_text())["tasks"][
        "rte"
    ]
    assert 0 < run_metrics["train_cpu_share"] <= 1.5
    assert "| random+dot |" in (output / "tables.md").read_text()

    # Last, the speed probe: every variant fine-tuned in one run on the same batches, interleaved by rounds.
    speed = json.loads((output / "speed.json").read_text())
    assert speed["probe"] == probe and list(speed["variants"]) == ["dot", "random+dot"]
    dot, mixture = speed["variants"]["dot"], speed["variants"]["random+dot"]
    assert len(dot["rounds"]) == 2 and dot["vs_reference"] == 1.0 and mixture["samples_per_second"] > 0
    # two timed steps of 4 rows after the untimed one, and the same batches (token counts) for both variants
    assert [r["samples"] for r in dot["rounds"]] == [8, 8]
    assert [r["tokens"] for r in dot["rounds"]] == [r["tokens"] for r in mixture["rounds"]]
    assert mixture["vs_reference"] == pytest.approx(mixture["samples_per_second"] / dot["samples_per_second"])
    assert "--max_steps 3" in speed["commands"]["random+dot"] and not (output / "speed").exists()
    assert "| random+dot |" in summary["tables"].split("fine-tuning speed")[1]

    # Everything is finished: a rerun executes nothing (nor measures again), even with the adapted checkpoints
    # gone.
    executed.clear()
    shutil.rmtree(output / "adapted_models")
    rerun = run_warm_start_study(study, data_dir, output)
    assert executed == [] and rerun["table"] == json.loads(json.dumps(table))
    assert json.loads((output / "speed.json").read_text()) == speed

    # One command rebuilds each adapted checkpoint (adapting again where it is gone) as a Hub folder whose card
    # carries the variant's measured results.
    folders = write_hub_folders(
        study, data_dir, output, tmp_path / "hub", command="python scripts/run_study.py x"
    )
    assert executed == ["adapted_models/dot", "adapted_models/random+dot"]
    card = (folders[1] / "README.md").read_text()
    assert "random+dot" in card and "| rte |" in card and "python scripts/run_study.py x" in card
    config = json.loads((folders[1] / "config.json").read_text())
    assert "AutoModelForSequenceClassification" in config["auto_map"]
    assert (folders[1] / "model.safetensors").is_file() and (folders[1] / "tokenizer.json").is_file()


@pytest.mark.slow
def test_an_interrupted_adaptation_resumes_from_its_last_checkpoint(tmp_path, bert, data_dir, caplog):
    study = load_warm_start_study(
        study_file(tmp_path, bert, variants=["dot"], selection=None, tasks={"cb": {}}, seeds=[0],
                   stages={"adapted": [0]})
    )  # fmt: skip
    output = tmp_path / "out"
    run_warm_start_study(study, data_dir, output)
    adapted = output / "adapted_models" / "dot"
    (adapted / "eval_results.json").unlink()  # as if it had stopped after its last checkpoint
    shutil.rmtree(output / "finetune")
    with caplog.at_level(logging.INFO, logger="synthesizer_tools"):
        run_warm_start_study(study, data_dir, output)
    assert any("Resuming from" in message and "checkpoint-2" in message for message in caplog.messages)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": ["random"]}, "`dot` (the BERT itself)"),
        ({"variants": ["dot", "randomm"]}, "variants[1] 'randomm'"),
        ({"tasks": {"rte": {"seed": [0]}}}, "tasks.rte.seed: unknown field"),
        ({"tasks": {"mnli2": {}}}, "unknown task 'mnli2'"),
        ({"stages": {"adapted": [0, 5]}}, "stages.adapted: seed 5 is not in `seeds`"),
        ({"stages": {"pretrained": [0]}}, "stages.pretrained: unknown stage"),
        ({"tasks": {"rte": {"stages": ["adapt"]}}}, "tasks.rte.stages: unknown stage 'adapt'"),
        ({"finetuning": {"seed": 3}}, "finetuning.seed: set by the study itself"),
        ({"selection": {"grid": {"learning_rate": [1e-4]}}}, "selection.tasks: required field missing"),
        ({"finetuning": {"max_seq_length": 32, "learning_rat": 1e-4}}, "do not parse"),
        ({"tasks": {"rte": {"arguments": {"max_seq_length": 64}}}}, "tasks.rte: max_seq_length 64 exceeds"),
        ({"speed": {"task": "rte", "step": 3}}, "speed.step: unknown field"),
        ({"speed": {"task": "rte", "rounds": 0}}, "speed.rounds must be at least 1"),
        ({"speed": {"task": "mnli3"}}, "unknown task 'mnli3'"),
    ],
)
def test_a_bad_study_file_is_refused_before_anything_trains_naming_the_field(
    tmp_path, bert, changes, message
):
    with pytest.raises(StudyFileError, match=re.escape(message)):
        load_warm_start_study(study_file(tmp_path, bert, **changes))


def test_the_shipped_paper_study_is_a_valid_study_file():
    study = load_warm_start_study(Path(__file__).parents[1] / "studies" / "paper_glue_minilm.json")
    assert study.variants[0] == "dot" and study.bert == "minilm"
    assert study.speed is not None and study.speed.task in study.tasks


def test_bert_folder_resolves_a_folder_the_offline_minilm_and_refuses_unknown_names(tmp_path, monkeypatch):
    assert bert_folder(tmp_path) == tmp_path
    package, folder = OFFLINE_BERTS["minilm"]
    fake = tmp_path / "site" / package
    (fake / folder).mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert bert_folder("minilm") == fake / folder
    with pytest.raises(ValueError, match="neither a folder"):
        bert_folder("no-such-bert")
    with pytest.raises(ValueError, match="downloading it from the Hub failed"):
        bert_folder("nobody/no-such-bert")  # HF_HUB_OFFLINE=1 in the suite


def test_the_speed_row_reads_only_runs_that_had_the_machine_to_themselves():
    """A run beside other work records a low `train_cpu_share`; its samples/s would measure the other work too."""
    from synthesizer_tools.warm_start_study import QUIET_CPU_SHARE, summarize

    def record(variant, seed, speed, share):
        return {
            "stage": "adapted",
            "variant": variant,
            "task": "rte",
            "seed": seed,
            "score": 0.5,
            "metrics": {},
            "train_samples_per_second": speed,
            "train_cpu_share": share,
        }

    quiet, busy = QUIET_CPU_SHARE + 0.1, QUIET_CPU_SHARE - 0.3
    records = [
        record("dot", 0, 10.0, quiet),
        record("random", 0, 15.0, quiet),
        record("dot", 1, 10.0, quiet),
        record("random", 1, 5.0, busy),  # slowed by other work: not read
        record("dot", 2, 10.0, None),  # recorded before the share was: not read
        record("random", 2, 30.0, quiet),
    ]
    table = summarize(records)
    assert table["adapted"]["random"]["speed_vs_dot"] == pytest.approx(1.5)
    assert table["adapted"]["random"]["rte"]["seeds"] == 3, "every run counts for the scores"


@pytest.mark.slow
def test_speed_only_measures_the_probe_now_and_its_flags_are_refused_where_they_do_not_apply(
    tmp_path, bert, data_dir
):
    script = load_script("run_study")
    probe = {"task": "cb", "steps": 1, "rounds": 1}
    output = tmp_path / "out"
    common = ["--data_dir", str(data_dir), "--output_dir", str(output)]
    # Nothing else has run (no grid, no adaptation): the probe uses the study's own fine-tuning arguments.
    script.main(["--config", str(study_file(tmp_path, bert, speed=probe)), *common, "--speed_only"])
    speed = json.loads((output / "speed.json").read_text())
    assert list(speed["variants"]) == ["dot", "random+dot"] and speed["batch_size"] == 4
    assert not (output / "finetune").exists() and not (output / "adapted_models").exists()
    assert "fine-tuning speed" in (output / "tables.md").read_text()

    with pytest.raises(SystemExit, match="has no `speed` probe"):
        script.main(["--config", str(study_file(tmp_path, bert)), *common, "--speed_only"])
    other_study = Path(__file__).parents[1] / "studies" / "mlm_wikitext2.json"
    with pytest.raises(SystemExit, match="--max_runs is for warm_start studies"):
        script.main(["--config", str(other_study), *common, "--max_runs", "2"])
