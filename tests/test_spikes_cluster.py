"""Axona tetrode / Tint cut readers and spike clustering (``ephys cluster``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.blocks.readers import axona
from ephys.pipelines.spikes import cluster, cluster_quality
from ephys.pipelines.core.errors import EphysError


def _write_axona(path, waveforms, times_s, timebase=96000):
    n, n_ch, n_s = waveforms.shape
    head = (f"trial_date today\r\nnum_chans {n_ch}\r\ntimebase {timebase} hz\r\nbytes_per_timestamp 4\r\n"
            f"samples_per_spike {n_s}\r\nsample_rate 48000 hz\r\nbytes_per_sample 1\r\n"
            f"spike_format t,ch1,t,ch2,t,ch3,t,ch4\r\nnum_spikes {n}          \r\ndata_start").encode()
    ts = np.round(np.asarray(times_s) * timebase).astype(">u4")
    rec = np.zeros((n, n_ch, 4 + n_s), np.uint8)
    rec[:, :, :4] = ts.view(np.uint8).reshape(n, 1, 4)
    rec[:, :, 4:] = waveforms.astype(np.int8).view(np.uint8)
    path.write_bytes(head + rec.tobytes() + b"\r\ndata_end\r\n")


def _units(seed=0, n_per=150):
    """Three units with distinct amplitude ratios over 4 channels, plus noise, int8 range."""
    rng = np.random.default_rng(seed)
    shape = np.exp(-0.5 * ((np.arange(50) - 10) / 2.0) ** 2) - 0.3 * np.exp(-0.5 * ((np.arange(50) - 20) / 5.0) ** 2)
    gains = np.array([[90, 30, 20, 10], [20, 90, 40, 20], [15, 20, 30, 100]], float)
    w, ids = [], []
    for u, g in enumerate(gains):
        w.append(g[None, :, None] * shape[None, None, :] + rng.normal(0, 4, (n_per, 4, 50)))
        ids += [u + 1] * n_per
    w = np.clip(np.concatenate(w), -128, 127).round()
    return w, np.array(ids)


def test_axona_roundtrip_and_cut(tmp_path):
    w, ids = _units()
    t = np.sort(np.random.default_rng(1).uniform(0, 100, len(ids)))
    _write_axona(tmp_path / "t.1", w, t)
    s = axona.read_tetrode(tmp_path / "t.1")
    assert s.waveforms.shape == (450, 4, 50) and s.fs_hz == 48000
    np.testing.assert_array_equal(s.waveforms, w.astype(np.float32))
    np.testing.assert_allclose(s.times_s, t, atol=1 / 96000)
    (tmp_path / "t_1.cut").write_text("n_clusters: 3\n Exact_cut_for: t spikes: 450\n" + " ".join(map(str, ids)) + "\n")
    np.testing.assert_array_equal(axona.read_cut(tmp_path / "t_1.cut", 450), ids)
    with pytest.raises(EphysError, match="expected 449"):
        axona.read_cut(tmp_path / "t_1.cut", 449)
    (tmp_path / "bad.1").write_bytes(b"num_spikes 3\r\n")
    with pytest.raises(EphysError, match="data_start"):
        axona.read_tetrode(tmp_path / "bad.1")


@pytest.mark.parametrize("method,features", [("gmm", "features"), ("isosplit", "features"), ("hdbscan", "peaks"),
                                             ("dbscan", "peaks"), ("hdbscan", "pca")])
def test_clustering_recovers_separated_units(tmp_path, method, features):
    w, ids = _units()
    _write_axona(tmp_path / "t.1", w, np.arange(len(ids)) * 0.01)
    (tmp_path / "t_1.cut").write_text("Exact_cut_for: t spikes: 450\n" + " ".join(map(str, ids)) + "\n")
    kw = {} if features == "features" else {"n_dims": 3}
    res = cluster.cluster_tetrode(tmp_path / "t.1", tmp_path / "out", tmp_path / "t_1.cut", method=method,
                                  features=features, **kw)
    assert res["n_clusters"] == 3 and res["ari"] > 0.9 and res["units_only"]["ari"] > 0.9
    rows = (tmp_path / "out" / "clusters.csv").read_text().splitlines()
    assert rows[0] == "spike,time_s,cluster" and len(rows) == 451
    assert json.loads((tmp_path / "out" / "cluster_metrics.json").read_text())["ari"] == res["ari"]
    with pytest.raises(EphysError, match="unknown clustering method"):
        cluster.cluster_embedding(np.zeros((20, 2)), "kmeans")


def test_autoencoder_embedding_unsupervised_deterministic_and_reported(tmp_path):
    w, ids = _units(n_per=80)
    _write_axona(tmp_path / "t.1", w, np.arange(len(ids)) * 0.01)
    (tmp_path / "t_1.cut").write_text("Exact_cut_for: t spikes: 240\n" + " ".join(map(str, ids)) + "\n")
    kw = dict(method="hdbscan", features="autoencoder", n_dims=3, seed=3, ae_epochs=40, ae_batch_size=32,
              min_cluster_size=20)
    res = cluster.cluster_tetrode(tmp_path / "t.1", tmp_path / "a", tmp_path / "t_1.cut", **kw)
    # the cut is only compared with: without it, the same embedding and clusters
    res2 = cluster.cluster_tetrode(tmp_path / "t.1", tmp_path / "b", None, report=False, **kw)
    ea, eb = np.load(tmp_path / "a" / "embedding.npy"), np.load(tmp_path / "b" / "embedding.npy")
    assert ea.shape == (240, 3)
    np.testing.assert_allclose(ea, eb, rtol=1e-5, atol=1e-5)  # same seed -> same embedding
    assert (tmp_path / "a" / "clusters.csv").read_text() == (tmp_path / "b" / "clusters.csv").read_text()
    assert res["n_clusters"] == res2["n_clusters"] == 3 and res["ari"] > 0.9
    assert res["autoencoder"]["hidden"] == 100 and res["autoencoder"]["explained_variance"] > 0.5
    assert 0.5 < res["silhouette"] <= 1 and res["silhouette"] == res2["silhouette"]
    assert res["reference"]["silhouette"] > 0.5 and "ari" not in res2
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Silhouette" in html and "ARI vs manual" in html and html.count("data:image/png;base64,") == 4
    assert {p.name for p in (tmp_path / "a" / "report_files").iterdir()} == {
        "embedding.png", "cluster_waveforms.png", "unit_waveforms.png", "agreement_matrix.png"}
    assert "comparison" in res and "comparison" not in res2
    with pytest.raises(EphysError, match="unknown embedding"):
        cluster.cluster_tetrode(tmp_path / "t.1", tmp_path / "c", features="tsne")


def test_silhouette_excludes_noise_and_needs_two_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2)), rng.uniform(-20, 20, (30, 2))])
    lab = np.array([0] * 50 + [1] * 50 + [-1] * 30)
    s = cluster.silhouette(x, lab)
    assert s > 0.9  # the scattered noise points would pull it down if they were counted
    assert cluster.silhouette(x, np.where(lab == 1, 0, lab)) is None  # one cluster left
    assert cluster.silhouette(x, lab + 1, noise=0) == s  # Tint convention: 0 = noise


def test_kdistance_eps_between_within_and_between_cluster_distances():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(10, 0.1, (200, 2))])
    eps = cluster.kdistance_eps(x, 5)
    assert 0.01 < eps < 5.0


@needs_shared
def test_real_ratgps_tetrodes_and_cli(tmp_path):
    root = SHARED_DATA / "lfp_spikes" / "ratgps"
    for tet, n in ((5, 5656), (7, 13432)):
        s = axona.read_tetrode(root / f"83812141.{tet}")
        c = axona.read_cut(root / f"83812141_{tet}.cut", len(s.times_s))
        assert s.waveforms.shape == (n, 4, 50) and 1190 < s.times_s[-1] < 1202
        assert np.all(np.diff(s.times_s) >= 0) and c.min() == 0
    ephys("--quiet", "spikes", "cluster", root / "83812141.5", tmp_path / "c5", "--cut", root / "83812141_5.cut", check=0)
    m = json.loads((tmp_path / "c5" / "cluster_metrics.json").read_text())
    assert m["n_spikes"] == 5656 and -1 <= m["ari"] <= 1 and m["reference"]["n_units"] == 5
    assert m["silhouette"] is None or -1 <= m["silhouette"] <= 1
    assert (tmp_path / "c5" / "report.html").is_file()
    proc = ephys("spikes", "cluster", root / "83812141.pos", tmp_path / "x", "--cut", root / "83812141_5.cut")
    one_line_error(proc, "83812141.pos", "position file")
    m7 = cluster.cluster_tetrode(root / "83812141.7", tmp_path / "c7", root / "83812141_7.cut", report=False)
    # the frozen default on the tetrodes it was chosen on (not held out): the three of issue 13's goals it
    # meets -- tetrode 7 units-only >= 0.8, all spikes above the first default's (hdbscan on peaks: 0.107 /
    # 0.119 on tetrodes 5 / 7); tetrode 5 units-only (goal 0.6) is missed, still above the first default's 0.073
    assert m["method"] == "gmm" and m["feature_kinds"] == ["logp2p"] and m["entropy_merge_min_gain"] == 0.2
    assert m7["units_only"]["ari"] >= 0.8 and m7["ari"] > 0.119 and m["ari"] > 0.107
    assert m["units_only"]["ari"] > 0.2
    assert len(m7["quality"]) == m7["n_clusters"] and len(m7["confusion"]["best_match"]) == 3
    assert m7["n_entropy_merges"] >= 1 and m7["n_clusters"] < m7["k_bic"]
    # SpikeInterface's comparison (measured 2026-12-08): tetrode 7's three cut units are each well detected once
    # the cut's cluster-0 spikes are left out (accuracy 0.994-0.999); with them kept, our clusters absorb them
    assert m7["comparison_units_only"]["well_detected"] == 3 and m7["comparison_units_only"]["mean_accuracy"] > 0.95
    assert m7["comparison"]["mean_accuracy"] < m7["comparison_units_only"]["mean_accuracy"]
    assert m["comparison"]["n_gt_units"] == 5 and 0 <= m["comparison"]["mean_accuracy"] <= 1


def test_waveform_features_per_channel_standardised_dead_channel_dropped():
    w, _ = _units(n_per=60)
    w[:, 3, :] = 0.0  # a grounded wire
    f, names = cluster.waveform_features(w, fs_hz=48000.0, n_pcs=3)
    assert f.shape == (180, 3 * 8) and len(names) == 24 and not any(n.startswith("ch4") for n in names)
    np.testing.assert_allclose(f.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(f.std(axis=0), 1, atol=1e-9)
    # peak-to-trough width in ms: the template peaks at sample 10 and its trough after it is near 20
    raw, _ = cluster.waveform_features(w[:, :1], kinds=("width",))
    wid = np.array([(np.argmin(x[np.argmax(x):]) ) / 48.0 for x in w[:, 0]])
    assert np.corrcoef(raw[:, 0], wid)[0, 1] > 0.999 and 0.1 < np.median(wid) < 0.4
    with pytest.raises(EphysError, match="unknown feature kind"):
        cluster.waveform_features(w, kinds=("slope",))


def test_gmm_bic_and_isosplit_choose_the_number_of_clusters_and_noise_rule():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [8, 0], [0, 8], [8, 8]], float)
    x = np.concatenate([rng.normal(c, 1.0, (150, 2)) for c in centres])
    truth = np.repeat(np.arange(4), 150)
    from sklearn.metrics import adjusted_rand_score

    for method in ("gmm", "isosplit"):
        lab, params = cluster.cluster_embedding(x, method, seed=1)
        assert len(set(lab.tolist()) - {-1}) == 4 and adjusted_rand_score(truth, lab) > 0.95, (method, params)
    lab, facts = cluster.gmm_bic(x, max_k=8)
    assert facts["k"] == 4 and min(facts["bic"], key=facts["bic"].get) == 4
    # outliers: 5 points far from every cluster, and a cluster of 10 points, are noise
    far = np.array([[40, 40], [-40, 30], [30, -40], [50, 0], [0, 60]], float)
    tiny = rng.normal([30, 30], 0.5, (10, 2))
    x2 = np.concatenate([x, far, tiny])
    raw = np.concatenate([truth, [0, 1, 2, 3, 0], np.full(10, 4)])
    lab2, rule = cluster.outlier_noise(x2, raw, p_outlier=1e-3, min_cluster_size=30)
    assert np.all(lab2[600:] == -1) and rule["n_small"] == 10 and rule["n_outliers"] >= 5
    assert (lab2[:600] == -1).mean() < 0.01 and "Mahalanobis" in rule["noise_rule"]


def test_quality_metrics_separate_a_clean_unit_from_a_mixed_cluster():
    rng = np.random.default_rng(0)
    clean = rng.normal([10, 0, 0], 1.0, (300, 3))
    a, b = rng.normal([0, 0, 0], 1.0, (300, 3)), rng.normal([0.5, 0, 0], 1.0, (300, 3))
    x = np.concatenate([clean, a, b])
    lab = np.repeat([0, 1, 2], 300)
    iso0, lr0 = cluster_quality.isolation_and_lratio(x, lab, 0)
    iso1, lr1 = cluster_quality.isolation_and_lratio(x, lab, 1)
    assert iso0 > 50 > 20 > iso1 and lr0 < 1e-3 < 0.1 < lr1
    # isolation distance by its definition: the 300th smallest Mahalanobis distance outside the cluster
    mu, icov = clean.mean(0), np.linalg.inv(np.cov(clean, rowvar=False))
    d2 = np.sort([(v - mu) @ icov @ (v - mu) for v in x[300:]])
    assert iso0 == pytest.approx(d2[299], rel=1e-6)
    t = np.array([0.0, 0.001, 0.1, 0.2, 0.2015, 0.5])  # 2 of 5 intervals under 2 ms
    assert cluster_quality.isi_violation_fraction(t) == pytest.approx(0.4)
    assert cluster_quality.isi_violation_fraction(t[:1]) is None


def test_confusion_table_and_best_match_precision_recall():
    ref = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    pred = np.array([-1, 5, 5, 5, 5, 7, 7, 7, 7, 5])
    c = cluster_quality.confusion(pred, ref)
    assert c["clusters"] == [-1, 5, 7] and c["units"] == [0, 1, 2]
    assert c["table"] == [[1, 0, 0], [1, 3, 1], [0, 1, 3]]
    b1, b2 = c["best_match"]
    assert (b1["unit"], b1["cluster"], b1["precision"], b1["recall"]) == (1, 5, 0.6, 0.75)
    assert (b2["unit"], b2["cluster"], b2["precision"], b2["recall"]) == (2, 7, 0.75, 0.75)


def test_default_run_writes_quality_confusion_and_warns_on_one_cluster(tmp_path):
    w, ids = _units()
    _write_axona(tmp_path / "t.1", w, np.arange(len(ids)) * 0.01)
    (tmp_path / "t_1.cut").write_text("Exact_cut_for: t spikes: 450\n" + " ".join(map(str, ids)) + "\n")
    proc = ephys("spikes", "cluster", tmp_path / "t.1", tmp_path / "out", "--cut", tmp_path / "t_1.cut", check=0)
    assert "warning" not in proc.stderr
    m = json.loads((tmp_path / "out" / "cluster_metrics.json").read_text())
    assert m["method"] == "gmm" and m["embed"] == "features" and m["n_clusters"] == 3 and m["warning"] is None
    assert m["units_only"]["ari"] > 0.9 and {"ari", "nmi", "units_only", "confusion"} <= set(m)
    assert all(b["precision"] > 0.9 and b["recall"] > 0.9 for b in m["confusion"]["best_match"])
    q = m["quality"]
    assert len(q) == 3 and all(r["n_spikes"] >= 140 and r["snr"] > 3 and r["isolation_distance"] > 20 for r in q)
    assert all(r["looks_like"] == "single unit" for r in q)
    assert all(r["isi_violation_fraction"] == 0.0 and r["rate_hz"] == pytest.approx(r["n_spikes"] / 4.49, rel=0.01)
               for r in q)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Isolation distance" in html and "L-ratio" in html and "Best match" in html
    # SpikeInterface's comparison with the cut's units as ground truth: three clean units, all well detected
    c = m["comparison"]
    assert c["n_gt_units"] == 3 and c["well_detected"] == 3 and c["mean_accuracy"] > 0.95
    assert c["overmerged"] == c["redundant"] == c["false_positive"] == 0
    assert len(c["agreement"]["scores"]) == 3 and "well detected" in proc.stdout + proc.stderr
    assert "Agreement matrix" in html and 'alt="agreement matrix"' in html
    # one unit only: one cluster, and one line says so with a hint (exit 0: the run itself worked)
    one = w[ids == 1]
    _write_axona(tmp_path / "u.1", one, np.arange(len(one)) * 0.01)
    proc = ephys("cluster", tmp_path / "u.1", tmp_path / "one", check=0)  # the old spelling, kept one release
    warn = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "1 cluster" in warn[0] and "try" in warn[0]
    assert "`ephys cluster` is now `ephys spikes cluster`" in proc.stderr


def test_comparison_with_a_cut_perfect_merged_split_and_noise():
    from ephys.pipelines.spikes.compare import compare_labels

    rng = np.random.default_rng(0)
    t = np.arange(800) * 0.01 + rng.uniform(0, 0.002, 800)  # 10 ms apart: no chance coincidences within 0.4 ms
    ref = np.repeat([0, 1, 2, 3], 200)  # Tint cluster 0 is noise, left out of the ground truth
    perfect = np.where(ref == 0, -1, ref + 10)
    c, _ = compare_labels(t, 48000.0, perfect, ref)
    assert c["n_gt_units"] == 3 and c["mean_accuracy"] == 1.0 and c["well_detected"] == 3
    assert c["overmerged"] == c["redundant"] == c["false_positive"] == 0
    assert [p["matched_unit"] for p in c["per_unit"]] == [11, 12, 13]
    assert c["agreement"]["scores"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    merged = np.where(ref == 3, 12, perfect)  # units 2 and 3 in one cluster
    c, _ = compare_labels(t, 48000.0, merged, ref)
    assert c["overmerged"] == 1 and c["well_detected"] == 1 and c["n_units"] == 2
    assert sorted(p["accuracy"] for p in c["per_unit"]) == [0.0, 0.5, 1.0]
    split = perfect.copy()
    split[np.flatnonzero(ref == 1)[:40]] = 19  # a fifth of unit 1 in its own cluster: redundant
    split[ref == 0] = 20  # the cut's noise as one cluster: matches no unit, a false positive
    c, _ = compare_labels(t, 48000.0, split, ref)
    assert c["redundant"] == 1 and c["false_positive"] == 1 and c["well_detected"] == 3
    u1 = c["per_unit"][0]
    assert (u1["tp"], u1["fn"], u1["fp"], u1["recall"]) == (160, 40, 0, 0.8)


def test_outcome_warning_rules():
    assert cluster.outcome_warning({"n_spikes": 100, "n_clusters": 3, "n_noise": 10}) is None
    assert "0 clusters" in cluster.outcome_warning({"n_spikes": 100, "n_clusters": 0, "n_noise": 100})
    assert "called noise" in cluster.outcome_warning({"n_spikes": 100, "n_clusters": 3, "n_noise": 51})


@pytest.mark.parametrize("name,kind", [("t.eeg", "EEG"), ("t.eeg2", "EEG"), ("t.pos", "position"), ("t.set", "settings")])
def test_non_tetrode_files_are_named_as_such(tmp_path, name, kind):
    (tmp_path / name).write_bytes(b"trial_date x\r\ndata_start" + bytes(100))
    with pytest.raises(EphysError, match=f"{kind}.*not a tetrode"):
        cluster.cluster_tetrode(tmp_path / name, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_merge_unimodal_joins_an_over_split_cloud_keeps_distinct_units():
    rng = np.random.default_rng(0)
    # one elongated cloud cut into 3 pieces (an over-split, as a mixture does to a non-Gaussian cloud), a separate blob
    slab = np.column_stack([rng.normal(0, 3.0, 900), rng.normal(0, 1.0, 900)])
    blob = rng.normal([0, 9], 1.0, (300, 2))
    x = np.concatenate([slab, blob])
    split = np.concatenate([np.digitize(slab[:, 0], [-2, 2]), np.full(300, 3)])  # the slab cut in 3 pieces
    lab, facts = cluster.merge_unimodal(x, split, dip_threshold=2.0)
    assert len(set(lab[:900].tolist())) == 1 and set(lab[900:].tolist()) == {3}, facts
    assert facts["n_merges"] == 2 and "discriminant" in facts["merge_rule"]
    off, facts0 = cluster.merge_unimodal(x, split, dip_threshold=0.0)
    np.testing.assert_array_equal(off, split)
    assert facts0["n_merges"] == 0
    # two touching but distinct Gaussians (a dip between them) are not merged
    two = np.concatenate([rng.normal([0, 0], 1.0, (400, 2)), rng.normal([5, 0], 1.0, (400, 2))])
    lab2, _ = cluster.merge_unimodal(two, np.repeat([0, 1], 400), dip_threshold=2.0)
    assert set(lab2.tolist()) == {0, 1}


def test_p2p_feature_is_peak_minus_trough():
    w, _ = _units(n_per=40)
    raw, names = cluster.waveform_features(w[:, :2], kinds=("p2p",))
    p2p = w[:, :2].max(axis=2) - w[:, :2].min(axis=2)
    assert names == ["ch1 p2p", "ch2 p2p"]
    np.testing.assert_allclose(raw, (p2p - p2p.mean(axis=0)) / p2p.std(axis=0), atol=1e-9)


def test_logp2p_feature_is_log_amplitude_and_rejects_unknown_kinds():
    w, _ = _units(n_per=40)
    raw, names = cluster.waveform_features(w[:, :2], kinds=("logp2p",))
    lp = np.log1p(w[:, :2].max(axis=2) - w[:, :2].min(axis=2))
    assert names == ["ch1 log_p2p", "ch2 log_p2p"]
    np.testing.assert_allclose(raw, (lp - lp.mean(axis=0)) / lp.std(axis=0), atol=1e-9)
    # the base set (no names given) does not repeat p2p as logp2p
    _, base = cluster.waveform_features(w, n_pcs=1)
    assert not any("log_p2p" in n for n in base) and "logp2p" in cluster.FEATURE_KINDS



def test_min_posterior_sends_ambiguous_spikes_between_components_to_noise():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([0, 0], 1.0, (300, 2)), rng.normal([4, 0], 1.0, (300, 2))])
    lab0, p0 = cluster.cluster_embedding(x, "gmm", max_k=4, min_posterior=0.0)
    lab9, p9 = cluster.cluster_embedding(x, "gmm", max_k=4, min_posterior=0.99)
    assert p0["k_bic"] == p9["k_bic"] == 2 and p0["n_ambiguous"] == 0 and set(lab0.tolist()) - {-1} == {0, 1}
    assert (lab0 == -1).sum() < 5  # the outlier rule alone: a few far tails
    amb = lab9 == -1
    # the spikes dropped are the ones near the midpoint between the two means, not the cores
    assert p9["n_ambiguous"] > 10 and amb.sum() >= p9["n_ambiguous"]
    assert np.median(np.abs(x[amb, 0] - 2.0)) < 0.8 < np.median(np.abs(x[~amb, 0] - 2.0))


def test_merge_entropy_joins_overlapping_components_keeps_a_separate_one():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.7, 200)  # two components that share these spikes, a third that owns its own
    proba = np.concatenate([np.column_stack([a, 1 - a, np.zeros(200)]),
                            np.column_stack([np.zeros(100), np.full(100, 1e-4), np.full(100, 1 - 1e-4)])])
    lab, p, facts = cluster.merge_entropy(proba, min_gain=0.2)
    assert facts["n_entropy_merges"] == 1 and p.shape == (300, 2)
    assert len(set(lab[:200].tolist())) == 1 and set(lab[:200].tolist()).isdisjoint(lab[200:].tolist())
    assert 0.5 < facts["entropy_merges"][0][1] < np.log(2) + 1e-9
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    lab0, p0, f0 = cluster.merge_entropy(proba, min_gain=0.0)
    assert f0["n_entropy_merges"] == 0 and p0.shape == (300, 3)
    # through the mixture: an elongated uniform cloud (several Gaussian components) and a far blob
    x = np.concatenate([rng.uniform([0, 0], [12, 1], (900, 2)), rng.normal([6, 8], 0.3, (200, 2))])
    raw, params = cluster.cluster_embedding(x, "gmm", max_k=8, merge_entropy_gain=0.0)
    merged, mparams = cluster.cluster_embedding(x, "gmm", max_k=8, merge_entropy_gain=0.1)
    assert params["k_bic"] > 2 and mparams["n_entropy_merges"] >= 1
    assert len(set(merged.tolist()) - {-1}) < len(set(raw.tolist()) - {-1})
    far = merged[900:][merged[900:] != -1]
    assert len(set(far.tolist())) == 1 and far[0] not in set(merged[:900].tolist())
