"""``ephys predict RUN INPUT [OUT]``: apply a trained run to new recordings or a prepared dataset.

Raw input is prepared with exactly the parameters recorded in the manifest of the dataset the run
was trained on: by the modality's ``prepare_for_predict`` hook when it has one, else by the prepare
step that made that dataset (:func:`ephys.pipelines.core.prepare.prepare_like`); a prepared dataset is
accepted when its modality, sample shape and preparation parameters equal the run's (otherwise one
line says what differs). Labels in the input are ignored. Writes, into ``OUT`` (created at the end,
from a temporary sibling, so a failure leaves nothing):

``predictions.csv``  ``id``, ``source`` (the recording), ``predicted``, ``p_<label>`` per class
``report.html``      counts per predicted class, the least confident items, the example figure of
                     the run's report drawn per predicted class
``data/``            the prepared input (raw input only)
``summary.json``     what was predicted, with which run
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import check_writable_dir, write_json
from .datasets import check_same_dataset, load_dataset
from .errors import EphysError
from .predictions import step_of
from .prepare import prepare_like
from .registry import Figure, ReportContext, modality as find_modality
from .runfolder import find_dataset, load_run_config, read_manifest, write_predictions

__all__ = ["predict_run", "manifest_differences"]

#: manifest keys that never take part in the "same preparation" comparison
_PROVENANCE_KEYS = {"key", "input", "sha256", "source"}
N_LEAST_CONFIDENT = 10


def manifest_differences(trained: dict, given: dict, keys: tuple[str, ...] = ()) -> list[str]:
    """What differs between the preparation of two datasets: ``modality``, ``sample_shape``, the
    shared entries of ``parameters`` and the top-level manifest ``keys`` a modality names.

    Returns
    -------
    list[str]
        ``"name: trained value != given value"`` items (empty when the preparations match).
    """
    out = []
    for k in ("modality", "sample_shape", *keys):
        if trained.get(k) != given.get(k):
            out.append(f"{k}: {trained.get(k)!r} (run) != {given.get(k)!r} (input)")
    pa, pb = trained.get("parameters") or {}, given.get("parameters") or {}
    for k in sorted(set(pa) & set(pb) - _PROVENANCE_KEYS):
        a, b = pa[k], pb[k]
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"parameters.{k}: {a!r} (run) != {b!r} (input)")
    return out


def predict_run(run_dir: str | Path, input_path: str | Path, out_dir: str | Path,
                log: Callable[[str], None] = print, batch_size: int = 8, options: dict | None = None) -> Path:
    """Predict every sample of ``input_path`` with the run's model; returns ``OUT``.

    When the step that prepared the run's dataset declares a ``predictions`` hook
    (:mod:`ephys.pipelines.core.predictions`), it writes ``predictions.csv`` (e.g. one row per
    recording) and adds report sections; otherwise ``predictions.csv`` has one row per sample.

    Parameters
    ----------
    run_dir : a trained run folder (``config.yaml`` + its model file).
    input_path : raw recording(s) the run's modality can prepare, or a prepared dataset folder.
    out_dir : output folder; must not exist yet or be empty.
    options : what raw input is (``{"units": "mV"}``), for a step whose options describe its input.

    Raises
    ------
    EphysError
        Not a trained run; its training dataset is gone; input that does not fit the run's
        modality, or prepared with other parameters (the message says which); an output path
        that exists and is not empty; the modality cannot prepare raw input.
    """
    from .models import load_predictor, run_model_spec

    run_dir, input_path, out = Path(run_dir), Path(input_path), Path(out_dir)
    config = load_run_config(run_dir)
    spec = run_model_spec(config)
    model_file = spec.model_file if spec is not None else "model.keras"
    if not (run_dir / model_file).is_file():
        raise EphysError(f"no {model_file} — the run has not finished training", run_dir)
    if spec is not None and spec.target != "label":
        raise EphysError(f"predict writes class predictions; {spec.name} learns a {spec.target} target, "
                         "not a class (its pipeline applies it)", run_dir)
    trained_dir = find_dataset(run_dir, config)
    trained = read_manifest(trained_dir)
    check_same_dataset(config.get("dataset_fingerprint"), trained, run_dir / "config.yaml", trained_dir)
    mod = find_modality(trained.get("modality"), run_dir / "config.yaml")
    if not input_path.exists():
        raise EphysError("no such file or folder", input_path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EphysError("output folder exists and is not empty; pass a new OUT", out)
    check_writable_dir(out, "output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        if (input_path / "manifest.json").is_file():
            given = read_manifest(input_path)
            diff = manifest_differences(trained, given, tuple(mod.match_keys))
            if diff:
                raise EphysError("prepared with other parameters than the run's dataset: " + "; ".join(diff[:4]),
                                 input_path)
            if any(v is not None for v in (options or {}).values()):
                raise EphysError("input options describe raw recordings, not a prepared dataset", input_path)
            data_dir, prepared_here = input_path, False
        else:
            hook = mod.hook("prepare_for_predict")
            data_dir = (hook(input_path, trained, tmp / "data", log) if hook is not None
                        else prepare_like(input_path, trained, tmp / "data", log, options=options))
            if data_dir is None:
                raise EphysError(f"{mod.name} runs predict on prepared datasets only (a folder with "
                                 "manifest.json); prepare the input first", input_path)
            prepared_here = True
        ds = load_dataset(data_dir)
        if ds.modality != trained.get("modality"):
            raise EphysError(f"input is a {ds.modality} dataset; the run needs {trained.get('modality')}", input_path)
        label_names = [str(x) for x in (config.get("label_names") or trained.get("label_names") or [])]
        idx = np.arange(len(ds.ids), dtype=np.int64)
        step = step_of(trained)
        if idx.size == 0 and (step is None or step.predictions is None):
            raise EphysError("the input holds no sample to predict", input_path)
        proba = (load_predictor(run_dir, config, ds, max(batch_size, mod.predict_batch_size))(idx) if idx.size
                 else np.zeros((0, len(label_names))))
        if proba.shape != (idx.size, len(label_names)):
            raise EphysError(f"model output has shape {proba.shape}, expected ({idx.size}, {len(label_names)})",
                             run_dir / model_file)
        from .evaluation import predict_labels, read_threshold

        threshold = read_threshold(run_dir)
        sources = [str(s.get("source") or s.get("group") or "") for s in ds.manifest["samples"]]
        from .predictions import PredictionContext, run_predictions_hook

        extra = run_predictions_hook(step, PredictionContext(tmp, ds, proba, label_names, threshold, str(run_dir),
                                                             run_dir=run_dir, trained_dir=trained_dir, log=log))
        if extra is None:
            write_predictions(tmp / "predictions.csv", ds.ids, proba, label_names, columns={"source": sources},
                              threshold=threshold)
        predicted = [label_names[int(k)] for k in predict_labels(proba, threshold)]
        counts = Counter(predicted)
        write_json(tmp / "summary.json", {
            "run": str(run_dir.resolve()), "model": config.get("model"), "input": str(input_path.resolve()),
            "dataset": str(data_dir) if not prepared_here else "data",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_predicted": int(idx.size), "counts": {n: int(counts.get(n, 0)) for n in label_names}})
        _report(tmp, run_dir, config, ds, mod, label_names, proba, predicted, sources,
                data_dir=(out / "data") if prepared_here else data_dir, extra=extra or [])
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _report(folder: Path, run_dir: Path, config: dict, ds, mod, label_names, proba, predicted, sources,
            data_dir: Path, extra: list = ()) -> Path:
    """``report.html``: counts per predicted class, the least confident items, the example figure
    of the run's modality drawn per predicted class (one page of :mod:`ephys.pipelines.core.page`)."""
    from .nouns import nouns
    from .page import Card, Cards, Fig, Page, Table, Text, hook_blocks
    from .report import decision_facts

    words = nouns(ds.manifest, mod)
    conf = proba.max(axis=1) if len(proba) else np.zeros(0)
    order = np.argsort(conf, kind="stable")[:N_LEAST_CONFIDENT]
    counts = Counter(predicted)
    n = len(predicted)
    examples = [Text("No example figure for this modality.")]
    view = _view_with_labels(ds, predicted)
    try:
        ctx = ReportContext(run_dir=run_dir, config=config, data_dir=view, manifest=json.loads(
            (view / "manifest.json").read_text()), split=None, label_names=label_names)
        hook = mod.hook("examples")
        got = hook(ctx) if hook is not None else None
        if isinstance(got, Figure):
            examples = [Fig(got.png, got.alt, f"{got.caption} Classes here are the predicted ones.", "examples")]
        elif got:
            examples = [Text(str(got))]
    finally:
        shutil.rmtree(view, ignore_errors=True)
    page = Page(f"Predictions of {config.get('model')} ({run_dir.name})", kicker="ephys predict",
                pills=[f"run: {run_dir}", f"model: {config.get('model')}"], source=str(folder.name))
    cards = [Card(f"{words.samples.capitalize()} predicted", f"{n:,}")]
    cards += [Card(k, f"{counts.get(k, 0):,}", f"{100.0 * counts.get(k, 0) / max(n, 1):.1f} % predicted",
                   frac=counts.get(k, 0) / max(n, 1)) for k in label_names]
    decision = decision_facts(run_dir, config, {"labels": label_names}, words)
    page.section("Summary", Cards(cards),
                 Text(f"{n:,} {words.samples} from {data_dir}; labels in the input, if any, were ignored. "
                      "Probabilities are the model's; they are calibrated only as well as its training data allow."),
                 Text(decision["text"]) if decision else None)
    for sec in extra:
        page.section(sec.title, *hook_blocks(sec))
    page.section("Counts per predicted class",
                 Table([[k, counts.get(k, 0), f"{100.0 * counts.get(k, 0) / max(n, 1):.1f} %"] for k in label_names],
                       ["class", "n", "share"]))
    page.section(f"Least confident {words.samples}",
                 Table([[ds.ids[i], sources[i], predicted[i], f"{conf[i]:.3f}"] for i in order],
                       ["id", "source", "predicted", "probability"]))
    page.section("Examples by predicted class", *examples)
    return page.write(folder)


def _view_with_labels(ds, labels) -> Path:
    """A temporary dataset folder whose manifest labels each sample with ``labels`` (the
    predictions) and whose arrays are links to ``ds``'s, for drawing figures per predicted class."""
    view = Path(tempfile.mkdtemp(prefix="ephys-predict-view-"))
    manifest = dict(ds.manifest)
    manifest["samples"] = [{**s, "label": lab} for s, lab in zip(ds.manifest["samples"], labels)]
    manifest["label_names"] = sorted(set(labels))
    (view / "manifest.json").write_text(json.dumps(manifest))
    for child in Path(ds.root).iterdir():
        if child.name != "manifest.json":
            (view / child.name).symlink_to(child.resolve(), target_is_directory=child.is_dir())
    return view
