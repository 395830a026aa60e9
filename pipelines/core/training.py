"""``ephys train``: fit a registry model on a prepared dataset, resumably, reproducibly.

A run folder holds everything a run did:

``config.yaml``     every setting needed to reproduce it (``ephys train --config``)
``split.json``      train / val / test sample ids (grouped: a cell is on one side only)
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
from .atomic import atomic_path, write_json, write_text
from .datasets import Dataset, grouped_split, load_dataset, named_split
from .errors import EphysError

#: config keys that do not change what is trained (a resumed run may differ in these)
_VOLATILE = {"out", "created", "ephys_version", "keras_version", "backend", "backend_version",
             "gpu", "run_id", "quiet", "eager"}


@dataclass
class TrainConfig:
    """Settings of one training run (written to ``config.yaml``)."""

    model: str = "densenet121"
    data: str = "data/processed/scalograms"  # the CLI passes DATA/processed/scalograms, the embedded default
    weights: str = "none"
    freeze: str = "none"
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    patience: int = 5
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    split: str = "auto"  # auto: the manifest's default_split if it offers one, else grouped
    dropout: float = 0.3
    input_size: int | None = None
    out: str | None = None
    eager: bool = False
    decision: str = "argmax"  # or "val_macro_f1": a binary threshold chosen on the validation part
    hparams: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise EphysError(f"unreadable config ({exc})", path) from None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def fingerprint(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in _VOLATILE}


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<model>-<dataset folder name>[-s<seed>]``: the same command maps to the same run."""
    name = f"{cfg.model}-{Path(cfg.data).name}"
    if cfg.seed != 0:
        name += f"-s{cfg.seed}"
    return Path("runs") / name


class _Batches:
    """Keras ``PyDataset`` over dataset samples (slices the consolidated array when the dataset
    has one, else loads the per-sample .npy files): float32, or float16 when that array is."""

    def __new__(cls, ds: Dataset, indices, y, batch_size: int, shuffle: bool, seed: int,
                sample_weight=None):
        import keras

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=1, use_multiprocessing=False)
                self.indices = np.asarray(indices)
                self.y = np.asarray(y)
                self.w = sample_weight
                self.order = np.arange(self.indices.size)
                self.rng = np.random.default_rng(seed)
                if shuffle:
                    self.rng.shuffle(self.order)
                self.shuffle = shuffle
                # a float16 consolidated array stays float16 (the model casts); all else float32
                self.dtype = np.float16 if ds.storage_dtype == np.float16 else np.float32

            def __len__(self):
                return int(np.ceil(self.indices.size / batch_size))

            def __getitem__(self, k):
                sel = self.order[k * batch_size:(k + 1) * batch_size]
                x = ds.load(self.indices[sel], dtype=self.dtype)
                if self.w is None:
                    return x, self.y[sel]
                return x, self.y[sel], self.w[sel]

            def on_epoch_end(self):
                if self.shuffle:
                    self.rng.shuffle(self.order)

        return Batches()


def _state_callback(run: Path, patience: int, monitor: str, start_state: dict,
                    on_epoch: Callable[[int, dict], None] | None):
    import keras

    class RunState(keras.callbacks.Callback):
        """Checkpoint every epoch (atomically), keep the best weights, early-stop on ``monitor``."""

        def __init__(self):
            super().__init__()
            self.state = dict(start_state)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
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
            if on_epoch:
                on_epoch(epoch, logs)

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


