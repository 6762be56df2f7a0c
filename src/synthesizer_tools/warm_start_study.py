"""The paper's GLUE / SuperGLUE protocol (Tables 4-5) from a real pretrained BERT, as a resumable study.

A warm-start study takes one pretrained BERT and, for each attention variant:

1. **adapts** it: the BERT converted into the variant (`from_bert`) and trained for a short masked-LM run on
   a real corpus, so that the new synthesizer logits are learned (`scripts/pretrain_mlm.py --init_from_bert`);
2. **fine-tunes** it on every task and seed, both from the adapted checkpoint (stage `adapted`) and straight
   from the conversion (stage `converted`, the cheap path: `scripts/run_glue.py --init_from_bert`).

`dot` is the BERT itself (the conversion is exact), so every variant is read against it. The fine-tuning
hyper-parameters are the same for every variant; an optional `selection` grid chooses them first on the
converted `dot` (the stated rule: the grid point with the best mean dev score over its tasks).

Every run is a run of a training script, called with the arguments the study file gives (the same names
as the scripts' flags, checked by the scripts' own parsers when the file is read), so a study has no
training code of its own, and each run's folder holds what the script writes (`summary.json`,
`run_info.json` with the command that reruns it). A finished run is never repeated: rerunning the study
resumes it (an interrupted adaptation continues from its last checkpoint). `write_report` turns the finished
runs into `results.json`, `tables.md` and plots.

The study file (JSON), see `studies/paper_glue_minilm.json`:

```json
{
  "name": "paper_glue_minilm",
  "bert": "minilm",                        // a BERT folder, "minilm" or a Hub id (bert_warm_start.bert_folder)
  "variants": ["dot", "random+dot", "random"],
  "seeds": [0, 1, 2],
  "stages": {"adapted": [0, 1, 2], "converted": [0]},   // the seeds each stage runs
  "adaptation": {"train_files": ["{data_dir}/wikitext-2/train.txt.gz"], "max_steps": 500, ...},
  "finetuning": {"max_seq_length": 128, "num_train_epochs": 3, ...},   // run_glue.py, every task
  "tasks": {"mrpc": {}, "sst2": {"seeds": [0], "arguments": {"max_train_samples": 8000}}},
  "selection": {"grid": {"learning_rate": [5e-05, 0.0001]}, "tasks": ["mrpc", "rte"]},
  "speed": {"task": "mrpc", "steps": 10, "rounds": 3}   // the same-run throughput, once every run is done
}
```

`{data_dir}` in an argument value is replaced by `--data_dir`. A task runs in the stages of its `stages`
(default: all), for the seeds both in its own `seeds` (default: all) and in the stage's list. SuperGLUE's RTE
is GLUE's RTE (the same examples and metric), so `rte` runs once and counts in both averages.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthesizer_hf.configuration_synthesizer import SynthesizerConfig

from .arguments import parse_finetuning_arguments, parse_pretraining_arguments
from .finetuning import run_tasks
from .finetuning_speed import UNTIMED_STEPS, measure_finetuning_speed
from .model_card import prepare_hub_folder
from .pretraining import run_pretraining
from .records import (
    EVAL_RESULTS_FILE,
    SUMMARY_FILE,
    environment_info,
    eta,
    format_duration,
    read_json,
    write_json,
)
from .study_config import StudyFileError, checked_fields
from .tasks import get_task

logger = logging.getLogger("synthesizer_tools")

STAGES = ("adapted", "converted")
STUDY_RUN_FILE = "study_run.json"  # beside each run's own files: the study's name for it and its arguments
SELECTION_FILE = "selection.json"
SPEED_FILE = "speed.json"
DEFAULT_MAX_SEQ_LENGTH = 128  # the scripts' default --max_seq_length
# The arguments the study sets itself for every run (a study file may not set them).
STUDY_OWNED = (
    "output_dir",
    "seed",
    "tasks",
    "data_dir",
    "init_from_bert",
    "model_name_or_path",
    "attention_type",
)


@dataclass
class TaskPlan:
    """One task of the study: the seeds and stages it runs (None: every seed / stage of the study) and the
    run_glue.py arguments of this task only (e.g. `max_train_samples` for a large task), over the study's
    `finetuning`."""

    seeds: list[int] | None = None
    stages: list[str] | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class Selection:
    """The rule that fixes the shared fine-tuning hyper-parameters: every point of `grid` (run_glue.py
    arguments -> values to try) fine-tunes `variant` of the `converted` stage on `tasks` with `seed`; the point
    with the best mean score wins and is used by every run of the study."""

    grid: dict[str, list[Any]]
    tasks: list[str]
    variant: str = "dot"
    seed: int = 0


@dataclass
class SpeedProbe:
    """The fine-tuning throughput of every variant measured in one run (`finetuning_speed`), once every other
    run of the study has finished: each converted variant fine-tunes on `task` with the study's fine-tuning
    arguments, `steps` timed steps per round (after an untimed one), in a rotating order for `rounds` rounds.
    The records of the study's own runs are no throughput comparison: they were made hours apart."""

    task: str = "mrpc"
    steps: int = 10
    rounds: int = 3


