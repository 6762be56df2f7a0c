"""The docs say only what is true: every script command in README.md, docs/*.md and the model cards parses with
that script's own argument parser (nothing runs), and every test a doc cites exists."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "model_cards").glob("*.md")),
]
# `python scripts/x.py ...`, `.venv/bin/python scripts/x.py ...`, `accelerate launch ... scripts/x.py ...`
COMMAND = re.compile(r"(?:\bpython3?|accelerate launch(?: --?\S+(?: \d+)?)*) scripts/(\w+)\.py\b([^`]*)")
SHELL_ENDS = {">", ">>", "|", "&", "&&", ";", "2>&1"}
# transformers' own common tests (run by hf-peer), which docs/GUARANTEES.md names
TRANSFORMERS_TESTS = {
    "test_{eager,sdpa}_padding_matches_padding_free_with_position_ids",
    "test_generate_compilation_all_outputs",
    "test_generate_compile_model_forward_fullgraph",
    "test_static_cache_no_recompile_with_smaller_length",
    "test_custom_4d_attention_mask",
    "test_bc_cache_name_forward",
}


def code_snippets(text: str) -> list[str]:
    """Fenced blocks (one snippet per logical line, backslash continuations joined) and inline code spans."""
    snippets = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        snippets += re.sub(r"\\\n\s*", " ", block).splitlines()
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    snippets += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", without_blocks)]
    return snippets


def documented_commands() -> list[pytest.param]:
    commands = []
    for doc in DOCS:
        for snippet in code_snippets(doc.read_text(encoding="utf-8")):
            for script, rest in COMMAND.findall(snippet):
                if " ... " in f" {rest} ":  # an elided command (`pretrain_mlm.py ... --bf16`)
                    continue
                argv = []
                for token in shlex.split(rest, comments=True):
                    if token in SHELL_ENDS:
                        break
                    argv.append(token)
                name = f"{doc.relative_to(REPO)}:{script} {' '.join(argv)[:60]}"
                commands.append(pytest.param(script, argv, id=name))
    return commands


def script_parser(script: str) -> Callable[[list[str]], object]:
    """The function that parses a script's command line (and checks it) without running anything."""
    from synthesizer_tools import benchmarking
    from synthesizer_tools.arguments import parse_finetuning_arguments, parse_pretraining_arguments

    program = f"scripts/{script}.py"
    parsers = {
        "pretrain_mlm": lambda argv: parse_pretraining_arguments("mlm", argv, program=program),
        "pretrain_span_corruption": lambda argv: parse_pretraining_arguments("span", argv, program=program),
        "run_glue": lambda argv: parse_finetuning_arguments(argv, program=program),
        "benchmark": benchmarking.parse_args,
    }
    return parsers.get(script) or load_script(script).parse_args


COMMANDS = documented_commands()


def test_the_docs_have_commands_to_check():
    scripts = {param.values[0] for param in COMMANDS}
    assert {
        "pretrain_mlm",
        "run_glue",
        "convert_bert",
        "prepare_hub_folder",
        "benchmark",
        "run_study",
    } <= scripts


@pytest.mark.parametrize(("script", "argv"), COMMANDS)
def test_every_documented_command_parses(script, argv, capsys):
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        pytest.skip("an argument file that the doc writes just before (its keys are the flags checked here)")
    try:
        script_parser(script)(argv)
    except SystemExit as exit:
        pytest.fail(
            f"scripts/{script}.py {' '.join(argv)}\n{capsys.readouterr().err[-1500:]} (exit {exit.code})"
        )


def defined_tests() -> dict[str, set[str]]:
    """Every test function of the suite: name -> the files that define it."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "tests").rglob("*.py"):
        for name in re.findall(r"^\s*def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.M):
            found.setdefault(name, set()).add(path.relative_to(REPO).as_posix())
    return found


def test_every_test_a_doc_cites_exists():
    """`test_x` anywhere in tests/; `tests/file.py::test_x` (and `::test_y` after it) in that file."""
    tests, missing = defined_tests(), []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for span in re.findall(r"`([^`]*\btest_[^`]*)`", text):
            for path, name in re.findall(
                r"(?:(tests/[\w/]+\.py)?::)?(?<![/\w])(test_[\w{},]+)(?![\w.])", span
            ):
                if name in TRANSFORMERS_TESTS:
                    continue
                if name not in tests or (path and path not in tests[name]):
                    missing.append(f"{doc.relative_to(REPO)}: {path + '::' if path else ''}{name}")
        for path in re.findall(r"`(tests/[\w/]+\.py)", text):
            if not (REPO / path).is_file():
                missing.append(f"{doc.relative_to(REPO)}: {path}")
    assert not missing, "\n".join(missing)


def test_the_training_guide_lists_every_script():
    text = (REPO / "docs" / "TRAINING.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `scripts/(\w+)\.py` \|", text, flags=re.M))
    assert listed == {path.stem for path in (REPO / "scripts").glob("*.py")}
    numbers = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
    ]
    assert text.split("\n", 3)[2].startswith(f"{numbers[len(listed)].capitalize()} scripts")


def test_the_library_defaults_benchmark_command_runs_the_library_defaults():
    """The tables of docs/BENCHMARKS.md's library-defaults run (runs/benchmark2) and the family cards are
    reproduced only with `--configuration defaults` (the benchmark's default is now `equal`)."""
    from synthesizer_tools import benchmarking

    commands = [argv for script, argv in (param.values for param in COMMANDS) if "runs/benchmark2" in argv]
    assert len(commands) >= 5, "BENCHMARKS.md, README.md and the four family cards"
    for argv in commands:
        assert benchmarking.parse_args(argv).configuration == "defaults", " ".join(argv)
