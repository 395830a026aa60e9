"""``ephys report --compare RUN... OUT``: one page that ranks evaluated runs on the same test samples.

Every run must have been evaluated (``metrics.json``, ``predictions.csv``) on exactly the same
test samples with the same classes; otherwise the comparison is refused, naming the runs that
differ. The page ranks the runs by balanced accuracy with 95 % bootstrap intervals over the test
samples, resampling whole groups (participants, cells, channels: the dataset's ``group`` of each
sample) when samples share groups (a cluster bootstrap: Field & Welsh 2007, J R Stat Soc B
69:369); puts the majority-class baseline of the training part beside them; tests the best run
against each other run on the same samples (McNemar's exact test on the discordant samples,
McNemar 1947, Psychometrika 12:153, and a paired bootstrap of the balanced-accuracy difference
with the same resamples for both runs); and shows the settings that differ, the learning curves
overlaid and the per-class recall side by side. ``OUT/compare.json`` holds the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EphysError

__all__ = ["compare_runs", "bootstrap_weights", "weighted_scores", "mcnemar_exact", "RunResult", "N_BOOT"]

#: bootstrap resamples (each run and each paired difference uses the same ones)
N_BOOT = 2000
#: settings that say nothing about what was trained (never listed as a difference)
_SKIP = {"out", "created", "run_id", "ephys_version", "keras_version", "backend", "backend_version", "gpu",
         "eager", "quiet", "n_train", "n_val", "n_test", "sample_shape", "label_names", "modality",
         "dataset_fingerprint"}


@dataclass
class RunResult:
    """One evaluated run: ``name`` shown on the page, ``run`` folder, ``config`` (config.yaml),
    ``metrics`` (metrics.json), test ``ids``, ``y`` true and ``pred`` predicted class indices,
    ``history`` (history.csv columns) and the training part's sample ids (``train_ids``)."""

    name: str
    run: Path
    config: dict
    metrics: dict
    ids: list[str]
    y: np.ndarray
    pred: np.ndarray
    history: dict | None = None
    train_ids: list[str] = field(default_factory=list)


