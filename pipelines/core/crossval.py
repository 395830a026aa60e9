"""Cross-validation as units of work: one fold per run folder, then one pooled result.

``ephys train --fold K`` (or ``--hold-out PARTICIPANT``) trains exactly one fold of a dataset's
cross-validation scheme (:func:`train_fold`) into ``CV/<fold name>/``, a normal run folder
(resumable, evaluated on the fold's held-out samples) plus ``fold.json``, written last, which
marks the fold finished. ``ephys aggregate CV`` (:func:`aggregate`) pools the held-out predictions
of every fold into one ``metrics.json`` with per-fold and per-participant rows, and refuses (or,
with ``allow_missing``, records) folds that have no finished run: never a silent mean over the
folds that happened to finish. ``ephys train --fold all`` runs every fold in this process and
aggregates (:func:`cross_validate`): the in-process path is the same two steps a SLURM array runs.

Schemes (``scheme``; the default is the dataset manifest's ``cv`` when it names one, e.g. ``lopo``
for ML-STIM-style patient cohorts, else the modality's ``Modality.cv``):

- ``lopo``    leave-one-group-out (e.g. leave-one-patient-out; one fold per participant);
- ``grouped`` stratified group k-fold (``n_folds``, seeded), no group on both sides;
- ``blocked`` contiguous time blocks of one recording (``n_folds``), training samples within one
  window (the manifest's ``window_s``) of a test block dropped;
- ``auto``    grouped with at least ``n_folds`` groups, lopo with 2..n_folds-1, blocked with one.

Inside a fold, early stopping uses whole training groups (or the last 20 % of a single
recording's training samples; :func:`ephys.pipelines.core.validation.inner_validation`); the held-out
fold is seen only by the final evaluation. The sources of the schemes are in
:mod:`ephys.pipelines.core.validation`.

A recipe that compares several models on the same folds of several datasets runs them in this
process with :func:`cross_validate_models`: every fit is a core training run
(:func:`ephys.pipelines.core.training.train` with the fold as ``split_ids``), predictions come from
the registry's predictor, and the held-out predictions of each model are pooled. Options for
two-class tasks: a subsampling cap on the training side (:func:`cap_training`), a decision
threshold fitted on the training side (Youden) and a prior-shift calibration
(:mod:`ephys.pipelines.core.calibration`), and a feature-group ablation (:class:`Ablation`: one
model retrained on the same folds without each group's input columns, ΔROC-AUC per fold;
:func:`ablation_summary`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_json, write_text
from .datasets import Dataset, dataset_fingerprint, load_dataset
from .errors import EphysError
from .validation import (Fold, blocked_time_folds, check_no_leak, fold_split_ids, grouped_kfold,
                         inner_validation, leave_one_group_out)

__all__ = ["SCHEMES", "FoldPlan", "plan_folds", "scheme_folds", "select_fold", "train_fold", "cross_validate",
           "aggregate", "find_fold_runs", "default_cv_dir", "fold_tasks", "CVModel", "Ablation", "HeldOut", "CVResult",
           "cross_validate_models", "cap_training", "ablation_summary", "roc_auc", "t_ci95", "KEEP_INPUTS_HPARAM"]

SCHEMES = ("auto", "lopo", "grouped", "blocked")
FOLD_FILE = "fold.json"
#: fraction of the training groups (or of a single recording's training samples) used for early stopping
VAL_FRACTION = 0.2


@dataclass
class FoldPlan:
    """The folds of one dataset: ``scheme`` actually used, ``folds`` (indices into the dataset's
    samples; only labelled samples), ``n_folds`` requested, ``seed``, ``dataset`` root."""

    dataset: Path
    scheme: str
    n_folds: int
    seed: int
    folds: list[Fold]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.folds]


def _modality_scheme(ds: Dataset) -> str:
    from .registry import modality

    if ds.manifest.get("cv") in SCHEMES:
        return ds.manifest["cv"]
    return getattr(modality(ds.modality, ds.root / "manifest.json"), "cv", "auto") or "auto"


def plan_folds(ds: Dataset, scheme: str | None = None, n_folds: int = 5, seed: int = 0) -> FoldPlan:
    """The cross-validation folds of a dataset's labelled samples (see the module docstring).

    Parameters
    ----------
    ds : Dataset
    scheme : one of :data:`SCHEMES`, or None for the dataset's default (manifest ``cv``, else ``Modality.cv``)
    n_folds : int, folds of ``grouped`` / ``blocked`` (``lopo`` has one per group)
    seed : int, shuffling of ``grouped``

    Raises
    ------
    EphysError
        Unknown scheme, too few groups or samples for it, ``blocked`` on several recordings.
    """
    scheme = scheme or _modality_scheme(ds)
    if scheme not in SCHEMES:
        raise EphysError(f"cross-validation scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    lab = ds.labelled_indices()
    if lab.size < 4:
        raise EphysError(f"cross-validation needs at least 4 labelled samples, found {lab.size}", ds.root)
    samples = ds.manifest.get("samples") or []
    t = np.array([float(samples[i].get("t_s", i)) if i < len(samples) else float(i) for i in lab])
    scheme, rel = scheme_folds([ds.labels[i] for i in lab], [ds.groups[i] for i in lab], t, scheme, n_folds, seed,
                               gap=float(ds.manifest.get("window_s") or 0.0), where=ds.root)
    folds = [Fold(f.name, lab[f.train], lab[f.test], list(f.held_out)) for f in rel]
    return FoldPlan(ds.root, scheme, int(n_folds), int(seed), folds)


def scheme_folds(labels, groups, t, scheme: str, n_folds: int = 5, seed: int = 0, gap: float = 0.0,
                 where=None) -> tuple[str, list[Fold]]:
    """The folds of one scheme (see the module docstring) over samples given as arrays.

    Parameters
    ----------
    labels : (n,) class of each sample (str or int; stratifies ``grouped``)
    groups : (n,) str, the group (participant, recording) of each sample
    t : (n,) float, each sample's time (``blocked``; e.g. a window's start, s)
    scheme : one of :data:`SCHEMES`; ``auto``: grouped with >= ``n_folds`` groups, lopo with
        2..n_folds-1, blocked with one
    n_folds, seed : folds of ``grouped`` / ``blocked``; shuffling of ``grouped``
    gap : ``blocked`` only: training samples within ``gap`` (unit of ``t``) of a test block are
        dropped (one window length: no window straddles the boundary)
    where : path named in errors

    Returns
    -------
    (scheme used, folds): :class:`ephys.pipelines.core.validation.Fold` with indices into the arrays.

    Raises
    ------
    EphysError
        Unknown scheme, too few groups or samples for it, ``blocked`` over several groups.
    """
    if scheme not in SCHEMES:
        raise EphysError(f"cross-validation scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    groups = [str(g) for g in groups]
    n_groups = len(set(groups))
    if scheme == "auto":
        scheme = "grouped" if n_groups >= n_folds else "lopo" if n_groups >= 2 else "blocked"
    if scheme == "lopo":
        return scheme, leave_one_group_out(groups, prefix="lopo")
    if scheme == "grouped":
        return scheme, grouped_kfold(labels, groups, n_folds=n_folds, seed=seed)
    if n_groups != 1:
        raise EphysError(f"blocked time folds need one recording, found {n_groups} groups "
                         "(use --cv grouped or lopo)", where)
    return scheme, blocked_time_folds(t, n_folds=n_folds, gap=gap)


def select_fold(plan: FoldPlan, fold: str | int | None = None, hold_out: str | None = None) -> tuple[int, Fold]:
    """The fold a user named: ``fold`` as its 0-based index (a SLURM array task id) or its name
    (``lopo-P03``, ``fold-2``), or ``hold_out``, the participant a ``lopo`` fold holds out.

    Raises
    ------
    EphysError
        No such fold (the message lists the valid ones).
    """
    names = plan.names
    listing = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    if hold_out is not None:
        for k, f in enumerate(plan.folds):
            if f.held_out == [str(hold_out)]:
                return k, f
        held = sorted({h for f in plan.folds for h in f.held_out if plan.scheme == "lopo"})
        raise EphysError(f"--hold-out {hold_out}: no {plan.scheme} fold holds out exactly that participant "
                         f"(participants: {', '.join(held[:10]) or 'none: use --cv lopo'})", plan.dataset)
    s = str(fold)
    if s.lstrip("-").isdigit():
        k = int(s)
        if 0 <= k < len(names):
            return k, plan.folds[k]
        raise EphysError(f"--fold {k}: the {plan.scheme} scheme has folds 0..{len(names) - 1} ({listing})",
                         plan.dataset)
    if s in names:
        return names.index(s), plan.folds[names.index(s)]
    raise EphysError(f"--fold {s}: no such fold (folds: {listing})", plan.dataset)


def default_cv_dir(cfg) -> Path:
    """``$EPHYS_RUNS/<model>-<dataset folder name>-cv``: where ``train --fold`` puts the folds."""
    from .training import default_run_dir

    base = default_run_dir(cfg)
    return base.with_name(base.name + "-cv")


def _fold_split(ds: Dataset, fold: Fold, seed: int) -> dict[str, list[str]]:
    fit, val = inner_validation(fold, ds.groups, VAL_FRACTION, seed)
    if len({ds.groups[i] for i in fold.train}) >= 2:
        check_no_leak(ds.groups, np.r_[fit, val], fold.test)
        check_no_leak(ds.groups, fit, val)
    return fold_split_ids(ds.ids, fit, val, fold.test)


def train_fold(cfg, fold: str | int | None = None, hold_out: str | None = None, scheme: str | None = None,
               n_folds: int = 5, log: Callable[[str], None] = print, on_epoch=None) -> Path:
    """Train and evaluate exactly one fold of ``cfg.data``'s cross-validation.

    ``cfg.out`` (or :func:`default_cv_dir`) is the cross-validation folder; the fold's run folder
    is ``CV/<fold name>/`` (``config.yaml``, ``split.json``, ``model.*``, ``metrics.json`` and
    ``predictions.csv`` of its held-out samples), and ``CV/<fold name>/fold.json`` is written last.
    Re-running resumes an interrupted fold (:func:`ephys.pipelines.core.training.train`) and
    leaves a finished one alone.

    Returns
    -------
    Path of the fold's run folder.

    Raises
    ------
    EphysError
        See :func:`plan_folds`, :func:`select_fold`, :func:`ephys.pipelines.core.training.train`.
    """
    from .evaluation import evaluate_run
    from .training import train

    ds = load_dataset(cfg.data)
    plan = plan_folds(ds, scheme or ("lopo" if hold_out is not None else None), n_folds, cfg.seed)
    k, f = select_fold(plan, fold, hold_out)
    root = Path(cfg.out) if cfg.out else default_cv_dir(cfg)
    run = root / f.name
    if (run / FOLD_FILE).is_file():
        log(f"{run}: fold {f.name} already finished; nothing to do")
        return run
    split_ids = _fold_split(ds, f, cfg.seed)
    cfg.split, cfg.out = f.name, str(run)
    log(f"fold {k + 1}/{len(plan.folds)} ({plan.scheme}): {f.name}, holding out {', '.join(f.held_out)}; "
        f"{len(split_ids['train'])} fit / {len(split_ids['val'])} validation / {len(split_ids['test'])} test samples")
    train(cfg, on_epoch=on_epoch, log=log, split_ids=split_ids)
    metrics = evaluate_run(run)
    counts = np.bincount(ds.y(f.train), minlength=len(ds.label_names))
    write_json(run / FOLD_FILE, {
        "fold": f.name, "index": k, "scheme": plan.scheme, "n_folds": plan.n_folds, "seed": plan.seed,
        "folds": plan.names, "held_out": f.held_out, "model": cfg.model, "dataset": str(Path(ds.root).resolve()),
        "dataset_fingerprint": dataset_fingerprint(ds.manifest), "label_names": list(ds.label_names),
        "train_class_counts": {n: int(c) for n, c in zip(ds.label_names, counts)},
        "n_test": int(f.test.size), "test_metrics": {k2: metrics.get(k2) for k2 in
                                                     ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr")}})
    return run


def cross_validate(cfg, scheme: str | None = None, n_folds: int = 5, log: Callable[[str], None] = print,
                   on_epoch=None) -> dict:
    """Every fold of ``cfg.data`` in this process (:func:`train_fold`), then :func:`aggregate`
    into the cross-validation folder; returns the aggregated metrics."""
    import copy

    ds = load_dataset(cfg.data)
    plan = plan_folds(ds, scheme, n_folds, cfg.seed)
    root = Path(cfg.out) if cfg.out else default_cv_dir(cfg)
    for k in range(len(plan.folds)):
        c = copy.deepcopy(cfg)
        c.out = str(root)
        train_fold(c, fold=k, scheme=plan.scheme, n_folds=n_folds, log=log, on_epoch=on_epoch)
    return aggregate([root], root)


def find_fold_runs(paths) -> tuple[list[Path], list[Path]]:
    """(finished fold runs, unfinished run folders) among ``paths``: fold run folders themselves,
    or folders holding them (searched three levels deep).

    Raises
    ------
    EphysError
        A path that does not exist, or holds neither.
    """
    done, unfinished = [], []
    for p in map(Path, paths):
        if not p.exists():
            raise EphysError("no such run folder", p)
        cands = [p] if (p / "config.yaml").is_file() or (p / FOLD_FILE).is_file() else \
            sorted({c.parent for pat in ("*/config.yaml", "*/*/config.yaml", "*/*/*/config.yaml",
                                         "*/fold.json", "*/*/fold.json", "*/*/*/fold.json") for c in p.glob(pat)})
        if not cands:
            raise EphysError("not a fold run folder and holds none (expected fold.json from `ephys train --fold`)", p)
        for c in cands:
            (done if (c / FOLD_FILE).is_file() else unfinished).append(c)
    return sorted(set(done)), sorted(set(unfinished) - set(done))


def _read_fold(run: Path) -> dict:
    import json

    try:
        return json.loads((run / FOLD_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise EphysError(f"unreadable fold record ({exc})", run / FOLD_FILE) from None


def _read_predictions(run: Path, label_names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    path = run / "predictions.csv"
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except OSError as exc:
        raise EphysError(f"unreadable predictions ({exc}); re-run `ephys evaluate`", path) from None
    cols = [f"p_{n}" for n in label_names]
    try:
        ids = [r["id"] for r in rows]
        y = np.array([label_names.index(r["true"]) for r in rows], dtype=np.int64)
        pred = np.array([label_names.index(r["predicted"]) for r in rows], dtype=np.int64)
        proba = np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))
    except (KeyError, ValueError) as exc:
        raise EphysError(f"predictions do not match the run's labels ({exc})", path) from None
    return ids, y, pred, proba


def _summary(y, pred, proba, label_names, majority) -> dict:
    from .evaluation import classification_metrics

    m = classification_metrics(y, proba, label_names, y_pred=pred)
    m["majority_baseline_accuracy"] = float(np.mean(y == majority)) if y.size else None
    return m


def aggregate(paths, out: str | Path | None = None, allow_missing: bool = False, force: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Pool the held-out predictions of cross-validation folds into one result.

    Parameters
    ----------
    paths : fold run folders, or folders holding them (e.g. the ``train --fold`` folder)
    out : folder for ``metrics.json``, ``predictions.csv`` and ``report.html`` [default: the first path,
        or its parent when that is a fold run]; a folder holding fold runs, a new or empty one, or
        an earlier result of the same folds (:class:`ephys.pipelines.core.outputs.OutputFolder`)
    allow_missing : record missing folds (``complete: false``, ``missing_folds``) instead of refusing
    force : replace ``out`` when it holds another output (e.g. a trained run)

    Returns
    -------
    dict (also ``OUT/metrics.json``): pooled ``accuracy``, ``balanced_accuracy``, ``macro_f1``,
    ``roc_auc_ovr``, ``confusion_matrix``, ``per_class`` and ``majority_baseline_accuracy`` (each
    held-out sample scored against its fold's training-side majority class); ``per_fold`` rows;
    ``per_participant`` {group: metrics}; ``per_dataset`` when the folds span several datasets;
    ``folds`` / ``missing_folds`` / ``complete``.

    Raises
    ------
    EphysError
        No finished fold; folds of different models, schemes, seeds or dataset versions; a fold
        without finished run (unless ``allow_missing``); a sample held out twice; ``out`` holds
        another output (without ``force``) or is being written by another run.
    """
    from .outputs import OutputFolder

    paths = [Path(p) for p in paths]
    out = aggregate_dir(paths, out)
    # the folder the folds were trained into (fold runs below it, at any depth: one per dataset x fold)
    holds_folds = lambda d: not (d / "config.yaml").exists() and next(d.rglob(FOLD_FILE), None) is not None  # noqa: E731
    with OutputFolder(out, "aggregate", {}, {"runs": sorted(str(p.resolve()) for p in paths)}, force=force,
                      accept=holds_folds, log=log) as folder:
        return _aggregate(paths, folder.path, allow_missing)