@dataclass
class WarmStartStudy:
    """A study file, checked: see the module docstring for the fields."""

    name: str
    bert: str
    variants: list[str]
    seeds: list[int]
    adaptation: dict[str, Any]
    finetuning: dict[str, Any]
    tasks: dict[str, TaskPlan]
    stages: dict[str, list[int]] = field(default_factory=lambda: {stage: [0] for stage in STAGES})
    selection: Selection | None = None
    speed: SpeedProbe | None = None
    description: str = ""


def load_warm_start_study(path: str | Path) -> WarmStartStudy:
    """Read and check a study file: field names, variants, tasks, stages and every script argument (parsed
    by the scripts' own parsers), so that a mistake stops the study before any training starts."""
    where = str(path)
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    raw.pop("objective", None)  # "warm_start": how scripts/run_study.py recognises this kind of study
    values = checked_fields(WarmStartStudy, raw, where)
    values["tasks"] = {
        name: TaskPlan(**checked_fields(TaskPlan, plan, f"{where}: tasks.{name}"))
        for name, plan in values["tasks"].items()
    }
    if values.get("selection") is not None:
        values["selection"] = Selection(
            **checked_fields(Selection, values["selection"], f"{where}: selection")
        )
    if values.get("speed") is not None:
        values["speed"] = SpeedProbe(**checked_fields(SpeedProbe, values["speed"], f"{where}: speed"))
    study = WarmStartStudy(**values)
    check_study(study, where)
    return study


def check_study(study: WarmStartStudy, where: str) -> None:
    """Everything that can be checked before training: names, stages, seeds and the script arguments."""
    for index, variant in enumerate(study.variants):
        try:
            SynthesizerConfig(attention_type=variant)
        except (ValueError, TypeError) as err:
            raise StudyFileError(f"{where}: variants[{index}] {variant!r}: {err}") from err
    if "dot" not in study.variants:
        raise StudyFileError(f"{where}: variants: `dot` (the BERT itself) is the baseline every table needs")
    unknown_stages = sorted(set(study.stages) - set(STAGES))
    if unknown_stages:
        raise StudyFileError(f"{where}: stages.{unknown_stages[0]}: unknown stage; the stages are {STAGES}")
    for task, plan in study.tasks.items():
        for stage in plan.stages or ():
            if stage not in study.stages:
                raise StudyFileError(
                    f"{where}: tasks.{task}.stages: unknown stage {stage!r}; the study's: {list(study.stages)}"
                )
    for stage, seeds in study.stages.items():
        extra = sorted(set(seeds) - set(study.seeds))
        if extra:
            raise StudyFileError(f"{where}: stages.{stage}: seed {extra[0]} is not in `seeds`")
    task_names = [
        *study.tasks,
        *(study.selection.tasks if study.selection else []),
        *([study.speed.task] if study.speed else []),
    ]
    for name in task_names:
        try:
            get_task(name)
        except ValueError as err:
            raise StudyFileError(f"{where}: tasks: {err}") from err
    for key in STUDY_OWNED:
        for part, arguments in (
            ("adaptation", study.adaptation),
            ("finetuning", study.finetuning),
            *((f"tasks.{n}.arguments", p.arguments) for n, p in study.tasks.items()),
        ):
            if key in arguments:
                raise StudyFileError(f"{where}: {part}.{key}: set by the study itself, not by the file")
    adapted_length = study.adaptation.get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH)
    for task, plan in study.tasks.items():
        length = {**study.finetuning, **plan.arguments}.get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH)
        if "adapted" in study.stages and length > adapted_length:
            raise StudyFileError(
                f"{where}: tasks.{task}: max_seq_length {length} exceeds the adaptation's {adapted_length}, the "
                "longest input of an adapted length-bound synthesizer (random, dense, ...)"
            )
    if study.speed is not None:
        for name in ("steps", "rounds"):
            if getattr(study.speed, name) < 1:
                raise StudyFileError(f"{where}: speed.{name} must be at least 1")
    if study.selection is not None and study.selection.variant not in study.variants:
        raise StudyFileError(f"{where}: selection.variant {study.selection.variant!r} is not in `variants`")
    # The scripts' own parsers read one run of each kind and every task (with every grid point): a bad
    # argument stops the study here, not hours into it.
    points = selection_points(study.selection) if study.selection else [None]
    probes = [adaptation_runs(study)[0], *selection_runs(study)]
    for point in points:
        probes += [run for run in finetuning_runs(study, point) if run.variant == study.variants[0]]
        probes += speed_runs(study, point)[:1]
    for run in probes:
        try:
            run.parse("data", Path("output"))
        except SystemExit as err:  # argparse's usage error (it printed the reason)
            raise StudyFileError(f"{where}: the arguments of {run.name} do not parse (see above)") from err


