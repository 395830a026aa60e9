"""Readers (NWB, ABF) and cell discovery, on the real recordings of ../shared/data and on made-up files."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from ephys.pipelines.core.errors import EphysError, UnreadableRecording
from ephys.pipelines.blocks.readers.patchclamp import (
    CellSource,
    discover_cells,
    find_main_step,
    read_abf,
    read_cell,
    read_nwb,
    read_recording,
)
from ephys.pipelines.sts.synthetic import simulate_cells, write_cell_nwb

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PATCH = SHARED / "patchclamp"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent: real recordings not available")

REAL_FILES = sorted(p for p in PATCH.glob("*/*") if p.suffix in (".nwb", ".abf")) if PATCH.exists() else []
# Files that read fine but whose absolute membrane potential is not physiological: the baseline
# sits near 0 mV (98205017) or -15 mV (99111002, spikes peak at +85 mV), i.e. an offset recording.
OFFSET_RECORDINGS = {"98205017.abf", "99111002.nwb"}


# ------------------------------------------------------------------------------------------------
# real recordings
# ------------------------------------------------------------------------------------------------


@needs_shared
def test_all_real_recordings_are_present():
    assert len(REAL_FILES) == 13  # 10 ABF + 3 NWB


@needs_shared
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_recording_reads_plausibly(path):
    sweeps = read_recording(path)
    assert len(sweeps) >= 1
    for s in sweeps:
        assert s.fs_hz >= 5000
        assert s.v_mV.shape == s.i_pA.shape and s.v_mV.ndim == 1 and s.n_samples > 1000
        assert np.all(np.isfinite(s.v_mV)) and np.all(np.isfinite(s.i_pA))
        assert s.meta["file"] == str(path)
        assert abs(s.stim_amp_pA) < 5000  # pA, not A or nA
        if s.stim_amp_pA != 0:
            assert 0 < s.stim_start_s < s.stim_end_s <= s.duration_s
    amps = [abs(s.stim_amp_pA) for s in sweeps]
    assert max(amps) >= 20  # real steps found, in pA
    pre = [np.median(s.v_mV[: int(s.stim_start_s * s.fs_hz)]) for s in sweeps if np.isfinite(s.stim_start_s)]
    baseline = float(np.median(pre))
    if path.name in OFFSET_RECORDINGS:
        assert baseline > -40
    else:
        assert -90 <= baseline <= -40, baseline
    assert any(s.v_mV.max() > -10 for s in sweeps)  # some sweep spikes


@needs_shared
def test_abf_dual_step_protocol_uses_the_epoch_table():
    sweeps = read_abf(PATCH / "abf" / "171116sh_0018.abf")
    assert [s.stim_amp_pA for s in sweeps] == [-100.0 + 25 * k for k in range(17)]
    # the first (varied) step, not the fixed -100 pA pulse later in the sweep; also for 0 pA
    assert {(round(s.stim_start_s, 4), round(s.stim_end_s, 4)) for s in sweeps} == {(0.1469, 0.6469)}
    assert sweeps[0].fs_hz == 20000 and sweeps[0].sweep_id == "sweep_000"


@needs_shared
def test_abf_command_in_nanoamperes():
    sweeps = read_abf(PATCH / "abf" / "97509008.abf")
    assert len(sweeps) == 16
    np.testing.assert_allclose([s.stim_amp_pA for s in sweeps], np.arange(-2000, 1001, 200), atol=1e-3)  # float32 nA levels
    assert sweeps[0].i_pA.min() == pytest.approx(-2000.0)


@needs_shared
def test_abf_with_recorded_current_channel():
    # Ferguson et al. 2015 ABF1 files: DAC labelled mV, the injected current is the Imemb ADC
    sweeps = read_abf(PATCH / "abf" / "PYR1.abf")
    assert len(sweeps) == 30
    assert "Imemb" in sweeps[0].meta["stimulus_source"]
    np.testing.assert_allclose([s.stim_amp_pA for s in sweeps], np.arange(10, 301, 10), atol=6)
    assert all(abs(s.stim_start_s - 0.081) < 0.005 and abs(s.stim_end_s - 1.082) < 0.005 for s in sweeps)


@needs_shared
def test_ferguson_nwb_pairs_by_sweep_number():
    sweeps = read_nwb(PATCH / "nwb" / "FergusonEtAl2015_PYR2.nwb")
    assert [s.meta["sweep_number"] for s in sweeps] == list(range(1, 14))
    assert [s.meta["stimulus_series"] for s in sweeps][:2] == ["CurrentClampStimulusSeries_01", "CurrentClampStimulusSeries_02"]
    np.testing.assert_allclose([s.stim_amp_pA for s in sweeps], np.arange(25, 326, 25), atol=5)
    assert -62 < np.median(sweeps[0].v_mV[:500]) < -59  # stored in volts, conversion 1.0


@needs_shared
def test_nwb_pairs_through_intracellular_recordings_table():
    sweeps = read_nwb(PATCH / "nwb" / "99111002.nwb")
    assert [s.sweep_id for s in sweeps] == [f"ic__Step__{k}" for k in range(1, 17)]  # natural order
    assert [s.meta["stimulus_series"] for s in sweeps][-1] == "ics__Step__16"
    np.testing.assert_allclose([s.stim_amp_pA for s in sweeps], np.arange(-2000, 1001, 200), atol=1e-3)
    zero = sweeps[10]
    assert abs(zero.stim_amp_pA) < 1 and zero.meta["step_window"] == "from other sweeps of the file"
    assert (zero.stim_start_s, zero.stim_end_s) == (sweeps[0].stim_start_s, sweeps[0].stim_end_s)
    assert [s.t0_s for s in sweeps[:3]] == [0.0, 2.0, 4.0]


@needs_shared
def test_discover_patchclamp_with_labels():
    cells, skipped = discover_cells(PATCH, PATCH / "cells.csv")
    assert len(cells) == 13
    labels = [c.label for c in cells]
    assert labels.count("pyramidal") == 5 and labels.count("interneuron") == 2
    assert labels.count(None) == 6  # "unknown" rows
    assert all(Path(c.source).exists() and c.source.startswith(str(PATCH)) for c in cells)
    assert {c.source for c in cells} >= {str(PATCH / "abf" / "PYR1.abf"), str(PATCH / "nwb" / "99111002.nwb")}
    assert len({c.cell_id for c in cells}) == 13
    assert "nwb_FergusonEtAl2015_PYR2" in [c.cell_id for c in cells]
    assert len(skipped) == 6  # the Igor folders
    for path, reason in skipped:
        assert "/ibw/" in path and reason.startswith("unsupported format .ibw (Igor binary wave)")
    reasons = dict(skipped)
    assert reasons[str(PATCH / "ibw" / "C060109A1-SR-C1")].endswith("— 36 files")
    assert reasons[str(PATCH / "ibw" / "ca1_pyramidal_rat" / "001_150216_A1_CA1py_MPG Folder")].endswith("— 4 files")


@needs_shared
def test_discover_patchclamp_without_labels():
    cells, skipped = discover_cells(PATCH)
    assert len(cells) == 13 and all(c.label is None and c.source == str(c.paths[0]) for c in cells)
    assert [c.cell_id for c in cells][:2] == ["abf_171116sh_0018", "abf_171116sh_0019"]
    assert len(skipped) == 6
    with pytest.raises(EphysError, match=r"no recordings found \(looked for .nwb, .abf\); found 70 .ibw"):
        discover_cells(PATCH / "ibw")


@needs_shared
def test_discover_single_file_with_labels():
    cells, skipped = discover_cells(PATCH / "abf" / "PYR1.abf", PATCH / "cells.csv")
    assert skipped == [] and [(c.cell_id, c.label) for c in cells] == [("PYR1", "pyramidal")]
    with pytest.raises(UnreadableRecording, match=r"unsupported format .ibw \(Igor binary wave\); convert to NWB or ABF"):
        read_recording(next((PATCH / "ibw" / "C060109A1-SR-C1").glob("*.ibw")))


# ------------------------------------------------------------------------------------------------
# made-up files
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def syn_cell():
    return simulate_cells(["Excitatory"], seed=1, fs_hz=5000.0)[0]


def _nwbfile():
    from pynwb import NWBFile

    return NWBFile(session_description="test", identifier="test", session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))


def _write(nwb, path):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_voltage_clamp_only_nwb_is_refused(tmp_path):
    from pynwb.icephys import VoltageClampSeries

    nwb = _nwbfile()
    dev = nwb.create_device(name="amp")
    el = nwb.create_icephys_electrode(name="e", description="", device=dev)
    nwb.add_acquisition(VoltageClampSeries(name="vc", data=np.zeros(100), electrode=el, gain=1.0, rate=1e4, starting_time=0.0))
    path = _write(nwb, tmp_path / "vc.nwb")
    with pytest.raises(UnreadableRecording, match="voltage-clamp only: no current-clamp sweeps") as err:
        read_nwb(path)
    assert str(path) in str(err.value)


def test_nwb_response_without_stimulus_is_kept(tmp_path):
    from pynwb.icephys import CurrentClampSeries

    nwb = _nwbfile()
    dev = nwb.create_device(name="amp")
    el = nwb.create_icephys_electrode(name="e", description="", device=dev)
    data = np.full(2000, -70.0, dtype=np.float32)
    nwb.add_acquisition(CurrentClampSeries(name="cc", data=data, electrode=el, gain=1.0, rate=1e4, starting_time=0.0, conversion=1e-3, offset=-0.005))
    (s,) = read_nwb(_write(nwb, tmp_path / "nostim.nwb"))
    np.testing.assert_allclose(s.v_mV, -75.0)  # conversion and offset honoured
    assert np.all(s.i_pA == 0) and np.isnan(s.stim_amp_pA) and np.isnan(s.stim_start_s)
    assert s.meta["stimulus"] == "missing"


def test_unreadable_files(tmp_path):
    fake = tmp_path / "x.nwb"
    fake.write_text("not an nwb file")
    with pytest.raises(UnreadableRecording, match=r"not a readable NWB file \(not an HDF5 file\)") as err:
        read_recording(fake)
    assert str(fake) in err.value.one_line()
    import h5py

    with h5py.File(tmp_path / "empty.nwb", "w"):
        pass
    with pytest.raises(UnreadableRecording, match="not a readable NWB file"):
        read_nwb(tmp_path / "empty.nwb")
    bad_abf = tmp_path / "x.abf"
    bad_abf.write_bytes(b"\0" * 600)
    with pytest.raises(UnreadableRecording, match="not a readable ABF file"):
        read_abf(bad_abf)
    with pytest.raises(UnreadableRecording, match="no such file"):
        read_recording(tmp_path / "missing.abf")
    dat = tmp_path / "cell.dat"
    dat.write_bytes(b"x")
    with pytest.raises(UnreadableRecording, match=r"unsupported format .dat \(HEKA PatchMaster bundle\); convert to NWB or ABF"):
        read_recording(dat)


def test_abf_clamp_mode_from_units(tmp_path):
    from pyabf import abfWriter

    abfWriter.writeABF1(np.zeros((2, 2000), np.float32), str(tmp_path / "vc.abf"), 10000, units="pA")
    with pytest.raises(UnreadableRecording, match=r"voltage-clamp recording \(ADC units pA\)"):
        read_abf(tmp_path / "vc.abf")
    abfWriter.writeABF1(np.full((2, 2000), -65, np.float32), str(tmp_path / "cc.abf"), 10000, units="mV")
    with pytest.raises(UnreadableRecording, match="no usable command waveform"):
        read_abf(tmp_path / "cc.abf")


def test_find_main_step():
    fs = 10_000.0
    i = np.zeros(15000)
    i[2000:12000] = 150.0
    assert find_main_step(i, fs) == (150.0, 0.2, 1.2)
    assert find_main_step(np.zeros(15000), fs)[0] == 0.0
    long_step = np.zeros(10000)
    long_step[1000:9000] = -300.0  # longer than half the sweep: the median is the step level
    assert find_main_step(long_step, fs) == (-300.0, 0.1, 0.9)
    rng = np.random.default_rng(0)
    noisy = i - 70 + rng.normal(0, 10, i.size)  # a recorded current with a holding bias
    amp, start, end = find_main_step(noisy, fs)
    assert amp == pytest.approx(150, abs=3) and start == pytest.approx(0.2, abs=0.003) and end == pytest.approx(1.2, abs=0.003)


def test_discover_rules(tmp_path, syn_cell):
    root = tmp_path / "data"
    (root / "cellA").mkdir(parents=True)
    (root / "igor").mkdir()
    write_cell_nwb(root / "cellA" / "s1.nwb", syn_cell)
    write_cell_nwb(root / "cellA" / "s2.nwb", syn_cell)
    write_cell_nwb(root / "loose.nwb", syn_cell)
    write_cell_nwb(root / "other" / "loose.nwb", syn_cell)
    for k in range(3):
        (root / "igor" / f"w{k}.ibw").write_bytes(b"x")
    (root / "notes.txt").write_text("ignored")
    (root / "stray.dat").write_bytes(b"x")
    (root / "labels.csv").write_text("path,label,comment\ncellA,Pvalb,two files\nigor,Sst,\nloose.nwb,unknown,\n")

    cells, skipped = discover_cells(root, root / "labels.csv")
    by_id = {c.cell_id: c for c in cells}
    assert set(by_id) == {"cellA", "loose", "other_loose"}
    assert by_id["cellA"].label == "Pvalb" and [p.name for p in by_id["cellA"].paths] == ["s1.nwb", "s2.nwb"]
    assert by_id["cellA"].source == str(root / "cellA")
    assert by_id["loose"].label is None and by_id["loose"].source == str(root / "loose.nwb")
    assert by_id["other_loose"].label is None and by_id["other_loose"].source == str(root / "other" / "loose.nwb")
    assert (str(root / "igor"), "unsupported format .ibw (Igor binary wave) — 3 files") in skipped
    assert (str(root / "stray.dat"), "unsupported format .dat (HEKA PatchMaster bundle)") in skipped
    assert len(skipped) == 2  # notes.txt and labels.csv ignored silently

    sweeps = read_cell(by_id["cellA"])
    assert len(sweeps) == 2 * len(syn_cell.sweeps)
    assert sweeps[0].sweep_id == "s1__sweep_000" and sweeps[-1].sweep_id.startswith("s2__")
    assert len({s.sweep_id for s in sweeps}) == len(sweeps) and sweeps[0].meta["cell_id"] == "cellA"

    plain, _ = discover_cells(root)
    assert [c.cell_id for c in plain] == ["cellA_s1", "cellA_s2", "loose", "other_loose"]


def test_cell_ids_are_unique(tmp_path, syn_cell):
    write_cell_nwb(tmp_path / "a b.nwb", syn_cell)
    write_cell_nwb(tmp_path / "a_b.nwb", syn_cell)
    cells, _ = discover_cells(tmp_path)
    assert [c.cell_id for c in cells] == ["a_b", "a_b_2"]


def test_discover_errors(tmp_path, syn_cell):
    with pytest.raises(EphysError, match="no such file or folder") as err:
        discover_cells(tmp_path / "nope")
    assert str(tmp_path / "nope") in err.value.one_line()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EphysError, match=r"no recordings found \(looked for .nwb, .abf\)") as err:
        discover_cells(empty)
    assert str(empty) in err.value.one_line()

    root = tmp_path / "root"
    root.mkdir()
    write_cell_nwb(root / "c.nwb", syn_cell)
    csv = root / "labels.csv"
    csv.write_text("path,label\nc.nwb,Sst\nmissing.nwb,Pvalb\n")
    with pytest.raises(EphysError, match="labels CSV row 3: missing.nwb does not exist") as err:
        discover_cells(root, csv)
    assert str(csv) in err.value.one_line()
    csv.write_text("file,class\nc.nwb,Sst\n")
    with pytest.raises(EphysError, match="labels CSV needs columns 'path' and 'label'"):
        discover_cells(root, csv)
    with pytest.raises(EphysError, match="labels CSV not found"):
        discover_cells(root, root / "absent.csv")
    elsewhere = tmp_path / "elsewhere.csv"
    write_cell_nwb(tmp_path / "outside.nwb", syn_cell)
    elsewhere.write_text("path,label\noutside.nwb,Sst\n")
    with pytest.raises(EphysError, match="labels CSV names no cell under"):
        discover_cells(root, elsewhere)
    with pytest.raises(EphysError, match="unsupported format .ibw"):
        (tmp_path / "w.ibw").write_bytes(b"x")
        discover_cells(tmp_path / "w.ibw")
    with pytest.raises(UnreadableRecording, match="not a readable NWB file"):
        (root / "bad.nwb").write_text("garbage")
        read_cell(CellSource("bad", [root / "bad.nwb"], None, "scan"))
