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
4. Per trajectory, the held-out recording probabilities along depth are decoded by two decoders
   (:mod:`.trajectory`): the 3-state HMM (transitions estimated on the training patients' labels)
   and, where the input labels the SNr (the simulator's ``regions.csv``), the four-state model
   (before -> STN -> gap -> SNr) whose emissions add an STN-vs-SNr classifier (Valsky et al. 2017):
   LightGBM on the nine features plus NRMS, trained leave-one-patient-out like the rest on the STN
   and SNr segments of the training patients (``OUT/dataset_stn_snr``, ``OUT/runs/stn_vs_snr``),
   its STN-length prior and ``q``'s prior from the training patients too; its settings were chosen
   on another seed's cohort (:class:`.trajectory.DecoderSettings`). STN entry and exit errors in mm
   against the labels' borders, per decoder: mean, SD, 90th percentile, share within 1 mm.
5. Artifact removal against the simulator's masks (sample sensitivity and specificity).

6. Explanations: every fold run explained on its held-out patient (``ephys explain``: TreeSHAP for
   LightGBM, gradient x input for the MLP), pooled per model (:mod:`.report`).

Writes ``OUT/metrics.json``, ``OUT/recordings.csv`` (held-out recording probabilities with
their artifact fractions, region and held-out ``q_snr``), ``OUT/trajectories.csv`` (true and
estimated borders of both decoders),
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


def _regions(raw: Path, n: int) -> list[str] | None:
    """Each recording's region from the simulator's ``regions.csv`` (row for row with the metadata),
    or None when the input has none (a real ML-STIM folder: only inside / outside is known)."""
    from .synthetic import REGIONS, REGIONS_FILE

    try:
        with open(raw / REGIONS_FILE, newline="") as fh:
            got = [r["region"] for r in csv.DictReader(fh, delimiter=";")]
    except (OSError, KeyError):
        return None
    return got if len(got) == n and set(got) <= set(REGIONS) else None


def _nrms(X: np.ndarray, rec_of_seg: np.ndarray, recs: list[dict]) -> np.ndarray:
    """Per segment: ``mad`` over its trajectory's NRMS baseline (:func:`.trajectory.nrms_baselines`;
    NaN without a depth)."""
    from .trajectory import nrms_baselines

    rec_mad = {}
    for i in np.unique(rec_of_seg):
        rec_mad[int(i)] = float(np.median(X[rec_of_seg == i, 0]))
    base = np.full(len(recs), np.nan)
    trajs: dict = {}
    for i in rec_mad:
        r = recs[i]
        if r["depth_um"] is not None:
            trajs.setdefault((r["patient"], r["side"], r["electrode"]), []).append(i)
    for idx in trajs.values():
        base[idx] = nrms_baselines([recs[i]["depth_um"] for i in idx], [rec_mad[i] for i in idx])
    return X[:, 0] / base[rec_of_seg]


def stn_vs_snr(ds, recs: list[dict], regions: list[str], rec_of_seg: np.ndarray, out: Path, seed: int,
               log: Callable[[str], None]) -> tuple[np.ndarray, dict]:
    """The STN-vs-SNr classifier (Valsky et al. 2017), leave-one-patient-out through the core: a feature
    table of the nine features plus NRMS (``OUT/dataset_stn_snr``; segments of STN recordings labelled
    ``stn``, of SNr recordings ``snr``, the rest unlabelled), LightGBM trained per fold on the other
    patients (``OUT/runs/stn_vs_snr/<patient>``), then applied to every segment of the held-out patient.

    Returns
    -------
    (q (n_segments,) float64 held-out P(snr), metrics per recording on the STN and SNr recordings)
    """
    from ..core.crossval import plan_folds, train_fold
    from ..core.datasets import load_dataset
    from ..core.layouts import write_feature_table
    from ..core.models import load_predictor
    from ..core.runfolder import load_run_config
    from ..core.training import TrainConfig
    from .dsp import FEATURE_NAMES

    X = np.asarray(ds.array, dtype=np.float64)[[s["row"] for s in ds.manifest["samples"]]]
    X2 = np.column_stack([X, _nrms(X, rec_of_seg, recs)])
    labels = [regions[i] if regions[i] in ("stn", "snr") else None for i in rec_of_seg]
    data = out / "dataset_stn_snr"
    if not (data / "manifest.json").is_file():
        write_feature_table(data, list(ds.ids), X2, (*FEATURE_NAMES, "nrms"), labels, ("stn", "snr"),
                            groups=list(ds.groups), feature_units={"mad": "uV", "nrms": "ratio"},
                            provenance={"from": str(ds.root), "nrms": "mad / median mad of the trajectory's first "
                                        "recordings (trajectory.NRMS_BASELINE)"},
                            extra_manifest={"pipeline": "mer", "sample_noun": "segment", "group_noun": "patient",
                                            "cv": "lopo", "default_split": "grouped"})
    ds2 = load_dataset(data)
    plan = plan_folds(ds2, "lopo", seed=seed)
    q = np.full(len(ds2.ids), np.nan)
    groups = np.asarray(ds2.groups)
    for k, fold in enumerate(plan.folds):
        cfg = TrainConfig(model="lightgbm", data=str(data), seed=seed, out=str(out / "runs" / "stn_vs_snr"))
        run = train_fold(cfg, fold=k, scheme="lopo", log=lambda s: None)
        idx = np.flatnonzero(groups == fold.held_out[0])
        proba = load_predictor(run, load_run_config(run), ds2)(idx)
        q[idx] = proba[:, list(ds2.label_names).index("snr")]
    log(f"STN-vs-SNr classifier: {len(plan.folds)} folds done")
    # per recording, on the held-out STN and SNr recordings
    r_q, r_y = [], []
    for i in np.unique(rec_of_seg):
        if regions[i] in ("stn", "snr") and np.isfinite(q[rec_of_seg == i]).all():
            r_q.append(float(np.mean(q[rec_of_seg == i])))
            r_y.append(int(regions[i] == "snr"))
    return q, _binary_metrics(np.array(r_y), np.array(r_q), threshold=0.5)


def border_stats(entry_mm: list, exit_mm: list, n_missed: int) -> dict:
    """Entry and exit errors (signed lists, mm; estimated - true) of the trajectories where an STN
    was found: mean |error|, its SD, 90th percentile, share within 1 mm (a missed STN counts as
    not within), mean signed error, and the legacy pooled median / p90."""
    out = {"n_trajectories": len(entry_mm) + n_missed, "n_no_stn_found": n_missed}
    for name, v in (("entry", entry_mm), ("exit", exit_mm)):
        a = np.abs(np.asarray(v, dtype=np.float64))
        out[f"{name}_mean"] = float(a.mean()) if a.size else None
        out[f"{name}_sd"] = float(a.std(ddof=1)) if a.size > 1 else None
        out[f"{name}_p90"] = float(np.percentile(a, 90)) if a.size else None
        out[f"{name}_median"] = float(np.median(a)) if a.size else None
        out[f"{name}_signed_mean"] = float(np.mean(v)) if a.size else None
        out[f"{name}_within_1mm"] = float(np.sum(a <= 1.0) / max(a.size + n_missed, 1)) if a.size + n_missed else None
    both = np.abs(np.asarray(list(entry_mm) + list(exit_mm), dtype=np.float64))
    out["median"] = float(np.median(both)) if both.size else None
    out["p90"] = float(np.percentile(both, 90)) if both.size else None
    return out


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
    from .trajectory import DecoderSettings, decode, decode4, label_borders, length_prior, snr_prior, transitions_from_labels

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

    regions = _regions(raw, len(recs))
    rec_seg = np.array([rec_index[r] for r in rec_of])
    q_rec: dict[int, float] = {}
    snr_metrics = None
    if regions is not None:
        q_seg, snr_metrics = stn_vs_snr(ds, recs, regions, rec_seg, out, seed, log)
        for i in np.unique(rec_seg):
            v = q_seg[rec_seg == i]
            if np.isfinite(v).all():
                q_rec[int(i)] = float(v.mean())
    settings = DecoderSettings()

    # transitions for the HMM: from the training patients' labels only, per held-out patient
    traj_of = {}
    for i, r in enumerate(recs):
        if r["label"] is None or r["depth_um"] is None:
            continue
        traj_of.setdefault((r["patient"], r["side"], r["electrode"]), []).append(i)

    def runs_of(patients, what="label"):
        out_runs = []
        for key, idx in traj_of.items():
            if key[0] in patients:
                idx = sorted(idx, key=lambda i: recs[i]["depth_um"])
                if what == "label":
                    out_runs.append([int(recs[i]["label"] == "inside") for i in idx])
                elif what == "depth":
                    out_runs.append(([recs[i]["depth_um"] for i in idx], [int(recs[i]["label"] == "inside") for i in idx]))
                else:
                    out_runs.append([regions[i] for i in idx])
        return out_runs

    patients = sorted({r["patient"] for r in recs if r["label"] is not None})
    result = {"recipe": "mer-sim", "seed": seed, "data": str(raw), "dataset": str(ds_dir), "n_patients": len(patients),
              "n_recordings": len(recs), "n_segments": int(len(ds.ids)), "validation": "leave-one-patient-out",
              "threshold": THRESHOLD, "models": {}}
    if snr_metrics is not None:
        result["stn_vs_snr_classifier"] = {**snr_metrics, "model": "lightgbm", "features": "the 9 ML-STIM features + nrms",
                                           "level": "per recording (mean of its segments), held-out STN and SNr "
                                                    "recordings; threshold 0.5"}
        result["decoder_settings"] = dict(vars(settings))
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
                             "artifact_fraction": recs[i]["artifact_fraction"],
                             "region": regions[i] if regions is not None else "",
                             "q_snr": round(q_rec[int(i)], 6) if int(i) in q_rec else ""})
        # trajectories: the 3-state HMM and, with SNr labels, the four-state decoder
        p_of = dict(zip(r_idx.tolist(), r_p.tolist()))
        errs = {"three_state": ([], [], [0]), "four_state": ([], [], [0])}
        for key, idx in sorted(traj_of.items()):
            idx = [i for i in idx if i in p_of]
            if not idx:
                continue
            depth = np.array([recs[i]["depth_um"] for i in idx], dtype=np.float64)
            order = np.argsort(depth)
            depth = depth[order]
            idx = [idx[j] for j in order]
            prob = np.array([p_of[i] for i in idx])
            lab = np.array([int(recs[i]["label"] == "inside") for i in idx])
            others = [p for p in patients if p != key[0]]
            p_enter, p_exit = transitions_from_labels(runs_of(others))
            decs = {"three_state": decode(depth, prob, p_enter, p_exit)}
            if q_rec and all(i in q_rec for i in idx):
                decs["four_state"] = decode4(depth, prob, np.array([q_rec[i] for i in idx]),
                                             snr_prior(runs_of(others, "region")),
                                             length_prior(runs_of(others, "depth")), settings)
            true_entry, true_exit = label_borders(depth, lab)
            row = {"model": m, "patient": key[0], "side": key[1], "electrode": key[2],
                   "true_entry_um": true_entry, "true_exit_um": true_exit,
                   "est_entry_um": decs["three_state"]["entry_um"], "est_exit_um": decs["three_state"]["exit_um"],
                   "est4_entry_um": decs["four_state"]["entry_um"] if "four_state" in decs else None,
                   "est4_exit_um": decs["four_state"]["exit_um"] if "four_state" in decs else None}
            if true_entry is not None:
                for name, dec in decs.items():
                    e_list, x_list, missed = errs[name]
                    if dec["entry_um"] is None:
                        missed[0] += 1
                    else:
                        e_list.append((dec["entry_um"] - true_entry) / 1000)
                        x_list.append((dec["exit_um"] - true_exit) / 1000)
            traj_rows.append(row)
        borders = {name: border_stats(e, x, miss[0]) for name, (e, x, miss) in errs.items()
                   if name == "three_state" or q_rec}
        border = dict(borders["three_state"])
        result["models"][m] = {"per_segment": seg_metrics, "cross_validation": _cv_summary(cv_metrics[m]),
                               "per_recording": rec_metrics,
                               "per_patient_recording": per_patient_summary, "per_patient": per_patient,
                               "border_error_mm": border, "borders": borders}
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
                           "Zaidel et al. 2009 (HMM), real trajectories": "entry / exit error -0.09 / -0.20 mm",
                           "Valsky et al. 2017 (STN-vs-SNr classifier), real trajectories":
                               "exit 0.04 ± 0.18 mm, 94 % within 1 mm"}
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
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for m, r in res["models"].items():
        pr = r["per_recording"]
        lines.append(f"{m}: per recording accuracy {fmt(pr['accuracy'])} (majority {fmt(pr['majority_baseline_accuracy'])}), "
                     f"balanced {fmt(pr['balanced_accuracy'])}, ROC-AUC {fmt(pr['roc_auc'])}")
        for name, b in (r.get("borders") or {"three_state": r["border_error_mm"]}).items():
            lines.append(f"  {name.replace('_', '-')} decoder: entry |error| mean {fmt(b.get('entry_mean'))} mm "
                         f"(p90 {fmt(b.get('entry_p90'))}), exit mean {fmt(b.get('exit_mean'))} mm "
                         f"(SD {fmt(b.get('exit_sd'))}, p90 {fmt(b.get('exit_p90'))}, within 1 mm "
                         f"{fmt(b.get('exit_within_1mm'))}); no STN found {b.get('n_no_stn_found')}")
    if res.get("stn_vs_snr_classifier"):
        c = res["stn_vs_snr_classifier"]
        lines.append(f"STN-vs-SNr classifier (held-out recordings): balanced accuracy {fmt(c['balanced_accuracy'])}, "
                     f"ROC-AUC {fmt(c['roc_auc'])}")
    if "artifact_removal_vs_simulator" in res:
        a = res["artifact_removal_vs_simulator"]
        lines.append(f"artifact removal vs simulator: sensitivity {a['sensitivity']:.3f}, "
                     f"specificity {a['specificity']:.3f}")
    return lines


