"""Shared CLI plumbing: the consoles, the data and runs roots, messages; progress bars and the
environment set-up are re-exported from their modules."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from ephys.pipelines.core.errors import EphysError  # noqa: F401  (raised by the verbs)

from .environment import import_backend, route_warnings, writable_caches  # noqa: F401
from .progress import batch_log, err, progress_bar  # noqa: F401
from .state import STATE

#: stdout for results (paths, tables); stderr (``err``) for progress and messages
out = Console()


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


def resolve_run(run: Path | None, need_model: bool = False) -> Path:
    """The given run folder, or the most recently trained one under the runs root, checked
    (config.yaml; with ``need_model`` its model file) before any deep-learning import."""
    from ephys.pipelines.core.runfolder import check_run

    return check_run(run, runs_root(), need_model)


def info(msg: str) -> None:
    if not STATE["quiet"]:
        err.print(msg, highlight=False, markup=False, soft_wrap=True)


def notice(msg: str) -> None:
    """A message worth a line even with --quiet (a resumed run, a skipped finished run)."""
    err.print(msg, highlight=False, markup=False, soft_wrap=True)
