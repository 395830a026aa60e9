"""events simulator, kinetics families: declared kinetics, long-tailed amplitudes, labelled artifacts,
real noise, the ``fetch synthetic --families`` options."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import SHARED_DATA, needs_shared
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.events.families import FAMILIES, measure_rise_decay, simulate_family

ABF = SHARED_DATA / "events" / "171116sh_0020.abf"


def _isolated(rec, fs):
    """(index, clean event) of every event with no other event within 8 decay taus either side."""
    on, dec = rec.truth["onset_s"], rec.truth["decay_tau_ms"] * 1e-3
    out = []
    for k in range(on.size):
        near = np.abs(on - on[k]) < 8 * np.maximum(dec, dec[k])
        near[k] = False
        if near.any():
            continue
        i0 = int(np.ceil(on[k] * fs))
        out.append((k, np.abs(rec.signal[i0: i0 + int(8 * dec[k] * fs)])))
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_has_its_declared_kinetics(family):
    """Measured 10-90 % rise and fitted decay tau of every isolated simulated event equal the declared
    ones (within 5 %), and the declared ones lie in the family's ranges."""
    fs = 50_000.0  # a rise of 0.2 ms is 10 samples: the measurement, not the sampling, is tested
    rec = simulate_family(family, 5.0, 30.0, seed=11, fs_hz=fs, noise="none", glitch_rate_hz=0, step_rate_hz=0)
    p = FAMILIES[family]
    rise, decay = rec.truth["rise_10_90_ms"], rec.truth["decay_tau_ms"]
    assert rise.size >= 10
    assert (rise >= p.rise_ms[0] - 1e-9).all() and (rise <= p.rise_ms[1] + 1e-9).all()
    assert (decay >= p.decay_ms[0]).all() and (decay <= p.decay_ms[1]).all()
    iso = _isolated(rec, fs)
    assert len(iso) >= 5
    for k, y in iso:
        r_ms, d_ms = measure_rise_decay(y, fs)
        assert r_ms == pytest.approx(rise[k], rel=0.05, abs=0.02), (family, k)
        assert d_ms == pytest.approx(decay[k], rel=0.05), (family, k)
    # the sign and units the family declares
    assert np.sign(rec.truth["amplitude"]).tolist() == [1.0 if p.polarity == "positive" else -1.0] * rise.size


def test_amplitudes_have_a_long_tail_and_events_overlap():
    rec = simulate_family("mipsc", 5.0, 60.0, seed=3, noise="none")
    a = np.abs(rec.truth["amplitude"])
    assert np.mean(a) > np.median(a) * 1.05  # right-skewed
    assert np.percentile(a, 95) > 2 * np.median(a)
    gaps = np.diff(rec.truth["onset_s"])
    assert (gaps < rec.truth["decay_tau_ms"][:-1] * 1e-3).any()  # a later event on an earlier one's decay


def test_glitches_and_steps_are_labelled_not_events():
    rec = simulate_family("fast-mepsc", 3.0, 30.0, seed=5, glitch_rate_hz=2.0, step_rate_hz=0.5)
    arts = rec.truth["artifacts"]
    kinds = set(arts["kind"])
    assert kinds == {"glitch", "step"}
    fs = rec.fs_hz
    residual = rec.trace - rec.signal
    for t, kind, size in zip(arts["time_s"], arts["kind"], arts["size"]):
        i = int(round(t * fs))
        assert rec.mask[max(0, i - 5): i + 6].sum() == 0  # not inside any event's mask
        assert np.min(np.abs(rec.truth["onset_s"] - t)) >= 0.02  # no event onset near it
        assert abs(size) >= 2 * rec.noise_sd
        if kind == "glitch":  # one sample: it stands out from both neighbours by about its size
            jump = residual[i] - 0.5 * (residual[i - 1] + residual[i + 1])
            assert jump == pytest.approx(size, abs=4 * rec.noise_sd)
    # the same seed, the same recording; the events do not move with the artifact rate
    again = simulate_family("fast-mepsc", 3.0, 30.0, seed=5, glitch_rate_hz=2.0, step_rate_hz=0.5)
    assert np.array_equal(again.trace, rec.trace)


def test_families_at_10_20_50_khz_and_bad_settings():
    for fs in (10_000.0, 20_000.0, 50_000.0):
        r = simulate_family("nmj-mejc", 5.0, 1.0, seed=1, fs_hz=fs)
        assert r.trace.size == int(fs) and r.units == "nA" and r.fs_hz == fs
    with pytest.raises(EphysError, match="unknown kinetics family"):
        simulate_family("mepsc-slow")
    with pytest.raises(EphysError, match="unknown noise"):
        simulate_family("mipsc", noise="brown")


def test_fetch_synthetic_families_writes_artifact_tables(tmp_path):
    from ephys.pipelines.events import PIPELINE
    from ephys.pipelines.events.events_sim import load_cohort

    PIPELINE.synthetic(tmp_path, seed=1, size=4, families=("fast-mepsc", "nmj-mepp"), snr=(3.0,), duration_s=1.0,
                       glitch_rate_hz=3.0)
    recs = load_cohort(tmp_path)
    assert sorted({r["kind"] for r in recs}) == ["fast-mepsc", "nmj-mepp"]
    assert {r["snr"] for r in recs} == {3.0}
    rows = list(csv.DictReader(open(tmp_path / f"{recs[0]['id']}_artifacts.csv")))
    assert rows and {r["kind"] for r in rows} <= {"glitch", "step"}


def test_simparams_check():
    from ephys.pipelines.core.params import from_options
    from ephys.pipelines.events.simparams import FAMILY_NAMES, SimParams

    assert from_options(SimParams, {"families": "all"}).families == FAMILY_NAMES
    with pytest.raises(EphysError, match="--families must be among"):
        from_options(SimParams, {"families": "fast-mepsc,slow"})
    with pytest.raises(EphysError, match="apply to --families"):
        from_options(SimParams, {"noise": "real"})


@needs_shared
def test_events_added_to_real_noise():
    from ephys.pipelines.events.families import real_noise

    base, fs = real_noise(ABF)
    assert fs == 20_000.0 and base.size > 20 * fs  # ~32 s of event-free signal
    assert base.std() == pytest.approx(1.0)
    # no candidate event is left in it: few inward excursions beyond 5 SD
    assert np.mean(base < -5) < 1e-4
    rec = simulate_family("fast-mepsc", 3.0, 2.0, seed=2, noise="real", real_noise_file=ABF, glitch_rate_hz=0,
                          step_rate_hz=0)
    assert np.std(rec.trace - rec.signal) == pytest.approx(rec.noise_sd, rel=0.05)
