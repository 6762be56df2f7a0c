"""Official GLUE / SuperGLUE metrics, computed offline.

`evaluate.load("glue", ...)` downloads its metric scripts from the Hugging Face Hub, which is not
reachable where these models are trained, so the metrics are computed here with scikit-learn and
scipy instead. Every function takes predicted class ids (or scores for STS-B) and reference labels
as lists or numpy arrays and returns a dict of plain python floats, with the key names that
`evaluate`'s GLUE/SuperGLUE metrics use where one exists.

The task table (`synthesizer_tools.tasks`) names the metric of each task and averages them into the
official leaderboard scores; this module knows nothing about tasks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

ArrayLike = Sequence[float] | np.ndarray


def _validated(predictions: ArrayLike, references: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Turn inputs into 1-D arrays of equal, non-zero length, so that mistakes fail loudly."""
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.ndim != 1 or refs.ndim != 1:
        raise ValueError(
            f"predictions and references must be 1-D (got shapes {preds.shape} and {refs.shape}); "
            "pass class ids (argmax of the logits), not the logits themselves"
        )
    if len(preds) != len(refs) or len(preds) == 0:
        raise ValueError(
            f"got {len(preds)} predictions for {len(refs)} references; need equal, non-zero counts"
        )
    return preds, refs


def accuracy(predictions: ArrayLike, references: ArrayLike) -> dict[str, float]:
    """Fraction of exact matches (SST-2, QNLI, RTE, WNLI, MNLI, BoolQ, COPA, WiC, WSC)."""
    preds, refs = _validated(predictions, references)
    return {"accuracy": float(np.mean(preds == refs))}


def matthews_correlation(predictions: ArrayLike, references: ArrayLike) -> dict[str, float]:
    """Matthews correlation coefficient (CoLA).

    It is 0.0, not NaN, when predictions or references are constant, which happens with
    untrained or collapsed models and must not poison averages.
    """
    preds, refs = _validated(predictions, references)
    return {"matthews_correlation": float(np.nan_to_num(matthews_corrcoef(refs, preds)))}


def accuracy_and_f1(predictions: ArrayLike, references: ArrayLike) -> dict[str, float]:
    """Accuracy and F1 of the positive class 1 (MRPC, QQP)."""
    preds, refs = _validated(predictions, references)
    return {
        "accuracy": float(np.mean(preds == refs)),
        "f1": float(f1_score(refs, preds, pos_label=1, average="binary", zero_division=0)),
    }


def _correlation(statistic: Callable, preds: np.ndarray, refs: np.ndarray) -> float:
    """A correlation that is 0.0 when one side is constant (undefined), instead of NaN."""
    if np.ptp(preds) == 0 or np.ptp(refs) == 0:
        return 0.0
    return float(statistic(preds, refs)[0])


def pearson_and_spearman(predictions: ArrayLike, references: ArrayLike) -> dict[str, float]:
    """Pearson and Spearman correlation of predicted and gold similarity scores (STS-B)."""
    preds, refs = _validated(predictions, references)
    preds, refs = preds.astype(np.float64), refs.astype(np.float64)
    return {
        "pearson": _correlation(stats.pearsonr, preds, refs),
        "spearmanr": _correlation(stats.spearmanr, preds, refs),
    }


def accuracy_and_macro_f1(
    predictions: ArrayLike, references: ArrayLike, num_classes: int = 3
) -> dict[str, float]:
    """Accuracy and unweighted mean of the per-class F1 over all `num_classes` classes (CB).

    A class that is absent from both predictions and references scores F1 = 0, as in the
    SuperGLUE reference implementation, which always averages over the 3 CB classes.
    """
    preds, refs = _validated(predictions, references)
    macro_f1 = f1_score(refs, preds, labels=list(range(num_classes)), average="macro", zero_division=0)
    return {"accuracy": float(np.mean(preds == refs)), "macro_f1": float(macro_f1)}


def multirc_f1a_and_em(
    predictions: ArrayLike, references: ArrayLike, question_ids: ArrayLike
) -> dict[str, float]:
    """MultiRC scores over rows that are single answer options.

    F1a is the binary F1 over all answer options pooled together; exact match is the fraction of
    questions (rows grouped by `question_ids`) whose answer options are all predicted correctly.
    """
    preds, refs = _validated(predictions, references)
    questions = np.asarray(question_ids)
    if questions.shape != preds.shape:
        raise ValueError(f"got {len(questions)} question ids for {len(preds)} predictions")
    all_correct: dict[object, bool] = defaultdict(lambda: True)
    for question, correct in zip(questions.tolist(), (preds == refs).tolist()):
        all_correct[question] &= correct
    return {
        "f1_a": float(f1_score(refs, preds, pos_label=1, average="binary", zero_division=0)),
        "exact_match": float(np.mean(list(all_correct.values()))),
    }


def predictions_from_logits(logits: Any, problem_type: str = "classification") -> np.ndarray:
    """Class ids (argmax over the last axis) or, for regression, the scores, from a head's output.

    A tuple (logits and hidden states, as the Trainer gathers them) contributes its first array.
    """
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    return logits.reshape(-1) if problem_type == "regression" else logits.argmax(-1)


def accuracy_of_logits(prediction: Any) -> dict[str, float]:
    """`compute_metrics` of a plain classifier for the `Trainer`: accuracy of the argmax of the logits (for
    token classification, over the positions whose label is not -100, the index the loss ignores)."""
    predictions, labels = predictions_from_logits(prediction.predictions), np.asarray(prediction.label_ids)
    labelled = labels != -100
    return accuracy(predictions[labelled], labels[labelled])


def evaluate_module(name: str) -> str:
    """Path of this package's offline `evaluate` module "glue" or "super_glue", for `evaluate.load(path, task)`:
    evaluate's config names and keys, the numbers of this module (it computes them)."""
    folder = Path(__file__).parent / "evaluate_metrics" / name
    if not (folder / f"{name}.py").is_file():
        raise ValueError(f"No evaluate module {name!r}; choose 'glue' or 'super_glue'")
    return str(folder)
