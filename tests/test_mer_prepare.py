"""mer: readers (ML-STIM npz + csv, CSV / .npy columns), `ephys prepare mer`, bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.mer import segment_features
from ephys.pipelines.mer.prepare import prepare_mer
from ephys.pipelines.mer.readers import read_input
from ephys.pipelines.mer.synthetic import fetch_synthetic


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("mer_raw")
    return fetch_synthetic(out, n_patients=2, seed=11, duration_s=2.5, max_electrodes=1)


def test_synthetic_format_and_seed(cohort, tmp_path):
    meta = (cohort / "metadata.csv").read_text().splitlines()
    assert meta[0] == "patient;side;electrode;depth;length;class"
    example = (SHARED_DATA / "mer" / "metadata_example.csv")
    if example.is_file():
        assert example.read_text().splitlines()[0] == meta[0]
    with np.load(cohort / "data.npz") as fh:
        data = fh["data"]
    with np.load(cohort / "artifacts.npz") as fh:
        mask = fh["mask"]
    assert data.shape[0] == len(meta) - 1 and mask.shape == data.shape and data.dtype == np.float32
    classes = {ln.split(";")[-1] for ln in meta[1:]}
    assert classes == {"0", "1"}
    again = fetch_synthetic(tmp_path / "again", n_patients=2, seed=11, duration_s=2.5, max_electrodes=1)
    with np.load(again / "data.npz") as fh:
        assert np.array_equal(fh["data"], data)


def test_prepare_mer_rows_match_segment_features(cohort, tmp_path):
    manifest = json.loads(prepare_mer(cohort, tmp_path / "ds").read_text())
    assert manifest["modality"] == "features" and manifest["feature_names"][0] == "mad"
    X = np.load(tmp_path / "ds" / "features.npy")
    recs, _ = read_input(cohort)
    first = recs[0]
    rows = [i for i, s in enumerate(manifest["samples"]) if s["id"].startswith(first.id + "_s")]
    np.testing.assert_array_equal(X[rows], segment_features(first.signal))
    assert {s["group"] for s in manifest["samples"]} == {"P01", "P02"}
    header = (tmp_path / "ds" / "features.csv").read_text().splitlines()[0].split(",")
    for col in ("recording", "depth_um", "side", "electrode", "segment_start_s", "artifact_fraction"):
        assert col in header
    assert len(manifest["recordings"]) == len(recs)


def _write_pair(folder, data, meta_lines):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", data=data)
    (folder / "metadata.csv").write_text("\n".join(meta_lines) + "\n")
    return folder


def _good(n=2, m=30000):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, m)).astype(np.float32)
    meta = ["patient;side;electrode;depth;length;class"] + [f"P1;LEFT;E1;{-1000 * i};{m};{i % 2}" for i in range(n)]
    return data, meta


def test_columns_reader_and_other_rate(tmp_path):
    rng = np.random.default_rng(2)
    arr = rng.standard_normal((30000, 2))
    np.save(tmp_path / "cols.npy", arr)
    recs, info = read_input(tmp_path / "cols.npy", fs_hz=30000)
    assert info["format"] == "columns" and len(recs) == 2 and recs[0].fs_hz == 30000
    m = json.loads(prepare_mer(tmp_path / "cols.npy", tmp_path / "ds", fs_hz=30000).read_text())
    assert "resampled to 24000 Hz" in json.dumps(m["provenance"]["resampling"])
    # 1 s at 30 kHz = 24000 samples at 24 kHz: one segment per recording at most
    assert m["n_samples"] <= 2


BAD = {
    "length": (lambda d, m: (d, m[:1] + ["P1;LEFT;E1;0;99999;0"] + m[2:]), ("metadata.csv", "row 1", "length")),
    "missing_col": (lambda d, m: (d, ["patient;side;electrode;depth;length"] + [x.rsplit(";", 1)[0] for x in m[1:]]),
                    ("metadata.csv", "missing columns", "class")),
    "extra_col": (lambda d, m: (d, [m[0] + ";notes"] + [x + ";x" for x in m[1:]]), ("metadata.csv", "extra columns")),
    "depth": (lambda d, m: (d, m[:2] + ["P1;LEFT;E1;deep;30000;1"]), ("metadata.csv", "row 2", "depth")),
    "nan": (lambda d, m: (np.where(np.arange(d.shape[1]) == 7, np.nan, d).astype(np.float32), m),
            ("data.npz", "row 1", "NaN")),
    "zero": (lambda d, m: (np.vstack([d[:1], np.zeros_like(d[:1])]), m), ("data.npz", "row 2", "all-zero")),
    "rows": (lambda d, m: (d[:1], m), ("metadata.csv", "2 rows", "1 recordings")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_one_line_nothing_written(case, tmp_path):
    data, meta = _good()
    make, needles = BAD[case]
    folder = _write_pair(tmp_path / "in", *make(data, meta))
    out = tmp_path / "out"
    with pytest.raises(EphysError) as exc:
        prepare_mer(folder, out)
    msg = exc.value.one_line()
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    assert not out.exists()


def test_bad_input_cli_and_unknown_rate(tmp_path):
    data, meta = _good()
    folder = _write_pair(tmp_path / "in", data, meta[:1] + ["P1;LEFT;E1;x;30000;0"] + meta[2:])
    one_line_error(ephys("prepare", "mer", folder, tmp_path / "out"), "metadata.csv", "row 1", "depth")
    assert not (tmp_path / "out").exists()
    good = _write_pair(tmp_path / "good", *_good())
    one_line_error(ephys("prepare", "mer", good, tmp_path / "out2", "--fs-hz", "5000"), "data.npz", "sampling rate")
    assert not (tmp_path / "out2").exists()


@needs_shared
def test_prepare_real_siginspect(tmp_path):
    src = SHARED_DATA / "mer" / "siginspect"
    # values of order 0.1: not µV; refused without a declared unit, naming the file and --units
    one_line_error(ephys("prepare", "mer", src, tmp_path / "bad"), "signal1.csv", "implausible", "--units")
    assert not (tmp_path / "bad").exists()
    proc = ephys("prepare", "mer", src, tmp_path / "si", "--units", "mV", check=0)
    m = json.loads((tmp_path / "si" / "manifest.json").read_text())
    assert len(m["recordings"]) == 6 and {r["patient"] for r in m["recordings"]} == {"signal1", "signal2"}
    for r in m["recordings"]:
        assert 0.0 <= r["artifact_fraction"] <= 1.0 and r["units_in"] == "mV (declared)"
        assert (r["n_segments"] == 0) == ("reason" in r)
    assert m["n_samples"] == sum(r["n_segments"] for r in m["recordings"])
    assert "recordings" in proc.stderr or proc.stdout


def test_units_declared_read_and_refused(tmp_path):
    rng = np.random.default_rng(5)
    x_uv = 10.0 * rng.standard_normal((24000, 2))  # a MER-like scale in µV
    np.savetxt(tmp_path / "mv.csv", x_uv / 1000, delimiter=",")
    with pytest.raises(EphysError, match="implausible for a MER in µV.*--units"):
        read_input(tmp_path / "mv.csv")
    recs, _ = read_input(tmp_path / "mv.csv", units="mV")
    np.testing.assert_allclose(recs[0].signal, x_uv[:, 0], rtol=1e-9)
    assert recs[0].units_in == "mV (declared)"
    volts, _ = read_input(tmp_path / "mv.csv", units="mV")
    np.savetxt(tmp_path / "v.csv", x_uv / 1e6, delimiter=",")
    np.testing.assert_allclose(read_input(tmp_path / "v.csv", units="V")[0][1].signal, volts[1].signal, rtol=1e-6)
    with pytest.raises(EphysError, match="unknown unit"):
        read_input(tmp_path / "mv.csv", units="nV")
    # ADC counts (or a µV file declared as mV) are refused too
    np.savetxt(tmp_path / "counts.csv", x_uv * 2000, delimiter=",")
    with pytest.raises(EphysError, match="implausible"):
        read_input(tmp_path / "counts.csv")
    one_line_error(ephys("prepare", "mer", tmp_path / "mv.csv", tmp_path / "o", "--units", "mv"), "--units")
    m = json.loads(prepare_mer(tmp_path / "mv.csv", tmp_path / "ds", units="mV").read_text())
    assert m["provenance"]["input_units"] == ["mV (declared)"] and m["feature_units"]["mad"] == "uV"


def test_nwb_roundtrip(tmp_path):
    raw = fetch_synthetic(tmp_path / "raw", n_patients=1, seed=4, duration_s=1.2, max_electrodes=1, nwb=True)
    a, _ = read_input(raw)
    b, info = read_input(raw / "nwb")
    assert info["format"] == "nwb" and len(a) == len(b)
    for x, y in zip(sorted(a, key=lambda r: r.id), sorted(b, key=lambda r: r.id)):
        assert (x.id, x.depth_um, x.label, x.side, x.electrode) == (y.id, y.depth_um, y.label, y.side, y.electrode)
        np.testing.assert_allclose(x.signal, y.signal, rtol=1e-6)  # NWB states volts x 1e-6: read back in µV
        assert y.units_in.endswith("(nwb)")


def test_fetch_synthetic_cli(tmp_path):
    ephys("fetch", "synthetic", "--pipeline", "mer", "--size", "1", "--seed", "2", tmp_path / "syn", check=0)
    meta = (tmp_path / "syn" / "metadata.csv").read_text().splitlines()
    assert meta[0] == "patient;side;electrode;depth;length;class" and {m.split(";")[0] for m in meta[1:]} == {"P01"}
    assert (tmp_path / "syn" / "artifacts.npz").is_file()
