"""The layout of the two packages: the model library apart from its tools, package data that ships, no import
cycles, every list of variants derived from the synthesizer registry."""

from __future__ import annotations

import ast
import math
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from helpers import SUBPROCESS_TIMEOUT
from synthesizer_hf.synthesizers import SYNTHESIZERS
from synthesizer_tools import benchmark_measure, benchmark_report, benchmarking, model_card
from synthesizer_tools.bundled import DEMO_DATA_DIR, DEMO_PRETRAIN_FILE, MODEL_CARD_TEMPLATE
from synthesizer_tools.records import perplexity
from synthesizer_tools.studies import final_metrics

REPO = Path(__file__).resolve().parents[1]
LIBRARY, TOOLS = REPO / "src" / "synthesizer_hf", REPO / "src" / "synthesizer_tools"
PACKAGE_DATA = ["templates/model_card.md", "demo_data/README.md", "demo_data/pretrain.txt.gz",
                "demo_data/glue/SST-2/train.tsv", "demo_data/glue/SST-2/dev.tsv", "demo_data/glue/RTE/train.tsv",
                "demo_data/glue/RTE/dev.tsv"]  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package)."""
    package = f"{path.parent.name}"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = f"{package}.{node.module}" if node.level else node.module
            names.add(base if node.module else package)
            names |= (
                {f"{package}.{alias.name}" for alias in node.names}
                if node.level and not node.module
                else set()
            )
    return names


def test_the_library_never_imports_the_tools():
    for path in LIBRARY.glob("*.py"):
        assert not {name for name in imported_modules(path) if name.startswith("synthesizer_tools")}, (
            path.name
        )


def test_the_tools_live_outside_the_library():
    moved = {
        "training",
        "tasks",
        "metrics",
        "tokenization",
        "studies",
        "benchmarking",
        "benchmark_measure",
        "benchmark_report",
        "model_card",
    }
    assert not moved & {path.stem for path in LIBRARY.glob("*.py")}
    assert not [path for path in LIBRARY.iterdir() if path.is_dir() and path.name != "__pycache__"], "no data"


def test_the_tools_have_no_import_cycle():
    graph = {
        f"synthesizer_tools.{path.stem}": {
            name for name in imported_modules(path) if name.startswith("synthesizer_tools.")
        }
        for path in TOOLS.glob("*.py")
    }
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, f"import cycle: {' -> '.join((*stack, module))}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*stack, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_package_data_is_read_through_importlib_resources():
    package = files("synthesizer_tools")
    for name in PACKAGE_DATA:
        assert (package / name).is_file(), name
    assert "$attention_section" in (package / "templates" / "model_card.md").read_text(encoding="utf-8")
    assert MODEL_CARD_TEMPLATE.is_file() and DEMO_PRETRAIN_FILE.is_file()
    assert (DEMO_DATA_DIR / "glue" / "SST-2" / "dev.tsv").is_file()


@pytest.mark.slow
def test_a_built_wheel_ships_the_package_data_and_finds_it_when_installed(tmp_path):
    """Build the wheel (no network: --no-build-isolation), unpack it as an install would, and read the template
    and the demo data from there, with the checkout out of reach (`-I -S`: no editable install)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in (LIBRARY, TOOLS):
        shutil.copytree(package, source / "src" / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel"),
         str(source)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"synthesizer_tools/{name}" for name in PACKAGE_DATA} <= names
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    script = f"""
import sys
sys.path[:0] = [{str(installed)!r}]
sys.path.append({sysconfig.get_paths()["purelib"]!r})
import synthesizer_tools
from synthesizer_tools.bundled import DEMO_PRETRAIN_FILE, MODEL_CARD_TEMPLATE
from synthesizer_tools.tokenization import iter_text_files
assert synthesizer_tools.__file__.startswith({str(installed)!r}), synthesizer_tools.__file__
assert "$attention_section" in MODEL_CARD_TEMPLATE.read_text()
print(next(iter_text_files(DEMO_PRETRAIN_FILE))[:20])
"""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_variant_list_of_the_tools_comes_from_the_registry():
    pure = {name for name, cls in SYNTHESIZERS.items() if not cls.uses_token_keys}
    assert set(benchmark_measure.PURE_SYNTHESIZERS) == pure
    assert set(benchmark_measure.RANDOM_FAMILY) == {
        name for name, cls in SYNTHESIZERS.items() if cls.input_independent
    }
    assert set(benchmark_measure.VARIANTS) == set(SYNTHESIZERS) | {f"{name}+dot" for name in pure}
    assert set(model_card.ATTENTION_VARIANTS) == set(SYNTHESIZERS)
    for target in benchmark_report.TARGETS:  # the per-variant performance goals name variants that exist
        assert set(target.contenders) <= set(benchmark_measure.VARIANTS), target.description


@pytest.mark.parametrize("name", list(SYNTHESIZERS))
def test_the_model_card_describes_every_synthesizer(name):
    from synthesizer_hf import SynthesizerConfig

    config = SynthesizerConfig(
        attention_type=f"{name}+dot" if name != "dot" else name, max_position_embeddings=64
    )
    text = model_card.describe_attention(config)
    assert SYNTHESIZERS[name].paper_name in text and SYNTHESIZERS[name].logits in text
    table = model_card.details_table(config, 1)
    for field in SYNTHESIZERS[name].config_fields:
        if field != "synthesizer_length":
            assert f"`{field}`" in table, field


def test_perplexity_is_inf_when_the_loss_overflows():
    assert perplexity(2.0) == pytest.approx(math.exp(2.0))
    assert perplexity(1e4) == math.inf, "a diverged run: inf, not an OverflowError nor a capped value"
    assert final_metrics("mlm", {"eval_loss": 1e4}, None)["perplexity"] == math.inf, (
        "studies use the same one"
    )
    assert math.isnan(perplexity(math.nan))


def test_the_benchmark_does_not_shell_out_nor_name_a_script():
    for module in (benchmark_measure, benchmark_report, benchmarking):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert "subprocess" not in source and "scripts/" not in source and '"git"' not in source, module
