"""Feature-table datasets: one row of named electrophysiological (EP) features per sample (a cell, a segment, ...).

Layout (the single-array layout of :mod:`ephys.pipelines.datasets`), written by
``ephys prepare features``:

- ``features.npy`` — float64, shape (n_samples, n_features); a feature that could not be computed
  (or was not measured) is ``NaN``, never a made-up number;
- ``features.csv`` — the same table for people and spreadsheets: ``id, group, label`` then one
  column per feature (empty cell = NaN);
- ``manifest.json`` — written last, so a folder without it is not a dataset:
  ``modality = "features"``, ``sample_shape = [n_features]``, ``feature_names``,
  ``feature_units`` (name -> unit string, e.g. ``"mV"``, ``"pA"``, ``"ms"``, ``"MOhm"``, ``""``),
  ``label_names``, ``samples`` (``id``, ``group``, ``label`` or null, ``row``), optional named
  ``splits`` (``{name: {"train": [group...], "val": [...], "test": [...]}}``, used by
  ``ephys train --split NAME``) and ``provenance``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import write_json, write_npy, write_text
from .errors import EphysError

#: modality string of feature-table datasets (the registry's models declare it)
FEATURES = "features"
ARRAY = "features.npy"
TABLE = "features.csv"
MANIFEST = "manifest.json"


def write_feature_table(
    out: str | Path,
    ids: Sequence[str],
    X: np.ndarray,
    feature_names: Sequence[str],
    labels: Sequence[str | None],
    label_names: Sequence[str],
    groups: Sequence[str] | None = None,
    feature_units: dict[str, str] | None = None,
    splits: dict | None = None,
    provenance: dict | None = None,
    extra_columns: dict[str, Sequence] | None = None,
    extra_manifest: dict | None = None,
) -> Path:
    """Write a feature-table dataset folder; returns the path of its ``manifest.json``.

    Parameters
    ----------
    out : dataset folder (created; existing files of the same names are replaced atomically)
    ids : n sample ids (unique strings; e.g. specimen ids)
    X : array-like, shape (n, n_features), numeric; NaN marks a missing value
    feature_names : n_features unique names (snake_case; unit suffix where it helps, e.g. ``_mv``)
    labels : n class names or None (unlabelled samples are kept but never trained or scored on)
    label_names : the class names, in the order models index them
    groups : n group names (what a split keeps together; default: the ids)
    feature_units : unit per feature name (missing names get ``""``)
    splits : named published splits, ``{name: {"train": [...], "val": [...], "test": [...]}}``
        listing *groups*
    provenance : free-form dict stored in the manifest (source files, preset, versions)
    extra_columns : more per-sample columns for ``features.csv`` only (e.g. ``source``)
    extra_manifest : more manifest keys, e.g. ``feature_sets`` (``{name: [feature names]}``,
        selectable with ``ephys train --hparam feature_set=NAME``) or ``default_split``

    Raises
    ------
    EphysError
        Mismatched lengths, duplicate ids or feature names, non-numeric values, or a label not in
        ``label_names``.
    """
    out = Path(out)
    X = np.asarray(X, dtype=np.float64)
    ids = [str(i) for i in ids]
    n = len(ids)
    if X.ndim != 2 or X.shape[0] != n or X.shape[1] != len(feature_names):
        raise EphysError(f"feature array has shape {X.shape}, expected ({n}, {len(feature_names)})", out)
    if len(set(ids)) != n:
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise EphysError(f"duplicate sample ids {dup}", out)
    if len(set(feature_names)) != len(feature_names):
        raise EphysError("duplicate feature names", out)
    if len(labels) != n or (groups is not None and len(groups) != n):
        raise EphysError("labels/groups do not match the number of samples", out)
    known = set(label_names)
    bad = sorted({str(lab) for lab in labels if lab and lab not in known})
    if bad:
        raise EphysError(f"labels {bad} are not among the label names {list(label_names)}", out)
    if np.isinf(X).any():
        X = np.where(np.isinf(X), np.nan, X)
    groups = [str(g) for g in groups] if groups is not None else ids
    units = {f: (feature_units or {}).get(f, "") for f in feature_names}

    out.mkdir(parents=True, exist_ok=True)
    write_npy(out / ARRAY, X)
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = dict(extra_columns or {})
    w.writerow(["id", "group", "label", *extra, *feature_names])
    for r in range(n):
        vals = ["" if math.isnan(v) else repr(float(v)) for v in X[r]]
        w.writerow([ids[r], groups[r], labels[r] or "", *(extra[k][r] for k in extra), *vals])
    write_text(out / TABLE, buf.getvalue())
    samples = [{"id": ids[r], "group": groups[r], "label": labels[r] or None, "row": r} for r in range(n)]
    manifest = {
        "modality": FEATURES,
        "sample_shape": [len(feature_names)],
        "feature_names": list(feature_names),
        "feature_units": units,
        "label_names": list(label_names),
        "array": ARRAY,
        "table": TABLE,
        "n_samples": n,
        "n_labelled": sum(1 for lab in labels if lab),
        "class_counts": {c: sum(1 for lab in labels if lab == c) for c in label_names},
        "samples": samples,
    }
    if splits:
        manifest["splits"] = splits
    if provenance:
        manifest["provenance"] = provenance
    for key, value in (extra_manifest or {}).items():
        manifest.setdefault(key, value)
    for name, cols in (manifest.get("feature_sets") or {}).items():
        unknown = [c for c in cols if c not in feature_names]
        if unknown:
            raise EphysError(f"feature set {name!r} names unknown features {unknown[:3]}", out)
    return write_json(out / MANIFEST, manifest)
