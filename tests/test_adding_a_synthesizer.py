"""docs/ADDING_A_SYNTHESIZER.md's worked example works as the page says: its class, added to a copy of
`synthesizers.py` and nothing else, is a variant like the others (registry, config, model, eager vs sdpa, cache,
training, checkpoints), its logits equal the page's float64 reference, and its README row is what the registry
gives. It runs in a fresh process on that copy, so the example never joins the registry of the other tests."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import SUBPROCESS_TIMEOUT

REPO = Path(__file__).resolve().parents[1]
PAGE = (REPO / "docs" / "ADDING_A_SYNTHESIZER.md").read_text(encoding="utf-8")
CLASS, REFERENCE = re.findall(r"```python\n(.*?)```", PAGE, flags=re.S)
README_ROW = re.search(r"```\n(\| `toeplitz_random`.*?)\n```", PAGE, flags=re.S).group(1)

CHECKS = """
import torch
from synthesizer_hf import SynthesizerConfig, SynthesizerForCausalLM, SynthesizerForMaskedLM
from synthesizer_hf.synthesizers import SYNTHESIZERS, Positions, ToeplitzRandomSynthesizer
from test_readme import registry_rows

torch.manual_seed(0)
assert SYNTHESIZERS["toeplitz_random"] is ToeplitzRandomSynthesizer
assert README_ROW in registry_rows(), "the page's README row is the registry's"
sizes = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
             max_position_embeddings=12, hidden_dropout_prob=0.0, synthesizer_initializer_range=0.5)
assert SynthesizerConfig(attention_type="TR+V", **sizes).attention_type == "toeplitz_random+dot"

# the logits equal the float64 reference
model = SynthesizerForMaskedLM(SynthesizerConfig(attention_type="toeplitz_random", **sizes)).double()
synthesizer = model.synthesizer.layers[0].self_attn.synthesizers["toeplitz_random"]
hidden = torch.randn(1, 9, 16, dtype=torch.float64)
logits = synthesizer(hidden, Positions(0, 9, 9), None)
torch.testing.assert_close(logits.bias[0], reference_toeplitz_random(synthesizer, 9), rtol=0, atol=0)

# eager and sdpa agree on a padded batch, in a mixture with dot-product attention
ids = torch.randint(3, 50, (3, 10))
mask = torch.ones_like(ids)
mask[1, 6:] = 0
mixture = SynthesizerForMaskedLM(SynthesizerConfig(attention_type="toeplitz_random+dot", **sizes)).eval()
outputs = {}
for implementation in ("eager", "sdpa"):
    mixture.set_attn_implementation(implementation)
    with torch.no_grad():
        outputs[implementation] = mixture(ids, attention_mask=mask).logits
torch.testing.assert_close(outputs["sdpa"][mask.bool()], outputs["eager"][mask.bool()], atol=1e-5, rtol=1e-5)

# a causal model does not look ahead, and cached generation equals uncached
decoder = SynthesizerForCausalLM(SynthesizerConfig(attention_type="tr", **sizes)).eval()
changed = ids.clone()
changed[:, 7:] = 4
with torch.no_grad():
    torch.testing.assert_close(decoder(ids).logits[:, :7], decoder(changed).logits[:, :7])
    cached = decoder.generate(ids[:1, :4], max_new_tokens=5, do_sample=False, use_cache=True)
    uncached = decoder.generate(ids[:1, :4], max_new_tokens=5, do_sample=False, use_cache=False)
assert torch.equal(cached, uncached)

# training reaches the new table, and a checkpoint reloads exactly
mixture.train()
mixture(ids, attention_mask=mask, labels=ids).loss.backward()
table = mixture.synthesizer.layers[0].self_attn.synthesizers["toeplitz_random"].offset_logits
assert table.grad is not None and table.grad.abs().sum() > 0
mixture.save_pretrained(WORK / "saved")
reloaded = SynthesizerForMaskedLM.from_pretrained(WORK / "saved")
for key, value in mixture.state_dict().items():
    assert torch.equal(reloaded.state_dict()[key], value), key
print("ALL CHECKS PASSED")
"""


@pytest.mark.slow
def test_the_worked_example_is_a_variant_like_the_others(tmp_path):
    package = tmp_path / "src" / "synthesizer_hf"
    shutil.copytree(REPO / "src" / "synthesizer_hf", package, ignore=shutil.ignore_patterns("__pycache__"))
    module = package / "synthesizers.py"
    source = module.read_text(encoding="utf-8")
    exports = source.index("# the registered variants' classes by their names")
    module.write_text(source[:exports] + CLASS + "\n\n" + source[exports:], encoding="utf-8")
    script = "\n".join(
        [
            f"from pathlib import Path\nWORK = Path({str(tmp_path)!r})\nREADME_ROW = {README_ROW!r}",
            "import torch",
            REFERENCE,
            textwrap.dedent(CHECKS),
        ]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), str(REPO / "tests")])}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0 and "ALL CHECKS PASSED" in result.stdout, result.stderr[-3000:]
