"""The run folder: one module owning what ``ephys train`` / ``evaluate`` / ``predict`` write.

``RUN/config.yaml``      every setting of the run (:func:`load_run_config`)
``RUN/split.json``       train / val / test sample ids (:func:`read_split`)
the dataset              the prepared dataset the run was trained on (:func:`find_dataset`,
                         :func:`read_manifest`)
``RUN/metrics.json``     test metrics (:func:`read_metrics`, written by ``evaluate``)
``RUN/predictions.csv``  per-sample predictions (:func:`write_predictions`)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .atomic import write_text
from .errors import EphysError

__all__ = ["load_run_config", "find_dataset", "read_manifest", "read_split", "load_sample", "read_metrics",
           "write_predictions", "runs_using"]


# --------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------


def load_run_config(run_dir: str | Path) -> dict:
    """Read ``RUN/config.yaml`` into a dict.

    Raises
    ------
    EphysError
        ``RUN`` is not a folder, has no ``config.yaml``, or the YAML is unreadable / not a mapping.
    """
    import yaml

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EphysError("not a run folder (no such directory) — run `ephys train` first", run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise EphysError("no config.yaml — not a run folder; run `ephys train` first", run_dir)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable YAML: {' '.join(str(exc).split())}", path) from exc
    if not isinstance(config, dict):
        raise EphysError("config.yaml is not a mapping of keys to values", path)
    return config


def find_dataset(run_dir: str | Path, config: dict, data_dir: str | Path | None = None) -> Path:
    """Locate the prepared dataset folder of a run.

    ``data_dir`` (an explicit override) wins; otherwise ``config["data"]`` is tried as given
    (absolute, or relative to the current directory), then relative to the run folder and
    its parents (runs are often moved together with their data).

    Raises
    ------
    EphysError
        No candidate folder holds a ``manifest.json``.
    """
    run_dir = Path(run_dir)
    if data_dir is not None:
        p = Path(data_dir)
        if not (p / "manifest.json").is_file():
            raise EphysError("no manifest.json — not a prepared dataset (run `ephys prepare`)", p)
        return p
    raw = config.get("data")
    if not raw:
        raise EphysError("config.yaml has no `data` key (path to the prepared dataset)", run_dir / "config.yaml")
    raw_path = Path(str(raw)).expanduser()
    candidates = [raw_path]
    if not raw_path.is_absolute():
        candidates += [run_dir / raw_path] + [parent / raw_path for parent in run_dir.resolve().parents]
    for cand in candidates:
        if (cand / "manifest.json").is_file():
            return cand
    raise EphysError(
        f"dataset {raw} named in config.yaml not found (no manifest.json there)", run_dir / "config.yaml"
    )


def read_manifest(data_dir: str | Path) -> dict:
    """Read and minimally validate ``DATA/manifest.json``.

    Raises
    ------
    EphysError
        Missing / unreadable manifest, or no ``samples`` list.
    """
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise EphysError("no manifest.json — not a prepared dataset (run `ephys prepare`)", Path(data_dir))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable JSON: {exc}", path) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise EphysError("manifest has no `samples` list", path)
    return manifest


def read_split(run_dir: str | Path) -> dict | None:
    """Read ``RUN/split.json`` -> ``{"train": [ids], "val": [ids], "test": [ids]}``, or None if absent.

    Raises
    ------
    EphysError
        The file exists but is not valid JSON / not a mapping of lists.
    """
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        return None
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable JSON: {exc}", path) from exc
    if not isinstance(split, dict):
        raise EphysError("split.json is not a mapping of split name to ids", path)
    return {k: [str(i) for i in (split.get(k) or [])] for k in ("train", "val", "test")}


def load_sample(data_dir: Path, entry: dict) -> np.ndarray:
    """Load one sample array (float32, ``manifest["sample_shape"]``) named by a manifest entry."""
    path = Path(data_dir) / entry.get("file", f"samples/{entry.get('id')}.npy")
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except FileNotFoundError as exc:
        raise EphysError("sample file listed in manifest.json is missing", path) from exc
    except (ValueError, OSError) as exc:
        raise EphysError(f"unreadable sample: {exc}", path) from exc



def read_metrics(run_dir: str | Path) -> dict | None:
    """``RUN/metrics.json`` as a dict, or None when the run has not been evaluated.

    Raises
    ------
    EphysError
        The file exists but is not a JSON mapping.
    """
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable JSON: {exc}", path) from None
    if not isinstance(metrics, dict):
        raise EphysError("metrics.json is not a mapping", path)
    return metrics


def runs_using(data_dir: str | Path, runs_root: str | Path, max_depth: int = 3) -> list[Path]:
    """Run folders under ``runs_root`` (up to ``max_depth`` levels down) whose ``config.yaml``
    names ``data_dir`` as their dataset (compared as resolved paths). Unreadable configs are
    skipped: this is for messages ("3 trained runs used it"), not a check."""
    import yaml

    target, root = Path(data_dir).resolve(), Path(runs_root)
    found: list[Path] = []
    if not root.is_dir():
        return found
    for depth in range(1, max_depth + 1):
        for cfg in root.glob("/".join(["*"] * depth) + "/config.yaml"):
            try:
                data = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("data")
                if data and Path(str(data)).resolve() == target:
                    found.append(cfg.parent)
            except Exception:  # noqa: BLE001 - a damaged config is not this message's business
                continue
    return found


def write_predictions(path: str | Path, ids, proba: np.ndarray, label_names: list[str], *,
                      true=None, columns: dict[str, list] | None = None, threshold: float | None = None) -> Path:
    """Write a predictions CSV atomically: ``id``, extra ``columns`` (e.g. ``source``), ``true``
    (when given), ``predicted``, then ``p_<label>`` per class (6 decimals).

    Parameters
    ----------
    ids : sequence of str, length n
    proba : np.ndarray, shape (n, n_classes), float; rows sum to 1
    label_names : list[str], length n_classes
    true : sequence of str or None, length n
    columns : {name: list of length n} or None
    threshold : float or None
        Two classes: ``predicted`` is the second class when its probability is >= threshold.
    """
    columns = columns or {}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", *columns, *(["true"] if true is not None else []), "predicted"]
               + [f"p_{n}" for n in label_names])
    for k, (sid, pr) in enumerate(zip(ids, proba)):
        extra = [columns[c][k] for c in columns]
        t = [true[k]] if true is not None else []
        k_pred = int(np.argmax(pr)) if threshold is None or len(pr) != 2 else int(pr[1] >= threshold)
        w.writerow([sid, *extra, *t, label_names[k_pred]] + [f"{v:.6f}" for v in pr])
    return write_text(Path(path), buf.getvalue())


def resolve_run(run: str | Path | None, runs_root: str | Path) -> Path:
    """``run`` when given (it must be a folder), else the most recently trained run under ``runs_root``.

    Raises
    ------
    EphysError
        The given folder is missing, or no run is given and none is found.
    """
    if run is not None:
        run = Path(run)
        if not run.is_dir():
            raise EphysError("no such run folder", run)
        return run
    root = Path(runs_root)
    cands = [p for p in root.glob("*") if (p / "config.yaml").is_file()] if root.is_dir() else []
    if not cands:
        raise EphysError("no run given and none found; run `ephys train` first or pass RUN", root)
    return max(cands, key=lambda p: (p / "config.yaml").stat().st_mtime)


def check_run(run: str | Path | None, runs_root: str | Path, need_model: bool = False) -> Path:
    """The cheap checks a verb makes on a run before it imports a deep-learning library:
    :func:`resolve_run`, a readable ``config.yaml`` and, with ``need_model``, the run's model file
    and ``split.json`` (every finished run has both). Returns the run folder.

    Raises
    ------
    EphysError
        No such run / none found, no or an unreadable ``config.yaml``, a run that has not finished
        training (with ``need_model``).
    """
    from .models import run_model_spec

    run = resolve_run(run, runs_root)
    config = load_run_config(run)
    if need_model:
        spec = run_model_spec(config)
        model_file = spec.model_file if spec is not None else "model.keras"
        for name, hint in ((model_file, "training has not finished; re-run `ephys train` to resume"),
                           ("split.json", "run `ephys train` first")):
            if not (run / name).is_file():
                raise EphysError(f"no {name} — {hint}", run)
    return run
