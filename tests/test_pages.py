"""Every ephys page comes from the one page builder (core/page.py): the shared style sheet and
marker, no raw JSON at the top (at most a collapsed <details> at the end), parameters as tables."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ephys.pipelines.core.page import CSS, PAGE_MARKER, Card, Cards, Details, Fig, Page, Params, Table, Text  # noqa: E402


def _check_page(html: str, *, first_has: tuple[str, ...] = ()) -> str:
    """Shared marker and style sheet; no JSON / Python-dict dump outside a <details> block, and a
    <details> block only after the first section. Returns the first section's HTML."""
    assert f'<meta name="generator" content="{PAGE_MARKER}">' in html
    assert CSS.strip() in html
    assert "<script" not in html.lower() and 'src="http' not in html
    body = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    first = re.search(r"<section[^>]*>(.*?)</section>", body, re.S)
    assert first is not None, "a page opens with a section"
    if "<details" in body:
        assert body.index("<details") > first.end()
    visible = re.sub(r"<details>.*?</details>", "", body, flags=re.S)
    assert "<pre" not in visible
    text = html_lib.unescape(visible)
    assert not re.search(r"\{\s*\"[^\"]+\"\s*:", text), "raw JSON on the page"
    assert not re.search(r"\{\s*'\w+'\s*:", text), "a Python dict printed on the page"
    for want in first_has:
        assert want in first.group(1), want
    return first.group(1)


def _png() -> bytes:
    from ephys.pipelines.core.page import png_bytes, pyplot

    fig, ax = pyplot().subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    return png_bytes(fig, dpi=40)


def test_page_blocks_render_escaped_html_and_markdown(tmp_path):
    page = Page("a <title>", kicker="k", pills=["p & q"])
    page.section("Numbers", Cards([Card("Accuracy", 0.81234, "sub", frac=0.81)]),
                 Table([["x<y", 1, 0.5]], ["name", "n", "value"]), Params({"a": {"b": 1, "c": [1, 2]}, "d": None}),
                 Text("plain"), Fig(_png(), "a figure", "caption", "fig1"))
    page.section("Raw", Details.json("summary.json", {"k": 1}))
    html_path = page.write(tmp_path, md=True)
    html = html_path.read_text()
    _check_page(html)
    assert "a &lt;title&gt;" in html and "x&lt;y" in html and "p &amp; q" in html
    assert "0.812" in html and '<td class="num">0.500</td>' in html
    assert "<td>a.b</td><td>1</td>" in html and "<td>a.c</td><td>1, 2</td>" in html and "<td>d</td><td>null</td>" in html
    md = (tmp_path / "report.md").read_text()
    assert "![a figure](report_files/fig1.png)" in md and (tmp_path / "report_files" / "fig1.png").is_file()
    assert "| x<y | 1 | 0.500 |" in md and "| `a.b` | 1 |" in md


