"""GLUE metrics as an `evaluate` module that loads from this folder, offline.

    metric = evaluate.load(synthesizer_tools.metrics.evaluate_module("glue"), "sst2")
    metric.compute(predictions=[1, 0], references=[1, 1])  # {'accuracy': 0.5}

A drop-in for `evaluate.load("glue", task)` (which downloads its script from the Hub): the same config names
and keys, the numbers of `synthesizer_tools.metrics` (they are computed there, with scikit-learn and scipy).
"""

import datasets
import evaluate

from synthesizer_tools.tasks import get_task

# evaluate's config names -> this project's task names (MNLI's two dev sets share one metric)
TASKS = {
    "cola": "cola",
    "sst2": "sst2",
    "mrpc": "mrpc",
    "qqp": "qqp",
    "stsb": "stsb",
    "mnli": "mnli",
    "mnli_matched": "mnli",
    "mnli_mismatched": "mnli",
    "qnli": "qnli",
    "rte": "rte",
    "wnli": "wnli",
}


class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"Unknown GLUE task {self.config_name!r}; choose one of {sorted(TASKS)}")
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description="GLUE metrics (Wang et al., 2019), computed offline by synthesizer_tools.metrics.",
            citation="Wang et al., 2019. GLUE: A Multi-Task Benchmark and Analysis Platform for NLU.",
            inputs_description="predictions: class ids (STS-B: scores); references: gold labels (STS-B: scores)",
            features=datasets.Features(
                {"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}
            ),
            format="numpy",
        )

    def _compute(self, predictions, references):
        return get_task(TASKS[self.config_name]).metric(predictions, references)