def _load(run: Path, name: str) -> RunResult:
    import csv

    from .report import _read_history
    from .runfolder import load_run_config, read_split

    cfg = load_run_config(run)
    for f, hint in (("metrics.json", "ephys evaluate"), ("predictions.csv", "ephys evaluate")):
        if not (run / f).is_file():
            raise EphysError(f"run {name} has no {f}: run `{hint} {run}` first", run)
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        with open(run / "predictions.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise EphysError(f"unreadable evaluation ({exc})", run) from None
    labels = list(metrics.get("labels") or cfg.get("label_names") or [])
    if not rows or "true" not in rows[0] or not labels:
        raise EphysError("predictions.csv has no true labels: `ephys report --compare` needs an evaluated classifier", run)
    try:
        y = np.array([labels.index(r["true"]) for r in rows], dtype=np.int64)
        pred = np.array([labels.index(r["predicted"]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise EphysError(f"predictions.csv names a class the run does not have ({exc})", run / "predictions.csv") from None
    metrics["labels"] = labels
    split = read_split(run) or {}
    return RunResult(name, run, cfg, metrics, [r["id"] for r in rows], y, pred, _read_history(run / "history.csv"),
                     list(split.get("train") or []))


def _names(runs: list[Path]) -> list[str]:
    """Shortest distinct trailing paths (``trial-0003``, ``a/trial-0003``)."""
    parts = [p.resolve().parts for p in runs]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in runs]


def _check_same_test(results: list[RunResult]) -> None:
    first = results[0]
    if any(r.metrics["labels"] != first.metrics["labels"] for r in results):
        bad = [r.name for r in results if r.metrics["labels"] != first.metrics["labels"]]
        raise EphysError(f"runs with other classes than {first.name}: {', '.join(bad)}; compare runs of one task")
    ref = dict(zip(first.ids, first.y))
    bad = []
    for r in results[1:]:
        ids = set(r.ids)
        n_diff = len(ids.symmetric_difference(ref)) + (len(r.ids) - len(ids))
        if n_diff:
            bad.append(f"{r.name} ({len(ids - set(ref))} test samples not in {first.name}, "
                       f"{len(set(ref) - ids)} of its missing)")
        elif any(ref[i] != yi for i, yi in zip(r.ids, r.y)):
            bad.append(f"{r.name} (other true labels)")
    if bad:
        raise EphysError(f"runs evaluated on different test samples than {first.name}: {'; '.join(bad)}; "
                         "compare runs evaluated on one test part")


def bootstrap_weights(groups: list[str], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Cluster-bootstrap weights ``(n_boot, n)``: each replicate draws as many groups as there are,
    with replacement, and every sample counts as often as its group was drawn (float64). With one
    sample per group this is the ordinary bootstrap over samples."""
    g = np.asarray([str(x) for x in groups])
    names, inv = np.unique(g, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(names.size, np.full(names.size, 1.0 / names.size), size=n_boot).astype(np.float64)
    return draws[:, inv]


def weighted_scores(w: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy (mean recall over the classes present in each replicate) and
    per-class recall ``(n_boot, k)`` (NaN where a class is absent) under sample weights ``w``
    ``(n_boot, n)``; a 1-D ``w`` gives scalars."""
    w2 = np.atleast_2d(w)
    correct = (y == pred).astype(np.float64)
    onehot = np.eye(k)[y]
    tot = w2 @ onehot
    hit = w2 @ (onehot * correct[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(tot > 0, hit / tot, np.nan)
        acc = (w2 @ correct) / w2.sum(axis=1)
    bal = np.nanmean(recall, axis=1)
    if w.ndim == 1:
        return {"accuracy": float(acc[0]), "balanced_accuracy": float(bal[0]), "recall": recall[0]}
    return {"accuracy": acc, "balanced_accuracy": bal, "recall": recall}


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test of two classifiers on the same samples: ``(b, c, p)`` with ``b`` the
    samples only the first gets right, ``c`` those only the second does, ``p`` the two-sided
    binomial p-value of b against Binomial(b + c, 1/2) (1.0 when b + c = 0)."""
    from scipy.stats import binomtest

    b = int(np.sum(a_correct & ~b_correct))
    c = int(np.sum(~a_correct & b_correct))
    return b, c, (1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue))


def _ci(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    return (float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))) if x.size else (float("nan"),) * 2


def _groups(results: list[RunResult]) -> tuple[list[str], dict, str]:
    """Group of each test sample (from the first run's dataset), the dataset's labels by id, and
    what was resampled."""
    from .datasets import load_dataset
    from .nouns import nouns
    from .runfolder import find_dataset

    first = results[0]
    try:
        ds = load_dataset(find_dataset(first.run, first.config))
    except EphysError:
        return list(first.ids), {}, "test samples (the dataset is not at hand, so groups are unknown)"
    group = dict(zip(ds.ids, ds.groups))
    labels = {i: lab for i, lab in zip(ds.ids, ds.labels)}
    gs = [str(group.get(i, i)) for i in first.ids]
    words = nouns(ds.manifest)
    if len(set(gs)) == 1:  # one group: a cluster bootstrap has nothing to resample
        return list(first.ids), labels, (f"test {words.samples} (the test part holds a single {words.group}, "
                                         f"{gs[0]}: the intervals say nothing about another {words.group})")
    if len(set(gs)) < len(gs):
        return gs, labels, f"{words.groups} ({len(set(gs))} of them; whole {words.groups} resampled)"
    return gs, labels, f"test {words.samples}"


def _differences(results: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    from .page import flatten

    flat = [dict(flatten({k: v for k, v in r.config.items() if k not in _SKIP and v != {}})) for r in results]
    keys = sorted({k for f in flat for k in f})
    diff = [k for k in keys if len({f.get(k, "–") for f in flat}) > 1]
    return diff, [[f.get(k, "–") for f in flat] for k in diff]


def _fig_curves(results: list[RunResult]) -> bytes | None:
    from .page import OKABE_ITO, png_bytes, pyplot, style_axes

    have = [r for r in results if r.history and ("val_loss" in r.history or "loss" in r.history)]
    if not have:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for k, r in enumerate(have):
        c = OKABE_ITO[k % (len(OKABE_ITO) - 1)]
        ep = np.asarray(r.history["epoch"], dtype=float) + 1
        for ax, key in zip(axes, ("val_loss", "loss")):
            if key in r.history:
                ax.plot(ep, r.history[key], color=c, lw=1.8, label=r.name, ls="-" if key == "val_loss" else "--")
    for ax, title in zip(axes, ("validation loss", "training loss")):
        ax.set_xlabel("epoch (from 1)")
        ax.set_title(title, fontsize=11)
        style_axes(ax)
    axes[0].legend(fontsize=8, frameon=False)
    return png_bytes(fig)


def _fig_recall(labels: list[str], names: list[str], recall: np.ndarray) -> bytes:
    from .page import OKABE_ITO, png_bytes, pyplot, style_axes

    plt = pyplot()
    k, n = len(labels), len(names)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * k * max(n, 2) / 2 + 2), 3.4), layout="constrained")
    width = 0.8 / n
    for j, name in enumerate(names):
        ax.bar(np.arange(k) + (j - (n - 1) / 2) * width, recall[j], width, label=name,
               color=OKABE_ITO[j % (len(OKABE_ITO) - 1)])
    ax.set_xticks(np.arange(k), labels, fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("recall")
    style_axes(ax)
    ax.legend(fontsize=8, frameon=False, ncols=min(n, 4))
    return png_bytes(fig)


def _fig_intervals(rows: list[dict]) -> bytes:
    from .page import OKABE_ITO, png_bytes, pyplot, style_axes

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2), layout="constrained")
    for j, r in enumerate(rows):
        y = len(rows) - 1 - j
        c = "0.55" if r["baseline"] else OKABE_ITO[0]
        ax.plot([r["lo"], r["hi"]], [y, y], color=c, lw=3, solid_capstyle="round")
        ax.plot([r["value"]], [y], "o", color=c, ms=6)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows][::-1], fontsize=9)
    ax.set_xlabel("balanced accuracy on the test part (95 % interval)")
    style_axes(ax)
    return png_bytes(fig)


def compare_runs(runs, out: str | Path, n_boot: int = N_BOOT, seed: int = 0) -> tuple[Path, dict]:
    """Compare evaluated runs on their common test samples; write ``OUT/report.html`` (the page)
    and ``OUT/compare.json``; return (the page's path, the numbers).

    Parameters
    ----------
    runs : two or more run folders (each evaluated by ``ephys evaluate``)
    out : folder for the page
    n_boot, seed : bootstrap resamples and their seed

    Returns
    -------
    The numbers: ``runs`` (ranked; name, run, balanced_accuracy, accuracy, macro_f1, their 95 %
    intervals ``*_ci``, per-class ``recall``), ``baseline`` (majority class of the training part),
    ``paired`` (best vs each other: McNemar ``b``, ``c``, ``p``; ``delta_balanced_accuracy`` and its
    interval), ``differences`` (settings), ``resampled`` (what the bootstrap drew), ``n_test``.

    Raises
    ------
    EphysError
        Fewer than two runs, a run that is not evaluated, runs with other classes or evaluated on
        different test samples (naming them).
    """
    from .atomic import check_writable_dir, write_json
    from .page import Card, Cards, Details, Fig, Notice, Page, Table, Text, format_number

    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise EphysError("--compare needs two or more run folders (then OUT)")
    for r in runs:
        if not r.is_dir():
            raise EphysError("no such run folder", r)
    results = [_load(r, n) for r, n in zip(runs, _names(runs))]
    _check_same_test(results)
    out = check_writable_dir(Path(out), "output folder")
    first = results[0]
    order = {sid: j for j, sid in enumerate(first.ids)}
    for r in results[1:]:  # every run's samples in the first run's order
        idx = np.array([order[s] for s in r.ids])
        inv = np.argsort(idx)
        r.ids, r.y, r.pred = [r.ids[i] for i in inv], r.y[inv], r.pred[inv]
    labels = first.metrics["labels"]
    k = len(labels)
    groups, ds_labels, resampled = _groups(results)
    w = bootstrap_weights(groups, n_boot, seed)
    y = first.y

    rows = []
    for r in results:
        point = weighted_scores(np.ones(len(y)), y, r.pred, k)
        boot = weighted_scores(w, y, r.pred, k)
        rows.append({"name": r.name, "run": str(r.run), "balanced_accuracy": point["balanced_accuracy"],
                     "accuracy": point["accuracy"], "macro_f1": r.metrics.get("macro_f1"),
                     "balanced_accuracy_ci": _ci(boot["balanced_accuracy"]), "accuracy_ci": _ci(boot["accuracy"]),
                     "recall": [None if not np.isfinite(v) else float(v) for v in point["recall"]],
                     "_boot": boot["balanced_accuracy"], "_correct": r.y == r.pred})
    rows.sort(key=lambda d: -d["balanced_accuracy"])

    train_labels = [ds_labels[i] for i in first.train_ids if ds_labels.get(i)]
    if train_labels:
        vals, counts = np.unique(train_labels, return_counts=True)
        majority, where = str(vals[int(np.argmax(counts))]), "the training part's most common class"
    else:
        vals, counts = np.unique(y, return_counts=True)
        majority, where = labels[int(vals[int(np.argmax(counts))])], "the test part's most common class (no training part at hand)"
    base_pred = np.full(len(y), labels.index(majority) if majority in labels else 0)
    bp, bb = weighted_scores(np.ones(len(y)), y, base_pred, k), weighted_scores(w, y, base_pred, k)
    baseline = {"name": f"majority baseline ({majority})", "class": majority, "chosen_from": where,
                "balanced_accuracy": bp["balanced_accuracy"], "accuracy": bp["accuracy"],
                "balanced_accuracy_ci": _ci(bb["balanced_accuracy"]), "accuracy_ci": _ci(bb["accuracy"])}

    best = rows[0]
    paired = []
    for r in rows[1:]:
        b, c, p = mcnemar_exact(best["_correct"], r["_correct"])
        delta = best["_boot"] - r["_boot"]
        paired.append({"best": best["name"], "other": r["name"], "b": b, "c": c, "p": p,
                       "delta_balanced_accuracy": best["balanced_accuracy"] - r["balanced_accuracy"],
                       "delta_ci": _ci(delta), "boot_fraction_not_better": float(np.mean(delta[np.isfinite(delta)] <= 0))})
    diff_keys, diff_vals = _differences([next(x for x in results if x.name == r["name"]) for r in rows])
    numbers = {"n_test": int(len(y)), "labels": labels, "resampled": resampled, "n_boot": int(n_boot),
               "runs": [{kk: v for kk, v in r.items() if not kk.startswith("_")} for r in rows],
               "baseline": baseline, "paired": paired,
               "differences": {kk: vv for kk, vv in zip(diff_keys, diff_vals)}}

    def ci(pair):
        return f"[{format_number(pair[0])}, {format_number(pair[1])}]"

    bars = [{"name": r["name"], "value": r["balanced_accuracy"], "lo": r["balanced_accuracy_ci"][0],
             "hi": r["balanced_accuracy_ci"][1], "baseline": False} for r in rows]
    bars.append({"name": "majority baseline", "value": baseline["balanced_accuracy"],
                 "lo": baseline["balanced_accuracy_ci"][0], "hi": baseline["balanced_accuracy_ci"][1], "baseline": True})
    page = Page(f"{len(rows)} runs compared", kicker="ephys report --compare",
                pills=[f"{len(y)} test samples", f"{k} classes", f"best: {best['name']}"],
                subtitle="Ranked by balanced accuracy on the same test samples, 95 % bootstrap intervals.",
                source=str(out))
    page.section("Ranking",
                 Cards([Card("Best balanced accuracy", best["balanced_accuracy"], f"{best['name']}, 95 % "
                             f"interval {ci(best['balanced_accuracy_ci'])}", frac=best["balanced_accuracy"]),
                        Card("Majority baseline", baseline["balanced_accuracy"], f"always {majority}",
                             frac=baseline["balanced_accuracy"]),
                        Card("Test samples", len(y), resampled, small=True)]),
                 Table([[j + 1, r["name"], r["balanced_accuracy"], ci(r["balanced_accuracy_ci"]), r["accuracy"],
                         ci(r["accuracy_ci"]), r["macro_f1"]] for j, r in enumerate(rows)]
                       + [["–", baseline["name"], baseline["balanced_accuracy"], ci(baseline["balanced_accuracy_ci"]),
                           baseline["accuracy"], ci(baseline["accuracy_ci"]), None]],
                       ["rank", "run", "balanced accuracy", "95 % interval", "accuracy", "95 % interval", "macro-F1"],
                       caption=f"Intervals: percentile bootstrap, {n_boot} resamples of {resampled}. The baseline "
                               f"predicts {where}.", highlight={0}),
                 Fig(_fig_intervals(bars),
                     "balanced accuracy with intervals", "Dots: balanced accuracy; bars: 95 % bootstrap interval."),
                 Text("The intervals cover which test samples were drawn, not how another training run of the same "
                      "settings (another seed) would do: to compare settings, compare several seeds of each.",
                      muted=True))
    page.section("Paired tests",
                 Text(f"The best run ({best['name']}) against each other run on the same {len(y)} test samples: "
                      "McNemar's exact test on the samples exactly one of the two gets right, and the difference in "
                      "balanced accuracy with its paired-bootstrap interval (the same resamples for both runs)."),
                 Table([[p["other"], p["delta_balanced_accuracy"], ci(p["delta_ci"]), p["b"], p["c"],
                         f"{p['p']:.3g}"] for p in paired],
                       ["other run", "Δ balanced accuracy (best − other)", "95 % interval", "only best right",
                        "only other right", "McNemar p"]))
    page.section("Settings that differ",
                 Table([[kk, *vv] for kk, vv in zip(diff_keys, diff_vals)], ["setting", *[r["name"] for r in rows]],
                       scroll=len(diff_keys) > 16) if diff_keys else Text("The runs' settings are the same."))
    curves = _fig_curves([next(x for x in results if x.name == r["name"]) for r in rows])
    page.section("Learning curves",
                 Fig(curves, "learning curves overlaid", "Per-epoch loss of each run (validation left, training "
                     "right); early stopping keeps the epoch of lowest validation loss.") if curves else
                 Notice("No run has a history.csv (models trained without epochs)."))
    recall = np.array([[np.nan if v is None else v for v in r["recall"]] for r in rows])
    page.section("Per-class recall",
                 Table([[lab, *[r["recall"][c] for r in rows]] for c, lab in enumerate(labels)],
                       ["class", *[r["name"] for r in rows]]),
                 Fig(_fig_recall(labels, [r["name"] for r in rows], recall), "per-class recall", ""))
    page.section("Runs", Table([[r["name"], r["run"]] for r in rows], ["run", "folder"]),
                 Details.json("compare.json", numbers))
    write_json(out / "compare.json", numbers)
    return page.write(out), numbers
