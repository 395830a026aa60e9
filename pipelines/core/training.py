"""``ephys train``: fit a registry model on a prepared dataset, resumably, reproducibly.

A run folder holds everything a run did:

``config.yaml``     every setting needed to reproduce it (``ephys train --config``)
``split.json``      train / val / test sample ids (grouped: a cell is on one side only)
``training_range.json``  the range of the training part (:mod:`ephys.pipelines.core.ranges`)
``history.csv``     per-epoch loss / accuracy (train and validation)
``checkpoints/``    ``last.keras`` (model + optimiser, every epoch), ``best.weights.h5``,
                    ``state.json`` (epoch, early-stopping counters)
``model.keras``     the final model (best validation loss), written when training ends

Re-running the same command after a kill resumes from ``checkpoints/last.keras`` at the next
epoch with the early-stopping state restored; a finished run is left alone.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .. import __version__
from .atomic import atomic_path, check_writable_dir, remove_stale_parts, write_json, write_text
from .datasets import Dataset, grouped_split, load_dataset, named_split
from .errors import EphysError
from .nouns import nouns, plural

#: config keys that do not change what is trained (a resumed run may differ in these)
_VOLATILE = {"out", "created", "ephys_version", "keras_version", "backend", "backend_version",
             "gpu", "run_id", "quiet", "eager"}


@dataclass
class TrainConfig:
    """Settings of one training run (written to ``config.yaml``)."""

    model: str = ""  # a registered model name (required)
    data: str = ""  # a prepared dataset folder (the CLI's default: the default pipeline's main dataset)
    weights: str = "none"
    freeze: str = "none"  # none | full (the backbone) | features (the spec's feature layers)
    init: str = "none"  # none | a run folder or .keras file to start from (transfer learning) | shipped
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    patience: int = 5
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    split: str = "auto"  # auto: the manifest's default_split if it offers one, else grouped; or blocked (in time)
    dropout: float = 0.3
    input_size: int | None = None
    out: str | None = None
    eager: bool = False
    decision: str = "argmax"  # or "val_macro_f1": a binary threshold chosen on the validation part
    hparams: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path, check: bool = True) -> "TrainConfig":
        """Read a run's ``config.yaml`` (keys that are not settings, e.g. ``created``, are ignored)
        and check its values with :func:`check_config` (an ``epochs: 0`` there is refused exactly
        like ``--epochs 0``); ``check=False`` leaves that to the caller (the CLI checks after
        applying its options).

        Raises
        ------
        EphysError
            Unreadable YAML, not a mapping, or a value out of range (naming the key and the file).
        """
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise EphysError(f"unreadable config ({' '.join(str(exc).split())})", path) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise EphysError("config is not a mapping of keys to values", path)
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in raw.items() if k in names})
        cfg._source = str(path)
        return check_config(cfg, source=path) if check else cfg

    def fingerprint(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in _VOLATILE}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


#: how a run turns probabilities into a class: the most probable one, or (two classes) a threshold
#: on the second class's probability chosen for macro-F1 on the validation part
DECISIONS = ("argmax", "val_macro_f1")

#: the one table of allowed values: field -> (test, what it must be). Used for CLI options and
#: config.yaml alike, before any folder is created or any Keras import.
_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and bool(v.strip()), "a model name (see `ephys models`)"),
    "data": (lambda v: isinstance(v, str) and bool(v.strip()), "a dataset folder"),
    "weights": (lambda v: isinstance(v, str) and bool(v.strip()), "imagenet, none or a weights file"),
    "freeze": (lambda v: v in ("none", "full", "features"), "none, full or features"),
    "init": (lambda v: isinstance(v, str) and bool(v.strip()), "none, shipped, a run folder or a .keras file"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _is_num(v) and np.isfinite(v) and v > 0, "a finite number > 0"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2 ** 32, "an integer in [0, 2**32)"),
    "patience": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "test_fraction": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    "val_fraction": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "split": (lambda v: isinstance(v, str) and bool(v.strip()), "grouped, auto or a split the manifest offers"),
    "dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "input_size": (lambda v: v is None or (_is_int(v) and v >= 32), "an integer >= 32"),
    "out": (lambda v: v is None or (isinstance(v, str) and bool(v.strip())), "a folder"),
    "eager": (lambda v: isinstance(v, bool), "true or false"),
    "decision": (lambda v: v in DECISIONS, "argmax or val_macro_f1"),
    "hparams": (lambda v: v is None or isinstance(v, dict), "a mapping of KEY: VALUE"),
}


def check_config(cfg: "TrainConfig", source: str | Path | None = None,
                 options: set[str] | frozenset[str] = frozenset()) -> "TrainConfig":
    """Check every setting of ``cfg`` against one table of allowed values (``lr`` finite and > 0,
    ``epochs``, ``patience``, ``batch_size`` >= 1, fractions in range, ``decision`` argmax or
    val_macro_f1, ...), then the model's hyper-parameters against its declaration
    (:func:`ephys.pipelines.core.models.check_hparams`: ``hparams`` plus the ``dropout`` /
    ``input_size`` the model gets, see :func:`model_hparams`). A model name that is not
    registered is left to :func:`train` (which names the known ones).

    The same checks serve ``ephys train`` options and ``config.yaml`` values: a field named in
    ``options`` is reported as its CLI option (``--lr``, ``--hparam``), any other as the key of
    ``source`` (the config file) when one is given. Called before any folder is created, and
    imports no Keras.

    Raises
    ------
    EphysError
        The first value out of range, e.g. ``config.yaml: epochs must be an integer >= 1, not 0``,
        or ``--hparam: model M has no hyper-parameter widht; it accepts: dropout, width, ...``.
    """
    for name, (ok, what) in _RULES.items():
        value = getattr(cfg, name)
        try:
            good = bool(ok(value))
        except Exception:  # e.g. np.isfinite on a string
            good = False
        if good:
            continue
        if name in options or source is None:
            raise EphysError(f"--{name.replace('_', '-')} must be {what}, not {value!r}")
        raise EphysError(f"`{name}` must be {what}, not {value!r}", source)
    from . import models

    try:
        spec = models.REGISTRY[models.resolve_model_name(cfg.model)]
    except EphysError:
        return cfg
    given = dict(cfg.hparams or {})
    hp = model_hparams(cfg, spec)
    # --hparam values first, then each setting the model gets as a hyper-parameter (--input-size, --dropout)
    parts = [("hparams", given)] + [(k, {k: v}) for k, v in hp.items() if k not in given or given[k] is not v]
    for field_name, part in parts:
        on_cli = field_name in options or source is None
        where = (f"--{field_name.replace('_', '-')}" if field_name != "hparams" else "--hparam") if on_cli \
            else f"`{field_name}`"
        try:
            models.check_hparams(spec, part, where=where)
        except EphysError as exc:
            raise EphysError(exc.message, None if on_cli else source) from None
    return cfg


def check_inputs(cfg: "TrainConfig") -> None:
    """What ``ephys train`` checks before it imports Keras (after :func:`check_config`): the model
    name, and the dataset folder exists, is a prepared dataset (or a folder of them, for
    cross-validation) and holds a modality the model fits. Reads JSON only.

    Raises
    ------
    EphysError
        Unknown model (the message lists the known ones), no such dataset folder, or a model
        that does not fit the dataset's modality (the message names the models that do).
    """
    from . import models

    models.resolve_model_name(cfg.model)
    data = Path(str(cfg.data))
    if not data.is_dir():
        raise EphysError("no such dataset folder; run `ephys prepare` first", data)
    try:
        manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a folder of datasets (cross-validation) or a damaged manifest: load_dataset says which
    if isinstance(manifest, dict) and manifest.get("modality"):
        models.check_modality(models.resolve_model_name(cfg.model), str(manifest["modality"]))
    if str(cfg.init).strip().lower() != "none":
        models.init_model_file(cfg.init, cfg.model)


def model_hparams(cfg: "TrainConfig", spec) -> dict:
    """The hyper-parameters :func:`train` gives the model of ``spec`` (a
    :class:`~ephys.pipelines.core.models.ModelSpec`), before defaults are filled.

    ``cfg.hparams``; for a Keras model also ``cfg.dropout`` when the model declares ``dropout``
    and ``hparams`` has none, and ``cfg.input_size`` when set (over ``hparams``; refused by a model
    that declares no ``input_size``). A model with its own trainer gets ``cfg.hparams`` only.
    """
    hp = dict(cfg.hparams or {})
    if spec.trainer is not None:
        return hp
    if "dropout" in spec.hparams:
        hp.setdefault("dropout", cfg.dropout)  # hparams (e.g. --hparam dropout=...) win
    if cfg.input_size:
        hp["input_size"] = cfg.input_size
    return hp


def init_freeze(cfg: "TrainConfig") -> str:
    """What ``--freeze`` defaults to with ``--init``: ``features`` when the model declares feature
    layers (:attr:`~ephys.pipelines.core.models.ModelSpec.feature_layers`: fine-tune the head on
    the new data, keep the features), else ``none``. Without ``--init``: ``cfg.freeze``."""
    from . import models

    if str(cfg.init).strip().lower() == "none":
        return cfg.freeze
    spec = models.REGISTRY[models.resolve_model_name(cfg.model)]
    return "features" if spec.feature_layers else "none"


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<model>-<dataset folder name>[-s<seed>]``: the same command maps to the same run."""
    name = f"{cfg.model}-{Path(cfg.data).name}"
    if cfg.seed != 0:
        name += f"-s{cfg.seed}"
    return Path("runs") / name


