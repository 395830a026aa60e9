"""``ephys reproduce minis-transfer``: how many labelled windows of a new preparation does the window
classifier need, from scratch and fine-tuned from a model trained on the simulation?

Data: miniML's scored granule-cell windows (``../shared/data/minis``, O'Neill et al. 2025), the
scores 0 / 1 kept, sorted by ``raw_indices`` (:func:`.minis.minis_dataset`). Folds: contiguous
blocks of ``raw_indices`` with a gap of one window on both sides of each test block
(:func:`ephys.pipelines.core.crossval.plan_folds`, scheme ``blocked``), so overlapping windows are
never on both sides. Per fold and per training size ``n``: ``n`` windows drawn at random (seeded,
both classes present) from the fold's training side; the latest 20 % of them in time are the
validation part of early stopping, the rest are fitted. Two runs on exactly the same windows,
both by the core's ``train()``:

* ``scratch``: ``cnn_bilstm`` from random weights;
* ``fine_tuned``: ``cnn_bilstm`` started from a simulation-trained run (``init``; default the
  model that ships with ephys, :func:`ephys.pipelines.events.shipped.shipped_run`), its
  convolutions frozen (``--freeze features``), the BiLSTM and the head trained.

Reported per ``n``: accuracy and balanced accuracy pooled over the folds' test windows (every
labelled window is tested once per ``n``), per fold, and the simulation-trained model with no
training on these windows (``zero_shot``). Sizes larger than a fold's training side are skipped
and said so; the largest available size (the whole training side) is always added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.atomic import write_json
from ..core.errors import EphysError

__all__ = ["run_transfer_curve"]


def _init_run(init) -> Path:
    """The run folder (holding ``model.keras``) a fine-tuning starts from."""
    if init is None:
        from .shipped import shipped_run

        init = shipped_run()
    p = Path(init)
    if (p / "runs" / "cnn_bilstm" / "model.keras").is_file():  # an events-default / events-sim output
        p = p / "runs" / "cnn_bilstm"
    if not (p / "model.keras").is_file():
        raise EphysError("no cnn_bilstm model.keras here (a run folder or an events-default output)", p)
    return p


def _draw(pool: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices of ``pool`` at random, sorted, with at least two of each class among the fitted
    (earliest 80 %) and one of each in the validation part when possible."""
    for _ in range(200):
        pick = np.sort(rng.choice(pool, size=n, replace=False))
        n_val = max(2, int(round(0.2 * n)))
        fit, val = pick[:-n_val], pick[-n_val:]
        if min(np.sum(y[fit] == 0), np.sum(y[fit] == 1)) >= 2 and len(set(y[val].tolist())) == 2:
            return pick
    return np.sort(rng.choice(pool, size=n, replace=False))


