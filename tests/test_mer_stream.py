"""mer: the stream against the offline path, a file source, the LSL loopback."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.mer import dsp, stream, synthetic
from ephys.pipelines.mer.readers import read_input


def test_stream_equals_offline_any_chunking():
    rng = np.random.default_rng(4)
    x, _ = synthetic.simulate_recording(rng, "stn", 0.3, 6.3, 1.0, 0.4, True, True)
    offline, mask = dsp.process_fast(x)
    for sizes in ((1, 5000), (2400, 2401), (50000, 50001)):
        rs = stream.RecordingStream()
        parts, pos = [], 0
        while pos < x.size:
            n = int(rng.integers(*sizes))
            parts.append(rs.push(x[pos:pos + n]))
            pos += n
        parts.append(rs.finish())
        online = np.vstack(parts)
        assert online.shape == offline.shape
        assert rs.artifact_fraction == pytest.approx(mask.mean())
        scale = np.abs(offline).max(axis=0)
        assert np.all(np.abs(online - offline) <= 1e-3 * np.abs(offline) + 1e-3 * scale)


@pytest.mark.parametrize("fs", [20000.0, 44100.0])
def test_stream_at_other_rates_equals_offline(fs):
    """20 and 44.1 kHz input: resampled to 24 kHz chunk by chunk (state across chunks) = the offline path's
    polyphase resampling; the segments' features equal the offline features of the same recording."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(int(fs))
    x24, _ = synthetic.simulate_recording(rng, "stn", 0.3, 3.2, 1.0, 0.4, True, True)
    up, down = dsp.resample_ratio(fs)  # the recording as a device at fs would give it
    x = resample_poly(x24.astype(np.float64), down, up)
    offline, mask = dsp.process_fast(x, fs)
    r = dsp.Resampler(fs)
    parts = [r.push(x[:7]), r.push(x[7:4000]), r.push(x[4000:])] + [r.finish()]
    np.testing.assert_array_equal(np.concatenate(parts), dsp.to_24khz(x, fs))
    rs = stream.RecordingStream(fs)
    out, pos = [], 0
    while pos < x.size:
        n = int(rng.integers(1, 9000))
        out.append(rs.push(x[pos:pos + n]))
        pos += n
    out.append(rs.finish())
    online = np.vstack(out)
    assert online.shape == offline.shape and offline.shape[0] >= 3
    assert rs.artifact_fraction == pytest.approx(mask.mean())
    scale = np.abs(offline).max(axis=0)
    assert np.all(np.abs(online - offline) <= 1e-3 * np.abs(offline) + 1e-3 * scale)
    with pytest.raises(EphysError, match="sampling rate"):
        stream.RecordingStream(8000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ephys.pipelines.core.datasets import load_dataset
    from ephys.pipelines.core.training import TrainConfig, train
    from ephys.pipelines.mer.prepare import prepare_mer

    root = tmp_path_factory.mktemp("mer_stream")
    raw = synthetic.fetch_synthetic(root / "raw", n_patients=3, seed=21, duration_s=1.6, max_electrodes=1)
    prepare_mer(raw, root / "ds")
    ds = load_dataset(root / "ds")
    split = {"train": [i for i, g in zip(ds.ids, ds.groups) if g != "P03"], "val": [],
             "test": [i for i, g in zip(ds.ids, ds.groups) if g == "P03"]}
    run = train(TrainConfig(model="lightgbm", data=str(root / "ds"), out=str(root / "run"), split="manual",
                            hparams={"cv_folds": 2}), split_ids=split, log=lambda s: None)
    return raw, run


def test_stream_file_matches_offline_predictions(trained):
    raw, run = trained
    res = stream.stream_file(run, raw, seed=3)
    clf = stream.SegmentClassifier(run)
    recs, _ = read_input(raw)
    by_id = {r["recording"]: r for r in res["recordings"]}
    for r in recs[:12]:
        feats = dsp.segment_features(r.signal)
        got = by_id[r.id]
        assert got["n_segments"] == feats.shape[0]
        if feats.shape[0]:
            assert got["p_inside"] == pytest.approx(float(clf.predict(feats).mean()), abs=1e-6)
    assert len(res["trajectories"]) == 6
    for t in res["trajectories"].values():
        assert t["depth_um"] == sorted(t["depth_um"])


def test_lsl_loopback_trajectory(trained, tmp_path):
    raw, run = trained
    recs, _ = read_input(raw)
    traj = [r for r in recs if r.patient == "P03" and r.side == "LEFT"]
    # the same trajectory as a file of its own, for the offline comparison
    rows = [i for i, r in enumerate(recs) if r in traj]
    with np.load(raw / "data.npz") as fh:
        np.savez(tmp_path / "p03_left.npz", data=fh["data"][rows])
    meta = (raw / "metadata.csv").read_text().splitlines()
    (tmp_path / "p03_left.csv").write_text("\n".join([meta[0]] + [meta[i + 1] for i in rows]) + "\n")
    player = stream.play_lsl(traj, "ephys_mer_test", "ephys_mer_test_depth", speed=40)
    live = stream.stream_lsl(run, "ephys_mer_test", depth_stream="ephys_mer_test_depth", idle_s=1.5, max_s=60)
    player.join(10)
    offline = stream.stream_file(run, tmp_path / "p03_left.npz")
    key = "P03/LEFT/Central"
    (lkey, ltraj), = live["trajectories"].items()
    assert ltraj["depth_um"] == offline["trajectories"][key]["depth_um"]
    np.testing.assert_allclose(ltraj["p_inside"], offline["trajectories"][key]["p_inside"], atol=1e-6)
    assert (ltraj["entry_um"], ltraj["exit_um"]) == (offline["trajectories"][key]["entry_um"],
                                                     offline["trajectories"][key]["exit_um"])
    assert all(s["latency_ms"] >= 0 for s in live["segments"])


@needs_shared
def test_stream_cli_on_real_siginspect(trained, tmp_path):
    _, run = trained
    src = SHARED_DATA / "mer" / "siginspect"
    one_line_error(ephys("mer", "stream", run, "--source", src), "implausible", "--units")  # values of order 0.1
    proc = ephys("mer", "stream", run, "--source", src, "--units", "mV", "--out", tmp_path / "s.csv", check=0)
    text = (tmp_path / "s.csv").read_text()
    assert text.count("recording,") >= 1 and text.count("\nrecording") == 6
    assert "signal2_E1" in proc.stderr
