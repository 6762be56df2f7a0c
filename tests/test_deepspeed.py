"""DeepSpeed ZeRO-3 on CPU: the models build and load partitioned through HF's integration (a subprocess, since
DeepSpeed sets up process-global state). deepspeed is installed by `make install-newest` only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SUBPROCESS_TIMEOUT, free_port, tiny_config
from synthesizer_hf import SynthesizerForMaskedLM

pytest.importorskip(
    "deepspeed", reason="deepspeed is not installed (pip install --no-build-isolation deepspeed)"
)
WORKER = Path(__file__).parent / "workers" / "deepspeed_build.py"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["random+dot", "conv_relu_conv"])
def test_zero3_builds_and_loads_partitioned(tmp_path, variant):
    checkpoint = tmp_path / "checkpoint"
    SynthesizerForMaskedLM(tiny_config(variant)).save_pretrained(checkpoint)
    output = tmp_path / "result.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "MASTER_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, str(WORKER), str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(output.read_text())
    assert outcome["zero3"] and outcome["partitioned"] == [True, True]
    assert outcome["max_difference"] == 0.0, "the gathered weights are the checkpoint's"
