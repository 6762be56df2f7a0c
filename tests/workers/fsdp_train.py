"""Train a tiny Synthesizer classifier for a few steps on a fixed batch; under torchrun, sharded with FSDP2.

torch's `fully_shard` wraps every module whose class is in the model's `_no_split_modules` (what accelerate's
TRANSFORMER_BASED_WRAP policy reads), then the whole model, and each rank trains on its part of the batch.
Rank 0 writes the mean loss of every step (and what was wrapped) as JSON to argv[1]; argv[2] is the variant.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from synthesizer_hf import SynthesizerForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import leave_process_group, tiny_config  # tiny_config: the tests' 2-layer, hidden-32 model


def train(attention_type: str, distributed: bool) -> dict:
    """The losses of 4 steps, and the classes `fully_shard` wrapped."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    config = tiny_config(attention_type, num_labels=2)
    model = SynthesizerForSequenceClassification(config)
    wrapped = []
    if distributed:
        for module in list(model.modules()):
            name = type(module).__name__  # fully_shard renames the class (FSDP<name>)
            if name in model._no_split_modules:
                fully_shard(module)
                wrapped.append(name)
        fully_shard(model)
        assert all(isinstance(p, DTensor) for p in model.parameters()), "every parameter is sharded"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 99, (8, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[3, 10:] = 0
    labels = torch.randint(0, 2, (8,), generator=generator)
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows]).loss
        loss.backward()  # FSDP averages the gradients over the ranks: the full batch's mean gradient
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        if distributed:
            dist.all_reduce(mean)
            mean /= world
        losses.append(mean.item())
    return {"losses": losses, "wrapped": wrapped, "world_size": world}


def main(output: str, attention_type: str) -> None:
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    record = train(attention_type, distributed)
    if int(os.environ.get("RANK", 0)) == 0:
        with open(output, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
    if distributed:
        leave_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