def aggregate_dir(paths, out: str | Path | None = None) -> Path:
    """Where :func:`aggregate` writes: ``out``, else the first path (its parent when that is a fold run)."""
    if out is not None:
        return Path(out)
    first = Path(list(paths)[0])
    return first.parent if (first / FOLD_FILE).is_file() else first


def _aggregate(paths: list[Path], out: Path, allow_missing: bool) -> dict:
    """:func:`aggregate` once ``out`` is checked and locked."""
    done, unfinished = find_fold_runs(paths)
    if not done:
        where = unfinished[0] if unfinished else Path(list(paths)[0])
        raise EphysError("no finished fold (no fold.json): train the folds first (`ephys train --fold K`)", where)
    infos = {r: _read_fold(r) for r in done}
    models = sorted({i["model"] for i in infos.values()})
    if len(models) > 1:
        raise EphysError(f"folds of several models ({', '.join(models)}): aggregate each model's folder separately",
                         Path(list(paths)[0]))
    by_ds: dict[str, list[Path]] = {}
    for r, i in infos.items():
        by_ds.setdefault(i["dataset"], []).append(r)
    missing, rows, per_fold, datasets = [], [], [], {}
    label_names = None
    for ds_path, runs in sorted(by_ds.items()):
        first = infos[runs[0]]
        for r in runs:
            i = infos[r]
            for key in ("scheme", "n_folds", "seed", "dataset_fingerprint", "folds"):
                if i[key] != first[key]:
                    raise EphysError(f"fold {i['fold']} differs from fold {first['fold']} in {key} "
                                     f"(folds of different cross-validations)", r / FOLD_FILE)
        label_names = label_names or first["label_names"]
        if first["label_names"] != label_names:
            raise EphysError("folds with different class labels", runs[0] / FOLD_FILE)
        have = {infos[r]["fold"]: r for r in runs}
        short = Path(ds_path).name
        missing += [f"{short}/{f}" if len(by_ds) > 1 else f for f in first["folds"] if f not in have]
        try:
            ds = load_dataset(ds_path)
        except EphysError:
            ds = None
        group_of = dict(zip(ds.ids, ds.groups)) if ds is not None else {}
        seen = set()
        for name in first["folds"]:
            if name not in have:
                continue
            r = have[name]
            ids, y, pred, proba = _read_predictions(r, label_names)
            dup = seen.intersection(ids)
            if dup:
                raise EphysError(f"sample {sorted(dup)[0]} is held out by two folds", r / "predictions.csv")
            seen.update(ids)
            counts = infos[r]["train_class_counts"]
            majority = label_names.index(max(label_names, key=lambda n: (counts.get(n, 0), -label_names.index(n))))
            m = _summary(y, pred, proba, label_names, majority)
            per_fold.append({"fold": name, **({"dataset": short} if len(by_ds) > 1 else {}),
                             "held_out": infos[r]["held_out"], "n_test": int(y.size),
                             **{k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr",
                                                  "majority_baseline_accuracy")}})
            for sid, yi, pi, pr in zip(ids, y, pred, proba):
                rows.append((short, sid, group_of.get(sid, ""), name, int(yi), int(pi), pr, majority))
        datasets[short] = ds_path
    if missing and not allow_missing:
        raise EphysError(f"{len(missing)} fold(s) have no finished run: {', '.join(missing[:6])}"
                         f"{' ...' if len(missing) > 6 else ''}; train them (make slurm-all resubmits only "
                         "these) or pass --allow-missing", Path(list(paths)[0]))
    y = np.array([r[4] for r in rows], dtype=np.int64)
    pred = np.array([r[5] for r in rows], dtype=np.int64)
    proba = np.array([r[6] for r in rows], dtype=np.float64)
    maj = np.array([r[7] for r in rows], dtype=np.int64)
    metrics = _summary(y, pred, proba, label_names, 0)
    metrics["majority_baseline_accuracy"] = float(np.mean(y == maj))
    first = next(iter(infos.values()))
    metrics.update({"split": "cross-validation (pooled held-out predictions)", "model": models[0],
                    "scheme": first["scheme"], "n_folds_expected": sum(len(infos[rs[0]]["folds"]) for rs in by_ds.values()),
                    "n_folds_done": len(done), "complete": not missing, "missing_folds": missing,
                    "per_fold": per_fold})

    def group_rows(key_idx):
        out_rows = {}
        for key in sorted({r[key_idx] for r in rows}):
            sel = np.array([r[key_idx] == key for r in rows])
            m = _summary(y[sel], pred[sel], proba[sel], label_names, 0)
            out_rows[key] = {"n": int(sel.sum()), "accuracy": m["accuracy"],
                             "balanced_accuracy": m["balanced_accuracy"], "roc_auc_ovr": m["roc_auc_ovr"],
                             "majority_baseline_accuracy": float(np.mean(y[sel] == maj[sel]))}
        return out_rows

    metrics["per_participant"] = group_rows(2)
    if len(by_ds) > 1:
        metrics["per_dataset"] = group_rows(0)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", *(["dataset"] if len(by_ds) > 1 else []), "group", "fold", "true", "predicted"]
               + [f"p_{n}" for n in label_names])
    for r in rows:
        w.writerow([r[1], *([r[0]] if len(by_ds) > 1 else []), r[2], r[3], label_names[r[4]], label_names[r[5]]]
                   + [f"{v:.6f}" for v in r[6]])
    write_text(out / "predictions.csv", buf.getvalue())
    write_json(out / "metrics.json", metrics)
    from .report import build_cv_report

    build_cv_report(out, metrics, [label_names[i] for i in y], proba, label_names, datasets=list(datasets.values()))
    return metrics


