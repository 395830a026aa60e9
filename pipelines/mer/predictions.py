"""``ephys predict`` on MER, per recording (ML-STIM's rule), and the trajectory section of ``ephys report``.

The ``prepare mer`` step's ``predictions`` hook (:func:`write_predictions`), for a trained run
(``ephys predict RUN INPUT OUT``) and for the published ML-STIM model (``ephys predict ml-stim INPUT
OUT``) alike, writes into OUT:

``predictions.csv``  one row per recording: ``id``, ``source``, ``patient``, ``side``, ``electrode``,
                     ``depth_mm`` (empty when unknown), ``n_segments``, ``artifact_fraction``,
                     ``probability`` (the mean of its segments' P(inside), as published; empty
                     without segments), ``predicted`` (``STN`` when probability >= the threshold, else
                     ``outside``; empty without segments), ``outside_training_range`` (the features
                     of its segments outside the range the model was trained on, with the share of
                     segments; empty when none) and ``reason`` (why a recording has no segment:
                     less than 1 s left after artifact removal).
``segments.csv``     one row per 1-s segment: ``id``, ``recording``, ``segment_start_s``,
                     ``p_inside``, ``outside_training_range``, then the 9 features (µV, as prepared).

The threshold is the run's decision threshold when it has one (``--decision``), else ML-STIM's 0.51;
the published model's is 0.51. The training range is the published scaling constants (ML-STIM's
training set's minima and maxima) for the published model, and the run's training split for a run.
Its report sections: the recordings, the out-of-range ones, those without a full second (with their
artifact fraction), and, when depths are known, probability against depth per trajectory with the
STN entry and exit of the three-state HMM (:mod:`.trajectory`) and the labels' borders where the
input is labelled.

:func:`run_sections` (the step's ``sections`` hook) adds to ``ephys report RUN`` the same trajectory
figures for the run's test recordings (from the run's ``predictions.csv``, written by ``ephys evaluate``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..core.atomic import write_text
from .dsp import FEATURE_NAMES
from .published import THRESHOLD

__all__ = ["write_predictions", "run_sections", "recording_table", "trajectory_figure"]


def _inside_column(label_names) -> int:
    names = [str(x) for x in label_names]
    return names.index("inside") if "inside" in names else len(names) - 1


def _recording_of(sample_id: str) -> str:
    return sample_id.rsplit("_s", 1)[0]


def _segment_starts(root: Path) -> dict[str, str]:
    try:
        with open(Path(root) / "features.csv", newline="") as fh:
            return {r["id"]: r.get("segment_start_s", "") for r in csv.DictReader(fh)}
    except OSError:
        return {}


def training_range(run_dir: Path | None, trained_dir: Path | None):
    """(minima, maxima) of each feature over the run's training split (float64), or None when the
    run's split or training dataset cannot be read."""
    if run_dir is None or trained_dir is None:
        return None
    try:
        split = json.loads((Path(run_dir) / "split.json").read_text())
        manifest = json.loads((Path(trained_dir) / "manifest.json").read_text())
        X = np.load(Path(trained_dir) / "features.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    train = set(split.get("train") or [])
    rows = [s["row"] for s in manifest["samples"] if s["id"] in train]
    if not rows:
        return None
    Xt = np.asarray(X[np.sort(rows)], dtype=np.float64)
    return Xt.min(axis=0), Xt.max(axis=0)


def _outside(X: np.ndarray, rng) -> np.ndarray:
    """(n, 9) bool: a feature outside [min, max] (a tolerance of 1e-9 of the range)."""
    if rng is None or X.shape[0] == 0:
        return np.zeros(X.shape, dtype=bool)
    lo, hi = (np.asarray(v, dtype=np.float64) for v in rng)
    tol = 1e-9 * np.maximum(hi - lo, 1e-12)
    return (X < lo - tol) | (X > hi + tol)


def _flag_text(out: np.ndarray) -> str:
    if out.size == 0 or not out.any():
        return ""
    share = out.mean(axis=0)
    return "; ".join(f"{FEATURE_NAMES[j]} {share[j]:.0%}" for j in np.flatnonzero(share))


def recording_table(manifest: dict, ids, p_inside: np.ndarray, X: np.ndarray, rng, threshold: float):
    """Per recording of a prepared MER dataset: the ``predictions.csv`` rows (see the module
    docstring), and the per-segment rows (``segments.csv`` without the features).

    Parameters
    ----------
    manifest : the prepared input's manifest (its ``recordings``)
    ids : segment ids, (n,); p_inside : (n,) P(inside) per segment; X : (n, 9) features (µV)
    rng : (minima, maxima) of the training range, or None
    threshold : decision threshold on a recording's mean probability
    """
    out = _outside(X, rng)
    by_rec: dict[str, list[int]] = {}
    for i, sid in enumerate(ids):
        by_rec.setdefault(_recording_of(sid), []).append(i)
    rows = []
    for r in manifest.get("recordings", []):
        idx = by_rec.get(r["id"], [])
        p = float(np.mean(p_inside[idx])) if idx else None
        rows.append({"id": r["id"], "source": r.get("source", ""), "patient": r.get("patient", ""),
                     "side": r.get("side", ""), "electrode": r.get("electrode", ""),
                     "depth_mm": "" if r.get("depth_um") is None else f"{r['depth_um'] / 1000:g}",
                     "n_segments": len(idx), "artifact_fraction": f"{r.get('artifact_fraction', 0.0):.4f}",
                     "probability": "" if p is None else f"{p:.6f}",
                     "predicted": "" if p is None else ("STN" if p >= threshold else "outside"),
                     "outside_training_range": _flag_text(out[idx]) if idx else "",
                     "reason": r.get("reason", "") if not idx else "",
                     "_label": r.get("label"), "_depth_um": r.get("depth_um"), "_p": p})
    seg_rows = [{"id": sid, "recording": _recording_of(sid), "p_inside": f"{p_inside[i]:.6f}",
                 "outside_training_range": ", ".join(FEATURE_NAMES[j] for j in np.flatnonzero(out[i]))}
                for i, sid in enumerate(ids)]
    return rows, seg_rows


def _csv(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_predictions(ctx) -> list:
    """The ``prepare mer`` step's ``predictions`` hook (:class:`ephys.pipelines.core.predictions.
    PredictionContext`): writes ``predictions.csv`` and ``segments.csv`` into ``ctx.out`` and returns
    the report sections (see the module docstring)."""
    ds = ctx.dataset
    ids = list(ds.ids)
    k = _inside_column(ctx.label_names)
    p = ctx.proba[:, k] if len(ids) else np.zeros(0)
    X = (np.asarray(ds.array, dtype=np.float64)[[s["row"] for s in ds.manifest["samples"]]] if len(ids)
         else np.zeros((0, len(FEATURE_NAMES))))
    rng = ctx.input_range if ctx.input_range is not None else training_range(ctx.run_dir, ctx.trained_dir)
    threshold = THRESHOLD if ctx.threshold is None else float(ctx.threshold)
    rows, seg_rows = recording_table(ds.manifest, ids, p, X, rng, threshold)
    fields = ["id", "source", "patient", "side", "electrode", "depth_mm", "n_segments", "artifact_fraction",
              "probability", "predicted", "outside_training_range", "reason"]
    write_text(ctx.out / "predictions.csv", _csv(rows, fields))
    starts = _segment_starts(ds.root)
    for r, x in zip(seg_rows, X):
        r["segment_start_s"] = starts.get(r["id"], "")
        r.update({n: f"{v:.6g}" for n, v in zip(FEATURE_NAMES, x)})
    write_text(ctx.out / "segments.csv", _csv(seg_rows, ["id", "recording", "segment_start_s", "p_inside",
                                                         "outside_training_range", *FEATURE_NAMES]))
    range_src = ("the published scaling constants (the minima and maxima of ML-STIM's training set)"
                 if ctx.input_range is not None else "the run's training split" if rng is not None else None)
    return _sections(rows, threshold, range_src, ctx.threshold is None and ctx.run_dir is not None)


def _sections(rows: list[dict], threshold: float, range_src: str | None, default_rule: bool) -> list:
    from ..core.registry import Figure, Section

    with_seg = [r for r in rows if r["n_segments"]]
    n_stn = sum(1 for r in with_seg if r["predicted"] == "STN")
    rule = (f"A recording's probability is the mean of its 1-s segments' P(inside the STN); it is called STN when "
            f">= {threshold:g}" + (" (ML-STIM's threshold; the run has no decision threshold of its own)"
                                   if default_rule else "") + ".")
    head = ["recording", "depth (mm)", "segments", "artifact fraction", "probability", "predicted",
            "outside training range"]
    table = [head] + [[r["id"], r["depth_mm"], str(r["n_segments"]), r["artifact_fraction"],
                       r["probability"][:5] if r["probability"] else "", r["predicted"],
                       r["outside_training_range"]] for r in rows]
    secs = [Section("Recordings", f"{len(rows)} recordings, {len(with_seg)} with at least one 1-s segment after "
                    f"artifact removal; {n_stn} predicted STN. {rule} One row per recording in predictions.csv, "
                    "per segment in segments.csv.", table=table)]
    flagged = [r for r in with_seg if r["outside_training_range"]]
    if range_src is None:
        secs.append(Section("Outside the training range", "The training range could not be read: no flags."))
    elif flagged:
        secs.append(Section(
            "Outside the training range",
            f"{len(flagged)} of {len(with_seg)} recordings have segments whose features lie outside {range_src}: "
            "their predictions are extrapolations. Check the input's unit (--units) and sampling rate first.",
            table=[["recording", "features outside (share of its segments)", "probability"]]
            + [[r["id"], r["outside_training_range"], r["probability"][:5]] for r in flagged]))
    else:
        secs.append(Section("Outside the training range", f"Every segment's features lie within {range_src}."))
    dropped = [r for r in rows if not r["n_segments"]]
    if dropped:
        secs.append(Section("Recordings without a full second",
                            f"{len(dropped)} recordings have less than 1 s left after artifact removal: no "
                            "prediction (empty probability in predictions.csv).",
                            table=[["recording", "artifact fraction", "reason"]]
                            + [[r["id"], r["artifact_fraction"], r["reason"]] for r in dropped]))
    panels = trajectory_panels(rows)
    if panels:
        secs.append(Section("Trajectories", "", figures=[Figure(
            trajectory_figure(panels), "probability against depth per trajectory",
            "P(inside the STN) per recording against depth (EDT, mm); grey bars: artifact fraction; dashed: the "
            "three-state HMM's STN entry and exit; shaded: the labels' STN where the input is labelled.",
            "trajectories")]))
    return secs


def trajectory_panels(rows: list[dict], p_enter: float = 0.1, p_exit: float = 0.2) -> list[dict]:
    """One panel per trajectory (patient, side, electrode) of recordings with a depth and a
    probability: depths (mm), probabilities, artifact fractions, the labels' borders (when every
    recording is labelled) and the three-state HMM's borders (µm)."""
    from .trajectory import decode, label_borders

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("_depth_um") is not None and r.get("_p") is not None:
            groups.setdefault((r["patient"], r["side"], r["electrode"]), []).append(r)
    panels = []
    for key, rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["_depth_um"])
        d = np.array([r["_depth_um"] for r in rs], dtype=np.float64)
        p = np.array([r["_p"] for r in rs])
        dec = decode(d, p, p_enter, p_exit)
        labelled = all(r.get("_label") is not None for r in rs)
        true = label_borders(d, [r["_label"] == "inside" for r in rs]) if labelled else (None, None)
        panels.append({"title": " ".join(k for k in key if k), "depth_mm": d / 1000, "p": p,
                       "artifact_fraction": np.array([float(r["artifact_fraction"]) for r in rs]),
                       "true": true, "est": (dec["entry_um"], dec["exit_um"])})
    return panels


def trajectory_figure(panels: list[dict], max_panels: int = 12, title: str = "") -> bytes:
    """PNG of up to ``max_panels`` trajectory panels (see :func:`trajectory_panels`; a panel may add
    ``est4``: a second decoder's borders, drawn dotted)."""
    from ..core.page import png_bytes, pyplot

    plt = pyplot()
    panels = panels[:max_panels]
    n = max(len(panels), 1)
    cols = min(4, n)
    rows_n = -(-n // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.4 * rows_n), squeeze=False, sharey=True)
    for ax, t in zip(axes.ravel(), panels):
        if t["true"][0] is not None:
            ax.axvspan(t["true"][0] / 1000, t["true"][1] / 1000, color="tab:green", alpha=0.15, label="STN (labels)")
        ax.bar(t["depth_mm"], t["artifact_fraction"], width=0.3, color="0.7", label="artifact fraction")
        ax.plot(t["depth_mm"], t["p"], "o-", ms=3, color="tab:blue", label="P(inside)")
        for k, b in enumerate(v for v in t["est"] if v is not None):
            ax.axvline(b / 1000, color="tab:red", ls="--", lw=1, label="HMM borders" if k == 0 else None)
        for k, b in enumerate(v for v in (t.get("est4") or ()) if v is not None):
            ax.axvline(b / 1000, color="tab:purple", ls=":", lw=1.4, label="4-state HMM" if k == 0 else None)
        ax.set_title(t["title"], fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.supxlabel("EDT (mm)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)


def run_sections(ctx) -> list:
    """The ``prepare mer`` step's ``sections`` hook for ``ephys report RUN``: the run's test recordings
    along their trajectories (probability against depth, the labels' and the HMM's borders, artifact
    fractions), from the run's ``predictions.csv`` (``ephys evaluate``)."""
    from ..core.registry import Figure, Section

    pred = Path(ctx.run_dir) / "predictions.csv"
    if ctx.manifest is None or not pred.is_file():
        return [Section("Trajectories", "Not evaluated yet: `ephys evaluate RUN` writes the test predictions "
                        "this section draws.")]
    k = _inside_column(ctx.label_names)
    col = f"p_{ctx.label_names[k]}"
    with open(pred, newline="") as fh:
        got = {r["id"]: float(r[col]) for r in csv.DictReader(fh) if r.get(col)}
    ids = [s["id"] for s in ctx.manifest["samples"] if s["id"] in got]
    rows, _ = recording_table(ctx.manifest, ids, np.array([got[i] for i in ids]), np.zeros((len(ids), 9)), None,
                              THRESHOLD)
    rows = [r for r in rows if r["n_segments"]]
    from .trajectory import transitions_of_run

    p_enter, p_exit = transitions_of_run(Path(ctx.run_dir), ctx.manifest)
    panels = trajectory_panels(rows, p_enter, p_exit)
    if not panels:
        return [Section("Trajectories", "The test recordings have no depths: no trajectory to draw.")]
    errs = [abs(a - b) / 1000 for t in panels for a, b in zip(t["est"], t["true"]) if a is not None and b is not None]
    text = (f"{len(panels)} test trajectories (up to 12 drawn). Recording probability = mean of its segments' "
            f"P(inside); the three-state HMM (transitions from the run's training labels: enter {p_enter:.3f}, "
            f"exit {p_exit:.3f} per recording) gives the STN entry and exit.")
    if errs:
        text += f" Border error against the labels: median {np.median(errs):.2f} mm over {len(errs)} borders."
    return [Section("Trajectories", text, figures=[Figure(trajectory_figure(panels), "test trajectories",
                                                          "Held-out test recordings: P(inside) against depth (EDT, "
                                                          "mm); shaded: the labels' STN; dashed: the HMM's borders; "
                                                          "grey bars: artifact fraction.", "trajectories")])]