# ----------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------


def script_argv(arguments: Mapping[str, Any], data_dir: str) -> list[str]:
    """`{"max_steps": 500, "train_files": [...]}` -> `["--max_steps", "500", "--train_files", ...]`."""
    argv = []
    for key, value in arguments.items():
        values = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *(str(v).replace("{data_dir}", str(data_dir)) for v in values)]
    return argv


@dataclass(frozen=True)
class StudyRun:
    """One script run of the study: its folder (relative to the study's), script and arguments."""

    name: str  # e.g. "finetune/adapted/random+dot/mrpc/seed0"
    script: str  # "pretrain_mlm" or "run_glue"
    arguments: tuple[tuple[str, Any], ...]
    kind: str  # "selection", "adaptation", "finetune" or "speed" (a probe contender, never executed alone)
    stage: str = ""
    variant: str = ""
    task: str = ""
    seed: int = 0

    def argv(self, data_dir: str | Path, output_dir: Path) -> list[str]:
        arguments = {**dict(self.arguments), "output_dir": str(output_dir / self.name)}
        return script_argv(arguments, str(data_dir))

    def parse(self, data_dir: str | Path, output_dir: Path) -> Any:
        """The script's parsed arguments (exits with a usage error on a bad argument, as the script would)."""
        program = f"scripts/{self.script}.py"
        if self.script == "pretrain_mlm":
            return parse_pretraining_arguments("mlm", self.argv(data_dir, output_dir), program=program)
        return parse_finetuning_arguments(self.argv(data_dir, output_dir), program=program)

    def is_done(self, output_dir: Path) -> bool:
        result = EVAL_RESULTS_FILE if self.script == "pretrain_mlm" else SUMMARY_FILE
        return (output_dir / self.name / result).is_file()


def adaptation_runs(study: WarmStartStudy) -> list[StudyRun]:
    """One masked-LM adaptation per variant (resumed from its last checkpoint when interrupted)."""
    return [
        StudyRun(
            name=f"adapted_models/{variant}",
            script="pretrain_mlm",
            arguments=tuple(
                {
                    **study.adaptation,
                    "init_from_bert": study.bert,
                    "attention_type": variant,
                    "seed": 0,
                    "resume_from_checkpoint": "latest",
                }.items()
            ),
            kind="adaptation",
            stage="adapted",
            variant=variant,
        )
        for variant in study.variants
    ]


def finetuning_arguments(
    study: WarmStartStudy, task: str, chosen: Mapping[str, Any] | None, stage: str, variant: str, seed: int
) -> dict[str, Any]:
    """The run_glue.py arguments of one fine-tuning run."""
    start = (
        {"model_name_or_path": f"{{output_dir}}/adapted_models/{variant}"}
        if stage == "adapted"
        else {"init_from_bert": study.bert, "attention_type": variant}
    )
    plan = study.tasks.get(task, TaskPlan())
    return {
        **study.finetuning,
        **plan.arguments,
        **(chosen or {}),
        **start,
        "tasks": task,
        "seed": seed,
        "data_dir": "{data_dir}",
    }


def selection_points(selection: Selection) -> list[dict[str, Any]]:
    """Every combination of the grid's values."""
    keys = list(selection.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*selection.grid.values())]


