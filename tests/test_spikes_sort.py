"""``ephys spikes sort``: a continuous recording to a sorting, scored on generated ground truth.

One short generated tetrode recording (20 s, 4 channels, 5 units, noise level 8 µV, seed 0;
``spikeinterface.generate_ground_truth_recording``), written as an NWB ElectricalSeries with its
subject, is sorted once by the CLI; the outputs are read back with SpikeInterface and pynwb,
scored with SpikeInterface's comparison, and checked by nwbinspector. Bad input is refused with
one-line errors (exit 2).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ephys, one_line_error

si = pytest.importorskip("spikeinterface.full")

#: mean accuracy measured on this recording with the defaults (2026-12-08: 0.738; 4 of 5 units well
#: detected, accuracy 0.84-0.97, the smallest missed); the test allows 0.08 below it
MEASURED_ACCURACY = 0.738


def _tetrode_recording(seconds=20.0, n_units=5, noise_uV=8.0, seed=0):
    from probeinterface import generate_tetrode

    probe = generate_tetrode()
    probe.set_device_channel_indices(np.arange(4))
    return si.generate_ground_truth_recording(durations=[seconds], sampling_frequency=30000.0, num_units=n_units,
                                              probe=probe, seed=seed,
                                              noise_kwargs=dict(noise_levels=noise_uV, strategy="on_the_fly"))


def _write_nwb(path, rec):
    """The recording as an NWB acquisition ElectricalSeries (µV stored with conversion 1e-6), with
    the tetrode's positions in the electrodes table and a subject."""
    import datetime as dt

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries
    from pynwb.file import Subject

    f = NWBFile(session_description="generated tetrode", identifier="sort-test",
                session_start_time=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                subject=Subject(subject_id="gen1", species="Mus musculus", sex="U", age="P90D"))
    grp = f.create_electrode_group("tetrode", description="generated", location="CA1",
                                   device=f.create_device("tetrode"))
    for x, y in rec.get_channel_locations():
        f.add_electrode(group=grp, location="CA1", rel_x=float(x), rel_y=float(y))
    f.add_acquisition(ElectricalSeries(name="ElectricalSeries", data=rec.get_traces().astype(np.float32),
                                       electrodes=f.create_electrode_table_region(list(range(4)), "all"),
                                       rate=rec.get_sampling_frequency(), conversion=1e-6))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)


@pytest.fixture(scope="module")
def sorted_tetrode(tmp_path_factory):
    root = tmp_path_factory.mktemp("sort")
    rec, gt = _tetrode_recording()
    _write_nwb(root / "rec.nwb", rec)
    gt.save(folder=root / "gt", format="numpy_folder")
    proc = ephys("--quiet", "spikes", "sort", root / "rec.nwb", root / "out", "--ground-truth", root / "gt", check=0)
    return root, gt, proc


def test_sort_matches_ground_truth_and_outputs_read_back(sorted_tetrode):
    root, gt, proc = sorted_tetrode
    out = root / "out"
    assert proc.stdout.strip().endswith("sort.json")
    sorting = si.load(out / "sorting")
    assert type(sorting).__name__ == "NumpyFolderSorting"
    cmp = si.compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=True)
    perf = cmp.get_performance()
    assert perf["accuracy"].mean() >= MEASURED_ACCURACY - 0.08, perf
    assert cmp.count_well_detected_units(0.8) >= 4, perf
    res = json.loads((out / "sort.json").read_text())
    assert res["n_units"] == len(sorting.get_unit_ids()) and res["probe"].startswith("the recording")
    # --ground-truth: the same comparison in sort.json, its agreement matrix in the report
    c = res["comparison"]
    assert c["mean_accuracy"] == pytest.approx(perf["accuracy"].mean(), abs=1e-4)
    assert c["well_detected"] == cmp.count_well_detected_units(0.8) and c["n_gt_units"] == 5
    assert [p["accuracy"] for p in c["per_unit"]] == pytest.approx(perf["accuracy"].tolist(), abs=1e-4)

    import pandas as pd

    table = pd.read_csv(out / "units.csv")
    assert table["unit_id"].tolist() == [int(u) for u in sorting.get_unit_ids()]
    assert (table["num_spikes"].to_numpy() == [sorting.get_unit_spike_train(u).size
                                               for u in sorting.get_unit_ids()]).all()
    for col in ("snr", "isi_violations_ratio", "presence_ratio", "amplitude_cutoff", "isolation_distance", "l_ratio"):
        assert col in table.columns
    assert (table["snr"] > 3).all() and (table["presence_ratio"] > 0.5).all()

    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out / "units.nwb"), "r") as io:
        units = io.read().units.to_dataframe()
    assert len(units) == len(sorting.get_unit_ids())
    for _, row in units.iterrows():
        u = int(row["unit_name"])
        np.testing.assert_allclose(row["spike_times"], sorting.get_unit_spike_train(u) / 30000.0)
        assert row["waveform_mean"].shape[1] == 4
        assert row["num_spikes"] == table.set_index("unit_id").loc[u, "num_spikes"]

    from nwbinspector import Importance, inspect_nwbfile

    critical = [m for m in inspect_nwbfile(nwbfile_path=out / "units.nwb") if m.importance == Importance.CRITICAL]
    assert critical == []  # the subject is the source's
    html = (out / "report.html").read_text()
    assert "Quality metrics" in html and "autocorrelograms" in html and html.count("<img") >= 5
    assert "Against the ground truth" in html and 'alt="agreement matrix"' in html