def fold_tasks(datasets, models, runs_root: str | Path, scheme: str | None = None, n_folds: int = 5,
               seed: int = 0) -> list[dict]:
    """The (dataset, model, fold) training tasks of a cross-validation, in array-task order.

    Each task: ``dataset``, ``model``, ``fold`` (name), ``index`` (within its dataset), ``cv_dir``
    (``RUNS/cv/<model>/<dataset name>`` with several datasets, ``RUNS/cv/<model>`` with one),
    ``run`` (``cv_dir/<fold>``) and ``done`` (its ``fold.json`` exists).

    Raises
    ------
    EphysError
        See :func:`plan_folds`.
    """
    datasets = [Path(d) for d in datasets]
    tasks = []
    for d in datasets:
        plan = plan_folds(load_dataset(d), scheme, n_folds, seed)
        for m in models:
            cv = Path(runs_root) / "cv" / m / d.name if len(datasets) > 1 else Path(runs_root) / "cv" / m
            for k, f in enumerate(plan.folds):
                run = cv / f.name
                tasks.append({"dataset": str(d), "model": m, "fold": f.name, "index": k, "scheme": plan.scheme,
                              "cv_dir": str(cv), "run": str(run), "done": (run / FOLD_FILE).is_file()})
    return tasks


def find_datasets(root: str | Path) -> list[Path]:
    """A prepared dataset folder itself, or the datasets inside a prepared folder (``*/manifest.json``,
    ``*/*/manifest.json``; e.g. one per unit).

    Raises
    ------
    EphysError
        No dataset found.
    """
    root = Path(root)
    if (root / "manifest.json").is_file():
        return [root]
    found = sorted({p.parent for pat in ("*/manifest.json", "*/*/manifest.json") for p in root.glob(pat)})
    if not found:
        raise EphysError("not a prepared dataset and holds none (no manifest.json)", root)
    return found