class _Batches:
    """Keras ``PyDataset`` over dataset samples (slices the consolidated array when the dataset
    has one, else loads the per-sample .npy files): float32, or float16 when that array is.
    Targets per ``target`` (:data:`ephys.pipelines.core.models.TARGETS`): ``y`` (class indices),
    the samples' masks, or the samples themselves."""

    def __new__(cls, ds: Dataset, indices, y, batch_size: int, shuffle: bool, seed: int,
                sample_weight=None, target: str = "label"):
        import keras

        class Batches(keras.utils.PyDataset):
            # everything comes in as arguments, nothing through the closure: the class outlives
            # fit (see below), and closure cells would keep the Dataset alive with it
            def __init__(self, ds, indices, y, batch_size, shuffle, seed, sample_weight, target):
                super().__init__(workers=1, use_multiprocessing=False)
                self.batch_size = batch_size
                self.target = target
                # held as an attribute (not a closure) so that release() can drop it: keras wraps
                # the PyDataset in tf.data's from_generator, whose global registry keeps it alive
                # after fit returns (with the Dataset's memory map and manifest: ~0.3 GB per call
                # on an LFP unit dataset, 16.7 GB over lfp-ratgps's folds)
                self.ds = ds
                self.error = None
                self.indices = np.asarray(indices)
                self.y = None if y is None else np.asarray(y)
                self.w = sample_weight
                self.order = np.arange(self.indices.size)
                self.rng = np.random.default_rng(seed)
                if shuffle:
                    self.rng.shuffle(self.order)
                self.shuffle = shuffle
                # a float16 consolidated array stays float16 (the model casts); all else float32
                self.dtype = np.float16 if ds.storage_dtype == np.float16 else np.float32

            def __len__(self):
                return int(np.ceil(self.indices.size / self.batch_size))

            def __getitem__(self, k):
                sel = self.order[k * self.batch_size:(k + 1) * self.batch_size]
                data = self.ds
                x = data.load(self.indices[sel], dtype=self.dtype)
                if not np.isfinite(x).all():  # refuse NaN / Inf input (keras would train to NaN weights)
                    bad = int(self.indices[sel][int(np.flatnonzero(~np.isfinite(x).reshape(len(sel), -1).all(axis=1))[0])])
                    self.error = EphysError(
                        f"sample {data.ids[bad]} holds NaN or Inf values; refusing to train on it "
                        "(re-run `ephys prepare`, or fix the input recording)", data.where(bad))
                    raise self.error
                y = (x if self.target == "input" else data.load_mask(self.indices[sel], dtype=x.dtype)
                     if self.target == "mask" else self.y[sel])
                if self.w is None:
                    return x, y
                return x, y, self.w[sel]

            def on_epoch_end(self):
                if self.shuffle:
                    self.rng.shuffle(self.order)

            def release(self):
                """Drop the Dataset and the index arrays once training is over."""
                self.ds = self.indices = self.y = self.w = self.order = None

        return Batches(ds, indices, y, batch_size, shuffle, seed, sample_weight, target)


