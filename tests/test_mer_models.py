"""mer: the trajectory HMM on hand-made profiles, the MLP's in-model scaler, leave-one-patient-out."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ephys.pipelines.mer.trajectory import (DecoderSettings, decode, decode4, label_borders, length_prior, snr_prior,
                                            transitions_from_labels)


def _depths(n, step=500):
    return -10000 + step * np.arange(n)


def test_hmm_clean_profile():
    p = np.r_[np.full(8, 0.1), np.full(6, 0.9), np.full(6, 0.1)]
    d = _depths(p.size)
    res = decode(d, p)
    assert res["states"] == [0] * 8 + [1] * 6 + [2] * 6
    assert res["entry_um"] == (d[7] + d[8]) / 2 and res["exit_um"] == (d[13] + d[14]) / 2
    assert label_borders(d, p > 0.5) == (res["entry_um"], res["exit_um"])


def test_hmm_is_robust_to_single_outliers_and_order():
    p = np.r_[np.full(8, 0.1), np.full(6, 0.85), np.full(6, 0.1)]
    p[3] = 0.8   # one spurious high before the STN
    p[10] = 0.3  # one dip inside
    p[17] = 0.7  # one high after (cannot re-enter: left-to-right)
    d = _depths(p.size)
    res = decode(d, p, p_enter=0.1, p_exit=0.15)
    assert res["states"] == [0] * 8 + [1] * 6 + [2] * 6
    shuffled = np.random.default_rng(0).permutation(p.size)
    assert decode(d[shuffled], p[shuffled], 0.1, 0.15)["states"] == res["states"]
    # a threshold at 0.5 alone would have made 4 separate inside runs
    assert np.count_nonzero(np.diff((p > 0.5).astype(int)) == 1) == 4


def test_hmm_no_stn_and_transitions():
    res = decode(_depths(10), np.full(10, 0.05))
    assert res["entry_um"] is None and set(res["states"]) == {0}
    pe, px = transitions_from_labels([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    assert 0 < pe < 1 and 0 < px < 1
    assert pe == pytest.approx(3 / 9) and px == pytest.approx(2 / 9)


def _profile(regions, step=500):
    """Hand-made observations per region: the main classifier takes the SNr for STN (p high), the
    STN-vs-SNr classifier does not (q high); quiet white matter is p low (q meaningless: 1)."""
    p = {"before": 0.05, "stn": 0.9, "gap": 0.05, "snr": 0.8}
    q = {"before": 0.99, "stn": 0.1, "gap": 0.99, "snr": 0.85}
    return (_depths(len(regions), step), np.array([p[r] for r in regions]), np.array([q[r] for r in regions]))


def test_four_state_decoder_on_hand_made_profiles():
    regions = ["before"] * 8 + ["stn"] * 10 + ["gap"] + ["snr"] * 6
    d, p, q = _profile(regions)
    true_entry, true_exit = label_borders(d, [r == "stn" for r in regions])
    three = decode(d, p, 0.1, 0.2)
    assert three["exit_um"] == d[-1]  # the active SNr taken for STN: the 3-state exit is far too deep
    four = decode4(d, p, q, pi=0.3, length=(5.0, 1.0))
    assert (four["entry_um"], four["exit_um"]) == (true_entry, true_exit)
    assert four["states"] == [0] * 8 + [1] * 10 + [2] + [3] * 6 and four["snr_entry_um"] == (d[18] + d[19]) / 2
    # no gap: STN straight into the SNr; and no SNr at all: the trajectory ends in white matter
    for regs in (["before"] * 8 + ["stn"] * 10 + ["snr"] * 5, ["before"] * 8 + ["stn"] * 10 + ["gap"] * 4):
        d2, p2, q2 = _profile(regs)
        assert decode4(d2, p2, q2, 0.3, (5.0, 1.0))["exit_um"] == label_borders(d2, [r == "stn" for r in regs])[1]
    # a trajectory that stops inside the STN: exit at its last depth (the length prior's survival term)
    regs = ["before"] * 8 + ["stn"] * 6
    d3, p3, q3 = _profile(regs)
    res = decode4(d3, p3, q3, 0.3, (5.0, 1.0))
    assert res["entry_um"] == label_borders(d3, [r == "stn" for r in regs])[0] and res["exit_um"] == d3[-1]
    # one STN-looking recording in white matter, far from the STN: no early entry (length prior, emissions)
    p4 = p.copy()
    p4[2] = 0.9
    q4 = q.copy()
    q4[2] = 0.1
    assert decode4(d, p4, q4, 0.3, (5.0, 1.0))["entry_um"] == true_entry
    # nothing active: no STN
    assert decode4(d, np.full(d.size, 0.02), np.full(d.size, 0.9))["entry_um"] is None
    # the order of the input does not matter
    perm = np.random.default_rng(1).permutation(d.size)
    assert decode4(d[perm], p[perm], q[perm], 0.3, (5.0, 1.0))["states"] == four["states"]


def test_four_state_priors_from_training_labels():
    d = _depths(12)
    runs = [(d, [0] * 3 + [1] * 6 + [0] * 3), (d, [0] * 2 + [1] * 8 + [0] * 2), (d, [1] * 12)]
    mu, sd = length_prior(runs)  # the third STN reaches both ends: not a length
    assert mu == pytest.approx((3.0 + 4.0) / 2) and sd == pytest.approx(np.std([3.0, 4.0], ddof=1))
    assert length_prior([(d, [0] * 12)]) == (5.5, 1.0)
    assert snr_prior([["before", "stn", "stn", "snr"], ["stn", "gap", "snr", "snr"]]) == pytest.approx(4 / 8)
    st = DecoderSettings()
    assert 0 < st.eps < 0.5 and st.w_length >= 0


def test_mlp_scaler_limits_come_from_training_rows(tmp_path):
    from ephys.pipelines.core.layouts import write_feature_table
    from ephys.pipelines.core.models import build_model, load_keras_model
    from ephys.pipelines.core.training import TrainConfig, train

    rng = np.random.default_rng(0)
    n = 120
    X = rng.normal(size=(n, 9)) * np.arange(1, 10)
    y = (X[:, 0] > 0).astype(int)
    groups = [f"P{i % 6}" for i in range(n)]
    ids = [f"s{i}" for i in range(n)]
    write_feature_table(tmp_path / "ds", ids, X, [f"f{j}" for j in range(9)],
                        ["inside" if v else "outside" for v in y], ["outside", "inside"], groups=groups)
    train_ids = [ids[i] for i in range(n) if groups[i] in ("P0", "P1", "P2", "P3")]
    val_ids = [ids[i] for i in range(n) if groups[i] == "P4"]
    test_ids = [ids[i] for i in range(n) if groups[i] == "P5"]
    cfg = TrainConfig(model="mlp", data=str(tmp_path / "ds"), epochs=2, batch_size=16, lr=1e-2, dropout=0.0,
                      split="manual", out=str(tmp_path / "run"), eager=True)
    run = train(cfg, split_ids={"train": train_ids, "val": val_ids, "test": test_ids}, log=lambda s: None)
    net = load_keras_model(run / "model.keras")
    layer = net.get_layer("minmax")
    tr = np.array([groups[i] in ("P0", "P1", "P2", "P3") for i in range(n)])
    np.testing.assert_allclose(np.asarray(layer.minimum), X[tr].min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.maximum), X[tr].max(axis=0), rtol=1e-6)
    # predicting held-out rows does not move the limits
    net.predict(X[~tr].astype(np.float32) * 10, verbose=0)
    np.testing.assert_allclose(np.asarray(layer.maximum), X[tr].max(axis=0), rtol=1e-6)
    m = build_model("mlp", (9,), 2)
    assert [lay.units for lay in m.layers if hasattr(lay, "units")] == [7, 4, 4, 2, 2]


def test_lopo_recipe_small_cohort_no_leak(tmp_path):
    from ephys.pipelines.mer.recipe import reproduce_mer_sim

    res = reproduce_mer_sim(None, tmp_path / "rec", seed=1, epochs=2, n_patients=4, duration_s=2.0,
                            max_electrodes=1, log=lambda s: None)
    assert res["n_patients"] == 4
    for m in ("mlp", "lightgbm"):
        r = res["models"][m]
        for level in ("per_segment", "per_recording"):
            for k in ("accuracy", "majority_baseline_accuracy", "balanced_accuracy", "sensitivity", "specificity",
                      "roc_auc"):
                assert r[level][k] is None or 0.0 <= r[level][k] <= 1.0
        assert set(r["border_error_mm"]) >= {"median", "p90", "entry_median", "exit_median"}
        runs = sorted(p for p in (tmp_path / "rec" / "runs" / m).iterdir() if p.is_dir())
        assert len(runs) == 4 and all((run / "fold.json").is_file() for run in runs)
        pooled = json.loads((tmp_path / "rec" / "runs" / m / "metrics.json").read_text())
        assert pooled["complete"] and pooled["scheme"] == "lopo" and len(pooled["per_participant"]) == 4
        assert r["cross_validation"]["balanced_accuracy"] == pooled["balanced_accuracy"]
        man = json.loads((tmp_path / "rec" / "dataset" / "manifest.json").read_text())
        group_of = {s["id"]: s["group"] for s in man["samples"]}
        for run in runs:
            split = json.loads((run / "split.json").read_text())
            test_g = {group_of[s] for s in split["test"]}
            train_g = {group_of[s] for s in split["train"]} | {group_of[s] for s in split["val"]}
            assert test_g == {run.name.split("-", 1)[1]} and not (test_g & train_g)
    assert res["models"]["lightgbm"]["per_recording"]["roc_auc"] > 0.7
    a = res["artifact_removal_vs_simulator"]
    assert a["sensitivity"] > 0.8 and a["specificity"] > 0.9
    assert json.loads((tmp_path / "rec" / "metrics.json").read_text())["border_error_mm"]
    # the STN-vs-SNr classifier: leave-one-patient-out too, on its own dataset, held-out q per recording
    for m in ("mlp", "lightgbm"):
        b = res["models"][m]["borders"]
        assert set(b) == {"three_state", "four_state"}
        assert {"entry_mean", "entry_sd", "entry_p90", "exit_within_1mm"} <= set(b["four_state"])
    clf = tmp_path / "rec" / "runs" / "stn_vs_snr"
    man2 = json.loads((tmp_path / "rec" / "dataset_stn_snr" / "manifest.json").read_text())
    assert man2["feature_names"][-1] == "nrms" and set(man2["label_names"]) == {"stn", "snr"}
    group_of = {s["id"]: s["group"] for s in man2["samples"]}
    folds = sorted(p for p in clf.iterdir() if (p / "fold.json").is_file())
    assert len(folds) == 4
    for run in folds:
        split = json.loads((run / "split.json").read_text())
        assert {group_of[s] for s in split["test"]} == {run.name.split("-", 1)[1]}
        assert run.name.split("-", 1)[1] not in {group_of[s] for s in split["train"] + split["val"]}
    rows = list(csv.DictReader(open(tmp_path / "rec" / "recordings.csv")))
    assert all(r["q_snr"] != "" and r["region"] in ("above", "stn", "gap", "snr") for r in rows)
    assert 0.0 <= res["stn_vs_snr_classifier"]["roc_auc"] <= 1.0
