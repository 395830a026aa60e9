"""`ephys events detect` on inputs as users have them (issue 26, items 3, 6, 7): the channel the
recording mode names, --polarity auto, the event-shape check with its rejected candidates, the
NWB output (read back with pynwb, checked by nwbinspector), and a report that cannot be drawn
failing with one line. Traces are simulated and small (0.6-2 s)."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.events import detect as D
from ephys.pipelines.events.readers import Trace, abf_clamp_mode, choose_abf_channel, read_trace
from ephys.pipelines.events.shape import ShapeLimits, shape_reason
from ephys.pipelines.events.simulate import event_waveform, rise_tau_for


def _events(fs=20_000.0, seconds=2.0, sign=-1.0, amp=20.0, sd=2.0, seed=0, every=0.15):
    """White noise (``sd``) with events of ``amp`` (rise 0.5 ms, decay 5 ms) every ``every`` s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    x = rng.normal(0, sd, t.size)
    tau_r = rise_tau_for(5e-4, 5e-3)
    for on in np.arange(0.1, seconds - 0.1, every):
        x += sign * amp * event_waveform(t - on, tau_r, 5e-3)
    return x


# ---------------------------------------------------------------- the channel follows the recording mode

def _abf_header(units, dac=("?",), telegraph=None):
    sec = None
    if telegraph is not None:
        sec = SimpleNamespace(nTelegraphEnable=[1] * len(units), nTelegraphMode=[telegraph] * len(units))
    return SimpleNamespace(adcUnits=list(units), dacUnits=list(dac), _adcSection=sec)


@pytest.mark.parametrize("units, dac, telegraph, want, mode", [
    (["mV", "nA"], ["?"], 0, 1, "voltage_clamp"),       # TEVC: Vm first, the current is the signal
    (["mV", "nA"], ["mV"], None, 1, "voltage_clamp"),   # no telegraph: the command in mV says V-clamp
    (["nA", "mV"], ["nA"], None, 1, "current_clamp"),   # a command in nA: current clamp, the potential
    (["pA", "mV"], ["pA"], 1, 1, "current_clamp"),      # telegraph I-clamp
    (["mV", "pA"], ["?"], None, 1, None),               # nothing stated: a current beside a potential
    (["mV"], ["?"], 0, 0, "voltage_clamp"),             # V-clamp without a current channel: the one there is
])
def test_channel_follows_the_recording_mode(units, dac, telegraph, want, mode):
    m = abf_clamp_mode(_abf_header(units, dac, telegraph))
    assert m[0] == mode
    k, why = choose_abf_channel(units, m)
    assert k == want and units[k] in why


def test_abf_reader_reads_the_current_of_a_voltage_clamp_file(monkeypatch):
    """A two-electrode voltage-clamp file whose first channel is Vm (mV) and second the current
    (nA): with no channel given the current is read (as pA), and --channel still overrides."""
    import pyabf

    fs, n = 10_000, 8_000
    vm = np.full(n, -60.0)
    cur = _events(fs, n / fs, sign=-1, amp=0.5, sd=0.02)  # nA

    class Fake:
        def __init__(self, *_a, **_k):
            self.nOperationMode, self.sampleRate, self.sweepCount = 3, fs, 1
            self.adcUnits, self.adcNames, self.dacUnits = ["mV", "nA"], ["Vm", "Imemb"], ["mV"]
            self._adcSection = SimpleNamespace(nTelegraphEnable=[0, 0], nTelegraphMode=[0, 0])

        def setSweep(self, k, channel=0):
            self.sweepY = vm if channel == 0 else cur
            self.sweepC = np.zeros(n)

    monkeypatch.setattr(pyabf, "ABF", Fake)
    from ephys.pipelines.events.readers import read_abf_trace

    tr = read_abf_trace("x.abf")
    assert tr.units == "pA" and tr.mode == "voltage_clamp" and tr.meta["channel"] == 1
    assert np.allclose(tr.data, cur * 1000.0)
    assert "command is in mV" in tr.meta["channel_reason"]
    tr0 = read_abf_trace("x.abf", channel=0)
    assert tr0.units == "mV" and tr0.meta["channel_reason"] == "given by --channel"


