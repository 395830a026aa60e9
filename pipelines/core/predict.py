"""``ephys predict RUN INPUT [OUT]``: apply a trained run to new recordings or a prepared dataset.

Raw input is prepared with exactly the parameters recorded in the manifest of the dataset the run
was trained on: by the modality's ``prepare_for_predict`` hook when it has one, else by the prepare
step that made that dataset (:func:`ephys.pipelines.core.prepare.prepare_like`); a prepared dataset is
accepted when its modality, sample shape and preparation parameters equal the run's (otherwise one
line says what differs). Labels in the input are ignored. Writes, into ``OUT`` (created at the end,
from a temporary sibling, so a failure leaves nothing):

``predictions.csv``  ``id``, ``source`` (the recording), ``in_training_range`` (true / false; empty
                     for a run without a recorded range) and ``range_note`` (why a sample is
                     outside, :mod:`ephys.pipelines.core.ranges`), ``predicted``, ``p_<label>``
``report.html``      counts per predicted class, the least confident items, the example figure of
                     the run's report drawn per predicted class
``data/``            the prepared input (raw input only)
``summary.json``     what was predicted, with which run; ``n_outside_training_range``
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import part_dir, remove_stale_parts, write_json
from .datasets import check_same_dataset, load_dataset
from .errors import EphysError
from .outputs import OutputFolder
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
                log: Callable[[str], None] = print, batch_size: int = 8, force: bool = False,
                notice: Callable[[str], None] | None = None, import_backend: Callable[[], None] | None = None,
                options: dict | None = None) -> Path:
    """Predict every sample of ``input_path`` with the run's model; returns ``OUT``.

    When the step that prepared the run's dataset declares a ``predictions`` hook
    (:mod:`ephys.pipelines.core.predictions`), it writes ``predictions.csv`` (e.g. one row per
    recording) and adds report sections; otherwise ``predictions.csv`` has one row per sample.

    Parameters
    ----------
    run_dir : a trained run folder (``config.yaml`` + its model file).
    input_path : raw recording(s) the run's modality can prepare, or a prepared dataset folder.
    out_dir : output folder: new, empty, or an earlier prediction of the same run and input
        (replaced); another output is refused unless ``force``.
    force : replace an output folder that holds other output.
    notice : warnings shown even in quiet mode (inputs outside the training range); default ``log``.
    import_backend : called once every cheap check has passed, before the model is loaded (the
        command line imports Keras there, with its start-up chatter hidden).
    options : what raw input is (``{"units": "mV"}``), for a step whose options describe its input.

    Raises
    ------
    EphysError
        Not a trained run; its training dataset is gone; input that does not fit the run's
        modality, or prepared with other parameters (the message says which); an output folder
        that holds other output (without ``force``) or is being written by another run; the
        modality cannot prepare raw input; samples the model answers with NaN probabilities.
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
    settings = {k: v for k, v in (options or {}).items() if v is not None}
    folder = OutputFolder(out, "predict", settings, {"run": str(run_dir.resolve()), "input": str(input_path.resolve())},
                          force=force, create=False, log=notice or log)
    with folder:
        started = time.time()
        remove_stale_parts(out.parent, started, pattern=f".{out.name}.*.part")  # a killed predict's
        tmp = part_dir(out)
        return _predict_into(tmp, out, folder, run_dir, input_path, config, trained, mod, model_file, log,
                             notice or log, batch_size, import_backend, options)


