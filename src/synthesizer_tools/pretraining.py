"""Pretraining from text: masked-LM (`SynthesizerForMaskedLM`, also from a BERT) or T5-style span corruption
(`SynthesizerForSeq2SeqLM`), with a tokenizer trained on the fly if none is given."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoTokenizer, PreTrainedTokenizerBase, set_seed

from synthesizer_hf.bert_warm_start import bert_tokenizer
from synthesizer_hf.modeling_synthesizer import (
    SynthesizerForMaskedLM,
    SynthesizerForSeq2SeqLM,
    SynthesizerPreTrainedModel,
)

from .arguments import PretrainingArguments, script_arguments
from .collators import DataCollatorForReproducibleMLM
from .data import batched_text, group_into_blocks, load_pretraining_texts, split_blocks
from .models import bert_warm_start, build_config, check_architecture
from .records import EVAL_RESULTS_FILE, RUN_INFO_FILE, perplexity, write_json
from .span_corruption import DataCollatorForSpanCorruption, span_corruption_lengths
from .tokenization import load_or_train_tokenizer
from .trainer import make_trainer, run_info, save_final_model, setup_logging, train

logger = logging.getLogger("synthesizer_tools")


def pretraining_tokenizer(
    arguments: PretrainingArguments, texts: datasets.Dataset
) -> PreTrainedTokenizerBase:
    """The BERT folder's tokenizer (--init_from_bert), --tokenizer, the one an earlier run saved in the output
    folder, or one trained on `texts` and saved there. The main process trains first; the other processes of
    a distributed run then load its saved copy."""
    data, training_args = arguments.data, arguments.training
    if arguments.warm_start.init_from_bert:
        return bert_tokenizer(arguments.warm_start.init_from_bert)
    with training_args.main_process_first(desc="tokenizer"):
        if data.tokenizer:
            return AutoTokenizer.from_pretrained(data.tokenizer)
        return load_or_train_tokenizer(
            training_args.output_dir, batched_text(texts), data.vocab_size, data.max_seq_length
        )


def pretraining_model(
    arguments: PretrainingArguments, tokenizer: PreTrainedTokenizerBase
) -> SynthesizerPreTrainedModel:
    """The model to pretrain. MLM computes vocabulary logits only at the masked positions while training
    (`sparse_prediction`): the output layer dominates the cost of small models, and 85% of its work would be
    thrown away."""
    model_args, max_seq_length = arguments.model, arguments.data.max_seq_length
    if arguments.warm_start.init_from_bert:
        return bert_warm_start(
            arguments.warm_start.init_from_bert, "mlm", model_args, max_seq_length, sparse_prediction=True
        )
    if arguments.masked_lm:
        return SynthesizerForMaskedLM(
            build_config(model_args, tokenizer, max_seq_length, sparse_prediction=True)
        )
    return SynthesizerForSeq2SeqLM(build_config(model_args, tokenizer, max_seq_length, decoder=True))


def run_pretraining(arguments: PretrainingArguments) -> dict[str, Any]:
    """Pretrain; returns the final evaluation metrics.

    Writes to the output directory: the model (safetensors) and tokenizer, `checkpoint-N/` folders,
    `eval_results.json` (eval loss and perplexity) and `run_info.json` (command, data, sizes, timings).
    """
    started = time.time()
    data, objective, training_args = arguments.data, arguments.objective, arguments.training
    output_dir = Path(training_args.output_dir)
    setup_logging(training_args)
    # before the tokenizer is trained and saved in the output folder, where a later run would reuse it
    check_architecture(
        arguments.model,
        data.max_seq_length,
        decoder=not arguments.masked_lm,
        warm_start=arguments.warm_start.init_from_bert is not None,
    )
    set_seed(training_args.seed)

    train_texts, validation_texts = load_pretraining_texts(data)
    tokenizer = pretraining_tokenizer(arguments, train_texts)
    if arguments.masked_lm:
        block_length, wrap = data.max_seq_length, True
        collator = DataCollatorForReproducibleMLM(
            tokenizer, mlm_probability=objective.mlm_probability, seed=training_args.seed
        )
    else:  # adds the sentinel tokens to the tokenizer, before the model's vocabulary is sized
        collator = DataCollatorForSpanCorruption(
            tokenizer, objective.noise_density, objective.mean_noise_span_length, seed=training_args.seed
        )
        block_length = span_corruption_lengths(
            data.max_seq_length, objective.noise_density, objective.mean_noise_span_length
        )[0]
        wrap = False
    with training_args.main_process_first(desc="token blocks"):
        train_blocks = group_into_blocks(train_texts, tokenizer, block_length, wrap, desc="train")
        validation_blocks = (
            group_into_blocks(validation_texts, tokenizer, block_length, wrap, desc="validation")
            if validation_texts is not None
            else None
        )
    train_blocks, validation_blocks = split_blocks(train_blocks, validation_blocks, data, training_args.seed)

    model = pretraining_model(arguments, tokenizer)
    logger.info(
        "%s: attention %s, %s parameters, %d train / %d validation blocks",
        type(model).__name__,
        model.config.attention_type,
        f"{model.num_parameters():,}",
        len(train_blocks),
        len(validation_blocks),
    )
    trainer = make_trainer(
        model,
        training_args,
        train_dataset=train_blocks,
        eval_dataset=validation_blocks,
        processing_class=tokenizer,
        data_collator=collator,
    )
    train_result, checkpoint = train(trainer, save_model=False)
    metrics = trainer.evaluate()  # before the save, which switches the sparse MLM logits off
    save_final_model(trainer)
    metrics["perplexity"] = perplexity(metrics["eval_loss"])
    metrics["train_loss"] = train_result.training_loss
    metrics["train_steps"] = trainer.state.global_step
    if trainer.is_world_process_zero():
        trainer.save_state()
        write_json(output_dir / EVAL_RESULTS_FILE, metrics)
        record = run_info(
            trainer,
            script="pretrain_mlm" if arguments.masked_lm else "pretrain_span_corruption",
            objective="masked language modeling" if arguments.masked_lm else "span corruption",
            command=arguments.command,
            arguments=script_arguments(data, objective, arguments.model, arguments.warm_start),
            started=started,
            train_blocks=len(train_blocks),
            validation_blocks=len(validation_blocks),
            tokens_per_block=len(train_blocks[0]["input_ids"]),
            num_parameters=model.num_parameters(),
            resumed_from=checkpoint,
        )
        write_json(output_dir / RUN_INFO_FILE, record)
        logger.info("eval loss %.4f, perplexity %.2f", metrics["eval_loss"], metrics["perplexity"])
        logger.info("Model, tokenizer and results saved in %s", output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="End of pretraining")
    return metrics


__all__ = ["pretraining_model", "pretraining_tokenizer", "run_pretraining"]
