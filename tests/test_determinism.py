"""The same seed gives the same logits and gradients, and a run killed after a checkpoint resumes to the same
weights. The guarantees, with their tests: docs/GUARANTEES.md."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import set_seed

from helpers import ALL_VARIANTS, SUBPROCESS_TIMEOUT, tiny_config
from synthesizer_hf import (
    SynthesizerForMaskedLM,
)

# Training faults: SIGKILL after the first checkpoint, resume, same final weights

TRAINING_SCRIPT = textwrap.dedent(
    '''
    """Three tiny Trainer runs in forked children, so torch/transformers are imported once. argv: work dir.

    reference: 12 uninterrupted steps; interrupted: SIGKILLed at step 6 (after checkpoint-4, before
    checkpoint-8); resumed: train(resume_from_checkpoint=True) in a fresh process on the same folder.
    """
    import json
    import os
    import signal
    import sys

    import torch

    torch.set_num_threads(1)
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from synthesizer_hf import SynthesizerConfig, SynthesizerForSequenceClassification

    KILL_AT_STEP = 6


    class Data(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            generator = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(3, 50, (n, 10), generator=generator)
            self.mask = torch.ones_like(self.ids)
            self.mask[::3, 7:] = 0
            self.labels = (self.ids[:, 0] > 25).long()

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


    class Probe(TrainerCallback):
        def __init__(self, crash):
            self.crash, self.steps = crash, 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1
            if self.crash and state.global_step == KILL_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)


    def train(output_dir, mode):
        config = SynthesizerConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=12, factorized_random_rank=3,
            attention_type=["random+dot", "factorized_dense"],
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=2,
        )
        args = TrainingArguments(
            output_dir=output_dir, max_steps=12, per_device_train_batch_size=8, learning_rate=3e-3,
            save_strategy="steps", save_steps=4, eval_strategy="no", logging_steps=1, seed=123,
            full_determinism=True, report_to=[], disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
        )
        set_seed(123)
        probe = Probe(crash=mode == "crash")
        trainer = Trainer(
            model=SynthesizerForSequenceClassification(config), args=args,
            train_dataset=Data(40, 0), eval_dataset=Data(16, 1), callbacks=[probe],
        )
        trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
        metrics = trainer.evaluate()
        trainer.save_model(os.path.join(output_dir, "final"))
        with open(os.path.join(output_dir, "final", "run.json"), "w") as f:
            json.dump({"eval_loss": metrics["eval_loss"], "global_step": trainer.state.global_step,
                       "steps_run": probe.steps}, f)


    def in_child(output_dir, mode):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                train(output_dir, mode)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return {"signal": os.WTERMSIG(status)}
        return {"exit": os.WEXITSTATUS(status)}


    work = sys.argv[1]
    interrupted = os.path.join(work, "interrupted")
    report = {"reference": in_child(os.path.join(work, "reference"), "full")}
    report["crash"] = in_child(interrupted, "crash")
    report["after_crash"] = sorted(os.listdir(interrupted))
    report["resume"] = in_child(interrupted, "resume")
    print("REPORT", json.dumps(report))
    '''
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the training script forks its runs")
def test_training_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINING_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert report["reference"] == {"exit": 0}, result.stderr[-3000:]
    assert report["crash"] == {"signal": 9}, "the interrupted run must die by SIGKILL"
    assert report["after_crash"] == ["checkpoint-4"], "killed after the first checkpoint, before the second"
    assert report["resume"] == {"exit": 0}, result.stderr[-3000:]

    reference = json.loads((tmp_path / "reference" / "final" / "run.json").read_text())
    resumed = json.loads((tmp_path / "interrupted" / "final" / "run.json").read_text())
    assert resumed["steps_run"] == 8, "the resumed run continues from step 4 instead of restarting"
    assert reference["steps_run"] == 12 and reference["global_step"] == resumed["global_step"] == 12
    assert resumed["eval_loss"] == reference["eval_loss"]
    expected = load_file(tmp_path / "reference" / "final" / "model.safetensors")
    got = load_file(tmp_path / "interrupted" / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


# Determinism


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_same_seed_same_logits_and_gradients(variant):
    ids = torch.randint(3, 99, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    for implementation in ("eager", "sdpa"):
        runs = []
        for _ in range(2):
            set_seed(1234)
            config = tiny_config(variant, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
            config._attn_implementation = implementation
            model = SynthesizerForMaskedLM(config).train()  # dropout on: the RNG stream must repeat too
            set_seed(99)
            outputs = model(ids, attention_mask=mask, labels=ids)
            outputs.loss.backward()
            runs.append((outputs.logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
        (logits_a, grads_a), (logits_b, grads_b) = runs
        assert torch.equal(logits_a, logits_b), implementation
        assert grads_a.keys() == grads_b.keys()
        for name in grads_a:
            assert torch.equal(grads_a[name], grads_b[name]), (implementation, name)