def _predict_into(tmp: Path, out: Path, folder, run_dir: Path, input_path: Path, config: dict, trained: dict, mod,
                  model_file: str, log, notice, batch_size: int, import_backend, options: dict | None = None) -> Path:
    """:func:`predict_run` once OUT is checked and locked: everything into ``tmp``, then moved onto OUT."""
    from .models import load_predictor

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
        from .models import run_model_spec

        spec = run_model_spec(config)
        if import_backend is not None and idx.size and (spec is None or spec.kind == "keras"):  # trees need no Keras
            import_backend()
        proba = (load_predictor(run_dir, config, ds, max(batch_size, mod.predict_batch_size))(idx) if idx.size
                 else np.zeros((0, len(label_names))))
        if proba.shape != (idx.size, len(label_names)):
            raise EphysError(f"model output has shape {proba.shape}, expected ({idx.size}, {len(label_names)})",
                             run_dir / model_file)
        nan = np.flatnonzero(~np.isfinite(proba).all(axis=1))
        if nan.size:
            from .nouns import nouns

            raise EphysError(f"the model gives no probability (NaN) for {nan.size} of {idx.size} "
                             f"{nouns(ds.manifest, mod).samples} (e.g. {ds.ids[int(nan[0])]}): their input holds NaN "
                             "or Inf values; repair or remove them", data_dir)
        from .evaluation import predict_labels, read_threshold
        from .nouns import nouns

        threshold = read_threshold(run_dir)
        sources = [str(s.get("source") or s.get("group") or "") for s in ds.manifest["samples"]]
        notes, range_source = _range_notes(run_dir, trained_dir_of(run_dir, config), mod, ds, idx)
        inside = ["" if n is None else ("false" if n else "true") for n in notes]
        from .predictions import PredictionContext, run_predictions_hook

        extra = run_predictions_hook(step, PredictionContext(tmp, ds, proba, label_names, threshold, str(run_dir),
                                                             run_dir=run_dir, trained_dir=trained_dir_of(run_dir, config),
                                                             log=log))
        if extra is None:  # one row per sample; a step's hook writes its own rows (with its own range flags)
            write_predictions(tmp / "predictions.csv", ds.ids, proba, label_names,
                              columns={"source": sources, "in_training_range": inside,
                                       "range_note": [n or "" for n in notes]}, threshold=threshold)
        predicted = [label_names[int(k)] for k in predict_labels(proba, threshold)]
        counts = Counter(predicted)
        outside = [i for i, n in enumerate(notes) if n]
        write_json(tmp / "summary.json", {
            "run": str(run_dir.resolve()), "model": config.get("model"), "input": str(input_path.resolve()),
            "dataset": str(data_dir) if not prepared_here else "data",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_predicted": int(idx.size), "counts": {n: int(counts.get(n, 0)) for n in label_names},
            "n_outside_training_range": len(outside) if range_source else None, "training_range": range_source})
        words = nouns(ds.manifest, mod)
        range_line = (f"{len(outside)} of {idx.size} {words.samples} lie outside the run's training range (e.g. "
                      f"{ds.ids[outside[0]]}: {notes[outside[0]]}); their predictions are extrapolations "
                      "(in_training_range false in predictions.csv)" if outside else None)
        if range_line:
            notice(f"warning: {range_line}")
        _report(tmp, run_dir, config, ds, mod, label_names, proba, predicted, sources,
                data_dir=(out / "data") if prepared_here else data_dir, range_line=range_line,
                range_source=range_source, extra=extra or [])
        folder.write_record(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def trained_dir_of(run_dir: Path, config: dict) -> Path | None:
    """The run's training dataset folder, or None when it is gone."""
    try:
        return find_dataset(run_dir, config)
    except EphysError:
        return None


def _range_notes(run_dir: Path, trained_dir: Path | None, mod, ds, idx) -> tuple[list[str | None], str | None]:
    """Per sample: ``""`` inside the run's training range, the reason when outside, None when the
    run has no range (:mod:`ephys.pipelines.core.ranges`); and where the range came from."""
    from .ranges import check_inputs, read_training_range, training_range

    rng, source = read_training_range(run_dir), "recorded at train time"
    if rng is None and trained_dir is not None and (run_dir / "split.json").is_file():
        try:  # a run from before ranges were recorded: its training part, read now
            tds = load_dataset(trained_dir)
            pos = {sid: i for i, sid in enumerate(tds.ids)}
            train_ids = json.loads((run_dir / "split.json").read_text()).get("train") or []
            rng = training_range(tds, [pos[s] for s in train_ids if s in pos], mod)
            source = "computed from the run's training dataset (the run predates recorded ranges)"
        except (EphysError, OSError, ValueError):
            rng = None
    if rng is None:
        return [None] * len(idx), None
    return check_inputs(rng, ds, idx, mod), source


def _report(folder: Path, run_dir: Path, config: dict, ds, mod, label_names, proba, predicted, sources,
             data_dir: Path, range_line: str | None = None, range_source: str | None = None,
             extra: list = ()) -> Path:
    """``report.html``: counts per predicted class, the least confident items, the example figure
    of the run's modality drawn per predicted class (one page of :mod:`ephys.pipelines.core.page`)."""
    from .nouns import nouns
    from .page import Card, Cards, Fig, Notice, Page, Table, Text, hook_blocks
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
    if range_line:  # first thing on the page: these probabilities are extrapolations
        page.section("Outside the training range", Notice(range_line[:1].upper() + range_line[1:] + "."),
                     Text("The run records the range of its training data (per feature of a table; per sample: "
                          "amplitude, noise level and what the modality records, e.g. protocol length and "
                          f"sampling rate; {range_source}). A value beyond it by more than 10 % of that range "
                          "is outside.", muted=True))
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
