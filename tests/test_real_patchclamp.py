"""The main job on real recordings (../shared/data/patchclamp): prepare, train, evaluate, report.

Pyramidal vs interneuron on ~15 real cells: the point is the real path (NWB + ABF readers,
skipped Igor files named with their reason, unlabelled cells kept out of training), not the
accuracy of a CNN trained for two epochs.
"""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import SHARED_DATA, ephys, needs_shared

PATCH = SHARED_DATA / "patchclamp"


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "scalograms"
    proc = ephys("prepare", "scalograms", PATCH, out, "--labels", PATCH / "cells.csv", "--workers", "2",
                 check=0)
    return out, proc


@needs_shared
def test_prepare_real_recordings(real_dataset):
    out, proc = real_dataset
    man = json.loads((out / "manifest.json").read_text())
    cells_csv = (PATCH / "cells.csv").read_text().splitlines()[1:]
    ibw_rows = [r.split(",")[0] for r in cells_csv if ",ibw," in r]
    # every Igor folder is named as skipped, with its reason, on stderr and in the manifest
    skipped = {s["path"]: s["reason"] for s in man["skipped"]}
    for row in ibw_rows:
        assert any(row in p for p in skipped), row
        assert row in proc.stderr
    assert all(".ibw" in r or "Igor" in r or "rheobase" in r or "current-clamp" in r or r
               for r in skipped.values())
    # every NWB/ABF current-clamp cell that reaches rheobase has a scalogram
    ids = {s["id"] for s in man["samples"]}
    assert len(ids) >= 8, sorted(ids)
    assert set(man["label_names"]) == {"interneuron", "pyramidal"}
    unlabelled = [s for s in man["samples"] if not s["label"]]
    assert unlabelled, "cells.csv has unknown cells: they must be prepared but unlabelled"
    # plausible spike counts in the chosen sweeps (real cells fire ~1-200 spikes in a 1 s step;
    # firing need not rise with current: 98205017 goes into depolarisation block at 2x rheobase)
    for s in man["samples"]:
        counts = [sw["n_spikes"] for sw in s["sweeps"]]
        assert all(1 <= c <= 400 for c in counts), (s["id"], counts)
        amps = [sw["stim_amp_pA"] for sw in s["sweeps"]]
        assert amps == sorted(amps) and amps[0] == s["rheobase_pA"], (s["id"], amps)


@needs_shared
def test_train_evaluate_report_on_real_cells(real_dataset, tmp_path):
    out, _ = real_dataset
    run = tmp_path / "run"
    ephys("train", "--model", "densenet", "--weights", "none", "--epochs", "2", "--data", out, "--out", run,
          "--quiet", check=0)
    ephys("evaluate", run, check=0)
    man = json.loads((out / "manifest.json").read_text())
    unlabelled = {s["id"] for s in man["samples"] if not s["label"]}
    split = json.loads((run / "split.json").read_text())
    used = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert not used & unlabelled
    assert len(split["test"]) >= 2
    m = json.loads((run / "metrics.json").read_text())
    assert m["labels"] == ["interneuron", "pyramidal"] and m["n_test"] == len(split["test"])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "densenet121"
    html = ephys("report", run, check=0).stdout.strip()
    text = open(html, encoding="utf-8").read()
    assert "interneuron" in text and "pyramidal" in text
