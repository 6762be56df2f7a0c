"""What several test files share: the tiny model every test builds, the variant lists, and ways to run a script or
a process group. (conftest.py only sets up the session: offline, one thread, a fixed seed per test.)"""

import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NoReturn

import torch

from synthesizer_hf import ATTENTION_COMPONENTS, SynthesizerConfig

# Every synthesizing function on its own, plus the paper's main mixtures.
SINGLE_VARIANTS = list(ATTENTION_COMPONENTS)
MIXTURES = [
    "random+dot",
    "dense+dot",
    "factorized_random+dot",
    "random+dense",
    "factorized_dense+symmetric_dot",
    "bottleneck_conv_relu_conv+dot",
]
ALL_VARIANTS = SINGLE_VARIANTS + MIXTURES

# Upper bound for a test's child process. It only has to catch a hang: CI machines under load run the
# multi-process tests several times slower than a quiet one, and a tight bound there fails good code.
SUBPROCESS_TIMEOUT = 900


def tiny_config(attention_type="random", **overrides) -> SynthesizerConfig:
    """A 2-layer, 4-head, hidden-32 model with L = 16 and no dropout (so outputs are deterministic)."""
    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=16,
        factorized_random_rank=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attention_type=attention_type,
        synthesizer_initializer_range=0.5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    values.update(overrides)
    return SynthesizerConfig(**values)


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package), so its main(argv) runs in this process."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_without_package(body: str, cwd: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    """Run Python code where `synthesizer_hf` cannot be imported (as for a user loading a shared folder with
    trust_remote_code): `-I -S` skips PYTHONPATH, the user site and .pth files (so no editable install);
    only the plain site-packages directory (torch, transformers) of `python` is put back on the path."""
    # asked of the interpreter itself: under -S it no longer knows its virtual environment
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    prelude = f"""
import sys
sys.path.append({purelib!r})
import importlib.util
assert importlib.util.find_spec("synthesizer_hf") is None, "package must not be importable here"
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "modules"))
    return subprocess.run(
        [python, "-I", "-S", "-c", prelude + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=SUBPROCESS_TIMEOUT,
    )


def free_port() -> int:
    """A TCP port nobody listens on now, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def leave_process_group() -> NoReturn:
    """End a worker process that ran a gloo process group: wait for every rank, tear the group down, then exit
    without finalizing Python. Call it once everything the worker writes is written and closed.

    Why: gloo's threads can outlive `destroy_process_group` while they hold work objects whose tensors Python owns
    (DTensor's sharding caches keep FSDP's device mesh alive, DeepSpeed's ZeRO-3 keeps its own references). A
    normal exit finalizes the interpreter, and a thread that then needs the GIL aborts the process with
    "terminate called without an active exception" (SIGABRT), after the work is done. It happened rarely, on
    a loaded machine, to both the FSDP and the DeepSpeed workers. torch has no fix for it yet (an atexit teardown,
    pytorch/pytorch#179291, was abandoned).
    """
    import torch.distributed as dist

    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def all_finite_gradients(model: torch.nn.Module) -> None:
    """Backward reached some parameter, and every gradient it left is finite."""
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    assert grads, "backward reached no parameter"
    for name, grad in grads:
        assert torch.isfinite(grad).all(), f"non-finite gradient in {name}"
