"""``OUT/report.html`` of ``ephys reproduce mer-sim``: one page of the shared page builder
(:mod:`ephys.pipelines.core.page`) over what the recipe wrote.

Sections: summary (per model: per-recording balanced accuracy beside the majority-class baseline,
ROC-AUC, STN border error; the published ML-STIM numbers for orientation), per recording and per
segment (pooled held-out), per patient (mean ± SD over patients and every patient's row), STN
borders along each trajectory (error table and the ``trajectories_<model>.png`` figures), the
explanations pooled over the folds (each held-out patient explained by the fold model that never
saw it: TreeSHAP for LightGBM, gradient x input for the MLP), artifact removal against the
simulator's masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.page import (OKABE_ITO, Card, Cards, Details, Fig, Notice, Page, Table, Text, format_number as fmt,
                         png_bytes, pyplot, style_axes)

__all__ = ["pooled_explanations", "write_mer_report"]

_LEVEL_KEYS = ("accuracy", "majority_baseline_accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")
_LEVEL_HEAD = ["model", "accuracy", "majority baseline", "balanced accuracy", "sensitivity (inside)", "specificity",
               "ROC-AUC", "n"]


def pooled_explanations(runs_dir: str | Path, model: str, log=print) -> dict | None:
    """Explain every fold run of ``model`` under ``runs_dir/<model>/`` on its held-out patient
    (``ephys explain``, no figures) and pool the attributions of the class ``inside``.

    Returns ``{"method", "units", "n_samples", "features": [(name, mean |attribution|), ...]
    (largest first)}``, or None when no fold could be explained. TreeSHAP values are log-odds;
    gradient x input maps are scaled to max 1 per segment before averaging.
    """
    from ..core.errors import EphysError
    from ..core.explain import explain_run

    folds = sorted(p for p in (Path(runs_dir) / model).iterdir() if (p / "fold.json").is_file())
    sums, n, names, method = None, 0, None, ""
    for run in folds:
        try:
            out = explain_run(run, figures=False)
        except EphysError as exc:
            log(f"explain {run.name} ({model}): {exc.one_line()}")
            continue
        if (out / "shap_values.npz").is_file():
            with np.load(out / "shap_values.npz") as z:
                lab = list(z["label_names"])
                k = lab.index("inside") if "inside" in lab else len(lab) - 1
                vals, names = np.abs(z["values"][:, :, k]), list(z["feature_names"])
            method = "TreeSHAP, mean |SHAP| (log-odds)"
        else:
            with np.load(out / "saliency.npz") as z:
                vals, names = z["maps"], list(z["feature"]) if "feature" in z.files and z["feature"].size else None
            method = "gradient × input, mean |attribution| (scaled to max 1 per segment)"
        sums = vals.sum(axis=0) if sums is None else sums + vals.sum(axis=0)
        n += len(vals)
    if sums is None or not n:
        return None
    names = names or [f"feature {k}" for k in range(len(sums))]
    order = np.argsort(-sums, kind="stable")
    return {"method": method, "n_samples": int(n), "n_folds": len(folds),
            "features": [(str(names[j]), float(sums[j] / n)) for j in order]}


def _fig_explanations(expl: dict) -> bytes:
    plt = pyplot()
    k = len(expl)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.4), squeeze=False)
    for c, (ax, (m, e)) in enumerate(zip(axes[0], expl.items())):
        feats = e["features"][::-1]
        ax.barh([f for f, _ in feats], [v for _, v in feats], color=OKABE_ITO[c % 7])
        ax.set_title(f"{m}", fontsize=10)
        ax.set_xlabel("mean |attribution| for 'inside'", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        style_axes(ax)
    fig.tight_layout()
    return png_bytes(fig)


def _level_rows(res: dict, level: str) -> list[list]:
    rows = []
    for m, r in res["models"].items():
        d = r.get(level) or {}
        rows.append([m] + [fmt(d.get(k)) for k in _LEVEL_KEYS] + [d.get("n", "")])
    return rows


def write_mer_report(out: str | Path, res: dict) -> Path:
    """Write ``OUT/report.html`` for a ``reproduce mer-sim`` result ``res`` (its ``metrics.json``)
    and the files beside it (``trajectories_<model>.png``); returns the path."""
    out = Path(out)
    models = list(res["models"])
    page = Page("mer-sim: STN detection, leave-one-patient-out", kicker="ephys reproduce",
                pills=[f"{res['n_patients']} patients", f"{res['n_recordings']} recordings",
                       f"{res['n_segments']:,} segments", res["validation"], f"threshold {res['threshold']:g}"],
                source=str(out))
    cards = []
    for m in models:
        pr, b = res["models"][m]["per_recording"], res["models"][m]["border_error_mm"]
        cards.append(Card(f"{m}: balanced accuracy", fmt(pr.get("balanced_accuracy")),
                          f"per recording; accuracy {fmt(pr.get('accuracy'))} vs majority "
                          f"{fmt(pr.get('majority_baseline_accuracy'))}", frac=pr.get("balanced_accuracy")))
        cards.append(Card(f"{m}: ROC-AUC", fmt(pr.get("roc_auc")), "per recording", frac=pr.get("roc_auc")))
        b4 = (res["models"][m].get("borders") or {}).get("four_state") or b
        cards.append(Card(f"{m}: STN exit error", "n/a" if b4.get("exit_mean") is None else
                          f"{fmt(b4['exit_mean'], 2)} mm",
                          f"mean |error|, {'4-state' if b4 is not b else '3-state'} decoder; p90 "
                          f"{fmt(b4.get('exit_p90'), 2)} mm over {b4.get('n_trajectories')} trajectories"))
    ref_rows = [[k, fmt(v.get("accuracy")) + (f" ± {fmt(v.get('accuracy_sd'))}" if v.get("accuracy_sd") else "")]
                if isinstance(v, dict) else [k, str(v)] for k, v in (res.get("reference") or {}).items()]
    page.section(
        "Summary", Cards(cards),
        Text(f"Every number is on held-out patients: each of the {res['n_patients']} patients was predicted by models "
             f"trained on the others (early stopping on whole training patients). A recording's probability is the "
             f"mean of its segments' (ML-STIM's rule), thresholded at {res['threshold']:g}. Headline model: "
             f"{res.get('headline_model')} ({res.get('headline_note', '')})."),
        Table(ref_rows, ["published reference", "value"], title="Published numbers (other data; for orientation)",
              numeric=[False, False]) if ref_rows else None)
    page.section("Per recording", Table(_level_rows(res, "per_recording"), _LEVEL_HEAD,
                                        caption="Held-out recordings pooled over patients; the majority baseline "
                                                "predicts each fold's training-side majority class."))
    cv_rows = [[m, fmt(r["cross_validation"].get("accuracy")), fmt(r["cross_validation"].get("majority_baseline_accuracy")),
                fmt(r["cross_validation"].get("balanced_accuracy")), fmt(r["cross_validation"].get("macro_f1")),
                fmt(r["cross_validation"].get("roc_auc_ovr")), r["cross_validation"].get("n_test")]
               for m, r in res["models"].items()]
    page.section("Per segment",
                 Table(_level_rows(res, "per_segment"), _LEVEL_HEAD, title=f"Threshold {res['threshold']:g}"),
                 Table(cv_rows, ["model", "accuracy", "majority baseline", "balanced accuracy", "macro F1",
                                 "ROC-AUC", "n"], title="Most probable class (as ephys aggregate pools the folds)",
                       caption="runs/<model>/report.html has the pooled confusion matrix, ROC and per-fold rows."))
    summ = [[m] + [(lambda d: "n/a" if d.get("mean") is None else
                    f"{fmt(d['mean'])} ± {fmt(d.get('sd'))}")(r["per_patient_recording"].get(k) or {})
                   for k in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")]
            for m, r in res["models"].items()]
    patients = sorted({p for r in res["models"].values() for p in r.get("per_patient", {})})
    per = [[p] + [fmt((res["models"][m].get("per_patient", {}).get(p) or {}).get(k))
                  for m in models for k in ("accuracy", "balanced_accuracy", "roc_auc")]
           + [(next(iter(res["models"].values())).get("per_patient", {}).get(p) or {}).get("n", "")]
           for p in patients]
    page.section("Per patient",
                 Table(summ, ["model", "accuracy", "balanced accuracy", "sensitivity", "specificity", "ROC-AUC"],
                       title="Mean ± SD over patients (per recording)", numeric=[False] + [True] * 5),
                 Table(per, ["patient"] + [f"{m} {k}" for m in models for k in ("accuracy", "bal. acc.", "ROC-AUC")]
                       + ["recordings"], title="Every patient", scroll=True))
    def mm(b, k):
        v, sd = b.get(f"{k}_mean"), b.get(f"{k}_sd")
        return "n/a" if v is None else f"{fmt(v, 2)} ± {fmt(sd, 2)}"

    borders = []
    for m in models:
        r = res["models"][m]
        for name, b in (r.get("borders") or {"three_state": r["border_error_mm"]}).items():
            borders.append([m, {"three_state": "3-state HMM", "four_state": "4-state (STN-vs-SNr)"}.get(name, name),
                            mm(b, "entry"), fmt(b.get("entry_p90"), 2), fmt(b.get("entry_within_1mm")),
                            mm(b, "exit"), fmt(b.get("exit_p90"), 2), fmt(b.get("exit_within_1mm")),
                            b.get("n_trajectories"), b.get("n_no_stn_found")])
    figs = [Fig((out / f"trajectories_{m}.png").read_bytes(), f"trajectories {m}",
                f"{m}: held-out P(inside STN) along depth (EDT, mm) for up to 12 trajectories; shaded: the labels' STN; "
                "dashed: the 3-state HMM's entry and exit; dotted: the four-state decoder's; grey bars: each "
                "recording's artifact fraction.", f"trajectories_{m}")
            for m in models if (out / f"trajectories_{m}.png").is_file()]
    clf = res.get("stn_vs_snr_classifier")
    clf_text = (Text(f"STN-vs-SNr classifier ({clf['model']}, {clf['features']}; leave-one-patient-out on the STN and "
                     f"SNr segments of the training patients): per held-out recording balanced accuracy "
                     f"{fmt(clf.get('balanced_accuracy'))}, ROC-AUC {fmt(clf.get('roc_auc'))} over {clf.get('n')} "
                     f"STN and SNr recordings. Decoder settings (chosen on another seed's cohort): "
                     + ", ".join(f"{k} {v:g}" for k, v in (res.get("decoder_settings") or {}).items()) + ".")
                if clf else Notice("No SNr labels in this input: the four-state decoder needs them (the simulator's "
                                   "regions.csv)."))
    page.section("STN borders along trajectories",
                 Table(borders, ["model", "decoder", "entry |error| mean ± SD (mm)", "entry p90 (mm)",
                                 "entry within 1 mm", "exit |error| mean ± SD (mm)", "exit p90 (mm)", "exit within 1 mm",
                                 "trajectories", "no STN found"],
                       numeric=[False, False] + [True] * 8,
                       caption="Per held-out trajectory, errors against the labels' borders (trajectories.csv). "
                               "3-state: before -> STN -> after, transitions from the training patients' labels. "
                               "4-state: before -> STN -> gap -> SNr, emissions from the model's P(inside) and the "
                               "STN-vs-SNr classifier, STN-length prior from the training patients."),
                 clf_text, *figs)
    expl = res.get("explanations") or {}
    if expl:
        rows = [[m, e["method"], ", ".join(f for f, _ in e["features"][:5]), e["n_samples"]] for m, e in expl.items()]
        page.section("Explanations",
                     Text("Each fold's model explained on its held-out patient only (ephys explain on the fold run), "
                          "pooled over folds: which features push a segment towards 'inside the STN'."),
                     Table(rows, ["model", "attribution", "top 5 features", "segments"], numeric=[False] * 3 + [True]),
                     Fig(_fig_explanations(expl), "features by pooled attribution",
                         "Mean attribution of each feature for the class 'inside', pooled over every held-out segment "
                         "(scales differ between methods: compare the order, not the lengths).", "explanations"))
    else:
        page.section("Explanations", Notice("No fold could be explained."))
    art = res.get("artifact_removal_vs_simulator")
    if art:
        page.section("Artifact removal vs the simulator",
                     Table([["sensitivity (artifact samples removed)", fmt(art["sensitivity"])],
                            ["specificity (clean samples kept)", fmt(art["specificity"])],
                            ["artifact samples", f"{art['n_artifact_samples']:,}"],
                            ["clean samples", f"{art['n_clean_samples']:,}"]], ["", "value"]))
    page.section("Raw numbers", Details.json("metrics.json", res))
    return page.write(out)