class _NonFiniteLoss(Exception):
    """Raised inside ``fit`` when the loss is NaN or Inf (turned into an EphysError by train)."""


def _state_callback(run: Path, patience: int, monitor: str, start_state: dict,
                    on_epoch: Callable[[int, dict], None] | None):
    import keras

    class RunState(keras.callbacks.Callback):
        """Checkpoint every epoch (atomically), keep the best weights, early-stop on ``monitor``."""

        def __init__(self):
            super().__init__()
            self.state = dict(start_state)
            self.epoch = 0
            self.non_finite = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                self.non_finite = (self.epoch, batch, float(loss))
                raise _NonFiniteLoss()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            bad = [k for k, v in logs.items() if k.endswith("loss") and not np.isfinite(v)]
            if bad:
                self.non_finite = (epoch, None, logs[bad[0]])
                raise _NonFiniteLoss()
            ckpt = run / "checkpoints"
            ckpt.mkdir(parents=True, exist_ok=True)
            value = logs.get(monitor, logs.get("loss"))
            improved = value is not None and value < self.state.get("best", float("inf"))
            if improved:
                with atomic_path(ckpt / "best.weights.h5", suffix=".weights.h5") as tmp:
                    self.model.save_weights(tmp)
                self.state.update(best=value, best_epoch=epoch, wait=0)
            else:
                self.state["wait"] = self.state.get("wait", 0) + 1
            _append_history(run / "history.csv", epoch, logs)
            with atomic_path(ckpt / "last.keras", suffix=".keras") as tmp:
                self.model.save(tmp)
            self.state["epoch"] = epoch
            if self.state["wait"] >= patience:
                self.state["stopped_early"] = True
                self.model.stop_training = True
            write_json(ckpt / "state.json", self.state)
            if on_epoch and on_epoch(epoch, logs) is True:  # the caller ends the run here (e.g. a pruned trial)
                self.state.update(stopped_early=True, stopped_by="caller")
                self.model.stop_training = True
                write_json(ckpt / "state.json", self.state)

    return RunState()


