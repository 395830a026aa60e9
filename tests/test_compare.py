"""ephys report --compare: three runs on one test part ranked with intervals, paired tests, the
settings that differ; runs on other test samples refused by name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ephys, one_line_error

sys.path.insert(0, str(Path(__file__).parent))
import toy_modality  # noqa: E402

from ephys.pipelines.core.compare import bootstrap_weights, compare_runs, mcnemar_exact, weighted_scores  # noqa: E402
from ephys.pipelines.core.errors import EphysError  # noqa: E402

PLUGIN_ENV = {"EPHYS_PLUGINS": "toy_modality", "PYTHONPATH": str(Path(__file__).parent)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three toy runs on one split (other lr / units), one on another seed's split; all evaluated."""
    from ephys.pipelines.core.evaluation import evaluate_run
    from ephys.pipelines.core.training import TrainConfig, train

    tmp = tmp_path_factory.mktemp("cmp")
    x, y = toy_modality.simulate(14, seed=1)
    data = toy_modality.write_dataset(tmp / "toy", x, y)
    out = {}
    for name, kw in {"a": dict(lr=0.02), "b": dict(lr=1e-5), "c": dict(lr=0.02, hparams={"units": 4}),
                     "other": dict(lr=0.02, seed=5)}.items():
        cfg = TrainConfig(model="toy_dense", data=str(data), epochs=3, batch_size=8, eager=True,
                          out=str(tmp / name), **kw)
        evaluate_run(train(cfg, log=lambda m: None))
        out[name] = tmp / name
    return out


def test_three_runs_ranked_with_intervals(runs, tmp_path):
    html, n = compare_runs([runs["a"], runs["b"], runs["c"]], tmp_path / "cmp")
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["n_test"] == n["n_test"] > 0
    names = [r["name"] for r in n["runs"]]
    assert sorted(names) == ["a", "b", "c"]
    bal = [r["balanced_accuracy"] for r in n["runs"]]
    assert bal == sorted(bal, reverse=True)
    for r in n["runs"] + [n["baseline"]]:
        lo, hi = r["balanced_accuracy_ci"]
        assert lo <= r["balanced_accuracy"] <= hi
    assert any(r["balanced_accuracy_ci"][1] > r["balanced_accuracy_ci"][0] for r in n["runs"])
    for r, name in zip(n["runs"], names):  # the point estimates are evaluate's own numbers
        m = json.loads((runs[name] / "metrics.json").read_text())
        assert r["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
        assert r["accuracy"] == pytest.approx(m["accuracy"])
    assert n["baseline"]["balanced_accuracy"] == pytest.approx(0.5)  # two classes, always one
    assert [p["other"] for p in n["paired"]] == names[1:] and all(0 <= p["p"] <= 1 for p in n["paired"])
    assert set(n["differences"]) == {"lr", "hparams.units"}
    assert "groups" in n["resampled"] or "group" in n["resampled"]  # two samples per toy group: groups resampled
    page = html.read_text()
    for heading in ("Ranking", "Paired tests", "Settings that differ", "Learning curves", "Per-class recall"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "95 % interval" in page and "majority baseline" in page and "McNemar" in page


def test_other_test_samples_are_refused_by_name(runs, tmp_path):
    with pytest.raises(EphysError, match=r"different test samples than a: other \("):
        compare_runs([runs["a"], runs["b"], runs["other"]], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    proc = ephys("report", "--compare", runs["a"], runs["other"], tmp_path / "y", env=PLUGIN_ENV)
    one_line_error(proc, "different test samples", "other")
    one_line_error(ephys("report", "--compare", runs["a"], tmp_path / "z", env=PLUGIN_ENV), "two or more run folders")


def test_cli_compare_writes_the_page(runs, tmp_path):
    proc = ephys("report", "--compare", runs["a"], runs["b"], runs["c"], tmp_path / "cmp", env=PLUGIN_ENV, check=0)
    assert proc.stdout.strip().endswith("report.html") and (tmp_path / "cmp" / "report.html").is_file()


def test_cluster_bootstrap_and_mcnemar():
    w = bootstrap_weights(["g1", "g1", "g2", "g3", "g3"], n_boot=200, seed=0)
    assert w.shape == (200, 5) and np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 3] == w[:, 4])
    assert np.all(w[:, [0, 2, 3]].sum(axis=1) == 3)  # three groups drawn per replicate
    y = np.array([0, 0, 1, 1])
    s = weighted_scores(np.array([1.0, 1, 1, 1]), y, np.array([0, 1, 1, 1]), 2)
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == 0.75
    a = np.array([True] * 10 + [False] * 2)
    b = np.array([False] * 10 + [True] * 2)
    n01, n10, p = mcnemar_exact(a, b)
    assert (n01, n10) == (10, 2) and p == pytest.approx(0.03857, abs=1e-4)  # 2 * P(X <= 2 | Bin(12, 1/2))
