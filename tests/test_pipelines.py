"""Every text pipeline transformers 5.x ships, on a saved model loaded by path with a locally trained tokenizer:
fill-mask, text-classification, token-classification, feature-extraction, text-generation and
zero-shot-classification (an NLI head with entailment labels), through `import synthesizer_hf` and through
trust_remote_code where the package is absent; plus the few lines in docs/TRAINING.md that replace the removed
question-answering and text2text pipelines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, pipeline

import synthesizer_hf
from helpers import run_without_package, tiny_config

TRAINING_DOC = Path(__file__).resolve().parents[1] / "docs" / "TRAINING.md"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0-4
CORPUS = [
    "the movie was great",
    "the movie was awful",
    "a fine film",
    "an awful film",
    "this example is positive",
    "this example is negative",
    "who sat on the mat ?",
    "the cat sat on the mat .",
    "sst2 sentence : a fine film",
]
LENGTH = 32  # the models' max_position_embeddings (and synthesizer length L)
NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}

# task -> (head, attention_type, extra config): a different variant each, to cover more than one
HEADS = {
    "fill-mask": ("SynthesizerForMaskedLM", "factorized_random+dot", {}),
    "text-classification": (
        "SynthesizerForSequenceClassification",
        "random+dot",
        {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}},
    ),
    "token-classification": (
        "SynthesizerForTokenClassification",
        "dense",
        {"id2label": {0: "O", 1: "B-FILM", 2: "I-FILM"}, "label2id": {"O": 0, "B-FILM": 1, "I-FILM": 2}},
    ),
    "feature-extraction": ("SynthesizerModel", "conv_relu_conv", {}),
    "text-generation": ("SynthesizerForCausalLM", "random+dot", {}),
    "zero-shot-classification": (
        "SynthesizerForSequenceClassification",
        "pairwise_dot+factorized_dense",
        {"id2label": NLI_LABELS, "label2id": {label: i for i, label in NLI_LABELS.items()}},
    ),
    "question-answering": ("SynthesizerForQuestionAnswering", "dense+dot", {}),
    "text2text": ("SynthesizerForSeq2SeqLM", "random+dot", {"decoder_attention_type": "factorized_random"}),
}
DOC_BLOCKS = {  # the heading of docs/TRAINING.md that each block follows, and the folder it loads
    "question-answering": ("### Extractive question answering", "runs/qa"),
    "text2text": ("### Text-to-text generation", "runs/glue-t2t/sst2"),
}

# the pipelines' calls, the same in both environments
CALLS = {
    "fill-mask": ("the movie was [MASK] .", {"top_k": 3}),
    "text-classification": (["a fine film", "an awful film"], {"top_k": None}),
    "token-classification": ("the movie was great", {"ignore_labels": []}),
    "feature-extraction": ("a fine film", {}),
    "text-generation": ("the movie", {"max_new_tokens": 4, "do_sample": False, "add_special_tokens": False}),
    "zero-shot-classification": ("the movie was great", {"candidate_labels": ["positive", "negative"]}),
}


def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained here on a toy corpus ([CLS] a [SEP] b [SEP], token types)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=120, min_frequency=1, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS * 5, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=LENGTH,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """One saved model (with the tokenizer) per task."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pipelines")
    tokenizer = wordpiece_tokenizer()
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3, 4]
    paths = {}
    for task, (head, attention_type, extra) in HEADS.items():
        config = tiny_config(
            attention_type,
            vocab_size=len(tokenizer),
            max_position_embeddings=LENGTH,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
        folder = root / DOC_BLOCKS[task][1] if task in DOC_BLOCKS else root / task
        getattr(synthesizer_hf, head)(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        paths[task] = folder
    return paths


def doc_block(task: str, trust_remote_code: bool = False) -> str:
    """The Python block after the task's heading in docs/TRAINING.md; for trust_remote_code, without the
    package import and with trust_remote_code=True in from_pretrained."""
    heading, folder = DOC_BLOCKS[task]
    text = TRAINING_DOC.read_text(encoding="utf-8")
    assert heading in text, f"docs/TRAINING.md has no section {heading!r}"
    code = re.search(r"```python\n(.*?)```", text[text.index(heading) :], flags=re.S).group(1)
    assert f'from_pretrained("{folder}")' in code
    if trust_remote_code:
        code = re.sub(r"^import synthesizer_hf.*\n", "", code, flags=re.M)
        code = code.replace(
            f'from_pretrained("{folder}")', f'from_pretrained("{folder}", trust_remote_code=True)'
        )
        assert "import synthesizer_hf" not in code
    return code


def pipeline_result(task, result):
    """A JSON-comparable form: scores and features as floats, everything else as is."""
    if task == "feature-extraction":
        return torch.tensor(result).tolist()
    return json.loads(json.dumps(result, default=float))


@pytest.fixture(scope="module")
def remote_results(folders, tmp_path_factory) -> dict:
    """Every pipeline and both doc blocks with trust_remote_code, in one process where the package is absent."""
    root = tmp_path_factory.mktemp("remote")
    blocks = {task: doc_block(task, trust_remote_code=True) for task in DOC_BLOCKS}
    result = run_without_package(
        f"""
        import json, os, torch
        from transformers import pipeline
        torch.manual_seed(0)
        folders, calls, blocks = {json.dumps({k: str(v) for k, v in folders.items()})}, {CALLS!r}, {blocks!r}
        out = {{}}
        for task, (inputs, kwargs) in calls.items():
            pipe = pipeline(task, model=folders[task], trust_remote_code=True)
            result = pipe(inputs, **kwargs)
            if task == "feature-extraction":
                result = torch.tensor(result).tolist()
            out[task] = {{"module": type(pipe.model).__module__, "result": result}}
        os.chdir({str(folders["question-answering"].parents[1])!r})
        for task, code in blocks.items():
            namespace = {{}}
            exec(compile(code, task, "exec"), namespace)
            out[task] = {{"module": type(namespace["model"]).__module__,
                         "result": namespace["answer"] if task == "question-answering" else namespace["predictions"]}}
        with open({str(root / "out.json")!r}, "w") as f:
            json.dump(out, f, default=float)
        """,
        root,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((root / "out.json").read_text())


def run_pipeline(task: str, folder: Path):
    pipe = pipeline(task, model=str(folder))
    inputs, kwargs = CALLS[task]
    return pipe, pipe(inputs, **kwargs)


def check_against_the_model(task: str, pipe, result) -> None:
    """What the pipeline returned is what the model computes."""
    model, tokenizer = pipe.model.eval(), pipe.tokenizer
    inputs, kwargs = CALLS[task]
    with torch.no_grad():
        if task == "fill-mask":
            encoded = tokenizer(inputs, return_tensors="pt")
            at_mask = encoded.input_ids[0].tolist().index(tokenizer.mask_token_id)
            probabilities = model(**encoded).logits[0, at_mask].softmax(-1)
            top = probabilities.topk(kwargs["top_k"])
            assert [r["token"] for r in result] == top.indices.tolist()
            assert [r["score"] for r in result] == pytest.approx(top.values.tolist(), abs=1e-6)
        elif task == "text-classification":
            probabilities = model(**tokenizer(inputs, return_tensors="pt", padding=True)).logits.softmax(-1)
            for row, expected in zip(result, probabilities):
                got = {r["label"]: r["score"] for r in row}
                assert got == pytest.approx({"negative": expected[0].item(), "positive": expected[1].item()})
        elif task == "token-classification":
            encoded = tokenizer(inputs, return_tensors="pt")
            labels = model(**encoded).logits[0].argmax(-1)
            words = [token for token in encoded.tokens() if token not in SPECIAL_TOKENS]
            assert [r["word"] for r in result] == words
            assert [r["entity"] for r in result] == [model.config.id2label[int(i)] for i in labels[1:-1]]
            for r in result:
                assert inputs[r["start"] : r["end"]] == r["word"]
        elif task == "feature-extraction":
            hidden = model(**tokenizer(inputs, return_tensors="pt")).last_hidden_state
            torch.testing.assert_close(torch.tensor(result), hidden, atol=1e-5, rtol=0)
        elif task == "text-generation":
            text = result[0]["generated_text"]
            assert text.startswith(inputs) and len(text) > len(inputs)
            encoded = tokenizer(inputs, return_tensors="pt", add_special_tokens=False)
            generated = model.generate(**encoded, max_new_tokens=4, do_sample=False)
            # (how the text joins prompt and continuation differs between transformers releases; the ids do not)
            ids = pipe(inputs, return_tensors=True, **kwargs)[0]["generated_token_ids"]
            assert list(ids) == generated[0].tolist()
            assert generated.shape[1] == encoded.input_ids.shape[1] + 4
        elif task == "zero-shot-classification":
            labels = kwargs["candidate_labels"]
            assert result["sequence"] == inputs and sorted(result["labels"]) == sorted(labels)
            assert model.config.label2id["entailment"] == 0
            pairs = tokenizer(
                [inputs] * 2, [f"This example is {label}." for label in labels], return_tensors="pt"
            )
            entailment = model(**pairs).logits[:, 0].softmax(-1)
            expected = dict(zip(labels, entailment.tolist()))
            assert dict(zip(result["labels"], result["scores"])) == pytest.approx(expected, abs=1e-6)
            assert result["scores"] == sorted(result["scores"], reverse=True)


@pytest.mark.parametrize("task", list(CALLS))
def test_pipeline_with_the_package(task, folders):
    """`import synthesizer_hf` registers the classes: `pipeline(task, model=path)` builds the Synthesizer head."""
    pipe, result = run_pipeline(task, folders[task])
    assert type(pipe.model).__name__ == HEADS[task][0]
    assert type(pipe.model).__module__ == "synthesizer_hf.modeling_synthesizer"
    check_against_the_model(task, pipe, result)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(CALLS))
def test_pipeline_with_trust_remote_code_where_the_package_is_absent(task, folders, remote_results):
    """The same folder with trust_remote_code in a clean environment: the code saved with it, the same results."""
    remote = remote_results[task]
    assert remote["module"].startswith("transformers_modules")
    _, local = run_pipeline(task, folders[task])
    local = pipeline_result(task, local)
    if task == "feature-extraction":
        torch.testing.assert_close(torch.tensor(remote["result"]), torch.tensor(local), atol=1e-5, rtol=0)
    else:
        assert strip_scores(remote["result"]) == strip_scores(local)
        assert scores(remote["result"]) == pytest.approx(scores(local), abs=1e-5)


def strip_scores(value):
    """The result without its float scores (compared with a tolerance separately)."""
    if isinstance(value, dict):
        return {k: strip_scores(v) for k, v in value.items() if k not in ("score", "scores")}
    if isinstance(value, list):
        return [strip_scores(v) for v in value]
    return value


def scores(value) -> list[float]:
    if isinstance(value, dict):
        found = [float(value["score"])] if "score" in value else []
        found += [float(s) for s in value.get("scores", [])]
        return found + [s for k, v in value.items() if k not in ("score", "scores") for s in scores(v)]
    if isinstance(value, list):
        return [s for v in value for s in scores(v)]
    return []


@pytest.mark.slow
def test_extractive_question_answering_lines(folders, remote_results, monkeypatch):
    """docs/TRAINING.md's lines in place of the question-answering pipeline: the best span of context tokens
    (start_i + end_j, i <= j < i + 30), mapped back to the context's characters."""
    monkeypatch.chdir(folders["question-answering"].parents[1])
    namespace = {}
    exec(compile(doc_block("question-answering"), "question-answering", "exec"), namespace)
    context, answer, inputs = namespace["context"], namespace["answer"], namespace["inputs"]
    start_logits, end_logits = namespace["outputs"].start_logits[0], namespace["outputs"].end_logits[0]
    offsets = namespace["offsets"]
    in_context = [i for i, sequence in enumerate(inputs.sequence_ids(0)) if sequence == 1]
    best = max(
        ((i, j) for i in in_context for j in in_context if i <= j < i + 30),
        key=lambda span: (start_logits[span[0]] + end_logits[span[1]]).item(),
    )
    assert (namespace["start"], namespace["end"]) == best
    assert answer == context[offsets[best[0]][0] : offsets[best[1]][1]]
    assert answer and answer in context
    assert type(namespace["model"]).__name__ == "SynthesizerForQuestionAnswering"
    assert remote_results["question-answering"]["module"].startswith("transformers_modules")
    assert remote_results["question-answering"]["result"] == answer


@pytest.mark.slow
def test_text_to_text_generation_lines(folders, remote_results, monkeypatch):
    """docs/TRAINING.md's lines in place of the text2text pipeline: a padded batch through `generate` gives what
    each text gives alone, decoded without special tokens."""
    monkeypatch.chdir(folders["text2text"].parents[2])
    namespace = {}
    exec(compile(doc_block("text2text"), "text2text", "exec"), namespace)
    model, tokenizer, texts = namespace["model"], namespace["tokenizer"], namespace["texts"]
    predictions = namespace["predictions"]
    assert type(model).__name__ == "SynthesizerForSeq2SeqLM"
    assert len(predictions) == len(texts) and all(isinstance(p, str) for p in predictions)
    assert len(set(map(len, tokenizer(texts).input_ids))) > 1, (
        "the texts differ in length: the batch is padded"
    )
    for text, prediction in zip(texts, predictions):
        alone = tokenizer([text], return_token_type_ids=False, return_tensors="pt")
        generated = model.generate(**alone, num_beams=4, max_new_tokens=8)
        assert tokenizer.decode(generated[0], skip_special_tokens=True) == prediction
    assert remote_results["text2text"]["module"].startswith("transformers_modules")
    assert remote_results["text2text"]["result"] == predictions
