"""LoRA through `peft` on every variant: Linear (and Conv1d) layers with `target_modules`, the raw synthesizer
tables with `target_parameters`; training with the Trainer, the adapter folder, reloading it where the package
is absent (trust_remote_code), and merging."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Trainer, TrainingArguments

from helpers import run_without_package, tiny_config
from synthesizer_hf import SynthesizerForSequenceClassification
from synthesizer_hf.synthesizers import SYNTHESIZERS

peft = pytest.importorskip("peft", reason="peft is not installed: pip install 'synthesizer-hf[peft]'")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.lora import ParamWrapper  # noqa: E402
from peft.tuners.lora import layer as lora_layers  # noqa: E402

# The raw tables: R (random), R1/R2 (factorized random), W2 of the dense family (position_weights), the pairwise
# matrices P_h and the factorized dense maps; each `[heads, ...]`, which PEFT adapts as a stack of per-head
# matrices (a rank-r update per head). fixed_random's R is a buffer: frozen by design, nothing to adapt.
TABLES = (
    "random_logits",
    "random_query_factors",
    "random_key_factors",
    "position_weights",
    "pairwise_coefficients",
    "weight_a",
    "weight_b",
)
# Every Linear of the encoder by name, for `target_modules` without "all-linear". A regex: the synthesizer called
# `dense` (`...synthesizers.dense`) is a module too, and not one PEFT can wrap.
MODULE_NAMES = (
    r".*(?<!synthesizers)\.(query|key|value|dense|gate|down|up|self_attn_output|intermediate|output)$"
)
CONV_VARIANTS = sorted(name for name, cls in SYNTHESIZERS.items() if cls.reads_neighbours)
# PEFT wraps the synthesizer holding a targeted table in a ParamWrapper, which hides the synthesizer's methods
# other than forward; the attention layer calls `cached_per_token` of these on the synthesizer inside the wrapper.
TOKEN_KEY_TABLE_VARIANTS = sorted(
    {name for name, cls in SYNTHESIZERS.items() if cls.uses_token_keys or cls.reads_neighbours}
    - {"dot", "symmetric_dot"}  # these two have no table
)


def merge_and_unload_all(model):
    """`merge_and_unload()`, then the LoRA layers it leaves: peft (0.21) skips the modules inside a wrapped
    synthesizer (a ParamWrapper), so the Linear layers of a synthesizer whose table is adapted (the dense family's
    W1, glu's gate, the bottleneck maps) stay LoRA layers, unmerged. The same lines are in docs/TRAINING.md."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = model.merge_and_unload()
    leftovers = [(name, m) for name, m in merged.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in reversed(leftovers):  # the innermost first
        module.merge()
        parent, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent), child, module.get_base_layer())
    return merged


def tables_of(model) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_parameters()} & set(TABLES))


def batch(size=4, length=10):
    ids = torch.randint(5, 99, (size, length))
    mask = torch.ones_like(ids)
    mask[-1, length - 3 :] = 0
    return ids, mask


def lora_config(target_modules, tables, **overrides) -> LoraConfig:
    settings = dict(
        task_type="SEQ_CLS",
        r=2,
        lora_alpha=4,
        lora_dropout=0.0,  # PEFT's parameter adapters refuse dropout
        target_modules=target_modules,
        target_parameters=tables or None,
    )
    settings.update(overrides)
    return LoraConfig(**settings)


def train_steps(model, ids, mask, labels, steps=8) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("targets", ["all-linear", "names"])
@pytest.mark.parametrize("variant", list(SYNTHESIZERS))
def test_lora_trains_and_merges_exactly_on_every_variant(variant, targets):
    base = SynthesizerForSequenceClassification(tiny_config(variant, num_labels=2)).eval()
    ids, mask = batch()
    with torch.no_grad():
        base_logits = base(input_ids=ids, attention_mask=mask).logits
    base_keys = set(base.state_dict())
    tables = tables_of(base)
    target_modules = "all-linear" if targets == "all-linear" else MODULE_NAMES
    model = get_peft_model(base, lora_config(target_modules, tables))

    adapted_tables = {m.parameter_name for m in model.modules() if isinstance(m, ParamWrapper)}
    assert adapted_tables == set(tables)
    wrapped = {
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if isinstance(m, lora_layers.Linear | lora_layers.Conv1d) and not isinstance(m, ParamWrapper)
    }
    assert {"value", "intermediate", "output", "self_attn_output"} <= wrapped
    if variant in ("dot", "symmetric_dot", "pairwise_dot"):
        assert "query" in wrapped
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)

    losses = train_steps(model, ids, mask, torch.tensor([0, 1, 0, 1]))
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        adapter_logits = model(input_ids=ids, attention_mask=mask).logits
    merged = merge_and_unload_all(model)
    assert type(merged) is SynthesizerForSequenceClassification
    assert set(merged.state_dict()) == base_keys, "a merged model has the plain layout"
    with torch.no_grad():
        merged_logits = merged(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-5, rtol=0)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-4), "the adapter changed nothing"


