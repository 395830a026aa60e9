"""Axona tetrode / Tint cut readers and spike clustering (``ephys cluster``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared
from ephys.pipelines.blocks.readers import axona
from ephys.pipelines.spikes import cluster
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


@pytest.mark.parametrize("method,features", [("hdbscan", "peaks"), ("dbscan", "peaks"), ("hdbscan", "pca")])
def test_clustering_recovers_separated_units(tmp_path, method, features):
    w, ids = _units()
    _write_axona(tmp_path / "t.1", w, np.arange(len(ids)) * 0.01)
    (tmp_path / "t_1.cut").write_text("Exact_cut_for: t spikes: 450\n" + " ".join(map(str, ids)) + "\n")
    res = cluster.cluster_tetrode(tmp_path / "t.1", tmp_path / "out", tmp_path / "t_1.cut", method=method,
                                  features=features)
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
    assert "Silhouette" in html and "ARI vs manual" in html and html.count("data:image/png;base64,") == 3
    assert {p.name for p in (tmp_path / "a" / "report_files").iterdir()} == {
        "embedding.png", "cluster_waveforms.png", "unit_waveforms.png"}
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
    ephys("--quiet", "cluster", root / "83812141.5", tmp_path / "c5", "--cut", root / "83812141_5.cut", check=0)
    m = json.loads((tmp_path / "c5" / "cluster_metrics.json").read_text())
    assert m["n_spikes"] == 5656 and -1 <= m["ari"] <= 1 and m["reference"]["n_units"] == 5
    assert m["silhouette"] is None or -1 <= m["silhouette"] <= 1
    assert (tmp_path / "c5" / "report.html").is_file()
    proc = ephys("cluster", root / "83812141.pos", tmp_path / "x", "--cut", root / "83812141_5.cut")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