def _append_history(path: Path, epoch: int, logs: dict) -> None:
    rows = []
    if path.exists():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < epoch]
    row = {"epoch": epoch, **{k: f"{v:.6g}" for k, v in sorted(logs.items())}}
    rows.append(row)
    cols = ["epoch"] + sorted({k for r in rows for k in r if k != "epoch"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


#: a class needs this many labelled groups for a grouped split with one in train, val and test;
#: with fewer it is warned about, and with fewer than 2 (no group for both train and test: often
#: a typo'd label) refused
MIN_GROUPS_PER_CLASS = 3


def check_class_sizes(ds: Dataset, labelled: np.ndarray) -> list[str]:
    """Classes too small for a grouped split: one labelled group -> refused; fewer than
    :data:`MIN_GROUPS_PER_CLASS` -> a warning (returned) that validation has no group of it.
    Groups are counted in the dataset's own word (``group_noun``: cells, patients, channels).

    Raises
    ------
    EphysError
        Naming each class with a single labelled group, every class's count, and the dataset.
    """
    noun = nouns(ds.manifest)
    groups: dict[str, set] = {}
    for i in labelled:
        groups.setdefault(ds.labels[i], set()).add(ds.groups[i])
    sizes = ", ".join(f"{c!r} {len(g)}" for c, g in sorted(groups.items()))
    single = {c: len(g) for c, g in sorted(groups.items()) if len(g) < 2}
    if single:
        listed = ", ".join(f"{c!r} {n}" for c, n in single.items())
        raise EphysError(f"classes with fewer than 2 labelled {noun.groups} cannot be on both sides of a split: {listed} "
                         f"(all classes: {sizes}); fix or drop those labels", ds.root / "manifest.json")
    small = [c for c, g in sorted(groups.items()) if len(g) < MIN_GROUPS_PER_CLASS]
    if small:
        return [f"warning: classes with fewer than {MIN_GROUPS_PER_CLASS} labelled {noun.groups} get no validation "
                f"{noun.group}: "
                f"{', '.join(map(repr, small))} (all classes: {sizes})"]
    return []


def check_split_classes(ds: Dataset, split: dict[str, list[int]], few_test_warning: bool = True) -> list[str]:
    """A split whose training part lacks a class is refused; a validation or test part that
    lacks a class (or, with ``few_test_warning``, a test part of fewer than 2 groups per class:
    meant for the random grouped split, not for a cross-validation fold or a published split,
    which hold out few groups by design) is reported with the numbers, counted in the dataset's
    groups (``group_noun``: cells, patients, channels). The warnings are returned (train logs them
    once the model is built, so an error raised before that stays the only line).

    Raises
    ------
    EphysError
        A class with labelled samples that has none in the training part.
    """
    noun = nouns(ds.manifest).group
    present = sorted({ds.labels[i] for part in split.values() for i in part if ds.labels[i]})
    counts = {part: {c: len({ds.groups[i] for i in split.get(part, []) if ds.labels[i] == c}) for c in present}
              for part in ("train", "val", "test")}
    missing_train = [c for c in present if counts["train"][c] == 0]
    if missing_train:
        raise EphysError(f"the training part of the split has no {noun} of class {', '.join(map(repr, missing_train))} "
                         f"({plural(noun)} per class: train {counts['train']}, val {counts['val']}, test {counts['test']})",
                         ds.root / "manifest.json")
    warnings = []
    for part in ("val", "test"):
        lacking = [c for c in present if counts[part][c] == 0]
        if lacking and split.get(part):
            warnings.append(f"warning: the {part} part of the split has no {noun} of class "
                f"{', '.join(map(repr, lacking))} ({plural(noun)} per class: {counts[part]})")
    n_test = sum(counts["test"].values())
    if few_test_warning and split.get("test") and n_test < 2 * len(present):
        warnings.append(f"warning: the test part holds only {n_test} {plural(noun)} for {len(present)} classes; "
                        "its metrics will be very uncertain")
    return warnings


def plan_split(cfg: TrainConfig, ds: Dataset, labelled: np.ndarray | None = None) -> dict[str, list[int]]:
    """The train / val / test split :func:`train` makes for ``cfg`` without an explicit one:
    ``cfg.split`` ``"grouped"`` (random by group, stratified; ``test_fraction``, ``val_fraction``,
    ``seed``), ``"blocked"`` (in time by the samples' ``t_s``: the latest ``test_fraction`` test,
    the ``val_fraction`` before them validate, a gap of the manifest's ``window_s``;
    :func:`ephys.pipelines.core.validation.blocked_split`) or a split the manifest offers by name. ``cfg.split`` must be resolved already (not
    ``"auto"``). Returns dataset indices per part (``labelled``: the labelled samples, default
    ``ds.labelled_indices()``).

    Raises
    ------
    EphysError
        Too few groups for the grouped split; an unknown named split.
    """
    labelled = ds.labelled_indices() if labelled is None else labelled
    labs = [ds.labels[i] for i in labelled]
    grps = [ds.groups[i] for i in labelled]
    if cfg.split == "grouped":
        rel = grouped_split(labs, grps, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    elif cfg.split == "blocked":  # in time: the samples' t_s, a gap of one window (overlapping windows)
        from .validation import blocked_split

        samples = ds.manifest.get("samples") or []
        t = [float(samples[i].get("t_s", i)) for i in labelled]
        rel = {k: v.tolist() for k, v in blocked_split(t, cfg.test_fraction, cfg.val_fraction,
                                                        float(ds.manifest.get("window_s") or 0.0)).items()}
    else:  # a published split the manifest offers by name (e.g. the spike seed's channels)
        rel = named_split(grps, ds.manifest.get("splits") or {}, cfg.split, ds.root / "manifest.json")
    return {k: [int(labelled[j]) for j in v] for k, v in rel.items()}


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EphysError(f"unreadable JSON ({' '.join(str(exc).split())}); delete it to restart the run",
                         path) from None
    if not isinstance(obj, dict):
        raise EphysError("not a JSON object; delete it to restart the run", path)
    return obj


def _remove_run(run: Path, existed: bool) -> None:
    """Remove what a failed first session of a run wrote (the folder too if this session made it)."""
    import shutil

    for name in ("config.yaml", "split.json", "history.csv", "train_summary.json"):
        (run / name).unlink(missing_ok=True)
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    if not existed:
        try:
            run.rmdir()
        except OSError:
            pass


def _record_range(run: Path, ds: Dataset, split: dict, log: Callable[[str], None]) -> None:
    """``RUN/training_range.json``: the range of the training part, for ``ephys predict``'s
    out-of-range flags (:mod:`ephys.pipelines.core.ranges`); a failure here is said, not fatal
    (predict then computes the range from the training dataset)."""
    from .ranges import write_training_range
    from .registry import modality

    try:
        write_training_range(run, ds, np.asarray(split["train"], dtype=np.int64), modality(ds.modality))
    except (OSError, ValueError, KeyError, EphysError) as exc:
        log(f"warning: training range not recorded ({type(exc).__name__}: {exc})")


def train(cfg: TrainConfig, on_epoch: Callable[[int, dict], bool | None] | None = None,
          log: Callable[[str], None] = print, split_ids: dict[str, list[str]] | None = None,
          dataset: Dataset | None = None) -> Path:
    """Train ``cfg.model`` on ``cfg.data``; returns the run folder.

    ``split_ids`` (optional) is an explicit split, ``{"train": [sample id, ...], "val": [...],
    "test": [...]}``, e.g. one fold of a cross-validation a pipeline's recipe computed (a
    validation scheme of :mod:`ephys.pipelines.core.validation`); it is recorded in ``split.json``
    and ``cfg.split`` should name it (e.g. ``"lopo-P07"``). Without it, ``cfg.split`` selects the
    grouped random split or a named split the manifest offers. ``dataset`` (optional): ``cfg.data``
    already loaded (:func:`ephys.pipelines.core.datasets.load_dataset`), so that the many runs of
    a cross-validation read its manifest once.

    ``on_epoch(epoch, logs)`` (optional) is called after each epoch is checkpointed (``epoch``
    counted from 0, ``logs`` the epoch's losses and metrics as floats); returning ``True`` ends the
    run there as early stopping does (the best weights become the model; ``state.json`` records
    ``stopped_by: caller``), e.g. for a pruned search trial.

    What the model learns is its spec's ``target`` (:attr:`ephys.pipelines.core.models.ModelSpec.target`):
    class labels (balanced class weights), the samples' masks or the samples themselves, with
    the spec's ``loss``; ``fit_labels`` narrows the train and validation parts to those classes
    and ``after_fit`` runs on the training side before ``model.keras`` is written.

    Raises
    ------
    EphysError
        Unknown model, model that does not fit the dataset's modality, too few labelled cells,
        a run folder that holds a different configuration, or weights that cannot be loaded.
    """
    from . import models

    started = time.time()

    from . import runtime

    check_config(cfg, source=getattr(cfg, "_source", None))
    cfg.model = models.resolve_model_name(cfg.model)
    if dataset is not None and Path(dataset.root).resolve() != Path(cfg.data).resolve():
        raise ValueError(f"train: dataset {dataset.root} is not cfg.data {cfg.data}")
    ds = dataset if dataset is not None else load_dataset(cfg.data)
    models.check_modality(cfg.model, ds.modality)
    if cfg.split in (None, "", "auto"):
        cfg.split = str(ds.manifest.get("default_split") or "grouped")
    spec = models.REGISTRY[cfg.model]
    model_file = spec.model_file
    if spec.target != "label" and cfg.decision != "argmax":
        raise EphysError(f"--decision {cfg.decision} chooses a class threshold; {cfg.model} learns a "
                         f"{spec.target} target, not a class")
    if spec.target == "mask" and not ds.manifest.get("mask_array"):
        raise EphysError(f"{cfg.model} learns per-sample masks; this dataset stores none (no mask_array)",
                         ds.root / "manifest.json")
    run = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    cfg.out = str(run)
    cfg.data = str(Path(cfg.data).resolve())

    check_writable_dir(run, "run folder")
    # temp files of a killed session (one .last.*.part.keras per preemption, a trainer's
    # .model.*.part.txt); a live writer's stay
    for folder in (run, run / "checkpoints"):
        remove_stale_parts(folder, started)
    cfg_path = run / "config.yaml"
    state_path = run / "checkpoints" / "state.json"
    if cfg_path.exists():
        old = TrainConfig.from_yaml(cfg_path)
        if old.fingerprint() != cfg.fingerprint():
            diff = sorted(k for k, v in cfg.fingerprint().items() if old.fingerprint().get(k) != v)
            raise EphysError(f"run folder holds a different configuration ({', '.join(diff)} differ); "
                             "pass --out NEW_RUN or delete the folder", run)
        if (run / model_file).exists():
            log(f"{run}: already trained ({model_file} exists); nothing to do")
            return run

    labelled = ds.labelled_indices()
    if labelled.size < 4 or len({ds.labels[i] for i in labelled}) < 2:
        raise EphysError(f"need at least 4 labelled {nouns(ds.manifest).samples} of 2 or more classes to train, found "
                         f"{labelled.size} of {len({ds.labels[i] for i in labelled})}", ds.root)
    size_warnings = []
    if split_ids is None and cfg.split == "grouped" and not (run / "split.json").exists():
        size_warnings = check_class_sizes(ds, labelled)
    split_path = run / "split.json"
    if split_ids is not None and not split_path.exists():
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        unknown = [s for part in split_ids.values() for s in part if s not in pos]
        if unknown:
            raise EphysError(f"split names samples not in the dataset (e.g. {unknown[0]})", ds.root)
        split = {k: [pos[s] for s in split_ids.get(k, [])] for k in ("train", "val", "test")}
    elif split_path.exists():
        split_ids = _read_json(split_path)
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        gone = [s for k, v in split_ids.items() if k in ("train", "val", "test") for s in v if s not in pos]
        if gone:
            raise EphysError(f"{len(gone)} samples of the run's split are not in the dataset {ds.root} "
                             f"(e.g. {gone[0]}); the dataset changed: train into a new --out", split_path)
        split = {k: [pos[s] for s in v] for k, v in split_ids.items() if k in ("train", "val", "test")}
    else:
        split = plan_split(cfg, ds, labelled)

    split_warnings = size_warnings + check_split_classes(ds, split, few_test_warning=cfg.split == "grouped")
    fingerprint = ds.fingerprint()

    if spec.trainer is not None:  # a model trained by its own code (e.g. LightGBM's cross-validated fit)
        meta = {"run_id": run.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "ephys_version": __version__, "backend": spec.kind, "gpu": False, "label_names": ds.label_names, "modality": ds.modality,
                "dataset_fingerprint": fingerprint,
                "sample_shape": list(ds.sample_shape),
                "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"])}
        for w in split_warnings:
            log(w)
        result = models.resolve_hook(spec.trainer)(cfg, ds, split, run, meta, log)
        _record_range(run, ds, split, log)
        return result

    import keras  # only here: a model trained by its own code (trees) needs no deep-learning library
    from sklearn.utils.class_weight import compute_class_weight

    gpu = runtime.configure_for_device(cfg.seed)
    meta = {"run_id": run.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ephys_version": __version__, "keras_version": keras.__version__,
            "backend": runtime.backend_name(), "backend_version": runtime.backend_version(), "gpu": gpu,
            "label_names": ds.label_names, "modality": ds.modality, "dataset_fingerprint": fingerprint,
            "sample_shape": list(ds.sample_shape),
            "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"])}
    tr, va = np.array(split["train"], dtype=np.int64), np.array(split["val"], dtype=np.int64)
    if spec.fit_labels:  # e.g. an anomaly model learns the normal class only
        tr, va = (part[np.isin([str(ds.labels[i]) for i in part], spec.fit_labels)] for part in (tr, va))
        if not tr.size:
            raise EphysError(f"{cfg.model} fits samples of class {', '.join(spec.fit_labels)} only; the training "
                             "part holds none", ds.root / "manifest.json")
        log(f"{cfg.model} fits the {', '.join(spec.fit_labels)} samples: {tr.size} of {len(split['train'])} "
            f"training, {va.size} of {len(split['val'])} validation")
    class_weight: dict[int, float] = {}
    y_tr = y_va = None
    if spec.target == "label":  # class indices, balanced class weights; other targets come from the samples
        y_tr, y_va = ds.y(tr), ds.y(va) if va.size else np.zeros(0, dtype=np.int64)
        present = np.unique(y_tr)
        cw = compute_class_weight("balanced", classes=present, y=y_tr)
        class_weight = {int(c): float(w) for c, w in zip(present, cw)}

    state = _read_json(state_path) if state_path.exists() else {}
    last = run / "checkpoints" / "last.keras"
    initial_epoch = 0
    if state and last.exists():
        model = models.load_keras_model(last)
        if cfg.eager:
            model.run_eagerly = True
        initial_epoch = int(state["epoch"]) + 1
        log(f"resuming {run} from epoch {initial_epoch + 1} (counted from 1; checkpoint {last})")
    else:
        state = {}
        model = models.build_model(cfg.model, ds.sample_shape, len(ds.label_names), weights=cfg.weights,
                                   freeze=cfg.freeze, **model_hparams(cfg, spec))
        if str(cfg.init).strip().lower() != "none":  # transfer learning: start from another run's weights
            src = models.init_model_file(cfg.init, cfg.model)
            got = models.load_init_weights(model, src, spec.feature_layers)
            frozen = [layer.name for layer in model.layers if not layer.trainable and layer.weights]
            import hashlib

            meta.update({"init_model_file": str(src.resolve()),
                         "init_model_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                         "init_layers_loaded": got["loaded"],
                         "init_layers_kept": got["kept"], "frozen_layers": frozen})
            log(f"weights from {src}: {len(got['loaded'])} layers" + (f" ({', '.join(got['kept'])} kept as built)"
                                                                     if got["kept"] else "")
                + (f"; frozen: {', '.join(frozen)}" if frozen else ""))
        model.compile(optimizer=keras.optimizers.Adam(cfg.lr),
                      loss=models.model_loss(spec), metrics=list(models.TARGETS[spec.target][1]),
                      jit_compile=bool(gpu) and not cfg.eager, run_eagerly=bool(cfg.eager))
    # the run folder is written only once the model exists (bad weights leave nothing behind)
    fresh = not cfg_path.exists() and not state
    existed = run.exists()
    if fresh:
        for w in split_warnings:
            log(w)
    run.mkdir(parents=True, exist_ok=True)
    if not split_path.exists():
        write_json(split_path, {k: [ds.ids[i] for i in v] for k, v in split.items()})
    if not cfg_path.exists():
        write_text(cfg_path, yaml.safe_dump({**asdict(cfg), **meta}, sort_keys=False))

    monitor = "val_loss" if va.size else "loss"
    callback = _state_callback(run, cfg.patience, monitor, state, on_epoch)
    t0 = time.perf_counter()
    done = state.get("stopped_early") or initial_epoch >= cfg.epochs
    if not done:
        weight = (np.array([class_weight.get(int(c), 1.0) for c in y_tr], dtype=np.float32)
                  if class_weight else None)
        train_batches = _Batches(ds, tr, y_tr, cfg.batch_size, True, cfg.seed, sample_weight=weight,
                                 target=spec.target)
        val_batches = (_Batches(ds, va, y_va, cfg.batch_size, False, cfg.seed, target=spec.target)
                       if va.size else None)
        try:
            model.fit(train_batches, validation_data=val_batches, epochs=cfg.epochs,
                      initial_epoch=initial_epoch, callbacks=[callback], verbose=0)
        except Exception as exc:
            # a failure this session caused leaves no run that looks resumable (config.yaml,
            # split.json of a run that never trained); a resumed run keeps its checkpoints
            if fresh:
                _remove_run(run, existed)
            err = train_batches.error or (val_batches.error if val_batches is not None else None)
            if err is not None:
                raise err from None
            if callback.non_finite is not None:
                ep, batch, value = callback.non_finite
                at = f"epoch {ep + 1}" + (f", batch {batch + 1}" if batch is not None else "")
                raise EphysError(f"training loss became {value} at {at}; stopped, no model written"
                                 + (" and the new run folder removed" if fresh else "")
                                 + f" (try a smaller --lr than {cfg.lr:g}, or check the samples)", run) from None
            raise
        finally:
            train_batches.release()
            if val_batches is not None:
                val_batches.release()
    best = run / "checkpoints" / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    if spec.after_fit is not None:  # a step on the training side (e.g. an anomaly threshold), before model.keras
        models.resolve_hook(spec.after_fit)(run, model, ds, {k: np.array(split[k], dtype=np.int64)
                                                             for k in ("train", "val")}, log)
    with atomic_path(run / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    _record_range(run, ds, split, log)
    final_state = _read_json(state_path) if state_path.exists() else {}
    best_epoch = final_state.get("best_epoch")
    best_epoch = None if best_epoch is None else int(best_epoch) + 1  # Keras counts from 0; people from 1
    epochs_run = int(final_state.get("epoch", -1)) + 1
    if best_epoch is not None:
        log(f"best epoch {best_epoch} of {epochs_run} (lowest {monitor} {final_state.get('best', float('nan')):.4g}); "
            "its weights are the model's")
    write_json(run / "train_summary.json", {
        "epochs_run": epochs_run, "best_epoch": best_epoch, "epochs_counted_from": 1,
        "best_" + monitor: final_state.get("best"), "stopped_early": bool(final_state.get("stopped_early")),
        "class_weight": {ds.label_names[k]: v for k, v in class_weight.items()},
        "seconds_this_session": round(time.perf_counter() - t0, 2)})
    if cfg.decision == "val_macro_f1":
        from .evaluation import choose_threshold

        choose_threshold(run, ds, va, y_va, cfg.batch_size, log)
    return run
