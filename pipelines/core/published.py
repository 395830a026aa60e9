"""Published models of other tools: fetched, checked, converted to Keras once, applied by ``ephys predict``.

A pipeline declares each in its :class:`~ephys.pipelines.core.registry.Pipeline` (``published=``) as a
:class:`PublishedModel`: where the trained parameters are published (URL, sha256, size), its licence
note and citation, a ``convert`` hook that turns the downloaded file into a Keras model, and the
prepare step (and its parameters) whose datasets the model reads, with the published decision rule.

``ephys fetch weights NAME`` (:func:`fetch_published`) downloads the file with a plain HTTP GET
(``--base-url`` replaces the URL's scheme and host, keeping its path: a mirror, or a local test
server), or installs a copy the user downloaded elsewhere (``--file PATH``: offline compute
nodes); either way the size and sha256 are checked before the file is moved into the weights cache
(:func:`weights_dir`), then it is converted once and saved as ``model.keras`` beside it.
``ephys models --published`` lists the declarations; ``ephys predict NAME INPUT OUT``
(:func:`predict_published`) prepares raw INPUT with the declared step and parameters, applies the
converted model and writes what the step's ``predictions`` hook writes (else one row per sample),
``summary.json`` and ``report.html``. Nothing from a published repository is shipped with ephys.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .atomic import atomic_path, check_writable_dir, write_json
from .errors import EphysError

__all__ = ["PublishedModel", "weights_dir", "fetch_published", "load_published", "predict_published",
           "describe_published"]

#: overrides the folder published models are cached in (default: Keras' cache, ~/.keras/models)
WEIGHTS_DIR_ENV = "EPHYS_WEIGHTS_DIR"
DOWNLOAD_TIMEOUT_S = 60
CONVERTED = "model.keras"


@dataclass
class PublishedModel:
    """A trained model another tool published (see the module docstring).

    Attributes
    ----------
    name : what users type (``ephys predict NAME``, ``ephys fetch weights NAME``).
    summary : one line: what it predicts from what.
    url : where the trained parameters are published (HTTP GET).
    sha256, size : the published file's checksum and size in bytes (checked on every install).
    licence : the licence note (what the user may do with the file).
    citation : the paper to cite.
    convert : ``convert(path) -> keras.Model`` (or ``"package.module:function"``): the downloaded
        file as a Keras model whose output is (n, n_classes) probabilities, or (n, 1) the probability
        of the last of ``label_names``.
    prepare : the prepare step (its name) that makes the model's input from raw recordings.
    prepare_params : that step's parameters (as a manifest records them; the step's defaults otherwise).
    label_names : the output classes (for a one-unit output: the negative, then the positive class).
    threshold : the published decision threshold on the positive class's probability (None: argmax).
    decision : the published decision rule in words (report, ``ephys models --published``).
    input_range : ``(minima, maxima)`` per input column of the data it was trained on (e.g. its
        scaling constants): predictions outside are flagged.
    file_name : the cached file's name (default: the URL's last part).
    """

    name: str
    summary: str
    url: str
    sha256: str
    size: int
    licence: str
    citation: str
    convert: Callable[[Path], Any] | str
    prepare: str
    prepare_params: dict = field(default_factory=dict)
    label_names: tuple[str, ...] = ("negative", "positive")
    threshold: float | None = None
    decision: str = ""
    input_range: tuple | None = None
    file_name: str = ""

    def hook(self, name: str):
        from .registry import resolve

        return resolve(getattr(self, name))

    @property
    def cached_name(self) -> str:
        return self.file_name or Path(urllib.parse.urlparse(self.url).path).name or "weights"


def describe_published() -> list[dict]:
    """Every declared published model: name, pipeline, summary, source, size, sha256, licence,
    citation, decision, and whether it is in the weights cache (``ephys models --published``)."""
    from .registry import published_models

    out = []
    for name, (m, pipe) in published_models().items():
        out.append({"name": name, "pipeline": pipe, "summary": m.summary, "source": m.url, "size": m.size,
                    "sha256": m.sha256, "licence": m.licence, "citation": m.citation, "decision": m.decision,
                    "prepare": m.prepare, "fetched": _cached_ok(m) is not None})
    return out


def weights_dir() -> Path:
    """Where published models are cached: ``$EPHYS_WEIGHTS_DIR``, else ``$KERAS_HOME/models``, else
    ``~/.keras/models`` (the folder ImageNet weights go to: copy it to offline compute nodes)."""
    if os.environ.get(WEIGHTS_DIR_ENV):
        return Path(os.environ[WEIGHTS_DIR_ENV]).expanduser()
    home = os.environ.get("KERAS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".keras") / "models"


def _folder(m: PublishedModel) -> Path:
    return weights_dir() / "published" / m.name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _cached_ok(m: PublishedModel) -> Path | None:
    f = _folder(m) / m.cached_name
    try:
        return f if f.is_file() and f.stat().st_size == m.size and _sha256(f) == m.sha256 else None
    except OSError:
        return None


def _check_file(m: PublishedModel, path: Path, origin: str) -> None:
    size, got = path.stat().st_size, _sha256(path)
    if size != m.size or got != m.sha256:
        raise EphysError(f"{origin}: {size} bytes, sha256 {got} does not match {m.name}'s published file "
                         f"({m.size} bytes, sha256 {m.sha256}); not installed")


def _download(url: str, dest: Path, limit: int) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "ephys"})
    try:
        with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(dest, "wb") as fh:
            while True:
                block = resp.read(1 << 16)
                if not block:
                    break
                fh.write(block)
                if fh.tell() > limit:
                    raise EphysError(f"cannot download {url}: larger than the published file; stopped")
    except urllib.error.HTTPError as exc:
        raise EphysError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EphysError(f"cannot download {url}: {reason} (no internet here? download it elsewhere and "
                         "pass --file PATH)") from None


def fetch_published(name: str, file: str | Path | None = None, base_url: str | None = None,
                    log: Callable[[str], None] = print) -> Path:
    """Install the published model ``name`` into the weights cache and convert it (see the module
    docstring); returns the cached file. A cached file with the right checksum is kept (converted
    again when ``model.keras`` is missing).

    Parameters
    ----------
    file : a copy of the published file (no download); checked like a download.
    base_url : ``scheme://host[/prefix]`` replacing the URL's scheme and host (a mirror, a test server).

    Raises
    ------
    EphysError
        Unknown name; the download failed (network, HTTP status) or ``file`` is unreadable; size or
        sha256 differ from the declaration (nothing is installed); the cache folder is not writable;
        the file does not convert.
    """
    from .registry import published_model

    m, _ = published_model(name)
    folder = _folder(m)
    final = folder / m.cached_name
    cached = _cached_ok(m) if file is None else None
    if cached is None:
        check_writable_dir(folder, "weights folder")
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(final) as tmp:
            if file is not None:
                src = Path(file)
                if not src.is_file():
                    raise EphysError("no such file", src)
                shutil.copyfile(src, tmp)
                _check_file(m, Path(tmp), str(src))
            else:
                url = m.url
                if base_url:
                    parts = urllib.parse.urlparse(m.url)
                    url = base_url.rstrip("/") + parts.path
                log(f"downloading {url}")
                _download(url, Path(tmp), m.size)
                _check_file(m, Path(tmp), url)
        log(f"{m.name}: {final} (sha256 checked)")
    _convert(m, final)
    return final


def _convert(m: PublishedModel, path: Path):
    model = m.hook("convert")(path)
    with atomic_path(path.parent / CONVERTED, suffix=".keras") as tmp:
        model.save(str(tmp))
    return model


def load_published(name: str):
    """The converted Keras model of published model ``name`` (its file checked again).

    Raises
    ------
    EphysError
        Not fetched yet (the message says how), or the cached file changed since.
    """
    from .models import load_keras_model
    from .registry import published_model

    m, _ = published_model(name)
    f = _cached_ok(m)
    if f is None:
        raise EphysError(f"{m.name} is not in the weights cache ({_folder(m)}) or its checksum changed: run "
                         f"`ephys fetch weights {m.name}` (or `--file PATH` with a copy of {m.url})")
    conv = f.parent / CONVERTED
    return load_keras_model(conv) if conv.is_file() else _convert(m, f), m


def _probabilities(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    if X.shape[0] == 0:
        return np.zeros((0, n_classes))
    out = np.asarray(model.predict(X.astype(np.float32), verbose=0, batch_size=1024), dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 1 and n_classes == 2:
        out = np.hstack([1.0 - out, out])
    if out.shape != (X.shape[0], n_classes):
        raise EphysError(f"the converted model gives shape {out.shape}, expected ({X.shape[0]}, {n_classes})")
    return out


def predict_published(name: str, input_path: str | Path, out_dir: str | Path, log: Callable[[str], None] = print,
                      options: dict | None = None) -> Path:
    """``ephys predict NAME INPUT OUT`` for a published model; returns OUT.

    Raises
    ------
    EphysError
        Not fetched; an input the declared step refuses; an output path that exists and is not empty.
    """
    from .datasets import load_dataset
    from .predictions import PredictionContext, run_predictions_hook
    from .prepare import prepare_like
    from .registry import prepare_step
    from .runfolder import write_predictions

    model, m = load_published(name)
    step, pipe = prepare_step(m.prepare)
    input_path, out = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise EphysError("no such file or folder", input_path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EphysError("output folder exists and is not empty; pass a new OUT", out)
    check_writable_dir(out, "output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        manifest = {"prepared_by": {"pipeline": pipe, "step": step.name}, "parameters": dict(m.prepare_params)}
        ds = load_dataset(prepare_like(input_path, manifest, tmp / "data", log, options=options))
        labels = list(m.label_names)
        X = ds.load(np.arange(len(ds.ids))) if len(ds.ids) else np.zeros((0, 0))
        proba = _probabilities(model, np.asarray(X, dtype=np.float64), len(labels))
        rng = tuple(np.asarray(v, dtype=np.float64) for v in m.input_range) if m.input_range else None
        ctx = PredictionContext(tmp, ds, proba, labels, m.threshold, m.name, rng, log=log)
        sections = run_predictions_hook(step, ctx)
        if sections is None:
            if not len(ds.ids):
                raise EphysError("the input holds no sample to predict", input_path)
            sources = [str(s.get("source") or s.get("group") or "") for s in ds.manifest["samples"]]
            write_predictions(tmp / "predictions.csv", ds.ids, proba, labels, columns={"source": sources},
                              threshold=m.threshold)
            sections = []
        write_json(tmp / "summary.json", {
            "published_model": m.name, "source": m.url, "sha256": m.sha256, "citation": m.citation,
            "input": str(input_path.resolve()), "dataset": "data", "decision": m.decision,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_samples": len(ds.ids)})
        _report(tmp, m, ds, proba, sections, input_path)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _report(folder: Path, m: PublishedModel, ds, proba: np.ndarray, sections: list, input_path: Path) -> Path:
    """``report.html``: the model (source, checksum, citation, licence, rule), then the step's sections."""
    from .nouns import nouns
    from .page import Card, Cards, Page, Table, Text
    from .registry import modality
    from .page import hook_blocks

    words = nouns(ds.manifest, modality(ds.modality))
    page = Page(f"Predictions of the published model {m.name}", kicker="ephys predict",
                pills=[f"input: {input_path}", f"model: {m.name} (published)"], source=folder.name)
    labels = list(m.label_names)
    if proba.shape[0] and not sections:
        k = (proba[:, -1] >= m.threshold).astype(int) * (len(labels) - 1) if m.threshold is not None and \
            len(labels) == 2 else proba.argmax(axis=1)
        counts = Counter(labels[int(i)] for i in k)
        page.section("Summary", Cards([Card(f"{words.samples.capitalize()} predicted", f"{proba.shape[0]:,}")] +
                                      [Card(c, f"{counts.get(c, 0):,}") for c in labels]))
    page.section("Model", Text(m.summary), Table(
        [["source", m.url], ["sha256 (checked)", m.sha256], ["decision rule", m.decision or "argmax"],
         ["citation", m.citation], ["licence", m.licence]], ["", ""], numeric=[False, False]))
    for sec in sections:
        page.section(sec.title, *hook_blocks(sec))
    return page.write(folder)
