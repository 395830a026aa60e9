"""Tests for ephys.pipelines.core.report on a tiny fake run (built by tests/test_explain.make_fake_run)."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("keras")
pytest.importorskip("jinja2")

from ephys.pipelines.core.errors import EphysError  # noqa: E402
from ephys.pipelines.core.report import build_report, format_number, metrics_table_rows, per_class_rows  # noqa: E402

from test_explain import LABELS, make_fake_run  # noqa: E402

HEADLINE_KEYS = ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "n_test"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    run, _data = make_fake_run(tmp_path_factory.mktemp("fake"))
    return run


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    """A private copy of the fake run (the dataset stays shared; config.yaml holds its absolute path)."""
    dst = tmp_path / "RUN"
    shutil.copytree(base_run, dst)
    return dst


@pytest.fixture(scope="module")
def rendered(base_run, tmp_path_factory) -> Path:
    """A copy of the fake run with the report built once (shared by read-only tests)."""
    dst = tmp_path_factory.mktemp("rendered") / "RUN"
    shutil.copytree(base_run, dst)
    build_report(dst)
    return dst


def _words(run: Path):
    import yaml

    from ephys.pipelines.core.nouns import dataset_nouns

    return dataset_nouns(yaml.safe_load((run / "config.yaml").read_text())["data"])


def _img_srcs(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


def test_report_html_self_contained_with_exact_metrics(rendered):
    run = rendered
    html_path = run / "report.html"
    html = html_path.read_text(encoding="utf-8")
    metrics = json.loads((run / "metrics.json").read_text())

    # self-contained: no external assets, no JavaScript
    assert 'src="http' not in html and "src='http" not in html
    assert "<script" not in html.lower()
    assert '<link rel="stylesheet"' not in html and "@import" not in html
    srcs = _img_srcs(html)
    assert len(srcs) >= 4  # learning curves, confusion, ROC, examples
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert html_path.stat().st_size < 5_000_000

    # every headline number, formatted the way the report formats (3 decimals / integer)
    for key in HEADLINE_KEYS:
        value = metrics[key]
        expected = str(value) if isinstance(value, int) else f"{value:.3f}"
        assert expected == format_number(value)
        assert expected in html, key
    for lab, d in metrics["per_class"].items():
        for k in ("precision", "recall", "f1"):
            assert f"{d[k]:.3f}" in html
    words = _words(run)
    assert words.samples == "cells"  # the scalogram modality's noun, not a generic one
    for name, value in metrics_table_rows(metrics, words):
        assert re.search(rf"<td>{re.escape(name)}</td>\s*<td class=\"num\">{re.escape(value)}</td>", html), name
    for lab in LABELS:
        assert html_lib.escape(lab) in html
    assert "run-test-001" in html and "tiny_cnn" in html
    assert "voltage-clamp only" in html  # skipped file reason from the manifest
    assert "ephys explain" in html  # no explain/ yet
    assert "not evaluated yet" not in html.lower()


def test_report_markdown_images_exist_and_numbers_match(rendered):
    run = rendered
    md_path = run / "report.md"
    md = md_path.read_text(encoding="utf-8")
    metrics = json.loads((run / "metrics.json").read_text())
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 4
    for link in links:
        assert link.startswith("report_files/") and link.endswith(".png")
        assert (run / link).is_file() and (run / link).stat().st_size > 1000
    for name, value in metrics_table_rows(metrics, _words(run)):
        assert f"| {name} | {value} |" in md
    for row in per_class_rows(metrics):
        assert row[1] in md and row[3] in md
    assert "Vip/Lamp5" in md


def test_report_without_metrics_still_renders(run):
    for name in ("metrics.json", "predictions.csv"):
        (run / name).unlink()
    html_path, md_path = build_report(run)
    html = html_path.read_text(encoding="utf-8")
    md = md_path.read_text(encoding="utf-8")
    for text in (html, md):
        assert "not evaluated yet" in text.lower()
        assert "ephys evaluate" in text
    assert "learning curves" in html and (run / "report_files" / "learning_curves.png").is_file()
    assert not (run / "report_files" / "confusion.png").exists()
    assert "tiny_cnn" in html and "Pvalb" in html


def test_report_includes_saliency_when_explained(run):
    from ephys.pipelines.core.explain import explain_run

    explain_run(run, n_examples_per_class=1)
    html_path, md_path = build_report(run)
    assert html_path == run / "report.html" and md_path == run / "report.md"
    assert not list(run.glob(".*.part*")) and not list((run / "report_files").glob(".*.part*"))
    html = html_path.read_text(encoding="utf-8")
    assert "ephys explain" not in html
    assert 'alt="mean saliency per class"' in html and 'alt="saliency examples"' in html
    assert (run / "report_files" / "saliency_class_means.png").is_file()
    assert "report_files/saliency_examples.png" in md_path.read_text(encoding="utf-8")


def test_report_survives_missing_dataset_and_history(run):
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"] = str(run / "nowhere")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "history.csv").unlink()
    html = build_report(run)[0].read_text(encoding="utf-8")
    assert "Dataset unavailable" in html and "No history.csv" in html


def test_report_without_config_is_an_ephys_error(tmp_path):
    with pytest.raises(EphysError) as exc:
        build_report(tmp_path)
    assert "config.yaml" in str(exc.value) and str(tmp_path) in str(exc.value)
    (tmp_path / "config.yaml").write_text("model: x\n")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(EphysError, match="metrics.json"):
        build_report(tmp_path)


def test_metrics_table_rows_formatting():
    m = {"accuracy": 0.8125, "balanced_accuracy": 0.5, "macro_f1": 1, "roc_auc_ovr": None, "n_test": 12,
         "labels": ["A"], "per_class": {"A": {"precision": 0.25, "recall": float("nan"), "f1": 0.33333, "support": 4}}}
    assert metrics_table_rows(m) == [
        ("Accuracy", "0.812"), ("Balanced accuracy", "0.500"), ("Macro F1", "1"),
        ("ROC AUC (one-vs-rest)", "n/a"), ("Test samples", "12"),
    ]
    assert per_class_rows(m) == [("A", "0.250", "n/a", "0.333", "4")]
    assert metrics_table_rows(None) == []