__all__ = ["reproduce_mer_sim", "summary_lines"]


def plot_trajectories(rec_rows: list[dict], traj_rows: list[dict], model: str, path: str | Path,
                      max_trajectories: int = 12) -> Path:
    """Figure of held-out P(inside) against depth for up to ``max_trajectories`` trajectories of
    ``model``: the labels' STN (shaded), the 3-state HMM's entry / exit (dashed), the four-state
    decoder's (dotted) and each recording's artifact fraction (grey bars); written as PNG to ``path``."""
    from ..core.atomic import atomic_path
    from .predictions import trajectory_figure

    panels = []
    for t in [t for t in traj_rows if t["model"] == model][:max_trajectories]:
        pts = sorted((r["depth_um"] / 1000, r["p_inside"], float(r["artifact_fraction"])) for r in rec_rows
                     if r["model"] == model and (r["patient"], r["side"], r["electrode"]) ==
                     (t["patient"], t["side"], t["electrode"]))
        if not pts:
            continue
        d, p, a = map(np.array, zip(*pts))
        panels.append({"title": f"{t['patient']} {t['side']} {t['electrode']}", "depth_mm": d, "p": p,
                       "artifact_fraction": a, "true": (t["true_entry_um"], t["true_exit_um"]),
                       "est": (t["est_entry_um"], t["est_exit_um"]),
                       "est4": (t.get("est4_entry_um"), t.get("est4_exit_um"))})
    png = trajectory_figure(panels, max_trajectories,
                            f"{model}: held-out P(inside STN) along depth; dashed = 3-state HMM, dotted = 4-state")
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Path(tmp).write_bytes(png)
    return path