def point_name(point: Mapping[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in point.items())


def selection_runs(study: WarmStartStudy) -> list[StudyRun]:
    """The grid's runs: the converted `selection.variant` on each selection task, for every grid point."""
    selection = study.selection
    if selection is None:
        return []
    return [
        StudyRun(
            name=f"selection/{point_name(point)}/{task}",
            script="run_glue",
            arguments=tuple(
                finetuning_arguments(
                    study, task, point, "converted", selection.variant, selection.seed
                ).items()
            ),
            kind="selection",
            stage="converted",
            variant=selection.variant,
            task=task,
            seed=selection.seed,
        )
        for point in selection_points(selection)
        for task in selection.tasks
    ]


def finetuning_runs(study: WarmStartStudy, chosen: Mapping[str, Any] | None) -> Iterator[StudyRun]:
    """Every fine-tuning run: variant by variant (`dot` first in the shipped studies), then stage, seed, task."""
    for variant in study.variants:
        yield from variant_finetuning_runs(study, chosen, variant)


def variant_finetuning_runs(
    study: WarmStartStudy, chosen: Mapping[str, Any] | None, variant: str
) -> Iterator[StudyRun]:
    """The fine-tuning runs of one variant, adapted stage first (they need its adapted checkpoint)."""
    for stage, stage_seeds in study.stages.items():
        for seed in stage_seeds:
            for task, plan in study.tasks.items():
                if (plan.seeds is not None and seed not in plan.seeds) or (
                    plan.stages is not None and stage not in plan.stages
                ):
                    continue
                yield StudyRun(
                    name=f"finetune/{stage}/{variant}/{task}/seed{seed}",
                    script="run_glue",
                    arguments=tuple(finetuning_arguments(study, task, chosen, stage, variant, seed).items()),
                    kind="finetune",
                    stage=stage,
                    variant=variant,
                    task=task,
                    seed=seed,
                )


def speed_runs(study: WarmStartStudy, chosen: Mapping[str, Any] | None) -> list[StudyRun]:
    """The speed probe's contenders: each converted variant on the probe's task (seed 0), as a run_glue run of
    `steps` timed steps (and the untimed ones) that writes nothing."""
    if study.speed is None:
        return []
    probe = study.speed
    quiet = {
        "max_steps": probe.steps + UNTIMED_STEPS,
        "logging_strategy": "no",
        "save_strategy": "no",
        "eval_strategy": "no",
        "save_model": False,
        "predict": False,
        "report_to": "none",
    }
    return [
        StudyRun(
            name=f"speed/{variant}",
            script="run_glue",
            arguments=tuple(
                {**finetuning_arguments(study, probe.task, chosen, "converted", variant, 0), **quiet}.items()
            ),
            kind="speed",
            stage="converted",
            variant=variant,
            task=probe.task,
        )
        for variant in study.variants
    ]


def resolved(run: StudyRun, output_dir: Path) -> StudyRun:
    """`{output_dir}` in the arguments replaced by the study's folder."""
    arguments = tuple(
        (key, value.replace("{output_dir}", str(output_dir)) if isinstance(value, str) else value)
        for key, value in run.arguments
    )
    return StudyRun(**{**run.__dict__, "arguments": arguments})


def execute(run: StudyRun, data_dir: str | Path, output_dir: Path) -> None:
    """Run the script's workflow in this process and record the study's view of the run: beside a fine-tuning
    run's files, and for an adaptation in `adaptation/<variant>.json` (its metrics and learning curve), since
    the adapted checkpoints themselves are not kept with the records."""
    arguments = run.parse(data_dir, output_dir)
    record = {
        "name": run.name,
        "kind": run.kind,
        "stage": run.stage,
        "variant": run.variant,
        "task": run.task,
        "seed": run.seed,
        "command": arguments.command,
    }
    if run.script == "pretrain_mlm":
        record["metrics"] = run_pretraining(arguments)
        record["log_history"] = latest_log_history(output_dir / run.name)
        write_json(adaptation_record(output_dir, run.variant), record)
    else:
        run_tasks(arguments)
        write_json(output_dir / run.name / STUDY_RUN_FILE, record)


def speed_done(study: WarmStartStudy, output_dir: Path) -> bool:
    """Whether `speed.json` holds the probe the study file describes, for every variant."""
    record = read_json(output_dir / SPEED_FILE)
    return (
        record is not None
        and record["probe"] == asdict(study.speed)
        and list(record["variants"]) == study.variants
    )


def measure_speed(
    study: WarmStartStudy, data_dir: str | Path, output_dir: Path, chosen: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Run the speed probe (`SpeedProbe`) and write `speed.json`: each variant's rates and its ratio to `dot`."""
    runs = speed_runs(study, chosen)
    with tempfile.TemporaryDirectory() as scratch:  # the probe's runs save nothing
        arguments = {run.variant: run.parse(data_dir, Path(scratch)) for run in runs}
        variants = measure_finetuning_speed(arguments, study.speed.task, study.speed.rounds, reference="dot")
    record = {
        "probe": asdict(study.speed),
        "batch_size": arguments["dot"].training.per_device_train_batch_size,
        "commands": {variant: values.command for variant, values in arguments.items()},
        "variants": variants,
        "environment": environment_info(),
    }
    write_json(output_dir / SPEED_FILE, record)
    return record


def run_speed_probe(study: WarmStartStudy, data_dir: str | Path, output_dir: str | Path) -> dict[str, Any]:
    """The speed probe now, whatever else is unfinished (measured again if it has run), then the report.
    The probe's runs take the chosen grid point once the grid has finished (the study's arguments before)."""
    if study.speed is None:
        raise ValueError(f"study {study.name!r} has no `speed` probe to run")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    chosen = (read_json(output_dir / SELECTION_FILE) or {}).get("chosen")
    measure_speed(study, data_dir, output_dir, chosen)
    return write_report(study, output_dir)


def adaptation_record(output_dir: Path, variant: str) -> Path:
    return output_dir / "adaptation" / f"{variant}.json"


def latest_log_history(run_dir: Path) -> list[dict[str, Any]]:
    """The Trainer's log (losses by step) from the newest checkpoint of a run, [] without one."""
    states = sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])
    )
    return read_json(states[-1])["log_history"] if states else []