def test_a_spikeinterface_folder_reads_and_an_unknown_subject_is_not_invented(tmp_path):
    from ephys.pipelines.spikes import sort

    rec, _ = _tetrode_recording(seconds=2.0, n_units=2, seed=3)
    rec.save(folder=tmp_path / "rec", n_jobs=1, progress_bar=False)
    back = sort.read_recording(tmp_path / "rec")
    assert back.get_num_channels() == 4 and back.has_probe()
    from ephys.pipelines.core.nwb_out import subject_of

    subject = subject_of(tmp_path / "rec")  # not NWB: "not stated", nothing invented
    assert subject.sex == "U" and subject.species is None and "not stated" in subject.subject_id


def test_isolation_distance_and_l_ratio_agree_with_spikeinterface():
    from spikeinterface.metrics.quality.pca_metrics import mahalanobis_metrics

    from ephys.pipelines.spikes.cluster_quality import isolation_and_lratio

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (300, 6)), rng.normal(2.5, 1.3, (200, 6)), rng.normal(-3, 0.7, (150, 6))])
    lab = np.repeat([0, 1, 2], [300, 200, 150])
    for u in range(3):
        ours = isolation_and_lratio(x, lab, u)
        theirs = mahalanobis_metrics(x, lab, u)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_quality_metrics_of_a_sorting_agree_with_ours_on_the_same_projections():
    from ephys.pipelines.spikes import sort
    from ephys.pipelines.spikes.cluster_quality import isolation_and_lratio

    rec, gt = _tetrode_recording(seconds=10.0, n_units=4, seed=2)
    pre = sort.preprocess(rec)
    qm, temps, an = sort.quality_metrics(gt, pre)
    proj, lab = an.get_extension("principal_components").get_some_projections()  # lab: unit indices
    feats = proj.reshape(len(proj), -1)
    for i, u in enumerate(gt.get_unit_ids()):
        iso, lr = isolation_and_lratio(feats, lab, i)
        assert iso is not None  # (ours is None when more spikes lie inside the unit than outside; SI's is not)
        np.testing.assert_allclose([iso, lr], qm.loc[u, ["isolation_distance", "l_ratio"]].to_numpy(float),
                                   rtol=1e-5)
    assert temps.shape[0] == 4 and temps.shape[2] == 4


def test_bad_input_is_one_line_errors(tmp_path):
    bad = tmp_path / "x.nwb"
    bad.write_bytes(b"not an hdf5 file at all")
    one_line_error(ephys("spikes", "sort", bad, tmp_path / "o1"), "x.nwb", "cannot read it as NWB")
    noise = np.random.default_rng(0).normal(0, 10, (15000, 4)).astype(np.float32)  # 0.5 s, no spike
    np.save(tmp_path / "noise.npy", noise)
    one_line_error(ephys("spikes", "sort", tmp_path / "noise.npy", tmp_path / "o2", "--fs-hz", "30000"),
                   "nothing to sort")
    assert not (tmp_path / "o2").exists()
    probe = tmp_path / "probe.json"
    from probeinterface import generate_linear_probe, write_probeinterface

    write_probeinterface(probe, generate_linear_probe(num_elec=8))
    one_line_error(ephys("spikes", "sort", tmp_path / "noise.npy", tmp_path / "o3", "--fs-hz", "30000",
                         "--probe", probe), "probe mismatch", "8 contacts", "4 channels")
    one_line_error(ephys("spikes", "sort", tmp_path / "noise.npy", tmp_path / "o4"), "--fs-hz")
    one_line_error(ephys("spikes", "sort", tmp_path / "noise.npy", tmp_path / "o5", "--fs-hz", "30000",
                         "--ground-truth", tmp_path), "cannot read it as a SpikeInterface sorting folder")
    assert not (tmp_path / "o5").exists()