def train(cfg: TrainConfig, on_epoch: Callable[[int, dict], None] | None = None,
          log: Callable[[str], None] = print, split_ids: dict[str, list[str]] | None = None) -> Path:
    """Train ``cfg.model`` on ``cfg.data``; returns the run folder.

    ``split_ids`` (optional) is an explicit split, ``{"train": [sample id, ...], "val": [...],
    "test": [...]}``, e.g. one fold of a cross-validation a pipeline's recipe computed (a
    validation scheme of :mod:`ephys.pipelines.core.validation`); it is recorded in ``split.json``
    and ``cfg.split`` should name it (e.g. ``"lopo-P07"``). Without it, ``cfg.split`` selects the
    grouped random split or a named split the manifest offers.

    Raises
    ------
    EphysError
        Unknown model, model that does not fit the dataset's modality, too few labelled cells,
        a run folder that holds a different configuration, or weights that cannot be loaded.
    """
    import keras
    from sklearn.utils.class_weight import compute_class_weight

    from . import models

    from . import runtime

    cfg.model = models.resolve_model_name(cfg.model)
    ds = load_dataset(cfg.data)
    models.check_modality(cfg.model, ds.modality)
    if cfg.split in (None, "", "auto"):
        cfg.split = str(ds.manifest.get("default_split") or "grouped")
    spec = models.REGISTRY[cfg.model]
    model_file = spec.model_file
    run = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    cfg.out = str(run)
    cfg.data = str(Path(cfg.data).resolve())

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
        raise EphysError(f"need at least 4 labelled cells of 2 or more classes to train, found "
                         f"{labelled.size} of {len({ds.labels[i] for i in labelled})}", ds.root)
    split_path = run / "split.json"
    if split_ids is not None and not split_path.exists():
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        unknown = [s for part in split_ids.values() for s in part if s not in pos]
        if unknown:
            raise EphysError(f"split names samples not in the dataset (e.g. {unknown[0]})", ds.root)
        split = {k: [pos[s] for s in split_ids.get(k, [])] for k in ("train", "val", "test")}
    elif split_path.exists():
        split_ids = json.loads(split_path.read_text())
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        split = {k: [pos[s] for s in v] for k, v in split_ids.items() if k in ("train", "val", "test")}
    else:
        labs = [ds.labels[i] for i in labelled]
        grps = [ds.groups[i] for i in labelled]
        if cfg.split == "grouped":
            rel = grouped_split(labs, grps, cfg.test_fraction, cfg.val_fraction, cfg.seed)
        else:  # a published split the manifest offers by name (e.g. the spike seed's channels)
            rel = named_split(grps, ds.manifest.get("splits") or {}, cfg.split, ds.root / "manifest.json")
        split = {k: [int(labelled[j]) for j in v] for k, v in rel.items()}

    if spec.trainer is not None:  # a model trained by its own code (e.g. LightGBM's cross-validated fit)
        meta = {"run_id": run.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "ephys_version": __version__, "backend": spec.kind, "gpu": False, "label_names": ds.label_names, "modality": ds.modality,
                "sample_shape": list(ds.sample_shape),
                "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"])}
        return models.resolve_hook(spec.trainer)(cfg, ds, split, run, meta, log)

    gpu = runtime.configure_for_device(cfg.seed)
    meta = {"run_id": run.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ephys_version": __version__, "keras_version": keras.__version__,
            "backend": runtime.backend_name(), "backend_version": runtime.backend_version(), "gpu": gpu,
            "label_names": ds.label_names, "modality": ds.modality,
            "sample_shape": list(ds.sample_shape),
            "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"])}
    tr, va = np.array(split["train"]), np.array(split["val"])
    y_tr, y_va = ds.y(tr), ds.y(va) if va.size else np.zeros(0, dtype=np.int64)
    present = np.unique(y_tr)
    cw = compute_class_weight("balanced", classes=present, y=y_tr)
    class_weight = {int(c): float(w) for c, w in zip(present, cw)}

    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    last = run / "checkpoints" / "last.keras"
    initial_epoch = 0
    if state and last.exists():
        model = models.load_keras_model(last)
        if cfg.eager:
            model.run_eagerly = True
        initial_epoch = int(state["epoch"]) + 1
        log(f"resuming {run} from epoch {initial_epoch} (checkpoint {last})")
    else:
        state = {}
        hp = {"dropout": cfg.dropout, **(cfg.hparams or {})}  # hparams (e.g. --hparam dropout=...) win
        if cfg.input_size:
            hp["input_size"] = cfg.input_size
        model = models.build_model(cfg.model, ds.sample_shape, len(ds.label_names), weights=cfg.weights,
                                   freeze=cfg.freeze, **hp)
        model.compile(optimizer=keras.optimizers.Adam(cfg.lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=bool(gpu) and not cfg.eager, run_eagerly=bool(cfg.eager))
    # the run folder is written only once the model exists (bad weights leave nothing behind)
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
        train_batches = _Batches(ds, tr, y_tr, cfg.batch_size, True, cfg.seed,
                                 sample_weight=np.array([class_weight.get(int(c), 1.0) for c in y_tr],
                                                        dtype=np.float32))
        val_batches = _Batches(ds, va, y_va, cfg.batch_size, False, cfg.seed) if va.size else None
        model.fit(train_batches, validation_data=val_batches, epochs=cfg.epochs,
                  initial_epoch=initial_epoch, callbacks=[callback], verbose=0)
    best = run / "checkpoints" / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    with atomic_path(run / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    final_state = json.loads(state_path.read_text()) if state_path.exists() else {}
    write_json(run / "train_summary.json", {
        "epochs_run": int(final_state.get("epoch", -1)) + 1, "best_epoch": final_state.get("best_epoch"),
        "best_" + monitor: final_state.get("best"), "stopped_early": bool(final_state.get("stopped_early")),
        "class_weight": {ds.label_names[k]: v for k, v in class_weight.items()},
        "seconds_this_session": round(time.perf_counter() - t0, 2)})
    if cfg.decision == "val_macro_f1":
        from .evaluation import choose_threshold

        choose_threshold(run, ds, va, y_va, cfg.batch_size, log)
    return run