# ---------------------------------------------------------------- --polarity auto

@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_polarity_auto_follows_the_events(sign):
    from ephys.pipelines.events.apply import choose_polarity

    x = _events(sign=sign)
    # stored as a voltage-clamp trace either way: the usual sign there is negative
    pol, why, ev = choose_polarity(Trace(x, 20_000.0, "pA", "voltage_clamp", source="t.npy"))
    assert pol == ("positive" if sign > 0 else "negative")
    assert ev[pol] >= 5 and ev[pol] >= 2 * ev["negative" if sign > 0 else "positive"]
    assert "candidates with event shape" in why and np.sign(ev["skew"]) == sign


def test_positive_events_with_default_options_detected_and_reported(tmp_path):
    """The regression of issue 26: positive transients, default options. Before: noise-level
    negative 'events' and a raw scipy TypeError from the report with exit 0."""
    np.save(tmp_path / "pos.npy", _events(sign=1.0, amp=40.0))
    out = tmp_path / "out"
    p = ephys("events", "detect", tmp_path / "pos.npy", out, "--fs-hz", "20000", "--method", "threshold", check=0)
    s = json.loads((out / "summary.json").read_text())
    assert s["polarity"] == "positive" and "candidates with event shape" in s["polarity_reason"]
    assert "polarity: positive" in p.stderr + p.stdout
    th = s["methods"]["threshold"]
    assert 10 <= th["n_events"] <= 14 and th["amplitude"]["median"] > 30
    page = (out / "report.html").read_text()
    assert "Polarity: positive" in page and "Shape check" in page
    assert page.index("Summary") < page.index("Raw summary")


def test_default_detector_is_the_shipped_model(tmp_path):
    """No --run, no --method: the window classifier that ships with ephys finds the planted events;
    the networks that only a trained run holds are refused with one line."""
    np.save(tmp_path / "neg.npy", _events(sign=-1.0, amp=40.0))
    out = tmp_path / "out"
    ephys("events", "detect", tmp_path / "neg.npy", out, "--fs-hz", "20000", check=0)
    s = json.loads((out / "summary.json").read_text())
    assert list(s["methods"]) == ["cnn_bilstm"] and 10 <= s["methods"]["cnn_bilstm"]["n_events"] <= 14
    p = ephys("events", "detect", tmp_path / "neg.npy", tmp_path / "o2", "--fs-hz", "20000", "--method", "unet1d",
              check=2)
    assert "needs --run" in p.stderr and not (tmp_path / "o2").exists()


# ---------------------------------------------------------------- the shape check

def test_shape_check_rejects_a_glitch_and_a_step_keeps_the_event():
    fs = 20_000.0
    rng = np.random.default_rng(1)
    t = np.arange(int(1.0 * fs)) / fs
    x = rng.normal(0, 1.0, t.size)
    x[int(0.25 * fs)] -= 30.0                                               # one-sample glitch
    x += -20 * event_waveform(t - 0.5, rise_tau_for(2e-4, 1e-3), 1e-3)      # the fastest real event
    x[int(0.75 * fs):] -= 20.0                                              # a step that stays
    prob = D.threshold_probability(x, fs, "negative")
    rejected: list = []
    kept = D.detect_events(x, fs, prob, "negative", reject=shape_reason, rejected=rejected)
    assert [round(e["onset_s"], 2) for e in kept] == [0.5]
    why = {round(e["onset_s"], 2): e["reason"] for e in rejected}
    assert why[0.25].startswith("glitch") and why[0.75].startswith("no decay")
    assert 1.0 < kept[0]["half_width_ms"] < 1.4
    # switched off, the glitch and the step are events again
    off = D.detect_events(x, fs, prob, "negative", reject=lambda e: shape_reason(e, ShapeLimits(enabled=False)))
    assert {0.25, 0.5, 0.75} <= {round(e["onset_s"], 2) for e in off}


