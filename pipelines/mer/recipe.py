"""``ephys reproduce mer-sim``: the ML-STIM comparison on a simulated cohort, end to end.

1. Simulate a cohort (default 20 patients, the ML-STIM format; :mod:`.synthetic`) unless
   ``--data`` names an ML-STIM folder, and ``prepare mer`` it.
2. Leave-one-patient-out, one fold at a time through the same two steps as a SLURM array
   (:func:`ephys.pipelines.core.crossval.train_fold`, then :func:`~ephys.pipelines.core.crossval.aggregate`
   into ``OUT/runs/<model>/metrics.json``, reported under ``models.<model>.cross_validation``): for
   each patient, both models (``mlp``, ``lightgbm``) are trained by the core's ``train()`` on the other
   patients, with early stopping on a validation part of whole training patients
   (:func:`~ephys.pipelines.core.validation.inner_validation`); the held-out patient is never
   seen in training, scaling or early stopping.
3. Metrics on the held-out predictions: per segment and per recording (the mean of its
   segments' probabilities; ML-STIM's rule), accuracy beside the majority-class baseline (the
   training fold's majority class), balanced accuracy, sensitivity (inside STN), specificity,
   ROC-AUC, pooled over all patients and per patient (mean ± SD).
4. Per trajectory, the held-out recording probabilities along depth are decoded by the 3-state
   HMM (:mod:`.trajectory`, transitions estimated on the training patients' labels): STN entry
   and exit, error in mm against the labels' borders (median, 90th percentile, entry, exit).
5. Artifact removal against the simulator's masks (sample sensitivity and specificity).

6. Explanations: every fold run explained on its held-out patient (``ephys explain``: TreeSHAP for
   LightGBM, gradient x input for the MLP), pooled per model (:mod:`.report`).

Writes ``OUT/metrics.json``, ``OUT/recordings.csv`` (held-out recording probabilities with
their artifact fractions), ``OUT/trajectories.csv`` (true and estimated borders),
``OUT/trajectories_<model>.png`` (probability vs depth with the true and estimated borders) and
``OUT/report.html`` (both models, per recording / segment / patient, borders, explanations).
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.atomic import write_json, write_text
from ..core.errors import EphysError

MODELS = ("mlp", "lightgbm")
#: ML-STIM's decision threshold on a recording's mean segment probability
THRESHOLD = 0.51


def _binary_metrics(y: np.ndarray, p: np.ndarray, majority: int | None = None, threshold: float = THRESHOLD) -> dict:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    pred = (np.asarray(p) >= threshold).astype(np.int64)
    pos, neg = y == 1, y == 0
    sens = float(np.mean(pred[pos] == 1)) if pos.any() else None
    spec = float(np.mean(pred[neg] == 0)) if neg.any() else None
    out = {"n": int(y.size), "accuracy": float(np.mean(pred == y)) if y.size else None,
           "sensitivity": sens, "specificity": spec,
           "balanced_accuracy": float(np.mean([v for v in (sens, spec) if v is not None])) if y.size else None,
           "roc_auc": float(roc_auc_score(y, p)) if pos.any() and neg.any() else None}
    if majority is not None:
        out["majority_baseline_accuracy"] = float(np.mean(y == majority)) if y.size else None
    return out


def _mean_sd(values) -> dict:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else None, "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "n": int(v.size)}


def _artifact_agreement(raw: Path, ds_dir: Path, manifest: dict) -> dict | None:
    truth_file = raw / "artifacts.npz"
    if not truth_file.is_file():
        return None
    tp = fn = tn = fp = 0
    with np.load(truth_file) as t, np.load(ds_dir / manifest["artifact_masks"]) as d:
        truth = t["mask"]
        for i, rec in enumerate(manifest["recordings"]):
            det = d[f"r{i:05d}"]
            tr = truth[i, :det.size]
            tp += int(np.sum(det & tr))
            fn += int(np.sum(~det & tr))
            tn += int(np.sum(~det & ~tr))
            fp += int(np.sum(det & ~tr))
    return {"sensitivity": tp / max(tp + fn, 1), "specificity": tn / max(tn + fp, 1),
            "n_artifact_samples": tp + fn, "n_clean_samples": tn + fp}


def reproduce_mer_sim(data: str | Path | None, out: str | Path, *, seed: int = 0, epochs: int = 40,
                      n_patients: int = 20, duration_s: float = 4.0, max_electrodes: int = 2,
                      batch_size: int = 64, lr: float = 3e-3, patience: int = 6, models=MODELS,
                      log: Callable[[str], None] = print) -> dict:
    """Run the comparison (see the module docstring); returns the metrics dict.

    Parameters
    ----------
    data : an ML-STIM folder to use instead of simulating (None or a missing path: simulate
        ``n_patients`` patients of ``duration_s``-second recordings with up to ``max_electrodes``
        electrodes per side into ``OUT/raw``; 4-s recordings instead of ML-STIM's 10 s keep the
        recipe to minutes on 2 cores)
    epochs, batch_size, lr, patience : MLP training (early stopping on validation loss)

    Raises
    ------
    EphysError
        Bad input data (see ``prepare mer``), fewer than 2 labelled patients.
    """
    from ..core.datasets import load_dataset
    from ..core.crossval import aggregate, plan_folds, train_fold
    from ..core.training import TrainConfig
    from .prepare import prepare_mer
    from .synthetic import fetch_synthetic
    from .trajectory import decode, label_borders, transitions_from_labels

    t0 = time.perf_counter()
    out = Path(out)
    if data is None or not Path(data).exists() or str(data) in ("", "."):
        raw = out / "raw"
        if not (raw / "metadata.csv").is_file():
            log(f"simulating {n_patients} patients into {raw}")
            fetch_synthetic(raw, n_patients=n_patients, seed=seed, duration_s=duration_s,
                            max_electrodes=max_electrodes)
    else:
        raw = Path(data)
    ds_dir = out / "dataset"
    if not (ds_dir / "manifest.json").is_file():
        log(f"preparing {raw} -> {ds_dir}")
        prepare_mer(raw, ds_dir, log=log)
    ds = load_dataset(ds_dir)
    manifest = ds.manifest
    recs = manifest["recordings"]
    labelled = ds.labelled_indices()
    if len({ds.groups[i] for i in labelled}) < 2:
        raise EphysError("leave-one-patient-out needs labelled recordings of at least 2 patients", ds_dir)
    y_all = np.array([-1 if lab is None else ds.label_names.index(lab) for lab in ds.labels])
    rec_of = [s["id"].rsplit("_s", 1)[0] for s in manifest["samples"]]
    rec_index = {r["id"]: i for i, r in enumerate(recs)}
    lab_idx = labelled
    # one code path with `ephys train --fold K` + `ephys aggregate` (a SLURM array task per fold)
    plan = plan_folds(ds, "lopo", seed=seed)
    eager = os.environ.get("EPHYS_EAGER", "") == "1"
    seg_proba = {m: np.full(len(ds.ids), np.nan) for m in models}
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    majority_of = {}
    cv_metrics = {}
    for k, fold in enumerate(plan.folds):
        majority_of[fold.held_out[0]] = int(np.bincount(y_all[fold.train], minlength=2).argmax())
        for m in models:
            cfg = TrainConfig(model=m, data=str(ds_dir), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                              patience=patience, dropout=0.0, eager=eager, out=str(out / "runs" / m))
            train_fold(cfg, fold=k, scheme="lopo", log=lambda s: None)
        log(f"fold {k + 1}/{len(plan.folds)} ({fold.name}) done, {time.perf_counter() - t0:.0f} s")
    for m in models:
        cv_metrics[m] = aggregate([out / "runs" / m], out / "runs" / m)
        with open(out / "runs" / m / "predictions.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                seg_proba[m][pos[row["id"]]] = float(row["p_inside"])

    # transitions for the HMM: from the training patients' labels only, per held-out patient
    traj_of = {}
    for i, r in enumerate(recs):
        if r["label"] is None or r["depth_um"] is None:
            continue
        traj_of.setdefault((r["patient"], r["side"], r["electrode"]), []).append(i)

    def runs_of(patients):
        out_runs = []
        for key, idx in traj_of.items():
            if key[0] in patients:
                idx = sorted(idx, key=lambda i: recs[i]["depth_um"])
                out_runs.append([int(recs[i]["label"] == "inside") for i in idx])
        return out_runs

    patients = sorted({r["patient"] for r in recs if r["label"] is not None})
    result = {"recipe": "mer-sim", "data": str(raw), "dataset": str(ds_dir), "n_patients": len(patients),
              "n_recordings": len(recs), "n_segments": int(len(ds.ids)), "validation": "leave-one-patient-out",
              "threshold": THRESHOLD, "models": {}}
    rec_rows, traj_rows = [], []
    for m in models:
        p_seg = seg_proba[m]
        seg_ok = lab_idx[~np.isnan(p_seg[lab_idx])]
        seg_metrics = _binary_metrics(y_all[seg_ok], p_seg[seg_ok])
        seg_metrics["majority_baseline_accuracy"] = float(np.mean(
            [y_all[i] == majority_of[ds.groups[i]] for i in seg_ok]))
        # per recording: mean of its segments' probabilities
        sums: dict[int, list] = {}
        for i in seg_ok:
            sums.setdefault(rec_index[rec_of[i]], []).append(p_seg[i])
        r_idx = np.array(sorted(sums))
        r_p = np.array([np.mean(sums[i]) for i in r_idx])
        r_y = np.array([int(recs[i]["label"] == "inside") for i in r_idx])
        r_pat = [recs[i]["patient"] for i in r_idx]
        rec_metrics = _binary_metrics(r_y, r_p)
        rec_metrics["majority_baseline_accuracy"] = float(np.mean([y == majority_of[p] for y, p in zip(r_y, r_pat)]))
        per_patient = {}
        for pat in patients:
            sel = np.array([p == pat for p in r_pat])
            if sel.any():
                per_patient[pat] = _binary_metrics(r_y[sel], r_p[sel], majority=majority_of[pat])
        per_patient_summary = {k: _mean_sd([v[k] for v in per_patient.values()])
                               for k in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")}
        for i, p, y in zip(r_idx, r_p, r_y):
            rec_rows.append({"model": m, "recording": recs[i]["id"], "patient": recs[i]["patient"],
                             "side": recs[i]["side"], "electrode": recs[i]["electrode"],
                             "depth_um": recs[i]["depth_um"], "label": int(y), "p_inside": round(float(p), 6),
                             "artifact_fraction": recs[i]["artifact_fraction"]})
        # trajectories
        p_of = dict(zip(r_idx.tolist(), r_p.tolist()))
        errs_entry, errs_exit, n_missed = [], [], 0
        for key, idx in sorted(traj_of.items()):
            idx = [i for i in idx if i in p_of]
            if not idx:
                continue
            depth = np.array([recs[i]["depth_um"] for i in idx], dtype=np.float64)
            order = np.argsort(depth)
            depth = depth[order]
            prob = np.array([p_of[idx[j]] for j in order])
            lab = np.array([int(recs[idx[j]]["label"] == "inside") for j in order])
            p_enter, p_exit = transitions_from_labels(runs_of([p for p in patients if p != key[0]]))
            dec = decode(depth, prob, p_enter, p_exit)
            true_entry, true_exit = label_borders(depth, lab)
            row = {"model": m, "patient": key[0], "side": key[1], "electrode": key[2],
                   "true_entry_um": true_entry, "true_exit_um": true_exit,
                   "est_entry_um": dec["entry_um"], "est_exit_um": dec["exit_um"]}
            if true_entry is not None:
                if dec["entry_um"] is None:
                    n_missed += 1
                else:
                    errs_entry.append(abs(dec["entry_um"] - true_entry) / 1000)
                    errs_exit.append(abs(dec["exit_um"] - true_exit) / 1000)
            traj_rows.append(row)
        both = np.array(errs_entry + errs_exit)
        border = {"median": float(np.median(both)) if both.size else None,
                  "p90": float(np.percentile(both, 90)) if both.size else None,
                  "entry_median": float(np.median(errs_entry)) if errs_entry else None,
                  "exit_median": float(np.median(errs_exit)) if errs_exit else None,
                  "entry_mean": float(np.mean(errs_entry)) if errs_entry else None,
                  "exit_mean": float(np.mean(errs_exit)) if errs_exit else None,
                  "n_trajectories": len(errs_entry) + n_missed, "n_no_stn_found": n_missed}
        result["models"][m] = {"per_segment": seg_metrics, "cross_validation": _cv_summary(cv_metrics[m]),
                               "per_recording": rec_metrics,
                               "per_patient_recording": per_patient_summary, "per_patient": per_patient,
                               "border_error_mm": border}
    best = max(models, key=lambda m: result["models"][m]["per_recording"]["balanced_accuracy"] or 0)
    headline = result["models"][best]
    result.update({"accuracy": headline["per_recording"]["accuracy"],
                   "balanced_accuracy": headline["per_recording"]["balanced_accuracy"],
                   "roc_auc": headline["per_recording"]["roc_auc"],
                   "sensitivity": headline["per_recording"]["sensitivity"],
                   "specificity": headline["per_recording"]["specificity"],
                   "majority_baseline_accuracy": headline["per_recording"]["majority_baseline_accuracy"],
                   "border_error_mm": headline["border_error_mm"], "headline_model": best,
                   "headline_note": "headline keys = the model with the higher per-recording balanced accuracy "
                                    "(both are reported under models)"})
    art = _artifact_agreement(raw, ds_dir, manifest)
    if art is not None:
        result["artifact_removal_vs_simulator"] = art
    result["reference"] = {"ML-STIM (Sciscenti et al. 2025), real data, 46 patients": {"accuracy": 0.878,
                                                                                    "accuracy_sd": 0.017},
                           "ML-STIM, second centre, 36 patients": {"accuracy": 0.838, "accuracy_sd": 0.016},
                           "published HMMs (Zaidel 2009, Valsky 2017), border error": "about 0.1-0.3 mm"}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "recordings.csv", _csv(rec_rows))
    write_text(out / "trajectories.csv", _csv(traj_rows))
    for m in models:
        plot_trajectories(rec_rows, traj_rows, m, out / f"trajectories_{m}.png")
    from .report import pooled_explanations, write_mer_report

    expl = {m: e for m in models if (e := pooled_explanations(out / "runs", m, log=log)) is not None}
    if expl:
        result["explanations"] = expl
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "metrics.json", result)
    write_mer_report(out, result)
    log(f"report: {out / 'report.html'}")
    return result


def _cv_summary(m: dict) -> dict:
    """The pooled per-segment numbers of ``ephys aggregate`` (argmax decision), as a SLURM run of
    the same folds writes them to ``runs/cv/<model>/metrics.json``."""
    keys = ("accuracy", "majority_baseline_accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "n_test",
            "confusion_matrix", "scheme", "n_folds_done", "complete")
    return {k: m[k] for k in keys}


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def summary_lines(res: dict) -> list[str]:
    """Lines printed after ``ephys reproduce mer-sim``."""
    lines = []
    for m, r in res["models"].items():
        pr, b = r["per_recording"], r["border_error_mm"]
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"{m}: per recording accuracy {fmt(pr['accuracy'])} (majority {fmt(pr['majority_baseline_accuracy'])}), "
                     f"balanced {fmt(pr['balanced_accuracy'])}, ROC-AUC {fmt(pr['roc_auc'])}; "
                     f"border error median {fmt(b['median'])} mm, p90 {fmt(b['p90'])} mm")
    if "artifact_removal_vs_simulator" in res:
        a = res["artifact_removal_vs_simulator"]
        lines.append(f"artifact removal vs simulator: sensitivity {a['sensitivity']:.3f}, "
                     f"specificity {a['specificity']:.3f}")
    return lines


__all__ = ["reproduce_mer_sim", "summary_lines"]


def plot_trajectories(rec_rows: list[dict], traj_rows: list[dict], model: str, path: str | Path,
                      max_trajectories: int = 12) -> Path:
    """Figure of held-out P(inside) against depth for up to ``max_trajectories`` trajectories of
    ``model``: the labels' STN (shaded), the HMM's entry / exit (dashed) and each recording's
    artifact fraction (grey bars); written as PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.atomic import atomic_path

    trajs = [t for t in traj_rows if t["model"] == model][:max_trajectories]
    n = max(len(trajs), 1)
    cols = min(4, n)
    rows_n = -(-n // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.4 * rows_n), squeeze=False, sharey=True)
    for ax, t in zip(axes.ravel(), trajs):
        pts = sorted((r["depth_um"] / 1000, r["p_inside"], r["artifact_fraction"]) for r in rec_rows
                     if r["model"] == model and (r["patient"], r["side"], r["electrode"]) ==
                     (t["patient"], t["side"], t["electrode"]))
        if not pts:
            continue
        d, p, a = map(np.array, zip(*pts))
        if t["true_entry_um"] is not None:
            ax.axvspan(t["true_entry_um"] / 1000, t["true_exit_um"] / 1000, color="tab:green", alpha=0.15,
                       label="STN (labels)")
        ax.bar(d, a, width=0.3, color="0.7", label="artifact fraction")
        ax.plot(d, p, "o-", ms=3, color="tab:blue", label="P(inside)")
        for b in (t["est_entry_um"], t["est_exit_um"]):
            if b is not None:
                ax.axvline(b / 1000, color="tab:red", ls="--", lw=1)
        ax.set_title(f"{t['patient']} {t['side']} {t['electrode']}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(trajs):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.supxlabel("EDT (mm)", fontsize=8)
    fig.suptitle(f"{model}: held-out P(inside STN) along depth; dashed = HMM entry / exit", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
