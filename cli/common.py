"""Shared CLI plumbing: data root, run lookup, progress bars, console."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ephys.pipelines.core.errors import EphysError

#: stdout for results (paths, tables); stderr for progress and messages
out = Console()
err = Console(stderr=True)

STATE = {"quiet": False, "debug": False}


def writable_caches() -> None:
    """Point library caches at a temp folder when the home folder is not writable.

    pynwb writes a type-map cache under the user cache dir at import (platformdirs,
    ``$XDG_CACHE_HOME`` or ``~/.cache``) and matplotlib its config under ``~/.config``; inside
    an Apptainer image, or on compute nodes with a read-only home, that fails. Variables the
    user set are left alone.
    """
    import tempfile

    home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    probe = home_cache if home_cache.exists() else home_cache.parent
    if os.access(probe, os.W_OK):
        return
    fallback = Path(tempfile.gettempdir()) / f"ephys-cache-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(fallback)
    os.environ.setdefault("MPLCONFIGDIR", str(fallback / "matplotlib"))


def import_backend() -> None:
    """Import Keras and its backend with native start-up chatter hidden.

    TensorFlow prints C++ log lines (oneDNN notices, absl warnings) on stderr when it is
    imported, which no environment variable fully silences; batch logs and the one-line error
    contract should not carry them. stderr is pointed at /dev/null only during the import
    (``--debug`` keeps it). Import errors still raise normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if STATE["debug"] or "keras" in sys.modules:
        import keras  # noqa: F401
        return
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import keras  # noqa: F401

        from ephys.pipelines.core import runtime

        runtime.backend_version()  # imports the backend module itself
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def data_root() -> Path:
    """The data root: ``$EPHYS_DATA`` or ``./data``."""
    return Path(os.environ.get("EPHYS_DATA", "data"))


def synthetic_dir(pipeline: str) -> Path:
    """Where ``ephys fetch synthetic --pipeline NAME`` writes by default: DATA/raw/synthetic for
    the default pipeline, DATA/raw/synthetic-NAME for the others."""
    from ephys.pipelines.core.registry import default_pipeline

    return data_root() / "raw" / ("synthetic" if pipeline == default_pipeline().name else f"synthetic-{pipeline}")


def runs_root() -> Path:
    """Where runs go by default: ``$EPHYS_RUNS`` or ``./runs``."""
    return Path(os.environ.get("EPHYS_RUNS", "runs"))


def resolve_run(run: Path | None) -> Path:
    """The given run folder, or the most recently trained one under the runs root."""
    if run is not None:
        if not run.exists():
            raise EphysError("no such run folder", run)
        return run
    root = runs_root()
    cands = [p for p in root.glob("*") if (p / "config.yaml").is_file()] if root.is_dir() else []
    if not cands:
        raise EphysError("no run given and none found; run `ephys train` first or pass RUN", root)
    return max(cands, key=lambda p: (p / "config.yaml").stat().st_mtime)


def route_warnings() -> None:
    """Third-party warnings become one ``ephys: warning: ...`` line each (once per message), not
    multi-line blocks with source lines; ``--debug`` leaves Python's default display."""
    import warnings

    if STATE["debug"]:
        return
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if len(text) > 200:
            text = text[:197] + "..."
        key = f"{category.__name__}:{text}"
        if key in seen:
            return
        seen.add(key)
        print(f"ephys: warning: {text} ({category.__name__}; --debug for details)", file=sys.stderr)

    warnings.showwarning = show


def info(msg: str) -> None:
    if not STATE["quiet"]:
        err.print(msg, highlight=False, markup=False, soft_wrap=True)


def notice(msg: str) -> None:
    """A message worth a line even with --quiet (a resumed run, a skipped finished run)."""
    err.print(msg, highlight=False, markup=False, soft_wrap=True)


def batch_log() -> bool:
    """True when stderr is not a terminal (a SLURM log, a pipe): plain lines instead of bars."""
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


@contextmanager
def progress_bar(description: str, total: int | None = None, every: int | None = None, defer: bool = True):
    """A rich progress bar on stderr (silent with --quiet). Yields ``advance(n=1, text=None)``.

    The bar appears at the first update, so a command that fails on its input prints only
    its one-line error. When stderr is not a terminal (a batch log), no bar is drawn: one plain
    line ``description: done/total  text  (seconds since the last line)`` is printed every
    ``every`` items (default: about 20 lines per run, at least every 10 items; and the last one).
    With ``defer`` (default) a line is printed when the next item arrives, so a command that
    fails on an item prints its one-line error without a progress line for it.
    """
    if STATE["quiet"]:
        yield lambda n=1, text=None, total=None: None
        return
    if batch_log():
        import time

        state = {"done": 0, "total": total, "t": time.perf_counter(), "last": 0, "text": None, "pending": None}

        def emit(now_print: bool = True):
            now = time.perf_counter()
            of = f"/{state['total']}" if state["total"] else ""
            text = state["text"]
            msg = (f"{description}: {state['done']}{of}" + (f"  {text}" if text else "")
                   + f"  ({now - state['t']:.1f} s)")
            state["t"], state["last"] = now, state["done"]
            if now_print:
                print(msg, file=sys.stderr, flush=True)
            else:
                state["pending"] = msg

        def line(n: int = 1, text: str | None = None, total: int | None = None):
            if state["pending"]:
                print(state["pending"], file=sys.stderr, flush=True)
                state["pending"] = None
            if total is not None:
                state["total"] = total
            state["done"] += n
            state["text"] = text
            tot = state["total"]
            step = every or (max(1, min(10, (tot or 200) // 20)))
            if state["done"] - state["last"] >= step and not (tot and state["done"] >= tot):
                emit(now_print=not defer)

        yield line  # an exception here leaves the last item unreported: the error line says why
        if state["pending"]:
            print(state["pending"], file=sys.stderr, flush=True)
        elif state["done"] > state["last"]:
            emit()
        return
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=err,
                    transient=True, auto_refresh=True)
    task = prog.add_task(description, total=total, note="", start=True)
    started = [False]

    def advance(n: int = 1, text: str | None = None, total: int | None = None):
        if not started[0]:
            prog.start()
            started[0] = True
        kw = {"advance": n}
        if text is not None:
            kw["note"] = text
        if total is not None:
            kw["total"] = total
        prog.update(task, **kw)

    try:
        yield advance
    finally:
        if started[0]:
            prog.stop()
