"""Cross-validation folds as units of work (core/crossval.py): `ephys train --fold`, `--hold-out`,
`--fold all`, `ephys aggregate`, `ephys prepare folds`, on a simulated 4-patient MER cohort with
LightGBM (no network training: seconds per fold)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ephys, one_line_error


@pytest.fixture(scope="module")
def mer4(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mer4")
    ephys("fetch", "synthetic", "--pipeline", "mer", "--size", "4", root / "raw", check=0)
    ephys("prepare", "mer", root / "raw", root / "ds", check=0)
    return root / "ds"


def test_plan_folds_schemes_never_leak(mer4):
    from ephys.pipelines.core.crossval import plan_folds, select_fold
    from ephys.pipelines.core.datasets import load_dataset
    from ephys.pipelines.core.errors import EphysError

    ds = load_dataset(mer4)
    g = np.asarray(ds.groups)
    plan = plan_folds(ds)  # the mer manifest says lopo
    assert plan.scheme == "lopo" and plan.names == ["lopo-P01", "lopo-P02", "lopo-P03", "lopo-P04"]
    for f in plan.folds:
        assert set(g[f.test]) == set(f.held_out) and not set(g[f.train]) & set(g[f.test])
    assert sorted(np.concatenate([f.test for f in plan.folds]).tolist()) == ds.labelled_indices().tolist()
    two = plan_folds(ds, "grouped", n_folds=2)
    assert len(two.folds) == 2 and all(not set(g[f.train]) & set(g[f.test]) for f in two.folds)
    assert select_fold(plan, hold_out="P03")[1].name == "lopo-P03"
    assert select_fold(plan, fold="2")[0] == 2
    with pytest.raises(EphysError, match="folds 0..3"):
        select_fold(plan, fold=7)
    with pytest.raises(EphysError, match="one recording"):
        plan_folds(ds, "blocked")


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_one_fold_then_aggregate_refuses_missing_then_all_equals_in_process(mer4, tmp_path):
    cv = tmp_path / "cv"
    ephys("train", "--model", "lightgbm", "--data", mer4, "--hold-out", "P02", "--out", cv, check=0)
    run = cv / "lopo-P02"
    fold = json.loads((run / "fold.json").read_text())
    assert fold["held_out"] == ["P02"] and fold["scheme"] == "lopo" and len(fold["folds"]) == 4
    man = json.loads((mer4 / "manifest.json").read_text())
    group_of = {s["id"]: s["group"] for s in man["samples"]}
    split = json.loads((run / "split.json").read_text())
    assert {group_of[s] for s in split["test"]} == {"P02"}
    assert "P02" not in {group_of[s] for s in split["train"] + split["val"]}

    # three folds have no finished run: refused, naming them, nothing written
    proc = ephys("aggregate", cv)
    one_line_error(proc, "3 fold(s) have no finished run", "lopo-P01", "lopo-P04")
    assert not (cv / "metrics.json").exists()
    ephys("aggregate", cv, "--allow-missing", "--out", tmp_path / "part", check=0)
    part = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert part["complete"] is False and part["missing_folds"] == ["lopo-P01", "lopo-P03", "lopo-P04"]

    for k in ("0", "lopo-P03", "3"):
        ephys("train", "--model", "lightgbm", "--data", mer4, "--fold", k, "--out", cv, check=0)
    # a finished fold is left alone
    again = ephys("train", "--model", "lightgbm", "--data", mer4, "--fold", "1", "--out", cv, check=0)
    assert "already finished" in again.stderr + again.stdout
    ephys("aggregate", cv, check=0)
    pooled = json.loads((cv / "metrics.json").read_text())
    assert pooled["complete"] and pooled["n_folds_done"] == 4 and set(pooled["per_participant"]) == {"P01", "P02", "P03", "P04"}
    labelled = [s["id"] for s in man["samples"] if s.get("label") is not None]
    assert pooled["n_test"] == len(labelled) == len(_rows(cv / "predictions.csv"))
    assert (cv / "report.html").stat().st_size > 10_000
    # the majority baseline: every held-out segment against its own fold's training-side majority
    rows = _rows(cv / "predictions.csv")
    maj = {}
    for f in pooled["per_fold"]:
        counts = json.loads((cv / f["fold"] / "fold.json").read_text())["train_class_counts"]
        maj[f["fold"]] = max(counts, key=counts.get)
    assert pooled["majority_baseline_accuracy"] == pytest.approx(np.mean([r["true"] == maj[r["fold"]] for r in rows]))
    assert set(labelled) == {r["id"] for r in rows}

    # the in-process path (every fold here, then aggregate) gives exactly the same numbers
    ephys("train", "--model", "lightgbm", "--data", mer4, "--fold", "all", "--out", tmp_path / "all", check=0)
    inproc = json.loads((tmp_path / "all" / "metrics.json").read_text())
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "majority_baseline_accuracy",
              "confusion_matrix", "per_participant"):
        assert inproc[k] == pooled[k], k


def test_fold_errors_are_one_line(mer4, tmp_path):
    one_line_error(ephys("train", "--model", "lightgbm", "--data", mer4, "--fold", "9", "--out", tmp_path / "x"),
                   "--fold 9", "lopo-P01")
    one_line_error(ephys("train", "--model", "lightgbm", "--data", mer4, "--hold-out", "P99", "--out", tmp_path / "x"),
                   "P99", "P01")
    one_line_error(ephys("train", "--model", "lightgbm", "--data", mer4, "--fold", "0", "--cv", "nope"), "--cv")
    assert not (tmp_path / "x").exists()
    one_line_error(ephys("aggregate", tmp_path), "holds none")
    proc = ephys("prepare", "folds", mer4, "--models", "mlp lightgbm", "--tasks-file", tmp_path / "t.tsv", check=0)
    assert proc.stdout.strip() == "8"
    rows = (tmp_path / "t.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["task", "dataset", "model", "fold"] and len(rows) == 9


def test_prepare_events_windows_grouped_by_recording(tmp_path):
    ephys("fetch", "synthetic", "--pipeline", "events", "--size", "6", tmp_path / "raw", check=0)
    ephys("prepare", "events", tmp_path / "raw", tmp_path / "ds", check=0)
    man = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert man["modality"] == "event_window" and len({s["group"] for s in man["samples"]}) == 6
    assert {s["label"] for s in man["samples"]} == {"event", "no_event"}
    # the same call again is a no-op; other settings into the same folder are refused
    ephys("prepare", "events", tmp_path / "raw", tmp_path / "ds", check=0)
    one_line_error(ephys("prepare", "events", tmp_path / "raw", tmp_path / "ds", "--seed", "3"), "other parameters", "seed 0 -> 3", "--force")
    one_line_error(ephys("prepare", "events", tmp_path, tmp_path / "ds2"), "recordings.csv")
    assert not (tmp_path / "ds2").exists()
    # 6 recordings: participant-grouped 5-fold over recordings
    assert ephys("prepare", "folds", tmp_path / "ds", check=0).stdout.strip() == "5"


def test_training_leaves_no_dataset_alive(mer4, tmp_path):
    """keras keeps the training PyDataset alive after fit (tf.data's generator registry): the
    core must not let it hold the Dataset (memory map + manifest), or every fold trained in one
    process stays in memory (16.7 GB over lfp-ratgps's folds before this was fixed)."""
    import gc

    from ephys.pipelines.core.crossval import train_fold
    from ephys.pipelines.core.datasets import Dataset
    from ephys.pipelines.core.training import TrainConfig

    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, Dataset)}  # other tests' (same worker)
    for k in range(2):
        cfg = TrainConfig(model="mlp", data=str(mer4), epochs=1, batch_size=256, lr=3e-3, dropout=0.0,
                          eager=True, out=str(tmp_path / "cv"))
        train_fold(cfg, fold=k, log=lambda s: None)
        gc.collect()
        left = [o for o in gc.get_objects() if isinstance(o, Dataset) and id(o) not in before]
        assert not left, f"a Dataset outlived fold {k}"


