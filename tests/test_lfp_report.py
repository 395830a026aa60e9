"""lfp held-out units (one animal) and the HTML report of the lfp recipes."""

from __future__ import annotations

import base64
import json
import re

import numpy as np

from conftest import ephys
from ephys.pipelines.lfp.readers import LfpRecording
from ephys.pipelines.lfp.heldout_units import held_out_units
from ephys.pipelines.lfp.sequence import SequenceParams, prepare_lfp

FS = 250.0


def _shared_drive_recording(duration_s: float = 120.0, seed: int = 0) -> LfpRecording:
    """One channel: noise + 80 Hz bursts with a slow random envelope; units a, b fire with the
    envelope (a shared code), unit c at a constant rate (no coupling)."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    t = np.arange(n) / FS
    env = sosfiltfilt(butter(2, 2.0, fs=FS, output="sos"), rng.standard_normal(n))
    env = (env - env.mean()) / env.std()
    lfp = rng.standard_normal(n) + np.exp(0.8 * env) * np.sin(2 * np.pi * 80 * t)
    units = {}
    for name, rate in (("a", 3.0 * np.exp(1.2 * env)), ("b", 3.0 * np.exp(1.2 * env)), ("c", np.full(n, 6.0))):
        units[name] = t[rng.random(n) < rate / FS]
    return LfpRecording("rat1", lfp[:, None], FS, 0.0, ["ch1"], units, ["memory"])


def test_held_out_units_generalise_only_where_the_code_is_shared(tmp_path):
    rec = _shared_drive_recording()
    prep = prepare_lfp([rec], tmp_path / "prep", SequenceParams(inputs=("amplitude", "phase")), log=lambda *a: None)
    m = held_out_units(prep, n_folds=3, log=lambda *a: None)
    per = m["per_unit"]
    assert set(per) == {"rat1/a", "rat1/b", "rat1/c"} and per["rat1/a"]["trained_on"] == ["b", "c"]
    assert per["rat1/a"]["roc_auc"] > 0.65 and per["rat1/b"]["roc_auc"] > 0.65  # shared envelope code
    assert abs(per["rat1/c"]["roc_auc"] - 0.5) < 0.1  # nothing to learn about an uncoupled unit
    assert m["pooled"]["n"] == 3 * per["rat1/a"]["n"] and 0.5 < m["roc_auc"] < 1
    assert held_out_units(prepare_lfp([LfpRecording("x", rec.lfp, FS, 0.0, ["ch1"], {"a": rec.units["a"]}, ["m"])],
                                      tmp_path / "p1", log=lambda *a: None))["skipped"]


def test_ratgps_style_recipe_writes_held_out_units_and_html_report(tmp_path):
    rec = _shared_drive_recording(40.0, seed=3)
    d = tmp_path / "rec"
    d.mkdir()
    np.save(d / "lfp.npy", rec.lfp)
    (d / "spikes.csv").write_text("unit,t_s\n" + "".join(f"{u},{x:.6f}\n" for u, ts in rec.units.items() for x in ts))
    (d / "recording.json").write_text(json.dumps({"fs_hz": FS, "group": "rat1"}))
    out = tmp_path / "run"
    ephys("reproduce", "lfp-ratgps", "--data", d, "--out", out, "--epochs", "1", "--cv-folds", "2",
          "--hparam", "units=a", "--hparam", "units1=2", "--hparam", "units2=2", "--hparam", "max_train=400",
          "--hparam", "batch_size=200", check=0)
    m = json.loads((out / "metrics.json").read_text())
    hu = m["held_out_units"]
    assert set(hu["per_unit"]) == {"rat1/a", "rat1/b", "rat1/c"} and hu["n_folds"] == 2
    assert hu["roc_auc"] is not None and "roc_auc" in hu["per_unit"]["rat1/a"]
    html = (out / "report.html").read_text()
    for heading in ("Example traces", "Per-unit metrics", "ROC and PR curves", "Leave-one-band-out", "Held-out units",
                    "Spike-LFP context"):
        assert f"<h2>{heading}" in html, heading
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) >= 6 and all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert "rat1/a" in html and "http" not in html.replace("http-equiv", "")  # self-contained
    assert (out / "report.md").is_file()
