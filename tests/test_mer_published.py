"""mer: ML-STIM's published model — the safe .pth reader against torch-saved files, the Keras conversion,
the published scaling and 0.51 rule, `ephys fetch weights` through a loopback test double of the GitHub
download (checksum checked), and `ephys predict NAME INPUT OUT` on raw MER.

No file of the ML-STIM repository is used: tests/data/mlp_9_7_4_4_2_1.pth holds random weights of its
architecture, written by torch.save (tests/data/make_torch_files.py); the double declares that file's
checksum (tests/published_double.py).
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.blocks.models.torch_state import read_state_dict
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.mer import published as P

sys.path.insert(0, str(Path(__file__).parent))
import published_double as D  # noqa: E402  (registers ml-stim-double)

DATA = Path(__file__).parent / "data"
PLUGIN = {"EPHYS_PLUGINS": "published_double", "PYTHONPATH": str(Path(__file__).parent)}


def test_state_dict_reader_equals_torch_load():
    """Every tensor as torch.load(weights_only=True) returned it (saved beside the files by the script
    that wrote them with torch), including transposed / offset views, shared storages and dtypes."""
    ref = np.load(DATA / "torch_reference.npz")
    for stem in ("mlp_9_7_4_4_2_1", "odd_tensors"):
        got = read_state_dict(DATA / f"{stem}.pth")
        keys = [k.split("/", 1)[1] for k in ref.files if k.startswith(stem + "/")]
        assert list(got) == keys
        for k in keys:
            r = ref[f"{stem}/{k}"]
            assert got[k].dtype == r.dtype and got[k].shape == r.shape and np.array_equal(got[k], r), k


def test_state_dict_reader_equals_live_torch_load():
    torch = pytest.importorskip("torch")  # where torch is installed: the live comparison too
    for k, v in torch.load(DATA / "odd_tensors.pth", weights_only=True).items():
        assert np.array_equal(read_state_dict(DATA / "odd_tensors.pth")[k], v.numpy())


def test_state_dict_reader_runs_no_code(tmp_path):
    """A pickle that names anything but tensors is refused before anything of it runs."""
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    with pytest.raises(EphysError, match="tensor-only"):
        read_state_dict(evil)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(EphysError, match="zip"):
        read_state_dict(tmp_path / "legacy.pth")


def test_conversion_scaling_and_rule():
    """The Keras model = torch's forward pass (sigmoid of the MLP on scaled features), within float32;
    the published constants scale min -> 0, max -> 1 and clip; the rule is mean >= 0.51."""
    ref = np.load(DATA / "torch_reference.npz")
    lo, hi = np.array(P.FEATURE_MIN), np.array(P.FEATURE_MAX)
    raw = ref["inputs"].astype(np.float64) * (hi - lo) + lo  # torch saw the scaled inputs
    model = P.convert(DATA / "mlp_9_7_4_4_2_1.pth")
    out = model.predict(raw.astype(np.float32), verbose=0)
    assert out.shape == (16, 1)
    np.testing.assert_allclose(out[:, 0], ref["mlp_output"][:, 0], atol=1e-6)
    state = read_state_dict(DATA / "mlp_9_7_4_4_2_1.pth")
    np.testing.assert_allclose(P.reference_forward(state, raw), ref["mlp_output"][:, 0], atol=1e-6)
    # the scaling: the published numbers, min -> 0, max -> 1, clipped outside
    assert P.FEATURE_MIN[5] == 1644.88 and P.FEATURE_MAX[0] == 8.707813 and P.THRESHOLD == 0.51
    s = P.scale(np.vstack([lo, hi, lo - 1, hi + 1, (lo + hi) / 2]))
    np.testing.assert_allclose(s, [[0] * 9, [1] * 9, [0] * 9, [1] * 9, [0.5] * 9], atol=1e-12)
    far = P.reference_forward(state, np.vstack([hi * 10, hi + 1]))
    assert far[0] == pytest.approx(far[1])  # clipped: beyond the range the model sees the maximum
    with pytest.raises(EphysError, match="fc1.weight"):
        P.check_state_dict({**state, "fc1.weight": np.zeros((7, 8))})
    from ephys.pipelines.mer.predictions import recording_table

    man = {"recordings": [{"id": "a"}, {"id": "b"}, {"id": "c", "reason": "less than 1 s left"}]}
    rows, _ = recording_table(man, ["a_s000", "a_s001", "b_s000"], np.array([0.50, 0.52, 0.509]),
                              np.zeros((3, 9)), None, P.THRESHOLD)
    assert [r["predicted"] for r in rows] == ["STN", "outside", ""] and rows[0]["probability"] == "0.510000"
    assert rows[2]["n_segments"] == 0 and rows[2]["reason"] == "less than 1 s left"


@pytest.fixture()
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("EPHYS_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path / "weights"


def test_fetch_through_the_loopback_double(tmp_path, weights):
    from ephys.pipelines.core.published import fetch_published, load_published

    srv = tmp_path / "srv"
    D.publish(srv)
    with D.Server(srv) as base:
        got = fetch_published(D.NAME, base_url=base, log=lambda s: None)
    assert got == weights / "published" / D.NAME / "MLP_parameters.pth" and (got.parent / "model.keras").is_file()
    model, _ = load_published(D.NAME)
    assert [ly.name for ly in model.layers if ly.name.startswith("fc")] == [f"fc{k}" for k in range(1, 6)]
    # another file at the URL (a changed or tampered download): refused, nothing installed
    other = tmp_path / "other.pth"
    blob = bytearray(got.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    other.write_bytes(bytes(blob))
    D.publish(srv, other)
    got.unlink()
    with D.Server(srv) as base:
        with pytest.raises(EphysError, match="sha256 .* does not match"):
            fetch_published(D.NAME, base_url=base, log=lambda s: None)
    assert not got.exists() and not [p for p in got.parent.iterdir() if p.name != "model.keras"]
    (tmp_path / "empty").mkdir()
    with D.Server(tmp_path / "empty") as base:
        with pytest.raises(EphysError, match="HTTP 404"):
            fetch_published(D.NAME, base_url=base, log=lambda s: None)
    # --file installs a copy made elsewhere, checked the same way
    assert fetch_published(D.NAME, file=D.PTH, log=lambda s: None).read_bytes() == D.PTH.read_bytes()
    with pytest.raises(EphysError, match="not installed"):
        fetch_published(D.NAME, file=other, log=lambda s: None)
    assert (weights / "published" / D.NAME / "MLP_parameters.pth").read_bytes() == D.PTH.read_bytes()


def test_cli_published_models_fetch_and_refusals(tmp_path):
    env = {**PLUGIN, "EPHYS_WEIGHTS_DIR": str(tmp_path / "w")}
    listing = ephys("models", "--published", env=env, check=0).stdout
    for needle in ("ml-stim", "Biolab-PoliTO", "no licence", "Sciscenti"):
        assert needle in listing, needle
    # the real declaration refuses our generated file: its checksum is not the published one
    one_line_error(ephys("fetch", "weights", "ml-stim", "--file", D.PTH, env=env), "not installed", "f294ea73")
    one_line_error(ephys("predict", "ml-stim", tmp_path, tmp_path / "o", env=env), "ephys fetch weights ml-stim")
    ephys("fetch", "weights", D.NAME, "--file", D.PTH, env=env, check=0)
    assert "in the weights cache: yes" in ephys("models", "--published", env=env, check=0).stdout


def test_predict_published_on_raw_mer(tmp_path, weights):
    """`ephys predict NAME INPUT OUT`: one row per recording with the mean of its segments' sigmoid (the
    published forward pass, recomputed here from the features), 0.51, flags, a recording with no full
    second listed with its reason, segments.csv, the report with trajectories."""
    from ephys.pipelines.core.published import fetch_published
    from ephys.pipelines.mer.synthetic import fetch_synthetic

    fetch_published(D.NAME, file=D.PTH, log=lambda s: None)
    raw = fetch_synthetic(tmp_path / "raw", n_patients=1, seed=8, duration_s=1.6, max_electrodes=1)
    with np.load(raw / "data.npz") as fh:  # one recording too short for a full second
        data = fh["data"]
    meta = (raw / "metadata.csv").read_text().splitlines()
    meta[1] = ";".join(meta[1].split(";")[:4] + ["20000"] + meta[1].split(";")[5:])
    (raw / "metadata.csv").write_text("\n".join(meta) + "\n")
    env = {**PLUGIN, "EPHYS_WEIGHTS_DIR": str(weights)}
    proc = ephys("predict", D.NAME, raw, tmp_path / "pred", env=env, check=0)
    assert proc.stdout.strip() == str(tmp_path / "pred" / "predictions.csv")
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    segs = list(csv.DictReader(open(tmp_path / "pred" / "segments.csv")))
    assert len(rows) == data.shape[0] and rows[0]["n_segments"] == "0" and rows[0]["probability"] == ""
    assert "less than 1 s" in rows[0]["reason"] and rows[0]["predicted"] == ""
    state = read_state_dict(D.PTH)
    X = np.array([[float(s[n]) for n in P_FEATURES()] for s in segs])
    p_ref = P.reference_forward(state, X)
    np.testing.assert_allclose([float(s["p_inside"]) for s in segs], p_ref, atol=2e-5)
    for r in rows[1:]:
        mine = [k for k, s in enumerate(segs) if s["recording"] == r["id"]]
        assert int(r["n_segments"]) == len(mine)
        if mine:
            assert float(r["probability"]) == pytest.approx(p_ref[mine].mean(), abs=2e-5)
            assert r["predicted"] == ("STN" if float(r["probability"]) >= 0.51 else "outside")
            outside = (X[mine] < np.array(P.FEATURE_MIN)) | (X[mine] > np.array(P.FEATURE_MAX))
            assert bool(r["outside_training_range"]) == bool(outside.any())
        assert r["depth_mm"] and r["patient"] == "P01"
    page = (tmp_path / "pred" / "report.html").read_text()
    for needle in ("Recordings without a full second", "Trajectories", "Outside the training range", "0.51",
                   "Sciscenti", D.DOUBLE.sha256):
        assert needle in page, needle
    summary = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert summary["published_model"] == D.NAME and summary["n_samples"] == len(segs)


def P_FEATURES():
    from ephys.pipelines.mer.dsp import FEATURE_NAMES

    return FEATURE_NAMES


@needs_shared
def test_predict_published_on_real_siginspect(tmp_path, weights):
    from ephys.pipelines.core.published import fetch_published, predict_published

    fetch_published(D.NAME, file=D.PTH, log=lambda s: None)
    src = SHARED_DATA / "mer" / "siginspect"
    with pytest.raises(EphysError, match="--units"):
        predict_published(D.NAME, src, tmp_path / "bad", log=lambda s: None)
    assert not (tmp_path / "bad").exists()
    out = predict_published(D.NAME, src, tmp_path / "pred", log=lambda s: None, options={"units": "mV"})
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 6 and all((r["n_segments"] == "0") == bool(r["reason"]) for r in rows)
    print("\n" + io.StringIO(open(out / "predictions.csv").read()).getvalue())
