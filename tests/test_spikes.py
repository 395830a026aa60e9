"""Pipeline ``spikes``: detection on synthetic traces, waveform datasets, the seed split, 1-D models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared
from ephys.pipelines.spikes import waveforms as S
from ephys.pipelines.core.datasets import grouped_split, load_dataset, named_split
from ephys.pipelines.core.errors import EphysError

FS = 30000.0


def _spike_shape(n=42, pre=12):
    t = np.arange(n) - pre
    return -np.exp(-0.5 * ((t - 2) / 1.5) ** 2) + 0.45 * np.exp(-0.5 * ((t - 9) / 3.0) ** 2)


def _trace(seed=0, n_spikes=40, dur_s=2.0, noise_uV=10.0, amp_uV=150.0):
    """White noise + biphasic spikes at known times (>= 5 ms apart) + 50 Hz hum + DC offset."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * FS)
    x = rng.normal(0, noise_uV, n)
    times = np.sort(rng.choice(np.arange(2, n // 150 - 2), n_spikes, replace=False)) * 150
    t = np.arange(-30, 60)
    wave = -amp_uV * np.exp(-0.5 * (t / 4.0) ** 2) + 0.4 * amp_uV * np.exp(-0.5 * ((t - 14) / 8.0) ** 2)
    for s in times:
        x[s - 30:s + 60] += wave
    x += 80.0 * np.sin(2 * np.pi * 50 * np.arange(n) / FS) + 300.0
    return x, times


def test_bandpass_notch_removes_hum_and_offset_keeps_spike_band():
    n = int(FS)
    t = np.arange(n) / FS
    hum = 100 * np.sin(2 * np.pi * 50 * t) + 500.0
    band = 20 * np.sin(2 * np.pi * 1000 * t)
    y = S.bandpass_notch(hum + band, FS)
    core = slice(3000, n - 3000)
    assert np.std(y[core] - band[core]) < 1.0  # hum and DC gone, 1 kHz kept (zero phase)
    with pytest.raises(EphysError):
        S.bandpass_notch(np.zeros((10, 2)), FS)
    with pytest.raises(EphysError):
        S.bandpass_notch(np.zeros(100) * np.nan, FS)


@pytest.mark.parametrize("noise,k,exact", [("sd", 3.0, False), ("sd", 6.0, True), ("mad", 5.0, True)])
def test_detect_spikes_finds_known_times(noise, k, exact):
    x, times = _trace()
    idx, snips, thr = S.detect_spikes(x, FS, S.DetectionParams(noise=noise, k=k))
    assert thr < 0
    assert snips.shape == (idx.size, 42) and snips.dtype == np.float32
    # every true spike found, its crossing within 0.3 ms before its trough
    d = np.abs(idx[:, None] - times[None, :])
    assert np.all(d.min(axis=0) <= 9)
    if exact:  # a high enough threshold: nothing else (at 3 SD white noise crosses now and then)
        assert idx.size == times.size and np.all(d.min(axis=1) <= 9)
        # the snippet's trough sits just after the crossing (sample 12 = 0.4 ms)
        assert np.all(np.abs(snips.argmin(axis=1) - 12) <= 9)


def test_refractory_period_and_edges():
    y = np.zeros(3000)
    y[[100, 110, 140, 2990]] = -10.0  # 110 within 1 ms (30 samples) of 100; 2990 too close to the end
    y[1000:1003] = -10.0
    idx, snips, _ = S.detect_spikes(y, FS, S.DetectionParams(k=3.0), filtered=True)
    assert idx.tolist() == [100, 140, 1000]
    with pytest.raises(EphysError):
        S.detect_spikes(y, FS, S.DetectionParams(k=0), filtered=True)
    with pytest.raises(EphysError):
        S.noise_level(y, "iqr")


def _write_sets(folder: Path, channels=("9", "11", "16", "33", "40"), n_spk=12, n_bg=30, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for j, ch in enumerate(channels):
        scale = 40.0 * (1 + j)  # channels differ in gain: per-channel normalisation removes it
        spk = scale * (8 * _spike_shape()[None, :] + rng.normal(0, 1, (n_spk, 42)))
        bg = scale * (1.5 * _spike_shape()[None, :] + rng.normal(0, 1, (n_bg, 42)))
        np.save(folder / f"channel_spikes_{ch}.npy", spk)
        np.save(folder / f"channel_background_{ch}.npy", bg)
    return folder


def test_prepare_waveform_sets_layout_and_seed_split(tmp_path):
    src = _write_sets(tmp_path / "sets")
    mpath = S.prepare_waveform_sets(src, tmp_path / "ds")
    m = json.loads(mpath.read_text())
    assert m["modality"] == "waveform" and m["sample_shape"] == [42, 1] and m["fs_hz"] == 30000.0
    assert m["label_names"] == ["background", "spike"] and m["units"] == "µV"
    assert m["splits"]["seed"] == {"train": ["9", "16", "33"], "val": ["11"], "test": ["40"]}
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["manifest.json", "waveforms.npy"]
    ds = load_dataset(tmp_path / "ds")
    assert len(ds.ids) == 5 * 42 and set(ds.groups) == {"9", "11", "16", "33", "40"}
    x = ds.load([0, 41, 5])
    assert x.shape == (3, 42, 1) and x.dtype == np.float32
    raw = np.load(src / "channel_background_9.npy")
    np.testing.assert_allclose(x[0, :, 0], raw[0], rtol=1e-6)
    assert ds.labels[41] == "spike" and ds.groups[41] == "9"
    np.testing.assert_allclose(x[1, :, 0], np.load(src / "channel_spikes_9.npy")[11], rtol=1e-6)

    split = named_split(ds.groups, m["splits"], "seed")
    parts = {k: {ds.groups[i] for i in v} for k, v in split.items()}
    assert parts == {"train": {"9", "16", "33"}, "val": {"11"}, "test": {"40"}}
    with pytest.raises(EphysError, match="offered: seed"):
        named_split(ds.groups, m["splits"], "nope")
    with pytest.raises(EphysError, match="both"):
        named_split(ds.groups, {"bad": {"train": ["9"], "test": ["9"]}}, "bad")
    # the default grouped split keeps channels on one side too
    rel = grouped_split([ds.labels[i] for i in range(len(ds.ids))], ds.groups, seed=1)
    sides = [{ds.groups[i] for i in v} for v in rel.values()]
    assert all(not (a & b) for a in sides for b in sides if a is not b)


def test_channel_normalisation_uses_each_channel_alone(tmp_path):
    src = _write_sets(tmp_path / "sets")
    m = json.loads(S.prepare_waveform_sets(src, tmp_path / "ds", normalise="channel").read_text())
    ds = load_dataset(tmp_path / "ds")
    for ch in ("9", "40"):
        rows = [i for i, g in enumerate(ds.groups) if g == ch]
        raw = np.concatenate([np.load(src / f"channel_background_{ch}.npy"), np.load(src / f"channel_spikes_{ch}.npy")])
        expect = np.median(np.abs(raw)) / 0.6745
        assert m["channel_scale_uV"][ch] == pytest.approx(expect, rel=1e-5)
        np.testing.assert_allclose(ds.load(rows)[:, :, 0], raw / expect, rtol=1e-5, atol=1e-6)


def test_prepare_spikes_bad_input(tmp_path):
    src = _write_sets(tmp_path / "sets", channels=("1",))
    (src / "channel_background_1.npy").unlink()
    with pytest.raises(EphysError, match="channel 1 has no channel_background_1.npy"):
        S.prepare_waveform_sets(src, tmp_path / "ds")
    np.save(src / "channel_background_1.npy", np.zeros((3, 40)))
    with pytest.raises(EphysError, match="samples"):
        S.prepare_waveform_sets(src, tmp_path / "ds")
    assert not (tmp_path / "ds" / "manifest.json").exists()
    proc = ephys("prepare", "spikes", tmp_path / "empty-nothing", tmp_path / "ds")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such file or folder" in proc.stderr


def test_prepare_spikes_raw_trace_cli(tmp_path):
    x, times = _trace(seed=3, n_spikes=20, dur_s=1.0)
    np.save(tmp_path / "trace.npy", x)
    proc = ephys("prepare", "spikes", tmp_path / "trace.npy", tmp_path / "ds")
    assert proc.returncode == 2 and "--fs-hz" in proc.stderr
    ephys("--quiet", "prepare", "spikes", tmp_path / "trace.npy", tmp_path / "ds", "--fs-hz", 30000, "--noise", "mad",
          "--k", "5", check=0)
    ds = load_dataset(tmp_path / "ds")
    assert ds.modality == "waveform" and len(ds.ids) == 20 and ds.labelled_indices().size == 0
    t = np.array([s["t_s"] for s in ds.manifest["samples"]])
    assert np.all(np.abs(t[:, None] * FS - times[None, :]).min(axis=1) <= 9)
    assert ds.load([0, 1]).shape == (2, 42, 1)


def _check_seed_split(run: Path):
    split = json.loads((run / "split.json").read_text())
    assert {i.split("-")[0] for i in split["test"]} == {"ch40"}
    assert {i.split("-")[0] for i in split["val"]} == {"ch11"}
    assert {i.split("-")[0] for i in split["train"]} == {"ch9", "ch16", "ch33"}


def test_prepare_spikes_from_nwb_electrical_series(tmp_path):
    import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries

    x, times = _trace(seed=5, n_spikes=15, dur_s=1.0)
    data = np.stack([np.random.default_rng(9).normal(0, 10, x.size), x], axis=1)
    nwb = NWBFile(session_description="test", identifier="t",
                  session_start_time=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    dev = nwb.create_device("probe")
    grp = nwb.create_electrode_group("shank", description="s", location="HVC", device=dev)
    for _ in range(2):
        nwb.add_electrode(group=grp, location="HVC")
    region = nwb.create_electrode_table_region([0, 1], "both")
    nwb.add_acquisition(ElectricalSeries(name="raw", data=np.round(data * 4).astype(np.int16), electrodes=region,
                                         rate=FS, conversion=0.25e-6))  # stored in 0.25 µV steps
    with NWBHDF5IO(str(tmp_path / "rec.nwb"), "w") as io:
        io.write(nwb)
    xs, fs = S.read_trace(tmp_path / "rec.nwb", channel=1)
    assert fs == FS and np.allclose(xs, np.round(x * 4) / 4, atol=1e-6)
    S.prepare_raw_trace(tmp_path / "rec.nwb", tmp_path / "ds", channel=1, params=S.DetectionParams(k=6.0))
    ds = load_dataset(tmp_path / "ds")
    assert len(ds.ids) == 15 and ds.groups[0] == "rec-ch1" and ds.manifest["fs_hz"] == FS
    with pytest.raises(EphysError, match="channel 2 not in 0..1"):
        S.read_trace(tmp_path / "rec.nwb", channel=2)
    with pytest.raises(EphysError, match="no ElectricalSeries named 'lfp'"):
        S.read_trace(tmp_path / "rec.nwb", series="lfp")


def test_cnn1d_cli_chain_on_the_seed_split(tmp_path):
    src = _write_sets(tmp_path / "sets", n_spk=16, n_bg=40)
    ephys("--quiet", "prepare", "spikes", src, tmp_path / "ds", "--normalise", "channel", check=0)
    run = tmp_path / "cnn"
    ephys("--quiet", "train", "--model", "cnn1d", "--data", tmp_path / "ds", "--split", "seed", "--epochs", 2,
          "--batch-size", 64, "--lr", "0.003", "--out", run, check=0)
    _check_seed_split(run)
    ephys("--quiet", "evaluate", run, check=0)
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_test"] == 56 and 0.0 <= m["macro_f1"] <= 1.0
    ephys("--quiet", "explain", run, check=0)
    s = json.loads((run / "explain" / "summary.json").read_text())
    assert s["map_shape"] == [42] and s["n_samples"] == 56 and s["samples"] == "test split"
    z = np.load(run / "explain" / "saliency.npz")
    assert z["maps"].shape == (56, 42) and z["time_ms"][12] == pytest.approx(0.0, abs=1e-9)
    assert (run / "explain" / "examples.png").is_file() and (run / "explain" / "class_means.png").is_file()
    ephys("--quiet", "report", run, check=0)
    assert (run / "report_files" / "examples.png").is_file()
    assert "input waveform" in (run / "report.md").read_text()


def test_gru_in_process_and_split_errors(tmp_path):
    from ephys.pipelines.core.evaluation import evaluate_run
    from ephys.pipelines.core.explain import explain_run
    from ephys.pipelines.core.training import TrainConfig, train

    src = _write_sets(tmp_path / "sets", n_spk=8, n_bg=16)
    S.prepare_waveform_sets(src, tmp_path / "ds")
    run = train(TrainConfig(model="gru", data=str(tmp_path / "ds"), split="seed", epochs=1, batch_size=64,
                            lr=3e-3, out=str(tmp_path / "gru"), eager=True), log=lambda s: None)
    _check_seed_split(run)
    assert yaml_split(run) == "seed"
    m = evaluate_run(run, batch_size=256)
    assert m["n_test"] == 24 and m["labels"] == ["background", "spike"]
    out = explain_run(run, figures=False)
    assert np.load(out / "saliency.npz")["maps"].shape == (24, 42)
    with pytest.raises(EphysError, match="models that do: cnn1d, gru"):
        train(TrainConfig(model="densenet", data=str(tmp_path / "ds"), out=str(tmp_path / "x")))
    with pytest.raises(EphysError, match="no split named 'nope'"):
        train(TrainConfig(model="cnn1d", data=str(tmp_path / "ds"), split="nope", out=str(tmp_path / "y")))


def yaml_split(run: Path) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["split"]


def test_reproduce_spikes_seed_tiny(tmp_path):
    src = _write_sets(tmp_path / "sets", n_spk=8, n_bg=16)
    res = S.reproduce_seed(src, tmp_path / "R", epochs=1, batch_size=64, log=lambda s: None)
    m = json.loads((tmp_path / "R" / "metrics.json").read_text())
    assert m["macro_f1"] == res["macro_f1"] and set(m["models"]) == {"cnn1d", "gru"}
    best = max(m["models"], key=lambda k: m["models"][k]["val_macro_f1"])  # chosen on validation
    assert m["best_model"] == best and m["macro_f1"] == m["models"][best]["macro_f1"]
    assert m["reference"]["cnn1d"]["macro_f1"] == 0.8678 and m["reference"]["gru"]["macro_f1"] == 0.8202
    assert m["test_groups"] == ["40"] and m["n_test"] == 24
    for r in m["models"].values():
        assert r["inference_s_test"] > 0 and (Path(r["run"]) / "report.html").is_file()
    assert json.loads((tmp_path / "R" / "gru" / "metrics.json").read_text())["macro_f1"] == m["models"]["gru"]["macro_f1"]
    page = (tmp_path / "R" / "report.html").read_text()  # the recipe's one top-level page
    assert "ephys-page" in page and "Every model" in page and "published" in page


@needs_shared
def test_real_seed_sets_match_the_published_split_sizes(tmp_path):
    S.prepare_waveform_sets(SHARED_DATA / "spikes", tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    lab = ds.labelled_indices()
    split = named_split([ds.groups[i] for i in lab], ds.manifest["splits"], "seed")
    counts = {k: (sum(ds.labels[lab[i]] == "background" for i in v), sum(ds.labels[lab[i]] == "spike" for i in v))
              for k, v in split.items()}
    # the seed README: train 12,962 / 2,491, validation 6,835 / 819, test 4,073 / 108
    assert counts == {"train": (12962, 2491), "val": (6835, 819), "test": (4073, 108)}
    x = ds.load(np.arange(0, len(ds.ids), 997))
    assert x.shape[1:] == (42, 1) and np.isfinite(x).all()


def test_apply_refractory_matches_the_greedy_loop():
    def greedy(onsets, refr):
        keep, last = [], -np.inf
        for t in onsets:
            if t - last >= refr:
                keep.append(t)
                last = t
        return np.asarray(keep, dtype=np.int64)

    rng = np.random.default_rng(0)
    for trial in range(200):
        onsets = np.unique(rng.integers(0, 400, rng.integers(0, 60)))
        refr = int(rng.integers(0, 40))
        np.testing.assert_array_equal(S.apply_refractory(onsets, refr), greedy(onsets, refr))
    # a burst of crossings 18 samples (0.6 ms) apart keeps every other one at a 30-sample refractory
    np.testing.assert_array_equal(S.apply_refractory(np.arange(0, 180, 18), 30), [0, 36, 72, 108, 144])


def test_train_hparam_cli_stored_applied_and_validated(tmp_path):
    import yaml
    import zipfile

    from ephys.pipelines.core.models import build_model, parse_hparams

    assert parse_hparams(["width=8", "dropout=0.25", "x=1e-3", "flag=True", "name=abc", "width=16"]) == {
        "width": 16, "dropout": 0.25, "x": 1e-3, "flag": True, "name": "abc"}
    with pytest.raises(EphysError, match="KEY=VALUE"):
        parse_hparams(["width"])
    with pytest.raises(EphysError, match="width must be an integer >= 1"):
        build_model("gru", (42, 1), 2, width="abc")
    with pytest.raises(EphysError, match="dropout must be"):
        build_model("cnn1d", (42, 1), 2, dropout=1.5)
    m = build_model("gru", (42, 1), 2, bidirectional=True, pool="mean", input_norm="none", width=4)
    assert m.output_shape == (None, 2) and m.get_layer("backbone").get_layer("bigru1") is not None
    with pytest.raises(EphysError, match="pool must be one of last, mean"):
        build_model("gru", (42, 1), 2, pool="max")

    src = _write_sets(tmp_path / "sets", n_spk=8, n_bg=16)
    S.prepare_waveform_sets(src, tmp_path / "ds")
    run = tmp_path / "gru"
    ephys("--quiet", "train", "--model", "gru", "--data", tmp_path / "ds", "--split", "seed", "--epochs", 1,
          "--batch-size", 64, "--hparam", "width=8", "--hparam", "dropout=0.1", "--out", run, check=0)
    assert yaml.safe_load((run / "config.yaml").read_text())["hparams"] == {"width": 8, "dropout": 0.1}
    with zipfile.ZipFile(run / "model.keras") as z:
        cfg = json.loads(z.read("config.json"))
    units = re.findall(r'"class_name": "GRU".*?"units": (\d+)', json.dumps(cfg))
    assert units == ["8", "8"]  # the hparam reached the builder

    proc = ephys("train", "--model", "gru", "--data", tmp_path / "ds", "--split", "seed", "--hparam", "depth=3",
                 "--out", tmp_path / "bad")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no hyper-parameter depth" in proc.stderr and "accepts: dropout, width" in proc.stderr
    assert not (tmp_path / "bad").exists()
