"""The README's Python examples run as written. A block that starts with CONTINUES runs after the block before
it, in the same namespace and folder; a block that imports an optional extra is skipped where that extra is not
installed (the newest end of `make test` installs them all)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
CONTINUES = "# (continues the block above)"
OPTIONAL = ("evaluate", "onnxruntime", "peft")  # the [evaluate], [onnx] and [peft] extras


def chain(index: int) -> list[int]:
    """The block and the blocks it continues, first to last."""
    return [*chain(index - 1), index] if BLOCKS[index].startswith(CONTINUES) else [index]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    for module in OPTIONAL:
        if re.search(rf"^(import|from) {module}\b", BLOCKS[index], flags=re.M):
            pytest.importorskip(module, reason=f"the README block needs {module}, an optional extra")
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__readme__"}
    for block in chain(index):
        exec(compile(BLOCKS[block], f"README.md block {block}", "exec"), scope)