# --------------------------------------------------------------------------------------------
# Several models on the same folds of several datasets, in this process (a pipeline's recipe)
# --------------------------------------------------------------------------------------------

#: the hyper-parameter through which :func:`cross_validate_models` retrains a model without some
#: input columns (the last axis of a sample): a comma list of the column indices to keep. Models
#: that support feature-group ablation accept it.
KEEP_INPUTS_HPARAM = "keep_channels"
#: what :func:`cross_validate_models` accepts as ``threshold``
THRESHOLDS = (None, "youden", "run")


@dataclass
class CVModel:
    """One model of :func:`cross_validate_models`.

    ``name``: its key in the results and the name of its run folders (may differ from the
    registry model, e.g. to keep a report's name); ``config``: a
    :class:`ephys.pipelines.core.training.TrainConfig` (registry ``model``, hyper-parameters,
    epochs, seed, ...) whose ``data``, ``out`` and ``split`` are set per fold.
    """

    name: str
    config: object


@dataclass
class Ablation:
    """Feature-group ablation: ``model`` retrained on every fold without the input columns of each
    group in turn. ``groups``: group name -> the indices (last axis of a sample) the group holds.
    The model's builder or trainer must accept :data:`KEEP_INPUTS_HPARAM`."""

    model: CVModel
    groups: dict[str, list[int]]


