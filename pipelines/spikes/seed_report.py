"""``OUT/report.html`` of ``ephys reproduce spikes-seed``: both models beside the seed's published numbers,
on one page of the shared page builder (:mod:`ephys.pipelines.core.page`).

Sections: summary (the model chosen on validation channel 11 and its test numbers on channel 40 beside
the seed's published CNN), every model (validation macro-F1, test macro-F1, accuracy, balanced accuracy,
macro precision / recall, decision threshold, inference time), the test confusion matrices, the
published reference, and the settings. Each model's own run report (learning curves, saliency) is linked.
"""

from __future__ import annotations

from pathlib import Path

from ..core.page import Card, Cards, Page, Params, Table, Text, format_number as fmt

__all__ = ["write_seed_report"]


def write_seed_report(out: str | Path, result: dict) -> Path:
    """Write ``OUT/report.html`` (and ``report.md``) from the recipe's ``metrics.json`` content."""
    out = Path(out)
    models, ref, best = result["models"], result.get("reference") or {}, result["best_model"]
    page = Page("Spike vs background on the spike seed's channels", kicker="ephys reproduce spikes-seed",
                pills=[f"best on validation: {best}", f"test channel {', '.join(result['test_groups'])}",
                       f"{result['n_test']} test snippets"],
                subtitle="Trained on channels " + ", ".join(result["train_groups"]) + ", early stopping and model "
                         "choice on channel " + ", ".join(result["val_groups"]) + "; the test channel is read once.")
    b = models[best]
    seed_best = ref.get(best) or {}
    page.section("Summary", Cards([
        Card(f"{best}: test macro-F1", fmt(b["macro_f1"]),
             f"seed's published {best}: {fmt(seed_best.get('macro_f1'))}" if seed_best else ""),
        Card("test accuracy", fmt(b["accuracy"]), f"balanced {fmt(b['balanced_accuracy'])}"),
        Card("validation macro-F1", fmt(b["val_macro_f1"]), "channel " + ", ".join(result["val_groups"])),
    ]), Text(result.get("selection", "")))
    rows = [[name, fmt(m["val_macro_f1"]), fmt(m["macro_f1"]), fmt(m["accuracy"]), fmt(m["balanced_accuracy"]),
             fmt(m["macro_precision"]), fmt(m["macro_recall"]),
             "argmax" if m.get("decision_threshold") is None else f"P(spike) >= {fmt(m['decision_threshold'], 2)}",
             f"{fmt(m['inference_s_test'])} s"] for name, m in models.items()]
    page.section("Every model", Table(rows, header=["model", "val. macro-F1", "test macro-F1", "accuracy",
                                                    "balanced accuracy", "macro precision", "macro recall",
                                                    "decision", "inference, test channel"]),
                 Text("Each model's run report (learning curves, saliency on the test channel): "
                      + "; ".join(f"{name}/report.html" for name in models) + "."))
    labels = result["labels"]
    for name, m in models.items():
        cm = m["confusion_matrix"]
        page.section(f"Confusion on the test channel: {name}",
                     Table([[f"true {labels[i]}", *[str(v) for v in row]] for i, row in enumerate(cm)],
                           header=["", *[f"predicted {lab}" for lab in labels]]))
    ref_rows = [[k, fmt(v.get("macro_f1")), fmt(v.get("accuracy")), fmt(v.get("inference_s_test"))]
                for k, v in ref.items() if isinstance(v, dict)]
    if ref_rows:
        page.section("The seed's published numbers", Table(ref_rows, header=["model", "test macro-F1", "accuracy",
                                                                            "inference (s)"]),
                     Text(str(ref.get("source", ""))))
    page.section("Settings", Params({**result.get("settings", {}), "normalise": result.get("normalise")}))
    return page.write(out, md=True)
