"""The session's setup: offline, one thread, a fixed seed before every test. Shared helpers live in helpers.py."""

import os
from importlib.metadata import version

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_report_header(config):
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("torch", "transformers", "datasets", "accelerate")
    )
    return f"synthesizer-hf suite on {versions}"
