"""SuperGLUE metrics as an `evaluate` module that loads from this folder, offline.

    metric = evaluate.load(synthesizer_tools.metrics.evaluate_module("super_glue"), "cb")

The config names of `evaluate.load("super_glue", task)` for the tasks this project defines (boolq, cb, copa,
multirc, rte, wic, wsc), the numbers and keys of `synthesizer_tools.metrics` (CB: `accuracy` and `macro_f1`;
MultiRC: `f1_a` and `exact_match`). MultiRC takes evaluate's input format: each prediction is
`{"idx": {"paragraph": p, "question": q, "answer": a}, "prediction": 0 | 1}`, exact match groups by (p, q).
"""

import datasets
import evaluate

from synthesizer_tools.metrics import multirc_f1a_and_em
from synthesizer_tools.tasks import get_task

TASKS = {
    "boolq": "boolq",
    "cb": "cb",
    "copa": "copa",
    "multirc": "multirc",
    "rte": "superglue_rte",
    "wic": "wic",
    "wsc": "wsc",
    "wsc.fixed": "wsc",
}
MULTIRC_PREDICTION = {
    "idx": {name: datasets.Value("int64") for name in ("paragraph", "question", "answer")},
    "prediction": datasets.Value("int64"),
}


class SuperGlue(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"Unknown SuperGLUE task {self.config_name!r}; choose one of {sorted(TASKS)}")
        prediction = MULTIRC_PREDICTION if self.config_name == "multirc" else datasets.Value("int64")
        return evaluate.MetricInfo(
            description="SuperGLUE metrics (Wang et al., 2019), computed offline by synthesizer_tools.metrics.",
            citation="Wang et al., 2019. SuperGLUE: A Stickier Benchmark for General-Purpose Language Understanding.",
            inputs_description="predictions: class ids (MultiRC: dicts with idx); references: gold class ids",
            features=datasets.Features({"predictions": prediction, "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        if self.config_name == "multirc":
            questions = [f"{p['idx']['paragraph']}-{p['idx']['question']}" for p in predictions]
            return multirc_f1a_and_em([p["prediction"] for p in predictions], references, questions)
        return get_task(TASKS[self.config_name]).metric(predictions, references)