@dataclass
class HeldOut:
    """Pooled held-out predictions of one model: one row per (dataset, test sample), in dataset,
    fold and sample order.

    ``dataset`` (n,) int64: position in :attr:`CVResult.datasets`; ``index`` (n,) int64: sample
    index within that dataset; ``fold`` (n,) str; ``y`` (n,) int64: true class index; ``proba``
    (n, n_classes) float64, calibrated when asked; ``threshold`` (n,) float64: the fold's decision
    threshold on ``proba[:, 1]`` (two classes; NaN: argmax).
    """

    dataset: np.ndarray
    index: np.ndarray
    fold: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    threshold: np.ndarray

    @property
    def p(self) -> np.ndarray:
        """(n,) float64, P(second class) (two-class tasks)."""
        return self.proba[:, 1]

    @classmethod
    def join(cls, blocks: list[tuple]) -> "HeldOut":
        """From blocks ``(dataset position, fold name, indices, y, proba, threshold or None)``."""
        if not blocks:
            return cls(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, str, np.int64)), np.zeros((0, 2)),
                       np.zeros(0))
        return cls(np.concatenate([np.full(len(b[2]), b[0], dtype=np.int64) for b in blocks]),
                   np.concatenate([np.asarray(b[2], dtype=np.int64) for b in blocks]),
                   np.concatenate([np.full(len(b[2]), b[1], dtype=object) for b in blocks]).astype(str),
                   np.concatenate([b[3] for b in blocks]),
                   np.concatenate([b[4] for b in blocks]),
                   np.concatenate([np.full(len(b[2]), np.nan if b[5] is None else b[5], dtype=np.float64)
                                   for b in blocks]))


