"""The scripts' arguments: dataclasses beside the Trainer's (HfArgumentParser), argument files, project defaults."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from helpers import load_script
from synthesizer_hf.configuration_synthesizer import ATTENTION_ALIASES
from synthesizer_hf.synthesizers import SYNTHESIZERS
from synthesizer_tools.arguments import (
    FINETUNING_DEFAULTS,
    LATEST,
    PRETRAINING_DEFAULTS,
    MaskingArguments,
    SpanCorruptionArguments,
    attention_type_help,
    cpu_only_distributed,
    parse_finetuning_arguments,
    parse_pretraining_arguments,
)

# The scripts that train: each takes every Trainer flag.
TRAINING_SCRIPTS = ["pretrain_mlm", "pretrain_span_corruption", "run_glue", "run_study", "demo"]
STANDARD_TRAINER_FLAGS = [
    "--max_grad_norm",
    "--optim",
    "--report_to",
    "--gradient_accumulation_steps",
    "--seed",
]


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_every_training_script_lists_the_standard_trainer_flags(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(script).main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in STANDARD_TRAINER_FLAGS:
        assert flag in help_text, (script, flag)


def test_trainer_flags_reach_the_trainer_arguments(tmp_path):
    arguments = parse_pretraining_arguments(
        "mlm",
        ["--train_files", "a.txt", "--output_dir", str(tmp_path), "--max_grad_norm", "0.5", "--optim", "adafactor",
         "--gradient_accumulation_steps", "3", "--attention_type", "R+V", "--disable_tqdm", "--mlm_probability", "0.2"],
        program="scripts/pretrain_mlm.py",
    )  # fmt: skip
    training = arguments.training
    assert (training.max_grad_norm, training.optim.value, training.gradient_accumulation_steps) == (
        0.5,
        "adafactor",
        3,
    )
    assert training.disable_tqdm is True, "a `bool | None` Trainer flag works without a value"
    assert arguments.masked_lm and arguments.objective == MaskingArguments(mlm_probability=0.2)
    assert arguments.model.attention_type == ["R+V"]
    assert arguments.command.startswith("python scripts/pretrain_mlm.py --train_files a.txt")
    # the project's defaults where no flag was given
    assert training.learning_rate == PRETRAINING_DEFAULTS["learning_rate"] and training.prediction_loss_only


def test_an_argument_file_holds_a_run_and_gets_the_project_defaults(tmp_path):
    values = {"train_files": ["a.txt"], "output_dir": str(tmp_path / "out"), "optim": "sgd", "max_steps": 7,
              "decoder_attention_type": ["random+dot"], "noise_density": 0.3}  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    (tmp_path / "run.json").write_text(json.dumps(values))
    for name in ("run.yaml", "run.json"):
        arguments = parse_pretraining_arguments("span", [str(tmp_path / name)], program="p.py")
        assert arguments.training.max_steps == 7 and arguments.training.optim.value == "sgd"
        assert arguments.training.learning_rate == PRETRAINING_DEFAULTS["learning_rate"]
        assert arguments.objective == SpanCorruptionArguments(noise_density=0.3)
        assert arguments.model.decoder_attention_type == ["random+dot"]


def test_argument_files_are_checked_like_the_command_line(tmp_path, capsys):
    (tmp_path / "typo.json").write_text(
        json.dumps({"train_files": ["a.txt"], "output_dir": "x", "max_stepz": 1})
    )
    (tmp_path / "no_output.json").write_text(json.dumps({"train_files": ["a.txt"]}))
    for name, message in (("typo.json", "max_stepz"), ("no_output.json", "output_dir is required")):
        with pytest.raises(SystemExit) as exit_info:
            parse_pretraining_arguments("mlm", [str(tmp_path / name)], program="p.py")
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_finetuning_arguments(tmp_path, capsys):
    arguments = parse_finetuning_arguments(
        ["--tasks", "sst2", "rte", "--model_name_or_path", "m", "--output_dir", str(tmp_path), "--no_predict",
         "--resume_from_checkpoint", "--generation_num_beams", "2"],
        program="scripts/run_glue.py",
    )  # fmt: skip
    assert arguments.task.tasks == ["sst2", "rte"] and arguments.task.predict is False
    assert arguments.training.resume_from_checkpoint == LATEST, "no value: the newest checkpoint"
    assert arguments.training.generation_num_beams == 2, "Seq2SeqTrainingArguments: text-to-text generation"
    assert arguments.training.eval_strategy.value == FINETUNING_DEFAULTS["eval_strategy"]
    for argv, message in (
        (["--tasks", "sst2", "--output_dir", "x"], "exactly one of --model_name_or_path"),
        (["--tasks", "sst2", "--from_scratch", "--output_dir", "x"], "needs --tokenizer"),
        (["--tasks", "sst2", "--model_name_or_path", "m", "--resume_from_checkpoint", "c", "--tasks", "a", "b"],
         "unknown task 'a'"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            parse_finetuning_arguments([*argv, "--output_dir", "x"], program="p.py")
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_attention_type_help_comes_from_the_registry():
    text = attention_type_help()
    assert all(name in text for name in SYNTHESIZERS)
    assert all(f"{alias.upper()}={name}" in text for alias, name in ATTENTION_ALIASES.items())


def test_a_launch_on_a_host_without_a_gpu_is_cpu_data_parallel_even_with_a_cuda_build(monkeypatch):
    """A CUDA build of torch names `cuda` as its accelerator on a host that has no GPU: what decides is whether
    one is available (the accelerate launch of a CUDA build on such a host once trained two separate copies)."""
    monkeypatch.setattr(
        torch.accelerator, "current_accelerator", lambda *args, **kwargs: torch.device("cuda")
    )
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cpu_only_distributed()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not cpu_only_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert not cpu_only_distributed()