def test_every_page_builder_uses_the_shared_page(tmp_path):
    """Run, CV, predict, cluster, lfp, events (recipe and detect) and mer-sim pages."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_explain import LABELS, make_fake_run

    from ephys.pipelines.core.predict import predict_run
    from ephys.pipelines.core.report import build_cv_report, build_report

    pages = {}
    run, data = make_fake_run(tmp_path / "fake", n_per_class=2)
    pages["run"] = build_report(run)[0]
    pages["predict"] = predict_run(run, data, tmp_path / "pred", log=lambda s: None) / "report.html"
    rng = np.random.default_rng(0)
    true = [LABELS[k % 3] for k in range(12)]
    proba = rng.dirichlet(np.ones(3), size=12)
    cm = np.zeros((3, 3), int)
    for t, p in zip(true, proba.argmax(1)):
        cm[LABELS.index(t), p] += 1
    cv = {"model": "tiny", "scheme": "lopo", "n_folds_done": 2, "n_folds_expected": 2, "complete": True,
          "missing_folds": [], "accuracy": 0.5, "majority_baseline_accuracy": 0.33, "balanced_accuracy": 0.5,
          "macro_f1": 0.4, "roc_auc_ovr": 0.6, "n_test": 12, "confusion_matrix": cm.tolist(),
          "per_fold": [{"fold": "lopo-a", "held_out": ["a"], "n_test": 6, "accuracy": 0.5}],
          "per_participant": {"a": {"n": 6, "accuracy": 0.5, "majority_baseline_accuracy": 0.3,
                                    "balanced_accuracy": 0.5, "roc_auc_ovr": 0.6}}}
    (tmp_path / "cv").mkdir()
    pages["cv"] = build_cv_report(tmp_path / "cv", cv, true, proba, LABELS, datasets=[data])
    assert "Per cell" in pages["cv"].read_text()  # the dataset's group noun, not "participant"

    from ephys.pipelines.spikes.cluster_report import build_cluster_report

    emb = np.concatenate([rng.normal(0, 1, (30, 3)), rng.normal(6, 1, (30, 3))])
    labels = np.repeat([0, 1], 30)
    res = {"input": "x/t.1", "n_spikes": 60, "embed": "features", "n_dims": 3, "method": "gmm", "n_clusters": 2,
           "n_noise": 0, "silhouette": 0.8, "seed": 0, "min_samples": 5, "feature_kinds": ["pca", "p2p"]}
    html_path, _ = build_cluster_report(tmp_path / "cl", res, emb, labels, rng.normal(size=(60, 4, 20)), None, 48000.0)
    pages["cluster"] = html_path
    html = html_path.read_text()
    assert "<td>min_samples</td><td>5</td>" in html and "<td>feature_kinds</td><td>pca, p2p</td>" in html

    from ephys.pipelines.lfp.report import build_lfp_report

    (tmp_path / "lfp").mkdir()
    pages["lfp"] = build_lfp_report(tmp_path / "lfp", {
        "recipe": "lfp-tiny", "model": "glm", "roc_auc": 0.7, "pr_auc": 0.2, "positive_rate": 0.1,
        "per_unit": {"r/a": {"positive_rate": 0.1, "n_positive": 5, "roc_auc": 0.7}}}, None, log=lambda s: None)

    from ephys.pipelines.events.apply import summarise_events
    from ephys.pipelines.events.report import trace_report, write_sim_report

    fs = 10000.0
    x = rng.normal(0, 1, 20000)
    onsets = np.arange(0.05, 1.9, 0.1)
    for o in onsets:
        i = int(o * fs)
        x[i:i + 200] -= 8 * np.exp(-np.arange(200) / 30.0)
    ev = [{"onset_s": float(o), "amplitude": -8.0 + rng.normal(), "rise_10_90_ms": 0.3, "decay_tau_ms": 3.0,
           "charge": -0.02} for o in onsets]
    summary = {"source": "trace.npy", "fs_hz": fs, "units": "pA", "mode": "voltage clamp", "polarity": "negative",
               "duration_s": 2.0, "analysed_s": 2.0, "n_segments": 1, "excluded_s": 0.0,
               "methods": {"threshold": {**summarise_events(ev, 2.0), "seconds_per_minute": 0.1}}}
    trace = SimpleNamespace(data=x, fs_hz=fs, units="pA", exclude=np.zeros(x.size, bool))
    (tmp_path / "det").mkdir()
    pages["events_detect"] = trace_report(tmp_path / "det", trace, {"threshold": ev}, summary, "events in trace.npy")
    _check_page(pages["events_detect"].read_text(),
                first_has=("threshold", f"{len(ev)}", "Hz", "amplitude", "9.50 Hz"))
    rec = {"id": "mepsc_r0", "x": x, "fs_hz": fs, "truth": {"onset_s": onsets, "decay_tau_ms": np.full(onsets.size, 3.0)},
           "units": "pA", "mask": np.zeros(x.size), "snr": 5.0, "polarity": "negative"}
    (tmp_path / "sim").mkdir()
    pages["events_sim"] = write_sim_report(tmp_path / "sim", {
        "tolerance_ms": 1.0, "best_on_test": "threshold",
        "methods": {"threshold": {"f1": 0.9, "precision": 0.9, "recall": 0.9, "by_snr": {"5": {"f1": 0.9}},
                                  "seconds_per_minute": 0.1}}}, [rec], {("threshold", "mepsc_r0"): ev})

    from ephys.pipelines.mer.report import write_mer_report

    level = {"n": 10, "accuracy": 0.8, "majority_baseline_accuracy": 0.6, "balanced_accuracy": 0.75,
             "sensitivity": 0.7, "specificity": 0.8, "roc_auc": 0.85}
    model = {"per_segment": level, "per_recording": level, "cross_validation": {"accuracy": 0.8, "n_test": 30},
             "per_patient_recording": {"accuracy": {"mean": 0.8, "sd": 0.1, "n": 2}},
             "per_patient": {"P01": level, "P02": level},
             "border_error_mm": {"median": 0.4, "p90": 1.0, "n_trajectories": 2, "n_no_stn_found": 0}}
    (tmp_path / "mer").mkdir()
    pages["mer"] = write_mer_report(tmp_path / "mer", {
        "n_patients": 2, "n_recordings": 10, "n_segments": 30, "validation": "leave-one-patient-out",
        "threshold": 0.51, "headline_model": "mlp", "models": {"mlp": model, "lightgbm": model},
        "reference": {"ML-STIM": {"accuracy": 0.878, "accuracy_sd": 0.017}},
        "explanations": {"mlp": {"method": "gradient × input", "n_samples": 30, "features": [("rms", 0.5)]}}})

    for name, path in pages.items():
        _check_page(Path(path).read_text())
    mer = pages["mer"].read_text()
    for heading in ("Per recording", "Per segment", "Per patient", "STN borders", "Explanations"):
        assert f"<h2>{heading}" in mer, heading


def test_tune_and_compare_pages_use_the_shared_page(tmp_path):
    """The study page of `ephys tune --report` and the page of `ephys report --compare`."""
    import csv
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import toy_modality
    from test_explain import make_fake_run

    from ephys.pipelines.core import tune
    from ephys.pipelines.core.compare import compare_runs
    from ephys.pipelines.core.training import TrainConfig
    from ephys.pipelines.core.tune_report import build_tune_report

    x, y = toy_modality.simulate(10, seed=1)
    data = toy_modality.write_dataset(tmp_path / "toy", x, y)
    study = tmp_path / "study"
    tune.create_study(study, TrainConfig(model="toy_dense", data=str(data)), "default", trials=4, sampler="random")

    def objective(ctx):
        for step in range(3):
            ctx.report(step, ctx.params["lr"] * 100 + 1 / (step + 1))
        return ctx.params["lr"] * 100 + ctx.params["units"] / 100

    tune.work(study, objective=objective, log=lambda m: None)
    html, best = build_tune_report(study)
    first = _check_page(html.read_text(), first_has=("Best val_loss", "Search cost", "completed / pruned / failed"))
    assert "test part" in first and best.is_file()

    run, _ = make_fake_run(tmp_path / "fake", n_per_class=4)
    runs = [run]
    for k in (1, 2):  # the same test samples, other predictions
        other = shutil.copytree(run, tmp_path / f"run{k}")
        rows = list(csv.DictReader(open(other / "predictions.csv")))
        for r in rows[:k]:
            r["predicted"] = r["true"]
        with open(other / "predictions.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        runs.append(other)
    page, _ = compare_runs(runs, tmp_path / "cmp")
    _check_page(page.read_text(), first_has=("Best balanced accuracy", "Majority baseline", "95 % interval"))


def test_no_pipeline_imports_a_private_name_of_the_core():
    """Pipelines use the page builder's public helpers, never ``_CSS``, ``_png`` ... of the core."""
    import ast

    from conftest import REPO

    bad = []
    for f in (REPO / "pipelines").rglob("*.py"):
        if "core" in f.relative_to(REPO / "pipelines").parts[:1]:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and "core" in (node.module or "").split("."):
                bad += [f"{f.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, bad
