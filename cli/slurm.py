"""``ephys slurm-plan`` (hidden): a pipeline's ``make slurm-all`` settings as shell defaults."""

from __future__ import annotations

import shlex

import typer


def slurm_plan(pipeline: str = typer.Option(None, "--pipeline", help="Registered pipeline name [default: the default pipeline].")):
    """Print the pipeline's ClusterSteps as shell lines for slurm/submit.sh to eval, each exporting
    its default only when the user has not set the variable (for the *_ARGS: set, even empty)."""
    from ephys.pipelines.core.errors import EphysError

    from . import common
    from ephys.pipelines.core.registry import pipeline as find

    from ephys.pipelines.core.registry import default_pipeline

    p = find(pipeline) if pipeline else default_pipeline()
    pipeline = p.name
    c = p.cluster
    if c is None:
        raise EphysError(f"pipeline {pipeline!r} declares no cluster steps (run it with `ephys reproduce`)")
    size = "" if c.fetch_size is None or p.synthetic is None else str(c.fetch_size)
    lines = [("EPHYS_PREPARE_VERB", c.prepare, ":="), ("EPHYS_MODELS", " ".join(c.models), ":="),
             ("EPHYS_FOLDS", "1" if c.folds else "0", ":="), ("EPHYS_SHARDS", "1" if c.shards else "0", ":="),
             ("EPHYS_FETCH_SIZE", size, "="), ("EPHYS_TRAIN_ARGS", c.train_args, "="),
             ("EPHYS_PREPARE_ARGS", c.prepare_args, "="),
             ("EPHYS_INPUT", str(common.synthetic_dir(pipeline)), ":="),
             ("EPHYS_DATASET", str(common.data_root() / _step_out(p, c.prepare)), ":=")]
    for var, value, op in lines:
        test = f'"${{{var}+set}}"' if op == "=" else f'"${{{var}:-}}"'
        print(f"[ -n {test} ] || export {var}={shlex.quote(value)}")


def _step_out(p, name: str) -> str:
    """Where the pipeline's prepare step ``name`` writes by default (relative to the data root)."""
    for s in p.prepare:
        if s.name == name:
            return s.out_default
    return f"processed/{name}"