def run_transfer_curve(data, out, *, seed: int = 0, epochs: int = 40, cv_folds: int = 5, init=None,
                       sizes=(25, 50, 100, 200, 400), log=print) -> dict:
    """The ``minis-transfer`` recipe (module docstring); returns ``OUT/metrics.json``'s content."""
    import yaml

    from ..core import crossval
    from ..core.datasets import load_dataset
    from ..core.models import load_keras_model
    from ..core.training import TrainConfig, train
    from .minis import minis_dataset

    data, out = Path(data), Path(out)
    h5 = data if data.is_file() else next(iter(sorted(data.glob("*.h5"))), None)
    if h5 is None:
        raise EphysError("no miniML .h5 windows file here", data)
    src = _init_run(init)
    hparams = dict((yaml.safe_load((src / "config.yaml").read_text()) or {}).get("hparams") or {}) \
        if (src / "config.yaml").is_file() else {"width": 16, "lstm": 16}
    minis_dataset(h5, out / "windows")
    ds = load_dataset(out / "windows")
    y = ds.y(np.arange(len(ds.ids)))
    plan = crossval.plan_folds(ds, "blocked", n_folds=cv_folds, seed=seed)
    pretrained = load_keras_model(src / "model.keras", compile=False)
    rng = np.random.default_rng(seed)
    rows: dict = {}
    zero = {"correct": 0, "n": 0}
    for k, fold in enumerate(plan.folds):
        test = np.asarray(fold.test)
        p0 = np.asarray(pretrained.predict(ds.load(test), verbose=0))[:, 1] > 0.5
        zero["correct"] += int(np.sum(p0 == y[test]))
        zero["n"] += int(test.size)
        pool = np.asarray(fold.train)
        fold_sizes = sorted({n for n in sizes if n <= pool.size} | {int(pool.size)})
        for n in fold_sizes:
            pick = _draw(pool, y, n, rng)
            n_val = max(2, int(round(0.2 * n)))
            split = {"train": [ds.ids[i] for i in pick[:-n_val]], "val": [ds.ids[i] for i in pick[-n_val:]],
                     "test": [ds.ids[i] for i in test]}
            key = "all" if n == pool.size else str(n)
            for how in ("scratch", "fine_tuned"):
                cfg = TrainConfig(model="cnn_bilstm", data=str(out / "windows"), epochs=epochs, batch_size=16,
                                  lr=2e-3, seed=seed, patience=5, dropout=0.2, eager=True,
                                  out=str(out / "runs" / f"{fold.name}-n{key}-{how}"),
                                  split=f"blocked-{fold.name}-n{key}", hparams=dict(hparams),
                                  **({"init": str(src), "freeze": "features"} if how == "fine_tuned" else {}))
                run = train(cfg, split_ids=split, log=lambda *_: None)
                model = load_keras_model(run / "model.keras", compile=False)
                pred = np.asarray(model.predict(ds.load(test), verbose=0))[:, 1] > 0.5
                r = rows.setdefault((key, how), {"correct": 0, "n": 0, "tpr": [0, 0], "tnr": [0, 0], "folds": [],
                                                 "n_train": []})
                r["correct"] += int(np.sum(pred == y[test]))
                r["n"] += int(test.size)
                r["tpr"][0] += int(np.sum(pred & (y[test] == 1)))
                r["tpr"][1] += int(np.sum(y[test] == 1))
                r["tnr"][0] += int(np.sum(~pred & (y[test] == 0)))
                r["tnr"][1] += int(np.sum(y[test] == 0))
                r["folds"].append(float(np.mean(pred == y[test])))
                r["n_train"].append(int(n))
            log(f"{fold.name} n={n}: scratch {rows[(key, 'scratch')]['folds'][-1]:.3f}, fine-tuned "
                f"{rows[(key, 'fine_tuned')]['folds'][-1]:.3f} on {test.size} held-out windows")

    def summary(r):
        return {"accuracy": r["correct"] / r["n"], "balanced_accuracy":
                0.5 * (r["tpr"][0] / max(r["tpr"][1], 1) + r["tnr"][0] / max(r["tnr"][1], 1)),
                "per_fold": r["folds"], "n_tested": r["n"]}

    keys = sorted({k for k, _ in rows}, key=lambda s: (s == "all", int(s) if s != "all" else 0))
    curve = []
    for key in keys:
        a, b = rows[(key, "scratch")], rows[(key, "fine_tuned")]
        curve.append({"n_train": key if key != "all" else f"all ({min(a['n_train'])}-{max(a['n_train'])})",
                      "n_folds": len(a["folds"]), "scratch": summary(a), "fine_tuned": summary(b)})
    skipped = [n for n in sizes if all(n > len(f.train) for f in plan.folds)]
    metrics = {"data": str(h5), "n_windows": int(y.size), "class_counts": ds.manifest.get("class_counts"),
               "cv": f"{cv_folds} blocked folds of raw_indices (gap one window)", "init": str(src),
               "hparams": hparams, "epochs_max": epochs, "patience": 5, "seed": seed,
               "zero_shot": {"accuracy": zero["correct"] / zero["n"], "n_tested": zero["n"]},
               "curve": curve,
               "sizes_skipped": skipped,
               "note": (f"sizes {', '.join(map(str, skipped))} exceed the labelled windows a fold trains on "
                        f"(at most {max(len(f.train) for f in plan.folds)} of {y.size})") if skipped else ""}
    write_json(out / "metrics.json", metrics)
    return metrics