def identical_selection_run(study: WarmStartStudy, run: StudyRun, output_dir: Path) -> Path | None:
    """The folder of a finished selection run with exactly `run`'s arguments, if there is one."""
    if run.kind != "finetune":
        return None
    for candidate in selection_runs(study):
        if candidate.arguments == run.arguments and candidate.is_done(output_dir):
            return output_dir / candidate.name
    return None


def choose_selection(study: WarmStartStudy, output_dir: Path) -> dict[str, Any] | None:
    """The winning grid point (written to `selection.json` with every point's scores), or None without a grid."""
    if study.selection is None:
        return None
    table = []
    for point in selection_points(study.selection):
        scores = {
            task: run_score(output_dir / f"selection/{point_name(point)}/{task}", task)
            for task in study.selection.tasks
        }
        table.append({"point": point, "scores": scores, "mean": statistics.fmean(scores.values())})
    best = max(table, key=lambda row: row["mean"])  # the first point wins a tie
    write_json(
        output_dir / SELECTION_FILE, {"rule": "best mean dev score", "chosen": best["point"], "grid": table}
    )
    return best["point"]


def run_score(run_dir: Path, task: str) -> float:
    """The official score (0-1) of a finished run_glue run."""
    summary = read_json(run_dir / SUMMARY_FILE)
    return float(summary["scores"][task])