@dataclass
class CVResult:
    """What :func:`cross_validate_models` returns.

    ``datasets`` / ``names`` / ``plans``: per dataset, in the order given; ``held_out``: model
    name -> :class:`HeldOut`; ``ablation_model`` (None without ablation) and ``ablation``: group
    -> :class:`HeldOut` of that model retrained without the group (rows aligned with
    ``held_out[ablation_model]``); ``ablation_folds``: group -> per dataset -> per fold
    ΔROC-AUC (full minus without the group; None where a fold's test part has one class).
    """

    datasets: list
    names: list[str]
    plans: list[FoldPlan]
    held_out: dict[str, HeldOut]
    ablation_model: str | None = None
    ablation: dict[str, HeldOut] | None = None
    ablation_folds: dict[str, list[list[float | None]]] | None = None


def cap_training(idx: np.ndarray, y: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``cap`` of the training samples ``idx`` of a two-class task, sorted: every sample of
    the second class (``y == 1``, the positive class, typically the rarer) is kept, and first-class
    samples are drawn at random without replacement up to ``cap`` in all, but at least as many as
    there are positives (when available). ``idx`` unchanged when ``cap`` is None/0 or not exceeded.
    """
    if not cap or idx.size <= cap:
        return idx
    pos, neg = idx[y[idx] == 1], idx[y[idx] != 1]
    keep = max(cap - pos.size, min(neg.size, pos.size))
    return np.sort(np.concatenate([pos, rng.choice(neg, size=min(keep, neg.size), replace=False)]))


def roc_auc(y, p) -> float | None:
    """ROC-AUC of scores ``p`` for labels ``y`` (0/1), None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if np.unique(y).size == 2 else None


def t_ci95(values) -> list[float | None]:
    """t-based 95 % confidence interval of the mean of ``values`` (None entries skipped), e.g. a
    score difference over folds; ``[None, None]`` with fewer than two values."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size < 2:
        return [None, None]
    h = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return [float(v.mean() - h), float(v.mean() + h)]


def cross_validate_models(datasets, models: list[CVModel], out: str | Path, *, plans: list[FoldPlan] | None = None,
                          scheme: str | None = None, n_folds: int = 5, seed: int = 0, names: list[str] | None = None,
                          max_fit: int | None = None, max_val: int | None = None, threshold: str | None = None,
                          prior_shift: bool = False, ablation: Ablation | None = None,
                          predict_batch_size: int | None = None, log: Callable[[str], None] = print) -> CVResult:
    """Train several models on the same folds of several datasets, through the core's training, and
    pool each model's held-out predictions.

    Parameters
    ----------
    datasets : loaded :class:`ephys.pipelines.core.datasets.Dataset` objects (e.g. one per recorded source)
    models : the :class:`CVModel` to train on every fold
    out : ``OUT/runs/<dataset folder>/<model name>/<fold>/`` is each fit's run folder (a normal run
        folder: ``evaluate`` applies; a re-run reuses a finished one); ablation fits go to
        ``<model name>-no-<group>``
    plans : the folds of each dataset (default :func:`plan_folds` with ``scheme``, ``n_folds``,
        ``seed``): a caller may plan and check them first
    names : a name per dataset for the log and the results (default the folder name)
    max_fit, max_val : two classes: at most this many samples in a fold's fit / validation part
        (:func:`cap_training`; one generator seeded ``seed`` for the whole call, drawn in dataset,
        fold, fit-then-validation order); held-out samples are never subsampled
    threshold : two classes: the decision threshold on P(second class) of each fold: ``"youden"``
        (:func:`ephys.pipelines.core.calibration.youden_threshold` on the model's predictions of
        the fold's training side, fit and validation parts; also written to the run's
        ``decision.json``), ``"run"`` (the run's own ``decision.json``, e.g. written by its
        trainer), None (argmax)
    prior_shift : two classes: every held-out output (ablation fits' too) and its threshold mapped
        to the positive rate of the fold's training side before subsampling
        (:func:`ephys.pipelines.core.calibration.prior_shift`; for models fitted with balanced
        class weights, so that pooled outputs are comparable probabilities)
    ablation : :class:`Ablation`: on every fold, after the models, its model retrained without
        each group's input columns (through :data:`KEEP_INPUTS_HPARAM`); its model joins
        ``models`` when not among them
    predict_batch_size : default the modality's ``predict_batch_size``

    Notes
    -----
    Per fold, the training side is split into fit and validation parts from the training side
    only (:func:`ephys.pipelines.core.validation.inner_validation`: whole groups, or the last 20 %
    of a single group's samples), then capped, then every model is trained with the fold as
    ``split_ids``. Every dataset's folds are planned before any training.

    Returns
    -------
    :class:`CVResult`

    Raises
    ------
    EphysError
        See :func:`plan_folds` and :func:`ephys.pipelines.core.training.train`; calibration or a
        cap asked for a dataset without exactly two classes.
    """
    import copy
    import time

    from .calibration import prior_shift as shift_prior
    from .calibration import youden_threshold
    from .evaluation import DECISION_FILE, read_threshold
    from .models import REGISTRY, load_predictor
    from .registry import modality as modality_of
    from .training import train

    out = Path(out)
    datasets = list(datasets)
    names = list(names) if names is not None else [Path(d.root).name for d in datasets]
    plans = list(plans) if plans is not None else [plan_folds(d, scheme, n_folds, seed) for d in datasets]
    if len(plans) != len(datasets) or len(names) != len(datasets):
        raise ValueError("cross_validate_models: one plan and one name per dataset")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, not {threshold!r}")
    fitted = list(models) + ([ablation.model] if ablation is not None
                             and ablation.model.name not in {m.name for m in models} else [])
    if len({m.name for m in fitted}) != len(fitted):
        raise ValueError("cross_validate_models: model names must differ")
    if threshold or prior_shift or max_fit or max_val or ablation is not None:
        for ds in datasets:
            if len(ds.label_names) != 2:
                raise EphysError(f"thresholds, prior shift, subsampling caps and ablation need two classes, "
                                 f"the dataset has {len(ds.label_names)}", ds.root)
    rng = np.random.default_rng(seed)
    blocks: dict[str, list] = {m.name: [] for m in fitted}
    groups = dict(ablation.groups) if ablation is not None else {}
    abl_blocks: dict[str, list] = {g: [] for g in groups}
    abl_folds: dict[str, list[list]] = {g: [[] for _ in datasets] for g in groups}

    for k, (ds, plan) in enumerate(zip(datasets, plans)):
        lab = ds.labelled_indices()
        y = np.full(len(ds.ids), -1, dtype=np.int64)
        y[lab] = ds.y(lab)
        counts = np.bincount(y[lab], minlength=len(ds.label_names))
        log(f"{names[k]}: {plan.scheme} {len(plan.folds)}-fold cross-validation over "
            f"{len({ds.groups[i] for i in lab})} group(s), {lab.size} samples ("
            + ", ".join(f"{int(c)} {n}" for n, c in zip(ds.label_names, counts)) + ")")
        batch = predict_batch_size or int(getattr(modality_of(ds.modality, ds.root / "manifest.json"),
                                                  "predict_batch_size", 256) or 256)
        runs = out / "runs" / Path(ds.root).name

        def fit_predict(m: CVModel, tag: str, fold: Fold, split_ids, train_side, extra=None, thr_mode=None):
            cfg = copy.deepcopy(m.config)
            cfg.data, cfg.out, cfg.split = str(ds.root), str(runs / tag / fold.name), fold.name
            if extra:
                cfg.hparams = {**(cfg.hparams or {}), **extra}
            run = train(cfg, log=log, split_ids=split_ids, dataset=ds)
            predict = load_predictor(run, {"model": cfg.model}, ds, batch)
            thr = None
            if thr_mode == "youden":
                thr = youden_threshold(y[train_side], predict(train_side)[:, 1])
                write_json(run / DECISION_FILE, {
                    "threshold": thr, "on": f"p_{ds.label_names[1]}",
                    "chosen_by": "Youden's J on the fold's training side (fit and validation parts)",
                    "n_train_side": int(train_side.size)})
            elif thr_mode == "run":
                thr = read_threshold(run)
            proba = np.asarray(predict(fold.test), dtype=np.float64)
            del predict
            if REGISTRY[cfg.model].kind == "keras":  # one model per fit: free the previous graphs
                import keras

                keras.backend.clear_session()
            return proba, thr

        for fold in plan.folds:
            fit, val = inner_validation(fold, ds.groups, VAL_FRACTION, seed)
            if len({ds.groups[i] for i in fold.train}) >= 2:
                check_no_leak(ds.groups, np.r_[fit, val], fold.test)
                check_no_leak(ds.groups, fit, val)
            fit = cap_training(fit, y, max_fit, rng)
            val = cap_training(val, y, max_val, rng)
            split_ids = fold_split_ids(ds.ids, fit, val, fold.test)
            train_side = np.concatenate([fit, val])
            rate = float(np.mean(y[fold.train] == 1))
            y_test = y[fold.test]
            full = {}
            for m in fitted:
                t0 = time.perf_counter()
                proba, thr = fit_predict(m, m.name, fold, split_ids, train_side, thr_mode=threshold)
                if prior_shift:
                    p, thr = shift_prior(proba[:, 1], 0.5 if thr is None else thr, rate)
                    proba = np.stack([1 - p, p], axis=1)
                full[m.name] = proba
                blocks[m.name].append((k, fold.name, fold.test, y_test, proba, thr))
                if proba.shape[1] == 2:
                    auc = roc_auc(y_test, proba[:, 1])
                    log(f"  {fold.name} {m.name}: ROC-AUC {float('nan') if auc is None else auc:.3f} "
                        f"({time.perf_counter() - t0:.1f} s)")
                else:
                    log(f"  {fold.name} {m.name}: accuracy {float(np.mean(proba.argmax(1) == y_test)):.3f} "
                        f"({time.perf_counter() - t0:.1f} s)")
            if ablation is None:
                continue
            base = full[ablation.model.name][:, 1]
            n_inputs = int(ds.sample_shape[-1])
            for g, cols in groups.items():
                drop = {int(c) for c in cols}
                keep = ",".join(str(i) for i in range(n_inputs) if i not in drop)
                proba, _ = fit_predict(ablation.model, f"{ablation.model.name}-no-{g}", fold, split_ids, train_side,
                                       extra={KEEP_INPUTS_HPARAM: keep})
                p_g = proba[:, 1]
                if prior_shift:  # as the full model's, so that per-dataset AUCs over folds compare alike
                    p_g, _ = shift_prior(p_g, 0.5, rate)
                a_full, a_g = roc_auc(y_test, base), roc_auc(y_test, p_g)
                abl_folds[g][k].append(None if a_full is None or a_g is None else a_full - a_g)
                abl_blocks[g].append((k, fold.name, fold.test, y_test, np.stack([1 - p_g, p_g], axis=1), None))

    return CVResult(datasets, names, plans, {m: HeldOut.join(b) for m, b in blocks.items()},
                    ablation.model.name if ablation is not None else None,
                    {g: HeldOut.join(b) for g, b in abl_blocks.items()} if ablation is not None else None,
                    abl_folds if ablation is not None else None)


def ablation_summary(result: CVResult) -> dict:
    """The per-fold ΔROC-AUC of a :class:`CVResult`'s ablation, summarised.

    Returns
    -------
    dict: ``pooled`` {group: {``delta_roc_auc`` (mean over every dataset's folds), ``ci95``
    (:func:`t_ci95` over them)}}, ``per_dataset`` {dataset name: {group: {``delta_roc_auc``,
    ``ci95``, ``folds`` (the per-fold values)}}}. Empty dicts without ablation.
    """
    folds = result.ablation_folds or {}
    per_dataset = {name: {g: {"delta_roc_auc": _mean(f[k]), "ci95": t_ci95(f[k]), "folds": f[k]}
                          for g, f in folds.items()} for k, name in enumerate(result.names)}
    pooled = {}
    for g, f in folds.items():
        vals = [v for per in f for v in per]
        pooled[g] = {"delta_roc_auc": _mean(vals), "ci95": t_ci95(vals)}
    return {"pooled": pooled, "per_dataset": per_dataset if folds else {}}


def _mean(values) -> float | None:
    good = [v for v in values if v is not None]
    return float(np.mean(good)) if good else None
