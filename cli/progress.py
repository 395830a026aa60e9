"""Progress on stderr: a rich bar on a terminal, plain lines in a batch log (a SLURM job's output)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .state import STATE

err = Console(stderr=True)


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
    fails on an item prints its one-line error without a progress line for it. ``advance(...,
    ok=False)`` marks an item that was skipped: lines are held back until the first usable item,
    so input refused as a whole (a folder of only bad files) prints just its one-line error.
    """
    if STATE["quiet"]:
        yield lambda n=1, text=None, total=None, ok=True: None
        return
    if batch_log():
        import time

        state = {"done": 0, "total": total, "t": time.perf_counter(), "last": 0, "text": None, "pending": None,
                 "any_ok": False, "held": []}

        def emit(now_print: bool = True):
            now = time.perf_counter()
            of = f"/{state['total']}" if state["total"] else ""
            text = state["text"]
            msg = (f"{description}: {state['done']}{of}" + (f"  {text}" if text else "")
                   + f"  ({now - state['t']:.1f} s)")
            state["t"], state["last"] = now, state["done"]
            if now_print:
                say(msg)
            else:
                state["pending"] = msg

        def say(msg: str):
            if state["any_ok"]:
                print(msg, file=sys.stderr, flush=True)
            else:  # nothing usable yet: held back, so input that is refused as a whole prints one line
                state["held"].append(msg)

        def line(n: int = 1, text: str | None = None, total: int | None = None, ok: bool = True):
            if ok and not state["any_ok"]:
                state["any_ok"] = True
                for msg in state["held"]:
                    print(msg, file=sys.stderr, flush=True)
                state["held"] = []
            if state["pending"]:
                say(state["pending"])
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
        state["any_ok"] = True  # finished: whatever was held back is worth a line now
        for msg in state["held"]:
            print(msg, file=sys.stderr, flush=True)
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

    def advance(n: int = 1, text: str | None = None, total: int | None = None, ok: bool = True):
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