def run_warm_start_study(
    study: WarmStartStudy, data_dir: str | Path, output_dir: str | Path, *, limit: int | None = None
) -> dict[str, Any]:
    """Run every run of `study` that has not finished yet (at most `limit` of them), then write the report.

    The log says which run starts, how many of its group are left and the estimated time to the group's end.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    selection, adaptations = selection_runs(study), adaptation_runs(study)
    done_before = sum(
        run.is_done(output_dir) for run in [*selection, *adaptations, *finetuning_runs(study, None)]
    )
    started, finished, budget = time.perf_counter(), 0, limit
    seconds_by_kind: dict[str, list[float]] = defaultdict(list)

    def run_all(runs: Sequence[StudyRun], total: int) -> bool:
        nonlocal finished, budget
        for index, run in enumerate(runs):
            run = resolved(run, output_dir)
            if run.is_done(output_dir):
                continue
            if budget is not None and budget <= 0:
                return False
            remaining = [r for r in runs[index:] if not r.is_done(output_dir)]
            logger.warning(
                "[%s] %s (%d of %d left; %s elapsed; %s)",
                study.name,
                run.name,
                len(remaining),
                total,
                format_duration(time.perf_counter() - started),
                eta([r.kind for r in remaining], seconds_by_kind),
            )
            begun = time.perf_counter()
            same = identical_selection_run(study, run, output_dir)
            if same is not None:  # the chosen grid point's run is this very run: keep it, do not repeat it
                shutil.copytree(same, output_dir / run.name, dirs_exist_ok=True)
                continue
            execute(run, data_dir, output_dir)
            seconds_by_kind[run.kind].append(time.perf_counter() - begun)
            finished += 1
            if budget is not None:
                budget -= 1
        return True

    # The grid first (it fixes the fine-tuning arguments), then each variant whole: its adaptation, then its
    # fine-tuning runs, so that an adapted checkpoint (not kept by the records) is used up in one sitting.
    complete = run_all(selection, len(selection))
    if complete:
        chosen = choose_selection(study, output_dir)
        for variant, adaptation in zip(study.variants, adaptations):
            pending = [
                run for run in variant_finetuning_runs(study, chosen, variant) if not run.is_done(output_dir)
            ]
            needs_checkpoint = any(run.stage == "adapted" for run in pending)
            runs = [adaptation, *pending] if needs_checkpoint else pending
            if not run_all(runs, len(runs)):
                complete = False
                break
    if complete and study.speed is not None and not speed_done(study, output_dir):
        if budget is not None and budget <= 0:
            complete = False
        else:
            logger.warning(
                "[%s] the speed probe (%s elapsed)",
                study.name,
                format_duration(time.perf_counter() - started),
            )
            measure_speed(study, data_dir, output_dir, chosen)
            finished += 1
    logger.warning(
        "[%s] %d run(s) this time (%d finished before); %s",
        study.name,
        finished,
        done_before,
        "all done" if complete else "more to run: rerun the same command to continue",
    )
    return write_report(study, output_dir)


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------


def collect_results(study: WarmStartStudy, output_dir: Path) -> list[dict[str, Any]]:
    """One record per finished fine-tuning run: stage, variant, task, seed, score, metrics and speed."""
    chosen = read_json(output_dir / SELECTION_FILE)
    records = []
    for run in finetuning_runs(study, (chosen or {}).get("chosen")):
        summary = read_json(output_dir / run.name / SUMMARY_FILE)
        if summary is None:
            continue
        metrics = summary["tasks"][run.task]
        records.append(
            {
                "stage": run.stage,
                "variant": run.variant,
                "task": run.task,
                "seed": run.seed,
                "score": summary["scores"][run.task],
                "metrics": metrics,
                "train_samples_per_second": metrics.get("train_samples_per_second"),
                "train_cpu_share": metrics.get("train_cpu_share"),
            }
        )
    return records


# A run is a throughput figure only if it had its threads to itself (`train_cpu_share`, recorded by
# `trainer.train`): beside other work its samples/s measure the other work too. Older runs have no share.
QUIET_CPU_SHARE = 0.8


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """`{stage: {variant: {task: {"mean", "sd", "seeds", ...}, "glue_average": ..., ...}}}` on the 0-100
    scale; the averages are over the tasks every variant of the stage has finished for seeds the same; the speed
    ratio against `dot` reads only runs that had the machine to themselves (`QUIET_CPU_SHARE`)."""
    scores: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    speeds: dict[tuple[str, str, str, int], float] = {}
    for record in records:
        key = (record["stage"], record["variant"], record["task"])
        scores[key].append(100 * record["score"])
        if record["train_samples_per_second"] and (record.get("train_cpu_share") or 0) >= QUIET_CPU_SHARE:
            speeds[(*key, record["seed"])] = record["train_samples_per_second"]
    table: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for (stage, variant, task), values in scores.items():
        table[stage][variant][task] = {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "seeds": len(values),
        }
    for stage, variants in table.items():
        common = set.intersection(*(set(tasks) for tasks in variants.values()))
        for variant, tasks in variants.items():
            means = {task: {"score": tasks[task]["mean"] / 100} for task in sorted(common)}
            tasks.update(benchmark_averages(means))
            tasks["speed_vs_dot"] = speed_ratio(speeds, stage, variant)
    return {stage: dict(variants) for stage, variants in table.items()}


def benchmark_averages(task_scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """GLUE and SuperGLUE averages (0-100) of per-task scores; RTE counts in both (it is the same task)."""
    glue = [s["score"] for t, s in task_scores.items() if get_task(t).benchmark == "glue"]
    superglue = [
        s["score"] for t, s in task_scores.items() if get_task(t).benchmark == "superglue" or t == "rte"
    ]
    averages = {}
    if glue:
        averages["glue_average"] = {"mean": 100 * statistics.fmean(glue), "tasks": len(glue)}
    if superglue:
        averages["superglue_average"] = {"mean": 100 * statistics.fmean(superglue), "tasks": len(superglue)}
    return averages


def speed_ratio(speeds: Mapping[tuple[str, str, str, int], float], stage: str, variant: str) -> float | None:
    """Training samples/s of `variant` over `dot`'s on the same runs (task, seed), as a geometric mean."""
    ratios = [
        math.log(value / speeds[(stage, "dot", task, seed)])
        for (s, v, task, seed), value in speeds.items()
        if s == stage and v == variant and (stage, "dot", task, seed) in speeds
    ]
    return math.exp(statistics.fmean(ratios)) if ratios else None


