"""The fast h5py NWB reader equals the pynwb reference reader (issue 15).

Every NWB file in ../shared/data, simulated cells (`ephys fetch synthetic`'s writer) and small
hand-built files covering the pairing rules, units, timestamps, table slices and the refusals:
same sweeps (ids, order), samples (exactly), units, rates, start times, step amplitudes/times,
meta, and the same one-line errors.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, needs_shared
from ephys.pipelines.blocks.readers import nwb_fast
from ephys.pipelines.blocks.readers.patchclamp import (_fill_windows_from_siblings, read_nwb,
                                                       read_nwb_pynwb)
from ephys.pipelines.core.errors import UnreadableRecording

SHARED_NWB = sorted(SHARED_DATA.glob("**/*.nwb")) if SHARED_DATA.is_dir() else []


def _fast(path):
    sweeps = nwb_fast.read_nwb_h5(path, Path(path))  # no pynwb fallback: this must do it alone
    _fill_windows_from_siblings(sweeps)
    return sweeps


def assert_same_sweeps(fast, ref):
    assert [s.sweep_id for s in fast] == [s.sweep_id for s in ref]
    for a, b in zip(fast, ref):
        assert a.v_mV.dtype == b.v_mV.dtype == np.float64
        np.testing.assert_array_equal(a.v_mV, b.v_mV)
        np.testing.assert_array_equal(a.i_pA, b.i_pA)
        assert a.fs_hz == b.fs_hz and a.t0_s == b.t0_s
        np.testing.assert_equal([a.stim_amp_pA, a.stim_start_s, a.stim_end_s],
                                [b.stim_amp_pA, b.stim_start_s, b.stim_end_s])
        assert a.meta == b.meta


@needs_shared
def test_shared_data_has_nwb_files():
    assert len(SHARED_NWB) >= 3


@needs_shared
@pytest.mark.parametrize("path", SHARED_NWB, ids=lambda p: p.name)
def test_fast_reader_equals_pynwb_on_real_files(path):
    assert_same_sweeps(_fast(path), read_nwb_pynwb(path))
    assert_same_sweeps(read_nwb(path), read_nwb_pynwb(path))


def test_fast_reader_equals_pynwb_on_simulated_cells(tiny_synthetic):
    files = sorted(tiny_synthetic.glob("*.nwb"))
    assert len(files) == 12
    for path in files[::3]:
        ref = read_nwb_pynwb(path)
        assert len(ref) >= 5
        assert_same_sweeps(_fast(path), ref)


# ------------------------------------------------------------------------------------------------
# hand-built files: the rules one by one
# ------------------------------------------------------------------------------------------------


def _nwbfile():
    from pynwb import NWBFile

    return NWBFile(session_description="t", identifier="t",
                   session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))


def _write(nwb, path):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _step(n, fs, amp, a=0.1, b=0.7):
    i = np.zeros(n)
    i[int(a * fs):int(b * fs)] = amp
    return i


def _electrode(nwb):
    dev = nwb.create_device(name="amp")
    return nwb.create_icephys_electrode(name="e", description="", device=dev)


def test_pairing_by_table_slices_and_units(tmp_path):
    """Table rows with idx_start/count slices, a stimulus in pA (conversion 1e-12) at half the
    rate, a response in mV (conversion 1e-3) with an offset, one response with timestamps."""
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = _nwbfile()
    el = _electrode(nwb)
    fs = 5000.0
    rng = np.random.default_rng(0)
    for k, amp in enumerate([50.0, 100.0, 0.0]):
        v = (-70 + rng.normal(0, 1, 5000)).astype(np.float32)
        stim = CurrentClampStimulusSeries(name=f"stim_{k}", data=_step(2500, fs / 2, amp), electrode=el, gain=1.0,
                                          rate=fs / 2, starting_time=0.0, conversion=1e-12, sweep_number=k)
        kw = dict(rate=fs, starting_time=0.0) if k != 1 else dict(timestamps=np.arange(5000) / fs)
        resp = CurrentClampSeries(name=f"resp_{k}", data=v, electrode=el, gain=1.0, conversion=1e-3, offset=-2.5e-3,
                                  sweep_number=k, **kw)
        nwb.add_stimulus(stim)
        nwb.add_acquisition(resp)
        nwb.add_intracellular_recording(electrode=el, stimulus=stim, response=resp,
                                        response_start_index=100 * k, response_index_count=4000,
                                        stimulus_start_index=0, stimulus_index_count=2500)
    path = _write(nwb, tmp_path / "table.nwb")
    ref = read_nwb_pynwb(path)
    assert [s.n_samples for s in ref] == [4000] * 3 and ref[1].stim_amp_pA == pytest.approx(100.0)
    assert_same_sweeps(_fast(path), ref)


def test_pairing_by_sweep_number_without_table(tmp_path):
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = _nwbfile()
    el = _electrode(nwb)
    for k in (3, 1, 2):  # written out of order: sorted by sweep number
        nwb.add_stimulus(CurrentClampStimulusSeries(name=f"s{k}", data=_step(3000, 1e4, 20.0 * k) * 1e-12,
                                                    electrode=el, gain=1.0, rate=1e4, sweep_number=k))
        nwb.add_acquisition(CurrentClampSeries(name=f"r{k}", data=np.full(3000, -0.07), electrode=el, gain=1.0,
                                               rate=1e4, conversion=1.0, sweep_number=k,
                                               stimulus_description="square"))
    nwb.add_acquisition(CurrentClampSeries(name="r9", data=np.full(3000, -0.07), electrode=el, gain=1.0,
                                           rate=1e4, sweep_number=9))  # no stimulus of its number
    path = _write(nwb, tmp_path / "numbers.nwb")
    ref = read_nwb_pynwb(path)
    assert [s.sweep_id for s in ref] == ["r1", "r2", "r3", "r9"] and ref[3].meta["stimulus"] == "missing"
    assert_same_sweeps(_fast(path), ref)


def _refusal(tmp_path, name, series):
    nwb = _nwbfile()
    el = _electrode(nwb)
    for s in series(el):
        nwb.add_acquisition(s)
    return _write(nwb, tmp_path / name)


def test_schema_fixed_units_win_over_the_attribute(tmp_path):
    """pynwb reports CurrentClampSeries in volts whatever the file's unit attribute says (the
    NWB >= 2.1 schema fixes it); the fast reader does the same."""
    import h5py
    from pynwb.icephys import CurrentClampSeries

    path = _refusal(tmp_path, "unit.nwb", lambda el: [CurrentClampSeries(
        name="cc", data=np.full(100, -0.07), electrode=el, gain=1.0, rate=1e4)])
    with h5py.File(path, "a") as f:
        f["acquisition/cc/data"].attrs["unit"] = "furlongs"
    ref = read_nwb_pynwb(path)
    np.testing.assert_allclose(ref[0].v_mV, -70.0)
    assert_same_sweeps(_fast(path), ref)


@pytest.mark.parametrize("case", ["vclamp", "izero", "empty"])
def test_same_refusals(tmp_path, case):
    from pynwb.icephys import CurrentClampSeries, IZeroClampSeries, VoltageClampSeries

    make = {
        "vclamp": lambda el: [VoltageClampSeries(name="vc", data=np.zeros(100), electrode=el, gain=1.0, rate=1e4)],
        "izero": lambda el: [IZeroClampSeries(name="iz", data=np.zeros(100), electrode=el, gain=1.0, rate=1e4)],
        "empty": lambda el: [CurrentClampSeries(name="cc", data=np.zeros(0), electrode=el, gain=1.0, rate=1e4)],
    }[case]
    path = _refusal(tmp_path, f"{case}.nwb", make)
    with pytest.raises(UnreadableRecording) as ref:
        read_nwb_pynwb(path)
    with pytest.raises(UnreadableRecording) as fast:
        _fast(path)
    assert fast.value.one_line() == ref.value.one_line()


def test_what_the_fast_reader_does_not_handle_goes_to_pynwb(tmp_path):
    import h5py

    with h5py.File(tmp_path / "empty.nwb", "w"):
        pass
    with pytest.raises(nwb_fast.NeedPynwb):
        nwb_fast.read_nwb_h5(tmp_path / "empty.nwb", tmp_path / "empty.nwb")
    with pytest.raises(UnreadableRecording, match="not a readable NWB file"):  # pynwb's reason
        read_nwb(tmp_path / "empty.nwb")
