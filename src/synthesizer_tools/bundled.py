"""Files that ship inside the `synthesizer_tools` package: the demo data and the model-card template.

They are package data, so they are found wherever the package is installed (`pip install .` included), not
only in a checkout of the repository.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE = files("synthesizer_tools")
# Small real samples so the demo runs on a fresh clone: WikiText-2 text, SST-2 and RTE (see its README.md).
DEMO_DATA_DIR = Path(str(PACKAGE / "demo_data"))
DEMO_PRETRAIN_FILE = DEMO_DATA_DIR / "pretrain.txt.gz"
# The `string.Template` that `model_card.render_model_card` fills for a checkpoint.
MODEL_CARD_TEMPLATE = Path(str(PACKAGE / "templates" / "model_card.md"))

__all__ = ["DEMO_DATA_DIR", "DEMO_PRETRAIN_FILE", "MODEL_CARD_TEMPLATE"]
