"""``ephys prepare NAME``: one command per declared prepare step (the registry's), plus ``tasks``."""

from __future__ import annotations

from pathlib import Path

import typer

from ephys.pipelines.core import registry
from ephys.pipelines.core.prepare import PrepareRunOptions

from . import common
from .options import command_from, help_doc, parameters, values

prepare_app = typer.Typer(help="Turn raw recordings into a prepared dataset.", no_args_is_help=True)


def _input_params(step) -> list:
    import inspect

    where = f"DATA/{step.input_default}" if step.input_default else None
    text = step.input_help + (f" [default: {where}]" if where else "")
    out_help = f"Dataset folder to write [default: DATA/{step.out_default}]."
    kind = str if step.input_text else Path
    return [inspect.Parameter("input", inspect.Parameter.KEYWORD_ONLY, annotation=kind | None,
                              default=typer.Argument(None if where else ..., help=text, show_default=False,
                                                             metavar="INPUT")),
            inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                              default=typer.Argument(None, help=out_help, show_default=False, metavar="OUT"))]


def _run(step, pipeline: str, kw: dict) -> None:
    from ephys.pipelines.core.prepare import run_prepare
    from ephys.pipelines.core.runfolder import runs_using

    params = values(step.params, kw) if step.params is not None else None
    options = values(step.options, kw) if step.options is not None else None
    gen = values(PrepareRunOptions, {k: v for k, v in kw.items() if k != "labels" or step.labels})
    raw = kw.get("input")
    if raw is None:
        raw = common.data_root() / step.input_default
    input_path = raw if step.input_text and not _local(raw) else Path(raw)
    out = Path(kw.get("out") or common.data_root() / step.out_default)
    labels = gen.labels
    if labels is None and step.labels and isinstance(input_path, Path) and (input_path / "labels.csv").is_file():
        labels = input_path / "labels.csv"
    with common.progress_bar(f"{step.noun}s", None) as advance:
        def progress(done, total, info):
            res = info["result"] if isinstance(info["result"], dict) else {}
            skipped = res.get("status") not in (None, "ok")
            note = info["key"] + (" (skipped)" if skipped else " (done before)" if info["resumed"] else "") \
                + str(res.get("note") or "")
            advance(1, note, total=total, ok=not skipped)

        res = run_prepare(pipeline, step, input_path, out, params, options=options, labels_csv=labels,
                          force=gen.force, run=gen.run_options(out), progress=progress,
                          n_runs_using=len(runs_using(out, common.runs_root())) if out.is_dir() else 0,
                          log=common.info, notice=common.notice)
    for s in res.skipped:
        common.err.print(f"skipped {s['path']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)
    common.info(f"{res.n_ok} {step.noun}s prepared ({res.n_resumed} done before), {len(res.skipped)} skipped")
    if res.main_file is None:
        common.info(f"shard {gen.shard}: done; run without --shard to write {out / step.main_file}")
    else:
        common.out.print(str(res.main_file), highlight=False, markup=False, soft_wrap=True)


def _local(raw) -> bool:
    """INPUT names a file or folder here (not a URL or an archive id)."""
    try:
        Path(str(raw)).stat()
    except (OSError, ValueError):
        return False
    return True


def add_step(step, pipeline: str) -> None:
    """Register ``ephys prepare STEP`` built from its declaration."""
    params = _input_params(step)
    for cls in (step.params, step.options):
        if cls is not None:
            params += parameters(cls)
    params += parameters(PrepareRunOptions, skip=() if step.labels else ("labels",))
    doc = help_doc(step.summary, step.description)
    prepare_app.command(step.name, help=doc)(command_from(lambda kw: _run(step, pipeline, kw), params, doc))


@prepare_app.command("tasks")
def prepare_tasks(
    input: Path = typer.Argument(None, metavar="INPUT", help="Recordings as for `ephys prepare STEP` [default: the step's]."),
    step: str = typer.Option(None, "--step", help="Prepare step [default: the default pipeline's main step]."),
    labels: Path = typer.Option(None, "--labels", help="Labels CSV as for the step."),
    items_per_task: int = typer.Option(25, "--items-per-task", "--cells-per-task", min=1, help="Items one array task prepares."),
):
    """Print how many SLURM array tasks `ephys prepare STEP --shard K/N` needs for INPUT."""
    from ephys.pipelines.core.prepare import count_tasks

    st = registry.prepare_step(step)[0] if step else registry.default_pipeline().prepare[0]
    input = input or common.data_root() / (st.input_default or "")
    if labels is None and st.labels and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    common.out.print(str(count_tasks(st, input, labels_csv=labels, items_per_task=items_per_task)), highlight=False)


def register_steps() -> None:
    """One ``ephys prepare NAME`` per declared step (called when the app is built)."""
    for step, pipeline in registry.prepare_steps().values():
        add_step(step, pipeline)
