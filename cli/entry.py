"""The console-script entry point: the error contract of every verb (one line, exit code 2)."""

from __future__ import annotations

import sys
import traceback

import typer

from ephys.pipelines.core.errors import EphysError

from . import common


def run(get_app=None) -> None:
    """Console-script entry point: one line on stderr and exit code 2 for bad input.

    ``--quiet`` and ``--debug`` are global and may stand anywhere on the command line;
    ``get_app`` returns the typer app (default :func:`ephys.cli.main.get_app`).
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

    if get_app is None:
        from .main import get_app

    try:
        rc = get_app()(args=args, prog_name="ephys", standalone_mode=False)
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
