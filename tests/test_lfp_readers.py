"""lfp readers beyond Axona / lfp.npy: NWB (ElectricalSeries + Units) and .mat + spike CSV; bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ephys, one_line_error
from ephys.pipelines.lfp.readers import read_lfp_recordings
from ephys.pipelines.core.errors import EphysError

FS = 250.0
# the test builds the ElectricalSeries before adding it to the file (hdmf warns; harmless)
pytestmark = pytest.mark.filterwarnings("ignore:The linked table for DynamicTableRegion")


def _signal(n_s: float = 30.0, n_ch: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(n_s * FS)
    lfp = rng.standard_normal((n, n_ch)) * 50.0  # µV
    spikes = {"a": np.sort(rng.uniform(0.0, n_s - 0.01, 150)), "b": np.sort(rng.uniform(0.0, n_s - 0.01, 90))}
    return lfp, spikes


def write_nwb(path: Path, lfp_uv: np.ndarray, spikes: dict, *, t0_s: float = 0.0, where: str = "ecephys",
              subject: str = "rat7", session: str = "s1", extra_series: bool = False, units: bool = True) -> Path:
    """A small NWB file: an LFP ElectricalSeries (volts) in processing/ecephys/LFP (or acquisition)
    and a Units table with the given spike times."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import LFP, ElectricalSeries
    from pynwb.file import Subject

    nwb = NWBFile(session_description="test", identifier=path.stem, session_id=session,
                  session_start_time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), subject=Subject(subject_id=subject))
    dev = nwb.create_device("probe")
    grp = nwb.create_electrode_group("shank0", description="s", location="CA1", device=dev)
    for _ in range(lfp_uv.shape[1]):
        nwb.add_electrode(group=grp, location="CA1")
    region = nwb.create_electrode_table_region(list(range(lfp_uv.shape[1])), "all")
    es = ElectricalSeries(name="lfp", data=lfp_uv * 1e-6, electrodes=region, rate=FS, starting_time=t0_s)
    if where == "ecephys":
        nwb.create_processing_module("ecephys", "LFP").add(LFP(electrical_series=es))
    else:
        nwb.add_acquisition(es)
    if extra_series:
        nwb.add_acquisition(ElectricalSeries(name="lfp_copy", data=lfp_uv * 1e-6, electrodes=region, rate=FS))
    if units:
        for u, t in spikes.items():
            nwb.add_unit(spike_times=np.asarray(t))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def write_mat(folder: Path, lfp: np.ndarray, spikes: dict, *, fs_name: str = "fs_hz", t0_s: float = 0.0,
              v73: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rec1.mat"
    if v73:  # an HDF5 file laid out like MATLAB's -v7.3 (column-major: dims reversed)
        import h5py

        with h5py.File(path, "w", userblock_size=512) as f:
            f["lfp"] = lfp.T
            f[fs_name] = np.array([[FS]])
        with open(path, "r+b") as fh:  # MATLAB's text header in the user block
            fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116)
                     + b"\x00" * 8 + b"\x00\x02IM")
    else:
        import scipy.io

        scipy.io.savemat(path, {"lfp": lfp, fs_name: FS, "t0_s": t0_s})
    rows = ["unit,t_s"] + [f"{u},{t:.6f}" for u, ts in spikes.items() for t in ts]
    (folder / "rec1_spikes.csv").write_text("\n".join(rows) + "\n")
    return path


def test_nwb_reader_lfp_and_units(tmp_path):
    lfp, spikes = _signal()
    p = write_nwb(tmp_path / "r.nwb", lfp, spikes, t0_s=5.0)
    (rec,) = read_lfp_recordings(p)
    assert rec.name == "rat7_s1" and rec.fs_hz == FS and rec.t0_s == 5.0
    np.testing.assert_allclose(rec.lfp, lfp, rtol=1e-9)  # volts in the file, µV out
    assert sorted(rec.units) == ["u0", "u1"] and rec.channel_names == ["e0", "e1"]
    np.testing.assert_allclose(rec.units["u1"], spikes["b"])
    # the same series in acquisition is found too; a folder of NWB files is a cohort
    (tmp_path / "c").mkdir()
    write_nwb(tmp_path / "c" / "x.nwb", lfp, spikes, where="acq", subject="rat8")
    write_nwb(tmp_path / "c" / "y.nwb", lfp, spikes, subject="rat9")
    assert [r.name for r in read_lfp_recordings(tmp_path / "c")] == ["rat8_s1", "rat9_s1"]


