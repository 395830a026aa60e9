"""The ``ephys`` command: the data-flow verbs, plus each pipeline's own commands from the registry."""

from __future__ import annotations

import typer

from . import common, commands
from .crossval import aggregate
from .entry import run  # noqa: F401  (the console script: ephys.cli.main:run)
from .evaluate import evaluate
from .explain import explain
from .fetch import fetch_app
from .models import models
from .predict import register as register_predict
from .prepare import prepare_app
from .report import report
from .reproduce import reproduce
from .slurm import slurm_plan
from .train import train
from .tune import tune

#: verbs in data-flow order for --help; pipeline groups follow
VERB_ORDER = ("fetch", "prepare", "train", "tune", "aggregate", "evaluate", "predict", "explain", "report", "reproduce",
              "models")


class _DataFlowOrder(typer.core.TyperGroup):
    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: (VERB_ORDER.index(n) if n in VERB_ORDER else len(VERB_ORDER), n))


def build_app() -> typer.Typer:
    """The typer app: the verbs, then every pipeline's prepare steps and commands from the registry
    (importing the pipelines' declarations: cheap, no deep-learning library)."""
    from ephys.pipelines.core.registry import default_pipeline, pipelines

    from .fetch import register_synthetic
    from .prepare import register_steps

    dp = default_pipeline()
    model = dp.models[0].aliases[0] if dp.models and dp.models[0].aliases else (dp.models[0].name if dp.models else "NAME")
    step = dp.prepare[0].name if dp.prepare else "STEP"
    app = typer.Typer(
        name="ephys",
        cls=_DataFlowOrder,
        help="Electrophysiology recordings to trained deep-learning classifiers and reports.\n\n"
             "Data flow: fetch -> prepare -> train -> evaluate -> explain -> report, e.g. "
             f"`ephys fetch synthetic && ephys prepare {step} && ephys train --model {model} && ephys evaluate "
             "&& ephys report`. Data go to ./data (EPHYS_DATA), runs to ./runs (EPHYS_RUNS); a pipeline's own "
             "commands are grouped under its name.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
    )
    register_synthetic()
    register_steps()
    app.add_typer(fetch_app, name="fetch")
    app.add_typer(prepare_app, name="prepare")
    for verb in (train, tune, aggregate, evaluate, explain, report, models, reproduce):
        app.command()(verb)
    register_predict(app)
    app.command("slurm-plan", hidden=True)(slurm_plan)
    commands.register(app, {"fetch": fetch_app}, pipelines())
    app.callback(invoke_without_command=True)(main)
    return app


_APP: list[typer.Typer] = []


def get_app() -> typer.Typer:
    """The app, built once."""
    if not _APP:
        _APP.append(build_app())
    return _APP[0]


def __getattr__(name: str):
    if name == "app":
        return get_app()
    raise AttributeError(name)


def _version_text() -> str:
    from ephys.pipelines import __version__
    from ephys.pipelines.core import runtime

    try:
        common.import_backend()
        import keras

        kv = keras.__version__
        backend = f"{runtime.backend_name()} {runtime.backend_version()}"
        gpus = runtime.gpu_devices()
    except Exception as exc:  # pragma: no cover - broken install
        kv, backend, gpus = "not importable", f"({exc})", []
    gpu = f"yes ({len(gpus)}: {', '.join(gpus)})" if gpus else "no"
    return f"ephys {__version__}\nkeras {kv}\nbackend {backend}\ngpu {gpu}"


def main(
    version: bool = typer.Option(False, "--version", help="Print versions of ephys, keras, the backend, and whether a GPU is visible."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or chatter (for batch logs)."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
):
    common.STATE.update(quiet=quiet or common.STATE["quiet"], debug=debug or common.STATE["debug"])
    if version:
        common.out.print(_version_text(), highlight=False)
        raise typer.Exit(0)


if __name__ == "__main__":
    run(get_app)