def test_cross_validate_models_pools_every_fold_of_several_models(mer4, tmp_path):
    """The in-process multi-model cross-validation (what pipeline recipes use): each model holds out
    every labelled sample once, on the scheme's folds; validation comes from the training side; a
    capped fit part keeps every positive; the Youden threshold is written to each run."""
    from ephys.pipelines.core.crossval import CVModel, cross_validate_models, plan_folds
    from ephys.pipelines.core.datasets import load_dataset
    from ephys.pipelines.core.training import TrainConfig

    ds = load_dataset(mer4)
    plan = plan_folds(ds, "lopo")
    models = [CVModel("lgb", TrainConfig(model="lightgbm", seed=0)),
              CVModel("lgb-small", TrainConfig(model="lightgbm", seed=0, hparams={"num_leaves": 4}))]
    cap = 40
    res = cross_validate_models([ds], models, tmp_path, scheme="lopo", max_fit=cap, threshold="youden",
                                prior_shift=True, log=lambda s: None)
    lab = ds.labelled_indices()
    assert res.plans[0].names == plan.names
    for name in ("lgb", "lgb-small"):
        h = res.held_out[name]
        assert sorted(h.index.tolist()) == lab.tolist()
        for f in plan.folds:
            assert sorted(h.index[h.fold == f.name].tolist()) == f.test.tolist()
        assert np.isfinite(h.threshold).all() and np.allclose(h.proba.sum(axis=1), 1.0)
    assert not np.array_equal(res.held_out["lgb"].p, res.held_out["lgb-small"].p)
    group_of = dict(zip(ds.ids, ds.groups))
    label_of = dict(zip(ds.ids, ds.labels))
    positive = ds.label_names[1]
    for f in plan.folds:
        run = tmp_path / "runs" / mer4.name / "lgb" / f.name
        split = json.loads((run / "split.json").read_text())
        g = {k: {group_of[i] for i in v} for k, v in split.items()}
        assert g["test"] == set(f.held_out) and not g["test"] & (g["train"] | g["val"]) and not g["train"] & g["val"]
        expected = {i for i in ds.ids if label_of[i] == positive and group_of[i] not in g["test"] | g["val"]}
        assert {i for i in split["train"] if label_of[i] == positive} == expected
        assert len(split["train"]) <= max(cap, 2 * len(expected))  # the first class drawn up to the cap
        before = [i for i in ds.ids if label_of[i] and group_of[i] not in g["test"] | g["val"]]
        assert len(split["train"]) < len(before)  # the cap did bite
        assert 0.0 <= json.loads((run / "decision.json").read_text())["threshold"] <= 1.0