def test_a_rejected_candidate_does_not_cut_its_neighbours_decay():
    """A noise blip 3 ms into an event's decay used to end the event's decay fit (a 0.2-ms tau);
    rejected, it is out of the way and the event is measured over its whole decay."""
    fs = 20_000.0
    t = np.arange(int(0.5 * fs)) / fs
    x = -30 * event_waveform(t - 0.2, rise_tau_for(5e-4, 5e-3), 5e-3)
    x[int(0.2035 * fs)] -= 12.0
    prob = np.zeros_like(x)
    prob[int(0.199 * fs):int(0.206 * fs)] = 1.0
    rejected: list = []
    kept = D.detect_events(x, fs, prob, "negative", D.DetectionParams(rel_height=0.05), reject=shape_reason,
                           rejected=rejected)
    assert len(kept) == 1 and kept[0]["decay_tau_ms"] == pytest.approx(5.0, rel=0.15)


def test_rejected_candidates_written_and_counted(tmp_path):
    x = _events(sign=-1.0)
    for k in (3_000, 9_100, 21_000, 33_500):  # glitches between the events
        x[k] -= 40.0
    np.save(tmp_path / "t.npy", x)
    out = tmp_path / "out"
    ephys("events", "detect", tmp_path / "t.npy", out, "--fs-hz", "20000", "--method", "threshold", check=0)
    s = json.loads((out / "summary.json").read_text())["methods"]["threshold"]
    rows = list(csv.DictReader(open(out / "rejected_threshold.csv")))
    assert s["n_rejected"] == len(rows) and s["n_candidates"] == s["n_events"] + len(rows)
    glitch_at = np.array([float(r["onset_s"]) * 20_000 for r in rows if r["reason"].startswith("glitch")])
    kept_at = np.array([float(r["onset_s"]) * 20_000 for r in csv.DictReader(open(out / "events_threshold.csv"))])
    for k in (3_000, 9_100, 21_000, 33_500):  # each planted glitch rejected as one, none kept
        assert np.abs(glitch_at - k).min() <= 5 and np.abs(kept_at - k).min() > 20
    assert s["rejected_by_reason"]["glitch"] == glitch_at.size and s["n_events"] == 12


# ---------------------------------------------------------------- NWB output and the report's error path

def test_nwb_output_reads_back_and_passes_nwbinspector(tmp_path):
    import pynwb
    from nwbinspector import Importance, inspect_nwbfile

    src = tmp_path / "t.npy"
    np.save(src, _events(sign=-1.0))
    before = src.read_bytes()
    out = tmp_path / "out"
    ephys("events", "detect", src, out, "--fs-hz", "20000", "--method", "threshold", check=0)
    assert src.read_bytes() == before
    csv_on = [float(r["onset_s"]) for r in csv.DictReader(open(out / "events_threshold.csv"))]
    with pynwb.NWBHDF5IO(str(out / "events.nwb"), "r") as io:
        nwb = io.read()
        df = nwb.events["events_threshold"].to_dataframe()
        assert np.allclose(df["timestamp"], csv_on, atol=1e-6)
        assert (df["amplitude"] < 0).all() and "t.npy" in nwb.notes and "sha256" in nwb.notes
    crit = [m for m in inspect_nwbfile(nwbfile_path=str(out / "events.nwb"))
            if m.importance in (Importance.CRITICAL, Importance.ERROR)]
    assert not crit, [m.message for m in crit]


def test_a_report_that_cannot_be_drawn_is_an_error(tmp_path, monkeypatch):
    import ephys.pipelines.events.report as R
    from ephys.pipelines.events.apply import run_detect

    np.save(tmp_path / "t.npy", _events(seconds=1.0))

    def broken(*_a, **_k):
        raise TypeError("Improper input: func (m=2) ...")

    monkeypatch.setattr(R, "trace_report", broken)
    with pytest.raises(EphysError, match="the report could not be drawn .TypeError") as ei:
        run_detect(tmp_path / "t.npy", tmp_path / "out", fs_hz=20_000.0, log=lambda _s: None)
    assert str(ei.value.path).endswith("report.html")