def check_adapter_acts_and_merges(base, config) -> None:
    """An adapter with non-zero LoRA B changes the encoder's output, and merging reproduces it."""
    ids, mask = batch()

    def encoded(model):
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]

    before = encoded(base)
    model = get_peft_model(base, config)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero (no change); give the update a value that shows
            torch.nn.init.normal_(parameter, std=5.0)
    adapted = encoded(model)
    assert (adapted - before).abs().max() > 1e-3, "the adapter changed nothing"  # 100x the merge tolerance
    torch.testing.assert_close(encoded(merge_and_unload_all(model)), adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", TOKEN_KEY_TABLE_VARIANTS)
def test_lora_on_the_tables_of_token_key_synthesizers(variant):
    base = SynthesizerForSequenceClassification(tiny_config(variant, num_labels=2)).eval()
    check_adapter_acts_and_merges(base, lora_config([], tables_of(base)))


@pytest.mark.parametrize("variant", CONV_VARIANTS)
def test_lora_on_the_convolutions_of_the_convolutional_synthesizers(variant):
    base = SynthesizerForSequenceClassification(tiny_config(variant, num_labels=2)).eval()
    check_adapter_acts_and_merges(base, lora_config(r".*\.conv$", []))


@pytest.mark.slow
def test_adapter_trains_with_the_trainer_and_reloads_where_the_package_is_absent(tmp_path):
    from datasets import Dataset

    torch.manual_seed(0)
    config = tiny_config(["random+dot", "factorized_random+dense"], num_labels=2)
    base = SynthesizerForSequenceClassification(config).eval()
    base.save_pretrained(tmp_path / "base")  # the base checkpoint the adapter is applied to
    ids = torch.randint(5, 99, (32, 12))
    labels = (ids[:, 0] > 50).long()  # a learnable rule: the class of the first (the pooled) token
    rows = [
        {"input_ids": i.tolist(), "attention_mask": [1] * 12, "labels": int(y)} for i, y in zip(ids, labels)
    ]

    tables = tables_of(base)
    assert tables == ["position_weights", "random_key_factors", "random_logits", "random_query_factors"]
    model = get_peft_model(base, lora_config("all-linear", tables, r=4, lora_alpha=8))
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_train_epochs=8,
        learning_rate=2e-2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4

    model.save_pretrained(tmp_path / "adapter")
    files = {path.name for path in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert "model.safetensors" not in files, "an adapter folder holds the adapter only"
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert sorted(saved["target_parameters"]) == tables

    model.eval()
    test_ids, test_mask = batch(3, 9)
    with torch.no_grad():
        expected = model(input_ids=test_ids, attention_mask=test_mask).logits
    torch.save({"ids": test_ids, "mask": test_mask}, tmp_path / "inputs.pt")
    result = run_without_package(
        f"""
        import torch
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTunerLayer
        from transformers import AutoModelForSequenceClassification
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        base = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "base")!r}, trust_remote_code=True)
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
        with torch.no_grad():
            adapter = model(input_ids=inputs["ids"], attention_mask=inputs["mask"]).logits
        merged = model.merge_and_unload()
        leftovers = [(name, m) for name, m in merged.named_modules() if isinstance(m, BaseTunerLayer)]
        for name, module in reversed(leftovers):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent), child, module.get_base_layer())
        assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
        with torch.no_grad():
            merged_logits = merged(input_ids=inputs["ids"], attention_mask=inputs["mask"]).logits
        torch.save({{"adapter": adapter, "merged": merged_logits}}, {str(tmp_path / "out.pt")!r})
        print(type(merged).__module__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    out = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(out["adapter"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["merged"], out["adapter"], atol=1e-5, rtol=0)
    # and in this process, through the package
    reloaded = PeftModel.from_pretrained(
        SynthesizerForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=test_ids, attention_mask=test_mask).logits, expected, atol=1e-5, rtol=0
        )
