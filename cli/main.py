"""The ``ephys`` command: fetch, prepare, train, evaluate, explain, report."""

from __future__ import annotations

import sys
import traceback

import typer

from ephys.pipelines.core.errors import EphysError

from . import common
from .cluster import cluster
from .crossval import aggregate
from .slurm import slurm_plan
from .evaluate import evaluate
from .events import events_app, prepare_events
from .explain import explain
from .fetch import fetch_app
from .mer import mer_app, prepare_mer
from .models import models
from .predict import predict
from .prepare import prepare_app
from . import prepare_lfp  # noqa: F401  (registers `ephys prepare lfp`)
from .report import report
from .reproduce import reproduce
from .train import train

#: verbs in data-flow order for --help
VERB_ORDER = ("fetch", "prepare", "train", "aggregate", "evaluate", "predict", "explain", "report", "reproduce", "cluster", "models")


class _DataFlowOrder(typer.core.TyperGroup):
    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: VERB_ORDER.index(n) if n in VERB_ORDER else len(VERB_ORDER))


app = typer.Typer(
    name="ephys",
    cls=_DataFlowOrder,
    help="Electrophysiology recordings to trained deep-learning classifiers and reports.\n\n"
         "Data flow: fetch -> prepare -> train -> evaluate -> explain -> report. "
         "Defaults use ./data (override with EPHYS_DATA) and ./runs (EPHYS_RUNS), so "
         "`ephys fetch synthetic && ephys prepare scalograms && ephys train --model densenet "
         "&& ephys evaluate && ephys explain && ephys report` runs with no other argument.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.add_typer(fetch_app, name="fetch")
app.add_typer(prepare_app, name="prepare")
app.add_typer(events_app, name="events")
prepare_app.command("mer")(prepare_mer)
prepare_app.command("events")(prepare_events)
app.add_typer(mer_app, name="mer")
app.command()(train)
app.command()(aggregate)
app.command("slurm-plan", hidden=True)(slurm_plan)
app.command()(evaluate)
app.command()(predict)
app.command()(explain)
app.command()(report)
app.command()(models)
app.command()(reproduce)
app.command()(cluster)


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


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print versions of ephys, keras, the backend, and whether a GPU is visible."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or chatter (for batch logs)."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
):
    common.STATE.update(quiet=quiet or common.STATE["quiet"], debug=debug or common.STATE["debug"])
    if version:
        common.out.print(_version_text(), highlight=False)
        raise typer.Exit(0)


def run() -> None:
    """Console-script entry point: one line on stderr and exit code 2 for bad input.

    ``--quiet`` and ``--debug`` are global and may stand anywhere on the command line.
    """
    common.writable_caches()
    args = sys.argv[1:]
    for flag in ("--quiet", "--debug"):
        if flag in args[1:] and "--" not in args:
            common.STATE[flag[2:]] = True
            args = [a for a in args if a != flag]
    common.route_warnings()
    from typer._click import exceptions as cx  # typer's own (vendored) click

    from ephys.pipelines.core.atomic import UNWRITABLE_ERRNOS, os_error

    try:
        rc = app(args=args, prog_name="ephys", standalone_mode=False)
    except cx.NoArgsIsHelpError as exc:  # `ephys prepare` alone: its help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except cx.UsageError as exc:  # bad option / value / missing argument: one line
        where = exc.ctx.command_path if exc.ctx is not None else "ephys"
        text = " ".join(exc.format_message().split())
        print(f"ephys: error: {text} (see `{where} --help`)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):  # an EOFError escaped (e.g. a truncated file): a bug here
            _internal(exc.__cause__)
        print("ephys: aborted", file=sys.stderr)
        sys.exit(1)
    except cx.ClickException as exc:
        print(f"ephys: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except EphysError as exc:
        if common.STATE["debug"]:
            traceback.print_exc()
        print(f"ephys: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("ephys: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # an output that cannot be written (read-only, permission, not a folder)
        if exc.errno not in UNWRITABLE_ERRNOS:
            _internal(exc)
        if common.STATE["debug"]:
            traceback.print_exc()
        print(f"ephys: error: {os_error(exc).one_line()}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        _internal(exc)
    sys.exit(rc if isinstance(rc, int) else 0)


def _internal(exc: BaseException) -> None:
    """A genuine bug: exit 1 with one line (or the traceback with --debug)."""
    if common.STATE["debug"]:
        traceback.print_exc()
    else:
        print(f"ephys: internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
              file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    run()