def test_a_report_that_cannot_be_drawn_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    """The same through the command line (in this process, so the report can be broken): exit 2,
    one line naming OUT/report.html, nothing left behind."""
    import sys
    import warnings

    import ephys.pipelines.events.report as R
    from ephys.cli.entry import run

    np.save(tmp_path / "t.npy", _events(seconds=1.0))
    monkeypatch.setattr(R, "trace_report", lambda *_a, **_k: 1 / 0)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["ephys", "events", "detect", str(tmp_path / "t.npy"), str(out), "--fs-hz",
                                      "20000"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as ex:
        run()
    assert ex.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "report.html" in err[0] and "ZeroDivisionError" in err[0], err
    assert not out.exists()


def test_no_help_text_has_a_placeholder_markdown_would_eat():
    """`--help` renders with rich markdown, where `<method>` is an HTML tag and vanishes (issue 26:
    `OUT/events_.csv`): every declared command and prepare step spells placeholders in capitals."""
    import re

    from ephys.pipelines.core.params import describe
    from ephys.pipelines.core.registry import pipelines

    tag = re.compile(r"<[A-Za-z_][\w-]*>")
    seen = []
    for p in pipelines().values():
        for c in p.commands:
            seen += [(f"{p.name} {c.name}", c.summary), (f"{p.name} {c.name}", c.description or "")]
            seen += [(f"{p.name} {c.name} --{i.name}", i.help_text() + str(i.default_text or ""))
                     for i in describe(c.params)]
        for st in p.prepare:
            seen += [(f"prepare {st.name}", st.summary + (st.description or "") + (st.input_help or ""))]
            seen += [(f"prepare {st.name} --{i.name}", i.help_text() + str(i.default_text or ""))
                     for i in describe(st.params)] if st.params else []
    assert seen and not [(w, t) for w, t in seen if tag.search(t)]


def test_nwb_of_a_method_that_found_nothing(tmp_path):
    import pynwb

    from ephys.pipelines.events.nwb import write_events_nwb

    np.save(src := tmp_path / "t.npy", np.zeros(100))
    tr = Trace(np.zeros(100), 10_000.0, "pA", "voltage_clamp", source=str(src))
    ev = {"onset_s": 0.001, "peak_s": 0.002, "amplitude": -5.0, "rise_10_90_ms": 0.5, "decay_tau_ms": 3.0,
          "charge": -9.0, "score": 1.0, "half_width_ms": 2.0}
    write_events_nwb(tmp_path / "e.nwb", tr, {"unet1d": [], "threshold": [ev]},
                     {"polarity": "negative", "channel": "x", "shape_check": {}})
    with pynwb.NWBHDF5IO(str(tmp_path / "e.nwb"), "r") as io:
        nwb = io.read()
        assert len(nwb.events["events_unet1d"]) == 0
        df = nwb.events["events_threshold"].to_dataframe()
        assert df["duration"].tolist() == [0.002] and df["sweep"].tolist() == [0]


@needs_shared
def test_real_abf_channel_and_polarity_said(tmp_path):
    """The real voltage-clamp ABF: its current channel by the amplifier telegraph, negative events
    by their shape; glitches rejected, not reported."""
    from ephys.pipelines.events.apply import run_detect

    s = run_detect(SHARED_DATA / "events" / "171116sh_0020.abf", tmp_path / "abf", report=False, nwb=False,
                   log=lambda *_: None)
    assert s["channel_index"] == 0 and "telegraph" in s["channel"] and "voltage clamp" in s["channel"]
    assert s["polarity"] == "negative" and s["polarity_evidence"]["negative"] > 5 * s["polarity_evidence"]["positive"]
    t = s["methods"]["threshold"]
    assert t["n_rejected"] > 0 and t["rejected_by_reason"].get("glitch", 0) > 0
    assert -30 < t["amplitude"]["median"] < -10  # the README's ~10-40 pA inward currents
