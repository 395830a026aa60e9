"""The simulated default dataset: protocol, class differences, determinism, NWB round trip."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest

from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.blocks.readers.patchclamp import discover_cells, read_cell, read_nwb
from ephys.pipelines.sts.synthetic import (
    CELL_CLASSES,
    N_SWEEPS,
    SimulatedCell,
    fetch_synthetic,
    simulate_cells,
    write_cell_nwb,
)

FS = 5_000.0  # small rate keeps the tests fast; the default is 10 kHz


@pytest.fixture(scope="module")
def cells() -> list[SimulatedCell]:
    return simulate_cells(list(CELL_CLASSES), seed=7, fs_hz=FS)


def test_classes_and_ids(cells):
    assert CELL_CLASSES == ("Excitatory", "Pvalb", "Sst", "Vip/Lamp5")
    assert [c.label for c in cells] == list(CELL_CLASSES)
    assert [c.cell_id for c in cells] == ["syn_excitatory_000", "syn_pvalb_000", "syn_sst_000", "syn_vip_lamp5_000"]
    again = simulate_cells(["Sst", "Sst"], seed=7, fs_hz=FS)
    assert [c.cell_id for c in again] == ["syn_sst_000", "syn_sst_001"]


def test_long_square_protocol(cells):
    n = int(1.5 * FS)
    for cell in cells:
        assert len(cell.sweeps) == N_SWEEPS == len(cell.spike_times_s)
        rheo = cell.params["rheobase_pA"]
        amps = np.array([s.stim_amp_pA for s in cell.sweeps])
        assert amps[0] == -50.0
        assert np.sum((amps > 0) & (amps < rheo)) >= 2  # subthreshold depolarising sweeps
        assert amps.max() == pytest.approx(3 * rheo, abs=1.0)
        assert np.all(np.diff(amps) > 0)
        for s in cell.sweeps:
            assert s.v_mV.shape == s.i_pA.shape == (n,) and s.v_mV.dtype == np.float64
            assert s.fs_hz == FS and s.stim_start_s == 0.2 and s.stim_end_s == 1.2
            assert np.all(s.i_pA[: int(0.2 * FS)] == 0) and np.all(s.i_pA[int(1.2 * FS):] == 0)
            assert np.all(s.i_pA[int(0.2 * FS): int(1.2 * FS)] == s.stim_amp_pA)
            assert -90 < np.median(s.v_mV[: int(0.2 * FS)]) < -55  # resting potential


def test_spikes_are_drawn_action_potentials(cells):
    for cell in cells:
        sub = [k for k, s in enumerate(cell.sweeps) if s.stim_amp_pA < 0.6 * cell.params["rheobase_pA"]]
        assert all(cell.spike_times_s[k].size == 0 for k in sub)
        top = cell.spike_times_s[-1]
        assert top.size >= 3, cell.cell_id
        v = cell.sweeps[-1].v_mV
        for t in top[:5]:
            k = int(round(t * FS))
            # an AP at the true peak time (at 5 kHz the 0.3 ms Pvalb peak falls between samples)
            assert v[max(0, k - 1): k + 2].max() > -20.0
        dvdt = np.diff(v) * FS / 1000.0  # mV/ms
        assert dvdt.max() > 20.0  # a dV/dt threshold detector sees the upstrokes


def test_classes_differ(cells):
    by = {c.label: c for c in cells}
    rate3 = {k: c.spike_times_s[-1].size for k, c in by.items()}
    assert rate3["Pvalb"] > 2 * max(rate3["Excitatory"], rate3["Sst"])
    assert by["Pvalb"].params["rheobase_pA"] > by["Sst"].params["rheobase_pA"]
    assert by["Pvalb"].params["ap_hw"] < by["Sst"].params["ap_hw"] < by["Excitatory"].params["ap_hw"]
    assert by["Vip/Lamp5"].params["template"] in ("vip", "lamp5")
    for c in cells:
        assert "Naud" in c.params["source"] and "Brette" in c.params["source"]


def test_determinism_and_independence(cells):
    # same seed -> same cell, and a cell depends on (seed, class, index), not on the other
    # cells simulated with it: Pvalb alone equals the Pvalb simulated with the three others
    alone = simulate_cells(["Pvalb"], seed=7, fs_hz=FS)[0]
    assert alone.cell_id == cells[1].cell_id and alone.params == cells[1].params
    for s1, s2 in zip(alone.sweeps, cells[1].sweeps):
        np.testing.assert_array_equal(s1.v_mV, s2.v_mV)
    for t1, t2 in zip(alone.spike_times_s, cells[1].spike_times_s):
        np.testing.assert_array_equal(t1, t2)
    other_seed = simulate_cells(["Pvalb"], seed=8, fs_hz=FS)[0]
    assert other_seed.params != alone.params
    assert not np.array_equal(other_seed.sweeps[-1].v_mV, alone.sweeps[-1].v_mV)


def test_bad_arguments():
    with pytest.raises(EphysError, match="unknown cell class"):
        simulate_cells(["Chandelier"])
    with pytest.raises(EphysError, match="sampling rate"):
        simulate_cells(["Sst"], fs_hz=500)


def test_nwb_round_trip(cells, tmp_path):
    for cell in cells:
        path = write_cell_nwb(tmp_path / f"{cell.cell_id}.nwb", cell)
        back = read_nwb(path)
        assert len(back) == len(cell.sweeps)
        for s, r in zip(cell.sweeps, back):
            assert r.sweep_id == s.sweep_id
            assert r.fs_hz == s.fs_hz and r.t0_s == s.t0_s
            assert r.stim_amp_pA == s.stim_amp_pA
            assert r.stim_start_s == s.stim_start_s and r.stim_end_s == s.stim_end_s
            np.testing.assert_array_equal(r.i_pA, s.i_pA)
            np.testing.assert_allclose(r.v_mV, s.v_mV, rtol=2e-7, atol=1e-6)  # float32 storage
            assert r.meta["stimulus_description"] == "long_square"
    assert not list(tmp_path.glob(".*part*"))  # atomic writes leave no temporaries


def test_same_cell_gives_identical_files(cells, tmp_path):
    # no random object ids or creation dates: the same seed gives byte-identical files
    for name in ("a", "b"):
        write_cell_nwb(tmp_path / f"{name}.nwb", cells[3])
    digest = [hashlib.sha256((tmp_path / f"{n}.nwb").read_bytes()).hexdigest() for n in "ab"]
    assert digest[0] == digest[1]


def test_fetch_synthetic_is_idempotent(tmp_path):
    calls = []
    out = fetch_synthetic(tmp_path / "syn", n_per_class=1, seed=2, fs_hz=FS, progress=lambda d, t: calls.append((d, t)))
    files = sorted(p.name for p in out.glob("*.nwb"))
    assert files == ["syn_excitatory_000.nwb", "syn_pvalb_000.nwb", "syn_sst_000.nwb", "syn_vip_lamp5_000.nwb"]
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["label"]) for r in rows] == [(f, lab) for f, lab in zip(files, CELL_CLASSES)]
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nwb")}
    (out / "syn_sst_000.nwb").write_bytes(b"truncated")  # a damaged file is regenerated
    calls.clear()
    fetch_synthetic(out, n_per_class=1, seed=2, fs_hz=FS, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 4), (4, 4)]
    for name, stamp in stamps.items():
        if name != "syn_sst_000.nwb":
            assert (out / name).stat().st_mtime_ns == stamp
    assert len(read_nwb(out / "syn_sst_000.nwb")) == N_SWEEPS

    cells, skipped = discover_cells(out, out / "labels.csv")
    assert skipped == []
    assert [(c.cell_id, c.label) for c in cells] == [(f[:-4], lab) for f, lab in zip(files, CELL_CLASSES)]
    assert len(read_cell(cells[0])) == N_SWEEPS

    with pytest.raises(EphysError, match="n_per_class"):
        fetch_synthetic(out, n_per_class=0)