def test_nwb_reader_errors(tmp_path):
    lfp, spikes = _signal(5.0)
    with pytest.raises(EphysError, match="several candidate LFP"):
        read_lfp_recordings(write_nwb(tmp_path / "two.nwb", lfp, spikes, where="acq", extra_series=True))
    with pytest.raises(EphysError, match="no Units table"):
        read_lfp_recordings(write_nwb(tmp_path / "nounits.nwb", lfp, spikes, units=False))
    (tmp_path / "junk.nwb").write_bytes(b"not hdf5")
    with pytest.raises(EphysError, match="not a readable NWB file"):
        read_lfp_recordings(tmp_path / "junk.nwb")


@pytest.mark.parametrize("v73", [False, True])
def test_mat_reader(tmp_path, v73):
    lfp, spikes = _signal(10.0, n_ch=3)
    p = write_mat(tmp_path / "m", lfp, spikes, fs_name="fs", v73=v73)
    (rec,) = read_lfp_recordings(p)
    assert rec.fs_hz == FS and rec.lfp.shape == lfp.shape and rec.name == "rec1"
    np.testing.assert_allclose(rec.lfp, lfp)
    np.testing.assert_allclose(rec.units["a"], np.round(spikes["a"], 6))
    assert rec.sources[1].endswith("rec1_spikes.csv")
    # the folder dispatches to the same reader
    assert read_lfp_recordings(tmp_path / "m")[0].lfp.shape == lfp.shape


def test_mat_missing_variable_one_line(tmp_path):
    import scipy.io

    lfp, spikes = _signal(5.0)
    p = write_mat(tmp_path / "m", lfp, spikes)
    scipy.io.savemat(p, {"lfp": lfp})  # no fs_hz / fs
    proc = ephys("--quiet", "prepare", "lfp", p, tmp_path / "out")
    one_line_error(proc, "rec1.mat", "missing variable fs_hz or fs")
    scipy.io.savemat(p, {"data": lfp, "fs": FS})
    with pytest.raises(EphysError, match="missing variable lfp"):
        read_lfp_recordings(p)
    assert not (tmp_path / "out" / "index.json").exists()


@pytest.mark.parametrize("fmt,case", [("nwb", "clocks"), ("nwb", "nan"), ("mat", "outside"), ("mat", "short")])
def test_bad_content_through_the_cli(tmp_path, fmt, case):
    """The checks of check_recording reach both new readers: exit 2, one line naming the file, nothing written."""
    lfp, spikes = _signal(20.0)
    if case == "clocks":
        spikes = {u: t + 500.0 for u, t in spikes.items()}
    elif case == "nan":
        lfp[777, 0] = np.nan
    elif case == "outside":
        spikes["a"] = np.append(spikes["a"], 20.5)
    elif case == "short":
        lfp, spikes = lfp[:10], {"a": np.array([0.01])}
    src = write_nwb(tmp_path / "r.nwb", lfp, spikes) if fmt == "nwb" else write_mat(tmp_path / "m", lfp, spikes)
    needle = {"clocks": "do not overlap", "nan": "NaN", "outside": "outside the recording",
              "short": "shorter than one window"}[case]
    out = tmp_path / "out"
    proc = ephys("--quiet", "reproduce", "lfp-ratgps", "--data", src, "--out", out, "--epochs", "1")
    one_line_error(proc, src.name, needle)
    assert not (out / "metrics.json").exists() and not (out / "prepared" / "index.json").exists()


def test_nwb_prepare_cli(tmp_path):
    lfp, spikes = _signal(8.0)
    p = write_nwb(tmp_path / "r.nwb", lfp, spikes)
    ephys("prepare", "lfp", p, tmp_path / "prep", "--inputs", "amplitude", check=0)
    index = json.loads((tmp_path / "prep" / "index.json").read_text())
    assert set(index["units"]) == {"u0", "u1"} and index["recordings"][0]["name"] == "rat7_s1"
