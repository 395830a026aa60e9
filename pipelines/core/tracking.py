"""Optional experiment tracking: ``--track mlflow[:URI]`` logs a finished run folder into MLflow.

What a run folder holds goes in as it is: ``config.yaml`` as parameters (nested keys dotted),
``history.csv`` as per-epoch metrics (step = epoch from 0), ``metrics.json``'s headline numbers as
final metrics (``test_`` prefixed), ``train_summary.json``'s numbers, and ``report.html`` /
``metrics.json`` / ``config.yaml`` as artifacts (for a SQLite store: in ``mlartifacts/`` beside
the database file). It works offline on compute nodes: without a URI
the store is a SQLite file in the runs root (``sqlite:///RUNS/mlflow.db``, MLflow's default backend
since 3.7). MLflow is an optional extra (``pip install 'ephys[track]'``); nothing else imports it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .errors import EphysError

__all__ = ["parse_track", "log_run"]

_HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "n_test")


def parse_track(value: str | None, runs_root: str | Path) -> str | None:
    """``--track`` -> an MLflow tracking URI: None (off), ``mlflow`` (``sqlite:///`` a file
    ``mlflow.db`` in ``runs_root``), ``mlflow:URI`` (that URI, e.g. ``sqlite:///x.db``,
    ``file:./mlruns`` or a server's ``http://...``).

    Raises
    ------
    EphysError
        Another tracker name, or MLflow not installed.
    """
    if value in (None, "", "none", "off"):
        return None
    name, _, uri = str(value).partition(":")
    if name.strip().lower() != "mlflow":
        raise EphysError(f"--track must be mlflow or mlflow:URI, not {value!r}")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise EphysError("--track mlflow needs MLflow, an optional extra: pip install 'ephys[track]'") from None
    if uri:
        return uri
    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and not isinstance(v, bool) else None


def log_run(run_dir: str | Path, uri: str, experiment: str = "ephys", params: dict | None = None,
            tags: dict | None = None) -> str:
    """Log run folder ``run_dir`` as one MLflow run in ``experiment`` at tracking ``uri``; returns
    the MLflow run id. ``params`` / ``tags``: extra parameters (e.g. a trial's values) and tags.

    Raises
    ------
    EphysError
        MLflow not installed, or the run folder has no config.yaml.
    """
    import yaml

    try:
        import mlflow
    except ImportError:
        raise EphysError("--track mlflow needs MLflow, an optional extra: pip install 'ephys[track]'") from None
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise EphysError("not a run folder (no config.yaml)", run)
    config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None and uri.startswith("sqlite:///"):
        # artifacts beside the database, not in ./mlruns of whatever folder the command ran in
        store = Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"
        mlflow.create_experiment(experiment, artifact_location=store.as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run.name, tags={"ephys.run_dir": str(run.resolve()), **(tags or {})}) as active:
        flat = {k: ("null" if v is None else str(v))[:500] for k, v in _flat({**config, **(params or {})}).items()}
        mlflow.log_params(flat)
        hist = run / "history.csv"
        if hist.is_file():
            with open(hist, newline="") as fh:
                for row in csv.DictReader(fh):
                    step = int(row.pop("epoch"))
                    vals = {k: _num(v) for k, v in row.items()}
                    mlflow.log_metrics({k: v for k, v in vals.items() if v is not None}, step=step)
        final = {}
        for name, prefix in (("metrics.json", "test_"), ("train_summary.json", "")):
            path = run / name
            if path.is_file():
                data = json.loads(path.read_text())
                keys = _HEADLINE if name == "metrics.json" else data
                final.update({prefix + k: _num(data.get(k)) for k in keys})
        mlflow.log_metrics({k: v for k, v in final.items() if v is not None})
        for name in ("config.yaml", "metrics.json", "report.html"):
            if (run / name).is_file():
                mlflow.log_artifact(str(run / name))
        return active.info.run_id
