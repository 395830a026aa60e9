"""The console-script entry point: the error contract of every verb (one line, exit code 2)."""

from __future__ import annotations

import signal
import sys
import traceback

import typer

from ephys.pipelines.core.errors import EphysError, Interrupted

from . import common

#: the signal that ended the command (SIGINT, SIGTERM), once one arrived
_SIGNAL: list[int] = []


def _on_signal(signum, frame):
    """Ctrl-C or SIGTERM: raise in the main thread (cleanup runs in every ``finally``); a second
    signal during that cleanup is ignored so the cleanup finishes."""
    if _SIGNAL:
        return
    _SIGNAL.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def _interrupted() -> None:
    signum = _SIGNAL[0] if _SIGNAL else signal.SIGINT
    print("ephys: interrupted; re-run the same command to resume", file=sys.stderr)
    sys.exit(128 + int(signum))


def run(get_app=None) -> None:
    """Console-script entry point: one line on stderr and exit code 2 for bad input.

    ``--quiet`` and ``--debug`` are global and may stand anywhere on the command line;
    ``get_app`` returns the typer app (default :func:`ephys.cli.main.get_app`).
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
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
        if _SIGNAL:  # typer turned the interrupt into exit code 130
            _interrupted()
    except cx.NoArgsIsHelpError as exc:  # `ephys prepare` alone: its help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except cx.UsageError as exc:  # bad option / value / missing argument: one line
        where = exc.ctx.command_path if exc.ctx is not None else "ephys"
        text = " ".join(exc.format_message().split())
        print(f"ephys: error: {text} (see `{where} --help`)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted()
        if isinstance(exc.__cause__, EOFError):  # an EOFError escaped (e.g. a truncated file): a bug here
            _internal(exc.__cause__)
        print("ephys: aborted", file=sys.stderr)
        sys.exit(1)
    except cx.ClickException as exc:
        print(f"ephys: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except EphysError as exc:
        if _SIGNAL:  # a library turned the interrupt into its own error (e.g. TensorFlow's input pipeline)
            _interrupted()
        if common.STATE["debug"]:
            traceback.print_exc()
        print(f"ephys: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # includes Interrupted (SIGTERM)
        _interrupted()
    except OSError as exc:  # an output that cannot be written (read-only, permission, not a folder)
        if _SIGNAL:
            _interrupted()
        if exc.errno not in UNWRITABLE_ERRNOS:
            _internal(exc)
        if common.STATE["debug"]:
            traceback.print_exc()
        print(f"ephys: error: {os_error(exc).one_line()}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if _SIGNAL:
            _interrupted()
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
