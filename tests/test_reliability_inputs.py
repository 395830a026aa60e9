"""Reliability, second pass (issue 28): bad input is refused with one line naming the file (or
option) and what is wrong, exit 2, nothing written, never an 'internal error'; and the small
wrong outputs the issue lists (event charge against its amplitude, vm_for_sag, warnings on the
terminal). Inputs are the smallest that reach each check.
"""

from __future__ import annotations

import csv
import datetime
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ephys, one_line_error

sys.path.insert(0, str(Path(__file__).parent))
PLUGIN_ENV = {"EPHYS_PLUGINS": "toy_modality", "PYTHONPATH": str(Path(__file__).parent)}


def _events_trace(fs=20000.0, seconds=2.0, sign=-1.0, scale=1.0):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * fs)) / fs
    x = rng.normal(0, 2, t.size)
    for on in np.arange(0.1, seconds - 0.1, 0.15):
        k = t >= on
        x[k] += sign * 20 * (1 - np.exp(-(t[k] - on) / 5e-4)) * np.exp(-(t[k] - on) / 5e-3)
    return (x * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# ephys events detect
# ---------------------------------------------------------------------------------------------


def _cc_nwb(path: Path, x_mV: np.ndarray, fs: float) -> Path:
    import pynwb
    from pynwb.icephys import CurrentClampSeries

    nwb = pynwb.NWBFile(session_description="x", identifier="x",
                        session_start_time=datetime.datetime.now(datetime.timezone.utc))
    dev = nwb.create_device(name="amp")
    el = nwb.create_icephys_electrode(name="e", description="e", device=dev)
    nwb.add_acquisition(CurrentClampSeries(name="cc", data=x_mV, electrode=el, gain=1.0, rate=fs, conversion=1e-3))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


@pytest.mark.parametrize("case, needle", [
    ("nA read as pA", "is the trace in nA rather than pA"),
    ("flat", "the trace is flat"),
    ("5 ms", "the trace is 5 ms long"),
    ("0 bytes", "empty file (0 bytes)"),
    ("current-clamp steps", "action potentials or stimulus responses, not miniature synaptic events"),
])
def test_events_detect_refuses_traces_it_cannot_trust(tmp_path, tiny_synthetic, case, needle):
    """Instead of 0 events, events of -0.03 pA, or 958 'events' of 65 mV, one line says why."""
    x = _events_trace()
    fs = ["--fs-hz", "20000"]
    if case == "nA read as pA":
        np.save(path := tmp_path / "t.npy", x * 1e-3)
    elif case == "flat":
        np.save(path := tmp_path / "t.npy", np.zeros_like(x))
    elif case == "5 ms":
        np.save(path := tmp_path / "t.npy", x[:100])
    elif case == "0 bytes":
        (path := tmp_path / "t.npy").write_bytes(b"")
    else:
        path, fs = sorted(tiny_synthetic.glob("*.nwb"))[0], []
    out = tmp_path / "out"
    one_line_error(ephys("events", "detect", path, out, *fs), str(path), needle)
    assert not out.exists()


@pytest.mark.parametrize("case", ["inverted", "pA stored as CurrentClampSeries"])
def test_events_detect_polarity_auto_says_when_the_sign_is_unusual(tmp_path, case):
    """Once refused (issue 28), now detected with the sign the events have (issue 26: --polarity
    auto), the summary saying it is not the recording mode's usual sign."""
    x = _events_trace()
    if case == "inverted":
        np.save(path := tmp_path / "t.npy", -x)
        fs, want, mode = ["--fs-hz", "20000"], "positive", "voltage clamp"
    else:
        path, fs, want, mode = _cc_nwb(tmp_path / "t.nwb", x, 20000.0), [], "negative", "current clamp"
    out = tmp_path / "out"
    ephys("events", "detect", path, out, *fs, check=0)
    s = json.loads((out / "summary.json").read_text())
    assert s["polarity"] == want and f"not the usual sign in {mode}" in s["polarity_reason"]


# ---------------------------------------------------------------------------------------------
# ephys prepare events | lfp | spikes | mer
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events_folder(tmp_path_factory) -> Path:
    from ephys.pipelines.events.simulate import synthetic

    return synthetic(tmp_path_factory.mktemp("ev") / "cohort", seed=0, size=2, duration_s=5.0)


def _rec_csv(field, value):
    def edit(d: Path):
        rows = list(csv.DictReader(open(d / "recordings.csv")))
        for r in rows[:1]:
            if value is None:
                for row in rows:
                    row.pop(field)
            else:
                r[field] = value
        with open(d / "recordings.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return edit


def _first(d: Path) -> str:
    return next(csv.DictReader(open(d / "recordings.csv")))["id"]


def _npy(fn):
    return lambda d: np.save(d / f"{_first(d)}.npy", fn(np.load(d / f"{_first(d)}.npy")))


@pytest.mark.parametrize("case, edit, where, needle", [
    ("no fs_hz column", _rec_csv("fs_hz", None), "recordings.csv", "no column fs_hz"),
    ("fs_hz 0", _rec_csv("fs_hz", "0"), "recordings.csv", "row 2, field fs_hz: '0' is not a positive sampling rate"),
    ("fs_hz text", _rec_csv("fs_hz", "abc"), "recordings.csv", "row 2, field fs_hz: 'abc' is not a number"),
    ("NaN trace", _npy(lambda x: np.where(np.arange(x.size) == 50, np.nan, x)), ".npy", "1 NaN or infinite samples"),
    ("flat trace", _npy(np.zeros_like), ".npy", "trace is flat"),
    ("truncated .npy", lambda d: (d / f"{_first(d)}.npy").write_bytes((d / f"{_first(d)}.npy").read_bytes()[:999]),
     ".npy", "damaged array file"),
    ("0-byte .npy", lambda d: (d / f"{_first(d)}.npy").write_bytes(b""), ".npy", "empty file (0 bytes)"),
    ("no _events.csv", lambda d: (d / f"{_first(d)}_events.csv").unlink(), "_events.csv", "missing"),
    ("onset at 55 s in a 5-s recording", lambda d: open(d / f"{_first(d)}_events.csv", "a").write("55,55.001,1,0.4,5\n"),
     "_events.csv", "onset 55 s lies outside the 5-s recording"),
    ("no events at all", lambda d: [f.write_text("onset_s,peak_s,amplitude,rise_10_90_ms,decay_tau_ms\n")
                                    for f in d.glob("*_events.csv")], "", "no recording has an event"),
])
def test_prepare_events_refuses_a_malformed_cohort(tmp_path, events_folder, case, edit, where, needle):
    """A KeyError, ZeroDivision, string-to-float, truncated file or missing table used to be an
    'internal error'; fs_hz 0, a NaN or flat trace, an impossible onset or no event at all passed."""
    d = tmp_path / "cohort"
    shutil.copytree(events_folder, d)
    edit(d)
    out = tmp_path / "out"
    one_line_error(ephys("prepare", "events", d, out), where, needle)
    assert not out.exists()


@pytest.fixture(scope="module")
def lfp_folder(tmp_path_factory) -> Path:
    from ephys.pipelines.lfp.synthetic import fetch_synthetic

    return fetch_synthetic(tmp_path_factory.mktemp("lfp") / "cohort", n_participants=2, seed=0, duration_s=20.0)


def _meta(key, value):
    def edit(p: Path):
        j = json.loads((p / "recording.json").read_text())
        j[key] = value
        (p / "recording.json").write_text(json.dumps(j))
    return edit


@pytest.mark.parametrize("case, edit, args, where, needle", [
    ("1 column, 2 channels named", lambda p: np.save(p / "lfp.npy", np.load(p / "lfp.npy")[:, :1]), (), "lfp.npy",
     "has 1 column(s) (channels) but recording.json names 2 channels"),
    ("fs_hz 0", _meta("fs_hz", 0), (), "recording.json", "fs_hz must be a positive sampling rate in Hz, not 0"),
    ("fs_hz -250", _meta("fs_hz", -250), (), "recording.json", "not -250"),
    ("0-byte lfp.npy", lambda p: (p / "lfp.npy").write_bytes(b""), (), "lfp.npy", "empty file (0 bytes)"),
    ("no spikes", lambda p: [(q / "spikes.csv").write_text("unit,t_s\n") for q in p.parent.iterdir() if q.is_dir()],
     (), "", "no recording has a unit with spikes"),
    ("--stride-s 0", lambda p: None, ("--stride-s", "0"), "", "--stride-s must be > 0 s, not 0"),
    ("--stride-s -0.02", lambda p: None, ("--stride-s", "-0.02"), "", "--stride-s must be > 0 s, not -0.02"),
])
def test_prepare_lfp_refuses_bad_recordings(tmp_path, lfp_folder, case, edit, args, where, needle):
    d = tmp_path / "cohort"
    shutil.copytree(lfp_folder, d)
    edit(sorted(p for p in d.iterdir() if p.is_dir())[0])
    out = tmp_path / "out"
    one_line_error(ephys("prepare", "lfp", d, out, *args), where, needle)
    assert not out.exists()


def test_prepare_spikes_and_mer_refuse_empty_or_short_input(tmp_path):
    """A 0-byte snippet set names its file; MER recordings all shorter than one 1-s segment are
    refused (not a dataset of 0 rows), with no progress line before the error."""
    d = tmp_path / "sets"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "channel_spikes_9.npy", rng.normal(0, 1, (20, 42)))
    (d / "channel_background_9.npy").write_bytes(b"")
    one_line_error(ephys("prepare", "spikes", d, tmp_path / "o1"), "channel_background_9.npy", "empty file (0 bytes)")
    assert not (tmp_path / "o1").exists()
    short = tmp_path / "short"
    short.mkdir()
    for k in range(3):
        np.save(short / f"depth{k}.npy", rng.normal(0, 1, (12000, 1)))  # 0.5 s at 24 kHz
    one_line_error(ephys("prepare", "mer", short, tmp_path / "o2"), str(short),
                   "no recording has a full 1-s segment left")
    assert not (tmp_path / "o2").exists()


def test_only_bad_files_print_one_line(tmp_path):
    """`prepare scalograms|features` on a folder of only unreadable files: the error, no progress line per file."""
    for k in range(12):
        (tmp_path / f"cell{k:02d}.nwb").write_text("not an NWB file")
    for step, needle in (("scalograms", "no cell could be prepared"), ("features", "no cell gave features")):
        one_line_error(ephys("prepare", step, tmp_path, tmp_path.parent / f"{tmp_path.name}-{step}"), needle)
        assert not (tmp_path.parent / f"{tmp_path.name}-{step}").exists()


def test_labels_row_with_an_extra_field_is_named(tmp_path, tiny_synthetic):
    """A 3-field row in a path,label CSV used to read as "Excitatory does not exist"."""
    d = tmp_path / "cells"
    shutil.copytree(tiny_synthetic, d)
    rows = (d / "labels.csv").read_text().splitlines()
    rows[1] += ",extra"  # the first row: pandas took its path as the index and its label as the path
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    one_line_error(ephys("prepare", "scalograms", d, tmp_path / "out"), "labels.csv",
                   "row 2: 3 fields, the header has 2 (path, label)")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# spikes cluster, STS tables, reproduce, cross-validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dbscan", "hdbscan"])
def test_cluster_min_samples_above_the_spike_count(tmp_path, method):
    """`--min-samples 100000` on 450 spikes: one line (was an internal error / silently ignored)."""
    from test_spikes_cluster import _units, _write_axona

    w, ids = _units()
    _write_axona(tmp_path / "t.1", w, np.sort(np.random.default_rng(1).uniform(0, 100, len(ids))))
    one_line_error(ephys("spikes", "cluster", tmp_path / "t.1", tmp_path / "out", "--method", method,
                         "--min-samples", "100000"), "t.1", "--min-samples 100000 must be below the number of "
                   "spikes in the file (450)")
    assert not (tmp_path / "out").exists()


def _sts_folder(d: Path, n: int = 8) -> Path:
    """The five STS files with ``n`` cells per table (random feature values)."""
    from ephys.pipelines.sts import tables as T

    d.mkdir()
    raw = [*T.CELL_FEATURES] + [f"{f}_{p}" for p in T.PROTOCOLS for f in T.PROTOCOL_FEATURES]
    raw += sorted({f"{c}_{p}" for p in T.PROTOCOLS for _, pair, _ in T.DERIVED.values() for c in pair} - set(raw))
    rng = np.random.default_rng(0)
    for fname, id_col, first, extra in ((T.CLAMP_TABLE, "specimen_id", 1000, ""), (T.SEQ_TABLE, "cell_specimen_id",
                                                                                   2000, "idx,")):
        lines = [extra + ",".join([id_col, *raw])]
        lines += [(f"{k}," if extra else "") + ",".join([str(first + k), *(f"{v:.3f}" for v in rng.normal(0, 1, len(raw)))])
                  for k in range(n)]
        (d / fname).write_text("\n".join(lines) + "\n")
    ids = [(str(1000 + k), "Clamp") for k in range(n)] + [(str(2000 + k), "Seq") for k in range(n)]
    (d / T.LABELS_FILE).write_text("\n".join(f"{T.STS_CLASSES[k % 4]} {sid}" for k, (sid, _) in enumerate(ids)) + "\n")
    (d / T.TRAIN_SPLIT).write_text("\n".join(f"{sid}, {src}" for sid, src in ids[::2]) + "\n")
    (d / T.TEST_SPLIT).write_text("\n".join(f"{sid}, {src}" for sid, src in ids[1::2]) + "\n")
    return d


def test_sts_tables_with_inf_or_an_empty_test_split_are_refused_before_anything_is_written(tmp_path):
    from ephys.pipelines.sts import tables as T

    good = _sts_folder(tmp_path / "good")
    ephys("prepare", "features", good, tmp_path / "ok", "--preset", "sts", check=0)  # the crafted tables work
    inf = tmp_path / "inf"
    shutil.copytree(good, inf)
    lines = (inf / T.CLAMP_TABLE).read_text().splitlines()
    cells = lines[3].split(",")
    cells[4] = "inf"
    lines[3] = ",".join(cells)
    (inf / T.CLAMP_TABLE).write_text("\n".join(lines) + "\n")
    one_line_error(ephys("prepare", "features", inf, tmp_path / "o1", "--preset", "sts"), T.CLAMP_TABLE,
                   "1 infinite feature values (first: row 4", "specimen 1002")
    empty = tmp_path / "empty"
    shutil.copytree(good, empty)
    (empty / T.TEST_SPLIT).write_text("")
    one_line_error(ephys("reproduce", "sts-baseline", "--data", empty, "--out", tmp_path / "o2"), T.TEST_SPLIT,
                   "no rows")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()  # no OUT/data left


def test_spikes_seed_without_its_channels_writes_nothing(tmp_path):
    d = tmp_path / "sets"
    d.mkdir()
    rng = np.random.default_rng(0)
    for ch in (11, 16, 33, 40):  # channel 9 missing
        np.save(d / f"channel_spikes_{ch}.npy", rng.normal(0, 1, (20, 42)))
        np.save(d / f"channel_background_{ch}.npy", rng.normal(0, 1, (20, 42)))
    one_line_error(ephys("reproduce", "spikes-seed", "--data", d, "--out", tmp_path / "out"), str(d),
                   "the seed split needs channels 9, 11, 16, 33, 40; no channel_spikes_CH.npy for 9")
    assert not (tmp_path / "out").exists()


def test_more_folds_than_groups_is_refused(tmp_path):
    import toy_modality

    xs, ys = toy_modality.simulate(6, seed=1)
    data = toy_modality.write_dataset(tmp_path / "toy", xs, ys)
    one_line_error(ephys("prepare", "folds", data, "--cv", "grouped", "--cv-folds", "1000", env=PLUGIN_ENV),
                   "1000-fold grouped cross-validation needs at least 1000 groups, found 6")


# ---------------------------------------------------------------------------------------------
# predict: NaN samples, empty arrays
# ---------------------------------------------------------------------------------------------


def test_predict_refuses_nan_samples_empty_arrays_and_truncated_models(tmp_path, monkeypatch):
    """NaN input gave NaN probabilities and 'predicted <first class>'; a 0-byte array an EOFError;
    a truncated model.keras "File not found"."""
    import toy_modality

    monkeypatch.setenv("EPHYS_PLUGINS", "toy_modality")
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.predict import predict_run
    from ephys.pipelines.core.training import TrainConfig, train

    xs, ys = toy_modality.simulate(8, seed=1)
    data = toy_modality.write_dataset(tmp_path / "toy", xs, ys)
    run = train(TrainConfig(model="toy_dense", data=str(data), epochs=1, batch_size=8, out=str(tmp_path / "run"),
                            eager=True), log=lambda m: None)
    bad = xs.copy()
    bad[3, 5] = np.nan
    nan = toy_modality.write_dataset(tmp_path / "nan", bad, [None] * len(bad))
    with pytest.raises(EphysError, match=r"no probability \(NaN\) for 1 of 16 sequences \(e.g. s003\)"):
        predict_run(run, nan, tmp_path / "p1", log=lambda m: None)
    (nan / "sequences.npy").write_bytes(b"")
    with pytest.raises(EphysError, match="sequences.npy: empty file"):
        predict_run(run, nan, tmp_path / "p2", log=lambda m: None)
    model = run / "model.keras"  # a truncated model file was reported as "File not found"
    model.write_bytes(model.read_bytes()[:2000])
    with pytest.raises(EphysError, match="model.keras: cannot load model: damaged file .2000 bytes, not a complete"):
        predict_run(run, data, tmp_path / "p3", log=lambda m: None)
    assert not any((tmp_path / p).exists() for p in ("p1", "p2", "p3"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p")]


# ---------------------------------------------------------------------------------------------
# small wrong outputs
# ---------------------------------------------------------------------------------------------


def test_event_charge_has_its_amplitudes_sign():
    """An inward event whose decay overshoots the baseline (the next event's rebound, drift) had
    amplitude -10 pA and charge +88; the charge now counts the event's own direction only."""
    from ephys.pipelines.events.detect import measure_event

    fs = 20000.0
    t = np.arange(int(0.2 * fs)) / fs
    y = np.zeros_like(t)
    on = 0.02
    k = t >= on
    y[k] -= 10 * (1 - np.exp(-(t[k] - on) / 5e-4)) * np.exp(-(t[k] - on) / 3e-3)
    y[t >= 0.04] += 15.0  # a large overshoot in the fit window
    i = int(on * fs) + int(np.argmin(np.diff(y[int(on * fs):int(on * fs) + 40])))
    ev = measure_event(y, fs, i, -1.0)
    assert ev is not None and ev["amplitude"] < 0 and ev["charge"] < 0, ev


def test_vm_for_sag_whenever_sag():
    """Sag read on the test pulse inside F-I sweeps came without its vm_for_sag (NaN)."""
    from test_reliability import _fi_cell

    from ephys.pipelines.sts.ep_features import cell_features

    cf = cell_features(_fi_cell())
    assert np.isfinite(cf.values["sag"]) and np.isfinite(cf.values["vm_for_sag"])
    assert -90 < cf.values["vm_for_sag"] < -70, cf.values["vm_for_sag"]  # rest -70 mV, -50 pA x 200 MOhm


def test_tensorflow_chatter_stays_off_the_terminal(tmp_path):
    """oneDNN notices (native, at import) and retracing warnings (Python logging) do not reach stderr."""
    import subprocess

    code = ("import os; os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None)\n"
            "from ephys.cli.environment import import_backend, writable_caches\n"
            "writable_caches(); import_backend()\n"
            "from tensorflow.python.platform import tf_logging\n"
            "tf_logging.warning('5 out of the last 5 calls to <function f> triggered tf.function retracing')\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "retracing" not in proc.stderr and "oneDNN" not in proc.stderr, proc.stderr
