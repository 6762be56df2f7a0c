"""Build and load a Synthesizer under DeepSpeed ZeRO-3 (one CPU process, gloo), as HF's integration does.

With an `HfDeepSpeedConfig` alive, `from_config` / `from_pretrained` create the parameters inside
`deepspeed.zero.Init`, partitioned from the start. argv[1]: a saved checkpoint folder; argv[2]: JSON output
(whether every parameter is partitioned, and the largest difference of the gathered weights from the
checkpoint's).
"""

import json
import os
import sys

for key, value in {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
    os.environ.setdefault(key, value)

import deepspeed  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoConfig, AutoModelForMaskedLM  # noqa: E402
from transformers.integrations import HfDeepSpeedConfig  # noqa: E402

import synthesizer_hf  # noqa: E402, F401  (registers the Auto classes)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import leave_process_group  # noqa: E402


def main(checkpoint: str, output: str) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    zero3 = HfDeepSpeedConfig({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}})
    built = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(checkpoint))
    loaded = AutoModelForMaskedLM.from_pretrained(checkpoint)
    saved = load_file(os.path.join(checkpoint, "model.safetensors"))
    difference = 0.0
    for name, parameter in loaded.named_parameters():
        with deepspeed.zero.GatheredParameters(parameter):
            if name in saved:
                difference = max(difference, (parameter.data - saved[name]).abs().max().item())
    partitioned = [
        all(p.numel() == 0 and hasattr(p, "ds_id") for p in m.parameters()) for m in (built, loaded)
    ]
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(
            {"partitioned": partitioned, "max_difference": difference, "zero3": zero3.is_zero3()}, handle
        )
    leave_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
