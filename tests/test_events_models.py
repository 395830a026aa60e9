"""events pipeline: each model on a small simulated set, the recipes end to end (tiny), the real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    from ephys.pipelines.events.events_sim import run_events_sim

    out = tmp_path_factory.mktemp("evsim")
    res = run_events_sim(None, out, epochs=1, duration_s=2.0, n_per_combo=2, n_extra_train=0, n_calibration=1,
                         log=lambda *_: None)
    return out, res


def test_model_shapes():
    from ephys.pipelines.events.models import build_autoencoder, build_cnn_bilstm, build_unet1d
    from ephys.pipelines.core.errors import EphysError

    x = np.random.default_rng(0).random((2, 600, 1)).astype("float32")
    assert build_cnn_bilstm((600, 1), 2, width=4, lstm=4)(x).shape == (2, 2)
    p = np.zeros((2, 1024, 1), "float32")
    assert build_unet1d((1024, 1), width=4, depth=2)(p).shape == (2, 1024, 1)
    assert build_autoencoder((256, 1), width=4)(p[:, :256]).shape == (2, 256, 1)
    from ephys.pipelines.core.models import build_model

    with pytest.raises(EphysError, match="has no hyper-parameter colour"):  # checked once, in the core
        build_model("unet1d", (1024, 1), 1, colour=3)


def test_cnn_bilstm_registered_for_window_modality():
    from ephys.pipelines.core.models import check_modality, models_for_modality

    assert models_for_modality("event_window") == ["cnn_bilstm"]
    assert check_modality("miniml", "event_window") == "cnn_bilstm"


def test_events_sim_end_to_end(sim_run):
    out, res = sim_run
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["methods"]) == {"cnn_bilstm", "unet1d", "autoencoder", "threshold"}
    for name, e in m["methods"].items():
        assert 0.0 <= e["f1"] <= 1.0
        assert set(e["by_snr"]) == {"2.5", "5", "10"}
        assert e["seconds_per_minute"] > 0
    assert set(m["per_snr"]["unet1d"]["10"]) == {"f1", "precision", "recall"}
    assert 0 <= m["methods"]["unet1d"]["mask_iou"] <= 1
    # recordings split: none on both sides
    assert not set(m["split"]["train"]) & set(m["split"]["test"])
    # detection settings chosen on separate calibration recordings, one per (kind, SNR)
    cal = m["calibration"]["recordings"]
    assert len(cal) == 6 and not set(cal) & (set(m["split"]["test"]) | set(m["split"]["train"]))
    for meth, prm in m["detection_params"].items():
        assert 0 < prm["threshold"] < 1 and prm["min_amplitude_sd"] >= 0, meth
    # the autoencoder's threshold comes from training recordings (recorded with its source)
    am = json.loads((out / "runs" / "autoencoder" / "threshold.json").read_text())
    assert "training" in am["source"] and am["threshold"] == m["autoencoder_threshold"]
    assert not set(am["recordings"]) & set(m["split"]["test"])
    for model in ("cnn_bilstm", "unet1d", "autoencoder"):
        run = out / "runs" / model
        for f in ("config.yaml", "model.keras", "history.csv", "split.json", "checkpoints/state.json"):
            assert (run / f).is_file(), (model, f)
    # the patch models: fit / validation by training recording, the test recordings as test part,
    # scored per sample by their evaluators
    for model in ("unet1d", "autoencoder"):
        split = json.loads((out / "runs" / model / "split.json").read_text())
        parts = {k: {i.split(":")[0] for i in v} for k, v in split.items()}
        assert parts["test"] == set(m["split"]["test"]) and not parts["train"] & parts["val"]
        assert (parts["train"] | parts["val"]) == set(m["split"]["train"])
        assert 0 <= m["per_point_test"][model]["iou"] <= 1
    # core training recorded a by-recording split of the windows
    split = json.loads((out / "runs" / "cnn_bilstm" / "split.json").read_text())
    grp = lambda ids: {i.split(":")[0] for i in ids}  # noqa: E731
    assert not grp(split["train"]) & grp(split["val"])
    csvs = list((out / "events" / "threshold").glob("*.csv"))
    assert len(csvs) == len(m["split"]["test"])
    assert csvs[0].read_text().startswith("onset_s,peak_s,amplitude,rise_10_90_ms,decay_tau_ms,charge")
    assert (out / "report.html").read_text().count("data:image/png") >= 3


def test_threshold_detector_finds_high_snr_events():
    from ephys.pipelines.events import detect as D
    from ephys.pipelines.events.metrics import event_prf
    from ephys.pipelines.events.simulate import simulate_recording

    r = simulate_recording("mepsc", 10.0, 5.0, seed=4)
    ev = D.detect_events(r.trace, r.fs_hz, D.threshold_probability(r.trace, r.fs_hz, r.polarity), r.polarity)
    assert event_prf(r.truth["onset_s"], [e["onset_s"] for e in ev])["f1"] > 0.8


def test_detect_cli_with_models_and_labels(sim_run, tmp_path):
    out, res = sim_run
    data = out / "data"
    rid = res["split"]["test"][-1]
    # labels in the CSV format of the readers (onset_s, peak_s, amplitude)
    truth = (data / f"{rid}_events.csv").read_text().splitlines()
    lab = tmp_path / "lab.csv"
    lab.write_text("\n".join(",".join(r.split(",")[:3]) for r in truth) + "\n")
    fs = "20000" if rid.startswith("mepsc") else "10000"
    units = "pA" if rid.startswith("mepsc") else "mV"
    proc = ephys("events", "detect", data / f"{rid}.npy", tmp_path / "det", "--run", out, "--method", "all",
                 "--fs-hz", fs, "--units", units, "--labels", lab, check=0)
    s = json.loads((tmp_path / "det" / "summary.json").read_text())
    assert set(s["methods"]) == {"cnn_bilstm", "unet1d", "autoencoder", "threshold"}
    assert "f1" in s["methods"]["threshold"], proc.stdout
    assert (tmp_path / "det" / "events_unet1d.csv").is_file()


@needs_shared
def test_real_abf_threshold_detection_skips_membrane_test(tmp_path):
    from ephys.pipelines.events.apply import run_detect

    s = run_detect(SHARED_DATA / "events" / "171116sh_0020.abf", tmp_path / "abf", methods=["threshold"],
                   report=False, log=lambda *_: None)
    t = s["methods"]["threshold"]
    assert t["n_events"] > 50 and t["amplitude"]["median"] < 0   # inward currents
    rows = (tmp_path / "abf" / "events_threshold.csv").read_text().splitlines()[1:]
    onsets = np.array([float(r.split(",")[0]) for r in rows])
    in_sweep = onsets % 10.0
    assert not np.any((in_sweep > 0.155) & (in_sweep < 0.378))  # membrane test + transient excluded


@needs_shared
def test_minis_windows_blocked_cv_tiny(tmp_path):
    from ephys.pipelines.events.minis import run_minis

    m = run_minis(SHARED_DATA / "minis", tmp_path / "minis", epochs=1, cv_folds=2, log=lambda *_: None)
    assert m["n_windows"] == 172 and 0 <= m["roc_auc"] <= 1
    assert 0 < m["majority_baseline"] < 1 and len(m["folds"]) == 2
    assert m["reference"]["miniml_paper"]["roc_auc"] == 0.998
    assert "majority baseline" in (tmp_path / "minis" / "report.html").read_text()
    # overlapping windows never straddle a fold boundary: training windows start at least one
    # window (600 samples) away from every test window
    import json

    man = json.loads((tmp_path / "minis" / "windows" / "manifest.json").read_text())
    t = {s["id"]: s["t_s"] for s in man["samples"]}
    for run in sorted(p for p in (tmp_path / "minis" / "runs").iterdir() if p.is_dir()):
        split = json.loads((run / "split.json").read_text())
        test = np.array([t[i] for i in split["test"]])
        train = np.array([t[i] for i in split["train"] + split["val"]])
        assert np.abs(train[:, None] - test[None, :]).min() >= man["window_s"] - 1e-9


def test_unet_long_patch_inference_matches_training_patches():
    import keras

    from ephys.pipelines.events import seg
    from ephys.pipelines.events.models import build_unet1d

    keras.utils.set_random_seed(0)
    m = build_unet1d((seg.PATCH, 1), width=4, depth=2)
    z = np.random.default_rng(0).standard_normal(40_000).astype("float32")
    px, st = seg.patches(z, seg.PATCH, seg.PATCH // 2)
    short = seg.stitch(m.predict(px, verbose=0), st, z.size, seg.PATCH)
    long = seg.predict_unet(m, z, length=8192, overlap=512)
    assert long.shape == (40_000,) and long.dtype == np.float64
    # same network, different patching: equal away from the patch edges ('same' padding)
    assert np.median(np.abs(long - short)) < 1e-3
    assert np.mean(np.abs(long - short) > 0.05) < 0.01
    assert seg.predict_unet(m, z[:3000]).shape == (3000,)