def format_tables(study: WarmStartStudy, table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """One Markdown table per stage: a row per variant, mean ± sd (seeds) per task, averages, speed."""
    lines = []
    tasks = [task for task in study.tasks]
    for stage in study.stages:
        if stage not in table:
            continue
        lines += [
            f"### {stage}: {STAGE_TITLES[stage]}",
            "",
            "| variant | "
            + " | ".join(tasks)
            + " | GLUE avg | SuperGLUE avg | train speed vs dot (quiet runs) |",
            "|---" * (len(tasks) + 4) + "|",
        ]
        for variant in study.variants:
            row = table[stage].get(variant)
            if row is None:
                continue
            cells = [format_cell(row.get(task)) for task in tasks]
            averages = [format_average(row.get(key)) for key in ("glue_average", "superglue_average")]
            speed = row.get("speed_vs_dot")
            lines.append(
                f"| {variant} | " + " | ".join(cells + averages) + f" | {f'{speed:.2f}x' if speed else '-'} |"
            )
        lines.append("")
    return "\n".join(lines)


def format_speed_table(speed: Mapping[str, Any] | None) -> str:
    """The speed probe's table (`speed.json`), or nothing before it has run."""
    if speed is None:
        return ""
    probe = speed["probe"]
    lines = [
        "",
        f"### fine-tuning speed, measured in one run ({probe['task']}, batch {speed['batch_size']}, converted "
        f"models; medians of {probe['rounds']} interleaved rounds of {probe['steps']} steps)",
        "",
        "| variant | samples/s | tokens/s (padded) | real tokens/s | vs dot | lowest CPU share |",
        "|---|---|---|---|---|---|",
    ]
    for variant, rates in speed["variants"].items():
        lines.append(
            f"| {variant} | {rates['samples_per_second']:.1f} | {rates['tokens_per_second']:.0f} | "
            f"{rates['real_tokens_per_second']:.0f} | {rates['vs_reference']:.2f}x | {rates['cpu_share']:.2f} |"
        )
    return "\n".join(lines) + "\n"


STAGE_TITLES = {
    "adapted": "converted, adapted by masked-LM on the corpus, then fine-tuned",
    "converted": "converted and fine-tuned directly (no adaptation)",
}


def format_cell(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "-"
    spread = f" ± {cell['sd']:.1f}" if cell["sd"] is not None else ""
    return f"{cell['mean']:.1f}{spread} ({cell['seeds']})"


def format_average(cell: Mapping[str, Any] | None) -> str:
    return "-" if cell is None else f"{cell['mean']:.1f} ({cell['tasks']} tasks)"


def write_report(study: WarmStartStudy, output_dir: Path) -> dict[str, Any]:
    """`results.json` (every finished run and the summary) and `tables.md`, from the run folders."""
    records = collect_results(study, output_dir)
    table = summarize(records)
    speed = read_json(output_dir / SPEED_FILE) if study.speed and speed_done(study, output_dir) else None
    tables = format_tables(study, table) + format_speed_table(speed)
    summary = {
        "study": study.name,
        "selection": read_json(output_dir / SELECTION_FILE),
        "speed": speed,
        "adaptation": {
            variant: read_json(adaptation_record(output_dir, variant)) for variant in study.variants
        },
        "runs": records,
        "table": table,
        "environment": environment_info(),
    }
    write_json(output_dir / "results.json", summary)
    (output_dir / "tables.md").write_text(tables, encoding="utf-8")
    summary["tables"] = tables
    summary["plots"] = [str(path) for path in make_plots(study, table, summary["adaptation"], output_dir)]
    return summary


def make_plots(
    study: WarmStartStudy,
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
    adaptation: Mapping[str, Mapping[str, Any] | None],
    output_dir: Path,
) -> list[Path]:
    """`scores_<stage>.png` (each task's mean score per variant, sd as error bars) and `adaptation.png` (the
    masked-LM loss of each variant's adaptation by step). Needs matplotlib (the `[plots]` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for stage, rows in table.items():
        tasks = [task for task in study.tasks if any(task in row for row in rows.values())]
        variants = [variant for variant in study.variants if variant in rows]
        figure, axes = plt.subplots(figsize=(max(6, 1.1 * len(tasks) * len(variants) / 3), 4))
        width = 0.8 / len(variants)
        for index, variant in enumerate(variants):
            cells = [rows[variant].get(task) for task in tasks]
            axes.bar(
                [t + index * width for t in range(len(tasks))],
                [cell["mean"] if cell else 0 for cell in cells],
                width,
                yerr=[(cell["sd"] or 0) if cell else 0 for cell in cells],
                label=variant,
            )
        axes.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks)
        axes.set_ylabel("dev score (x100)")
        axes.set_title(f"{study.name}: {STAGE_TITLES[stage]}", fontsize=9)
        axes.legend(fontsize=7, ncol=3)
        paths.append(save_figure(figure, output_dir / f"scores_{stage}.png"))
    curves = {variant: record["log_history"] for variant, record in adaptation.items() if record}
    if curves:
        figure, axes = plt.subplots(figsize=(6, 4))
        for variant, history in curves.items():
            points = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
            axes.plot(*zip(*points), label=variant)
        axes.set_xlabel("step")
        axes.set_ylabel("masked-LM training loss")
        axes.set_title(f"{study.name}: adaptation", fontsize=9)
        axes.legend(fontsize=7)
        paths.append(save_figure(figure, output_dir / "adaptation.png"))
    return paths


def save_figure(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_hub_folders(
    study: WarmStartStudy,
    data_dir: str | Path,
    output_dir: str | Path,
    hub_dir: str | Path,
    command: str | None = None,
) -> list[Path]:
    """One Hub-ready folder per variant's adapted checkpoint (`prepare_hub_folder`: safetensors, config with
    `auto_map`, the model code, tokenizer), its card carrying the variant's measured GLUE/SuperGLUE results
    (the adapted stage's means over seeds, `study_results.json`). An adaptation whose checkpoint is gone is
    run again first (its seed and data are fixed). `command`: the study command the cards quote."""
    output_dir, hub_dir = Path(output_dir), Path(hub_dir)
    records = collect_results(study, output_dir)
    table = summarize(records).get("adapted", {})
    folders = []
    for run in adaptation_runs(study):
        run = resolved(run, output_dir)
        if not run.is_done(output_dir):
            execute(run, data_dir, output_dir)
        model_dir = output_dir / run.name
        results = variant_results(records, run.variant, table.get(run.variant, {}))
        results["command"] = command
        results["model_dir"] = str(model_dir.resolve())
        write_json(model_dir / "study_results.json", results)
        folders.append(
            prepare_hub_folder(
                model_dir,
                hub_dir / run.variant,
                results=[model_dir / "study_results.json"],
                repo_id=f"synthesizer-{run.variant.replace('+', '-')}-{study.bert}-adapted",
                overwrite=True,
            )
        )
    return folders


def variant_results(
    records: Sequence[Mapping[str, Any]], variant: str, row: Mapping[str, Any]
) -> dict[str, Any]:
    """A run_glue-style summary of one variant's adapted runs (of `records`, `collect_results`): each task's
    metrics and score, averaged over its seeds, and the benchmark averages of the study's table."""
    metrics: dict[str, list[Mapping[str, float]]] = defaultdict(list)
    for record in records:
        if record["stage"] == "adapted" and record["variant"] == variant:
            metrics[record["task"]].append(record["metrics"])
    tasks = {
        task: {
            key: statistics.fmean(run[key] for run in runs)
            for key, value in runs[0].items()
            if isinstance(value, float) and all(key in run for run in runs)
        }
        for task, runs in metrics.items()
    }
    scores = {task: row[task]["mean"] / 100 for task in tasks if task in row}
    scores.update(
        {key: row[key]["mean"] / 100 for key in ("glue_average", "superglue_average") if key in row}
    )
    return {"tasks": tasks, "scores": scores, "seeds": {task: len(runs) for task, runs in metrics.items()}}


__all__ = [
    "Selection",
    "StudyFileError",
    "TaskPlan",
    "WarmStartStudy",
    "load_warm_start_study",
    "run_speed_probe",
    "run_warm_start_study",
    "write_hub_folders",
    "write_report",
]
