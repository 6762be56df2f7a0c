"""The README's Python examples run as written. A block that starts with CONTINUES runs after the block before
it, in the same namespace and folder; a block that imports an optional extra is skipped where that extra is not
installed (the newest end of `make test` installs them all)."""

import re
from pathlib import Path

import pytest

from synthesizer_hf.synthesizers import SYNTHESIZERS

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE_HEADER = "| `attention_type` | paper name | logits S(X) per head |\n| --- | --- | --- |\n"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
CONTINUES = "# (continues the block above)"
OPTIONAL = ("evaluate", "onnxruntime", "peft")  # the [evaluate], [onnx] and [peft] extras


def chain(index: int) -> list[int]:
    """The block and the blocks it continues, first to last."""
    return [*chain(index - 1), index] if BLOCKS[index].startswith(CONTINUES) else [index]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    for module in OPTIONAL:
        if re.search(rf"^(import|from) {module}\b", BLOCKS[index], flags=re.M):
            pytest.importorskip(module, reason=f"the README block needs {module}, an optional extra")
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__readme__"}
    for block in chain(index):
        exec(compile(BLOCKS[block], f"README.md block {block}", "exec"), scope)


def registry_rows() -> list[str]:
    """The variant table's rows as the synthesizer registry spells them, in its order."""
    rows = []
    for name, cls in SYNTHESIZERS.items():
        aliases = ", ".join(f"`{alias}`" for alias in cls.aliases)
        rows.append(f"| `{name}`{f' ({aliases})' if aliases else ''} | {cls.paper_name} | {cls.logits} |")
    return rows


def test_the_variant_table_is_the_registry():
    """Every registered synthesizer has its row (and no other row claims one), with the registry's words."""
    table = README.read_text(encoding="utf-8").split(TABLE_HEADER, 1)[1].split("\n")
    expected = registry_rows()
    assert table[: len(expected)] == expected, (
        "README's variant table, as the registry has it:\n" + "\n".join(expected)
    )
    assert table[len(expected)].startswith("| `a+b+...`"), "the mixtures' row follows the variants"
