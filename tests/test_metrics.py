"""Offline GLUE/SuperGLUE metrics against values worked out by hand on tiny examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthesizer_tools.metrics import (
    accuracy,
    accuracy_and_f1,
    accuracy_and_macro_f1,
    evaluate_module,
    matthews_correlation,
    multirc_f1a_and_em,
    pearson_and_spearman,
)
from synthesizer_tools.tasks import TASKS, benchmark_average, compute_task_metrics, courtois_glue_score

# Binary example used by several tests:   row:   0  1  2  3  4  5
PREDS = [1, 1, 0, 0, 1, 0]
REFS = [1, 0, 0, 1, 1, 0]
# TP = rows 0, 4; FP = row 1; FN = row 3; TN = rows 2, 5.
TP, FP, FN, TN = 2, 1, 1, 2


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def test_accuracy():
    assert accuracy(PREDS, REFS) == {"accuracy": pytest.approx((TP + TN) / 6)}
    assert accuracy(np.array([2, 0, 1]), np.array([2, 1, 1])) == {"accuracy": pytest.approx(2 / 3)}


def test_matthews_correlation_matches_the_confusion_matrix_formula():
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert expected == pytest.approx(1 / 3)
    assert matthews_correlation(PREDS, REFS)["matthews_correlation"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("preds", "refs", "expected"),
    [
        ([1, 1, 1, 1], [1, 0, 1, 0], 0.0),  # constant predictions: denominator 0 -> 0.0, not NaN
        ([0, 1, 0, 1], [1, 1, 1, 1], 0.0),  # constant references
        ([0, 1, 1, 0], [0, 1, 1, 0], 1.0),
        ([1, 0, 0, 1], [0, 1, 1, 0], -1.0),
    ],
)
def test_matthews_correlation_edge_cases(preds, refs, expected):
    value = matthews_correlation(preds, refs)["matthews_correlation"]
    assert value == pytest.approx(expected)
    assert isinstance(value, float)


def test_accuracy_and_f1():
    result = accuracy_and_f1(PREDS, REFS)
    precision, recall = TP / (TP + FP), TP / (TP + FN)
    assert result == {
        "accuracy": pytest.approx(4 / 6),
        "f1": pytest.approx(2 * precision * recall / (precision + recall)),
    }
    # Precision 2/4, recall 2/2: F1 = 2TP / (2TP + FP + FN) = 4/6.
    assert accuracy_and_f1([1, 1, 1, 1, 0], [1, 0, 1, 0, 0])["f1"] == pytest.approx(f1_from_counts(2, 2, 0))


def test_f1_without_any_positive_is_zero():
    assert accuracy_and_f1([0, 0], [0, 0]) == {"accuracy": 1.0, "f1": 0.0}


def test_pearson_and_spearman():
    preds, refs = [1.0, 2.0, 3.0, 10.0], [1.0, 3.0, 2.0, 4.0]
    # Pearson: deviations from the means (4 and 2.5) are (-3,-2,-1,6) and (-1.5,.5,-.5,1.5).
    covariance = (-3 * -1.5) + (-2 * 0.5) + (-1 * -0.5) + (6 * 1.5)  # 13
    pearson = covariance / math.sqrt((9 + 4 + 1 + 36) * (2.25 + 0.25 + 0.25 + 2.25))
    # Spearman: Pearson of the ranks (1,2,3,4) and (1,3,2,4): deviations (-1.5,-.5,.5,1.5), (-1.5,.5,-.5,1.5).
    spearman = (2.25 - 0.25 - 0.25 + 2.25) / 5
    result = pearson_and_spearman(preds, refs)
    assert result == {"pearson": pytest.approx(pearson), "spearmanr": pytest.approx(spearman)}
    assert spearman == pytest.approx(0.8)


def test_spearman_uses_average_ranks_for_ties():
    # Ranks of (1, 1, 2) are (1.5, 1.5, 3): deviations (-.5,-.5,1) against (-1, 0, 1).
    expected = (0.5 + 0 + 1) / math.sqrt((0.25 + 0.25 + 1) * 2)
    assert pearson_and_spearman([1, 1, 2], [1, 2, 3])["spearmanr"] == pytest.approx(expected)


def test_correlations_of_constant_predictions_are_zero():
    assert pearson_and_spearman([2.5, 2.5, 2.5], [1.0, 2.0, 4.0]) == {"pearson": 0.0, "spearmanr": 0.0}


def test_accuracy_and_macro_f1():
    preds = [0, 0, 1, 2, 2, 1]
    refs = [0, 1, 1, 2, 0, 1]
    f1_class0 = f1_from_counts(tp=1, fp=1, fn=1)  # row 0 right, row 1 false positive, row 4 missed
    f1_class1 = f1_from_counts(tp=2, fp=0, fn=1)  # rows 2, 5 right, row 1 missed
    f1_class2 = f1_from_counts(tp=1, fp=1, fn=0)  # row 3 right, row 4 false positive
    assert (f1_class0, f1_class1, f1_class2) == pytest.approx((0.5, 0.8, 2 / 3))
    assert accuracy_and_macro_f1(preds, refs) == {
        "accuracy": pytest.approx(4 / 6),
        "macro_f1": pytest.approx((f1_class0 + f1_class1 + f1_class2) / 3),
    }


def test_macro_f1_counts_an_absent_class_as_zero():
    # Class 2 never occurs: the mean is still over the 3 CB classes.
    expected = (f1_from_counts(1, 1, 0) + f1_from_counts(1, 0, 1) + 0.0) / 3
    assert accuracy_and_macro_f1([0, 1, 0], [0, 1, 1])["macro_f1"] == pytest.approx(expected)


def test_multirc_f1a_and_exact_match():
    questions = [7, 7, 7, 8, 8, 9]
    preds = [1, 0, 1, 0, 0, 1]
    refs = [1, 0, 0, 0, 0, 1]
    # Question 7 has a wrong option (row 2); 8 and 9 are fully right -> EM = 2/3.
    # Pooled options: TP = rows 0, 5; FP = row 2; no FN -> F1a = 4/5.
    assert multirc_f1a_and_em(preds, refs, questions) == {
        "f1_a": pytest.approx(f1_from_counts(2, 1, 0)),
        "exact_match": pytest.approx(2 / 3),
    }


def test_multirc_groups_by_question_id_not_by_position():
    # Options of questions 1 and 2 interleave; only question 2 has an error.
    result = multirc_f1a_and_em([1, 1, 0, 0], [1, 0, 0, 0], question_ids=[1, 2, 1, 2])
    assert result["exact_match"] == pytest.approx(1 / 2)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="argmax"):
        accuracy(np.zeros((3, 2)), [0, 1, 1])
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="question ids"):
        multirc_f1a_and_em([0, 1], [0, 1], question_ids=[0])


def test_compute_task_metrics_dispatches_on_the_task_table():
    assert compute_task_metrics("cola", PREDS, REFS) == matthews_correlation(PREDS, REFS)
    assert compute_task_metrics("qqp", PREDS, REFS) == accuracy_and_f1(PREDS, REFS)
    assert compute_task_metrics("superglue_rte", PREDS, REFS) == accuracy(PREDS, REFS)
    assert set(compute_task_metrics("stsb", [0.1, 4.2, 3.0], [0.0, 5.0, 2.5])) == {"pearson", "spearmanr"}
    multirc = compute_task_metrics("multirc", [1, 0], [1, 1], question_ids=[3, 3])
    assert multirc == {"f1_a": pytest.approx(2 / 3), "exact_match": 0.0}


def test_compute_task_metrics_suffixes_mnli_mismatched():
    assert compute_task_metrics("mnli", [0, 2], [0, 1], split="validation") == {"accuracy": 0.5}
    assert compute_task_metrics("mnli", [0, 2], [0, 2], split="validation_mismatched") == {
        "accuracy_mismatched": 1.0
    }


def test_compute_task_metrics_rejects_unknown_tasks():
    with pytest.raises(ValueError, match="valid tasks: cola"):
        compute_task_metrics("colaa", [0], [0])


def test_every_task_reports_its_score_keys():
    for name, spec in TASKS.items():
        if name == "multirc":
            metrics = compute_task_metrics(name, [0, 1], [0, 1], question_ids=[0, 0])
        else:
            metrics = compute_task_metrics(name, [0.0, 1.0], [0.0, 1.0])
            metrics.update(compute_task_metrics(name, [0.0, 1.0], [0.0, 1.0], split="validation_mismatched"))
        assert set(spec.score_keys) <= set(metrics), name


def test_benchmark_average_averages_multi_metric_tasks_then_tasks():
    results = {
        "cola": {"matthews_correlation": 0.5, "eval_loss": 9.0},  # extra keys are ignored
        "mrpc": {"accuracy": 0.8, "f1": 0.9},
        "stsb": {"pearson": 0.6, "spearmanr": 0.7},
        "cb": {"accuracy": 0.9, "macro_f1": 0.7},
        "multirc": {"f1_a": 0.6, "exact_match": 0.2},
        "wsc": {"accuracy": 0.65},
    }
    assert benchmark_average(results) == {
        "cola": pytest.approx(0.5),
        "mrpc": pytest.approx(0.85),
        "stsb": pytest.approx(0.65),
        "cb": pytest.approx(0.8),
        "multirc": pytest.approx(0.4),
        "wsc": pytest.approx(0.65),
        "glue_average": pytest.approx((0.5 + 0.85 + 0.65) / 3),
        "superglue_average": pytest.approx((0.8 + 0.4 + 0.65) / 3),
    }


# BERT-large's row on the GLUE leaderboard (published score 80.5), without its WNLI accuracy (65.1)
BERT_LARGE_GLUE = {
    "cola": {"matthews_correlation": 60.5},
    "sst2": {"accuracy": 94.9},
    "mrpc": {"f1": 89.3, "accuracy": 85.4},
    "stsb": {"pearson": 87.6, "spearmanr": 86.5},
    "qqp": {"f1": 72.1, "accuracy": 89.3},
    "mnli": {"accuracy": 86.7, "accuracy_mismatched": 85.9},
    "qnli": {"accuracy": 92.7},
    "rte": {"accuracy": 70.1},
}


def test_benchmark_average_reproduces_a_published_glue_score():
    # The row only adds up to 80.5 with the official rules: two-metric tasks averaged, MNLI once as
    # mean(matched, mismatched).
    results = {**BERT_LARGE_GLUE, "wnli": {"accuracy": 65.1}}
    assert round(benchmark_average(results)["glue_average"], 1) == 80.5


def test_benchmark_average_needs_every_score_key():
    with pytest.raises(ValueError, match="accuracy_mismatched"):
        benchmark_average({"mnli": {"accuracy": 0.8}})


def test_courtois_glue_score_is_the_mean_of_nine_numbers_without_wnli():
    # by hand: 60.5, 94.9, (89.3 + 85.4) / 2, (72.1 + 89.3) / 2, (87.6 + 86.5) / 2, 86.7, 85.9, 92.7, 70.1
    expected = (60.5 + 94.9 + 87.35 + 80.7 + 87.05 + 86.7 + 85.9 + 92.7 + 70.1) / 9
    assert courtois_glue_score(BERT_LARGE_GLUE) == pytest.approx(expected)
    with_wnli = {**BERT_LARGE_GLUE, "wnli": {"accuracy": 10.0}}
    scores = benchmark_average(with_wnli)
    assert scores["glue_courtois"] == pytest.approx(expected)  # WNLI moves the official average only
    assert scores["glue_average"] != pytest.approx(benchmark_average(BERT_LARGE_GLUE)["glue_average"])
    incomplete = {task: metrics for task, metrics in BERT_LARGE_GLUE.items() if task != "qnli"}
    assert courtois_glue_score(incomplete) is None and "glue_courtois" not in benchmark_average(incomplete)


GLUE_CONFIGS = (
    "cola",
    "sst2",
    "mrpc",
    "qqp",
    "stsb",
    "mnli",
    "mnli_matched",
    "mnli_mismatched",
    "qnli",
    "rte",
)
SUPERGLUE_CONFIGS = {"boolq": "boolq", "cb": "cb", "copa": "copa", "rte": "superglue_rte", "wic": "wic"}


@pytest.fixture(scope="module")
def evaluate_library():
    return pytest.importorskip("evaluate", reason="the evaluate extra is not installed")


def random_inputs(task: str, rng: np.random.Generator, count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    if task == "stsb":
        references = rng.uniform(0, 5, count)
        return references + rng.normal(0, 1, count), references
    classes = 3 if task in ("cb", "mnli") else 2
    return rng.integers(0, classes, count), rng.integers(0, classes, count)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", GLUE_CONFIGS)
def test_offline_evaluate_glue_module_gives_the_numbers_of_the_metrics_module(evaluate_library, config_name):
    metric = evaluate_library.load(evaluate_module("glue"), config_name)
    task = config_name.partition("_")[0]
    predictions, references = random_inputs(task, np.random.default_rng(len(config_name)))
    got = metric.compute(predictions=predictions, references=references)
    expected = TASKS[task].metric(predictions, references)
    assert got.keys() == expected.keys()
    for key in expected:  # STS-B's predictions pass through float32 (evaluate's feature type)
        assert got[key] == pytest.approx(expected[key], abs=1e-6 if task == "stsb" else 0)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", sorted(SUPERGLUE_CONFIGS))
def test_offline_evaluate_super_glue_module_gives_the_numbers_of_the_metrics_module(
    evaluate_library, config_name
):
    metric = evaluate_library.load(evaluate_module("super_glue"), config_name)
    predictions, references = random_inputs(config_name, np.random.default_rng(7))
    expected = TASKS[SUPERGLUE_CONFIGS[config_name]].metric(predictions, references)
    assert metric.compute(predictions=predictions, references=references) == expected


@pytest.mark.slow
def test_offline_evaluate_multirc_takes_evaluates_input_format(evaluate_library):
    metric = evaluate_library.load(evaluate_module("super_glue"), "multirc")
    # paragraph 0 question 0 has answers 0 and 1, paragraph 1 question 0 one answer: the same as PREDS / REFS
    # with question ids [a, a, b, b, c, c]
    ids = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1)]
    predictions = [
        {"idx": {"paragraph": p, "question": q, "answer": a}, "prediction": pred}
        for (p, q, a), pred in zip(ids, PREDS)
    ]
    expected = multirc_f1a_and_em(PREDS, REFS, ["a", "a", "b", "b", "c", "c"])
    assert metric.compute(predictions=predictions, references=REFS) == expected


@pytest.mark.slow
def test_offline_evaluate_module_works_in_run_glue_style_code(evaluate_library):
    """The compute_metrics of HF's examples/pytorch/text-classification/run_glue.py, with the module's path."""
    from transformers import EvalPrediction

    metric = evaluate_library.load(evaluate_module("glue"), "mrpc")

    def compute_metrics(p: EvalPrediction):
        preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        result = metric.compute(predictions=np.argmax(preds, axis=1), references=p.label_ids)
        if len(result) > 1:
            result["combined_score"] = np.mean(list(result.values())).item()
        return result

    logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    result = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array(REFS)))
    assert result["accuracy"] == pytest.approx((TP + TN) / 6)
    assert result["f1"] == pytest.approx(f1_from_counts(TP, FP, FN))


@pytest.mark.slow
def test_unknown_evaluate_modules_and_configs_are_clear_errors(evaluate_library):
    with pytest.raises(ValueError, match="glue"):
        evaluate_module("squad")
    with pytest.raises(KeyError, match="Unknown GLUE task 'ax'"):
        evaluate_library.load(evaluate_module("glue"), "ax")


def test_summary_table_shows_the_courtois_score_beside_the_official_average():
    from synthesizer_tools.finetuning import format_summary_table

    results = {task: {k: v / 100 for k, v in metrics.items()} for task, metrics in BERT_LARGE_GLUE.items()}
    table = format_summary_table(results, benchmark_average(results))
    courtois = next(line for line in table.splitlines() if line.startswith("GLUE (Courtois et al.)"))
    assert courtois.endswith(f"{100 * courtois_glue_score(results):.2f}") and "GLUE average" in table
