"""``ephys prepare events``: labelled windows -> an ``event_window`` dataset.

The window classifier's dataset as a stand-alone step (``make slurm-all PIPELINE=events`` trains
it by cross-validation over recordings). Two inputs:

- a simulated cohort (``ephys fetch synthetic --pipeline events``): per recording, event windows
  (onset at a random position of the detection range), hard negatives and event-free windows
  (:func:`ephys.pipelines.events.windows.training_windows`, the ones the ``events-sim`` recipe
  trains ``cnn_bilstm`` on), each min-max scaled; ``group`` = recording, so that no recording is on
  both sides of a fold. The window positions of a recording are drawn from a generator seeded by
  ``seed`` and the recording's id, so each recording is one independent item.
- miniML's HDF5 training windows (``events``, ``scores``, ``raw_indices``; O'Neill et al. 2025):
  every window, min-max scaled and flipped so events point up (``polarity``), labelled from its
  score (0 no_event, 1 event, 2 unlabelled); ``group`` = the recording. Its windows overlap in
  time, so the manifest's ``default_split`` is ``blocked``: ``ephys train`` tests on the latest
  20 % of them, validates on the 20 % before, with a gap of one window
  (:func:`ephys.pipelines.core.validation.blocked_split`); ``ephys train --fold K --cv blocked``
  cross-validates in time.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ..core.errors import EphysError

#: windows per event / negatives per positive, as in the events-sim recipe
PER_EVENT, NEG_RATIO = 4, 4.0
_H5 = (".h5", ".hdf5")
def discover(input_path, params=None, labels_csv=None, options=None):
    """The step's ``discover`` hook: the recordings of a simulated cohort, or one miniML HDF5 file.

    Raises
    ------
    EphysError
        Not a simulated events folder (no ``recordings.csv`` or a missing file) nor an HDF5 file.
    """
    path = Path(input_path)
    if path.is_file() and path.suffix.lower() in _H5:
        return [{"id": path.stem, "kind": "miniml", "path": str(path)}], []
    if path.is_file():
        raise EphysError("not a simulated events folder nor a miniML HDF5 windows file (.h5)", path)
    from .events_sim import load_cohort

    return [{**r, "kind": "simulated"} for r in load_cohort(path)], []


def process(item: dict, params, out_dir=None, options=None) -> dict:
    """The step's ``process`` hook: one recording's windows, labels and times."""
    from .windows import LABEL_NAMES, training_windows

    if item["kind"] == "miniml":
        from .minis import MINIS_FS_HZ, _scaled
        from .readers import read_miniml_h5

        w = read_miniml_h5(item["path"])
        order = np.argsort(w.raw_indices, kind="stable")
        x = _scaled(w.x[order], 1.0 if params.polarity == "positive" else -1.0)
        labels = [None if s == 2 else LABEL_NAMES[int(s)] for s in w.scores[order]]
        group = w.cell_label[0] if w.cell_label else Path(item["path"]).stem
        return {"windows": x, "labels": labels, "groups": [group] * len(labels),
                "t_s": w.raw_indices[order] / MINIS_FS_HZ, "fs_hz": MINIS_FS_HZ,
                "ids": [f"w{int(i):04d}" for i in order], "blocked": True}
    rng = np.random.default_rng([int(params.seed), zlib.crc32(item["id"].encode())])
    w, lab, st = training_windows(item["x"], item["truth"]["onset_s"], item["fs_hz"], item["polarity"], rng,
                                  per_event=PER_EVENT, neg_ratio=NEG_RATIO)
    return {"windows": w, "labels": [LABEL_NAMES[k] for k in lab], "groups": [item["id"]] * len(lab),
            "t_s": st / item["fs_hz"], "fs_hz": None, "ids": None,
            "note": f" ({int(lab.sum())} event windows, {int((lab == 0).sum())} without)"}


def collect(out, results: list[dict], params, ctx) -> Path:
    """The step's ``collect`` hook: ``windows.npy`` + ``manifest.json`` (:func:`.windows.write_window_dataset`)."""
    from .windows import WINDOW, write_window_dataset

    x = np.concatenate([r["windows"] for r in results])
    if x.shape[1] != WINDOW:
        raise EphysError(f"windows of {x.shape[1]} samples; the window classifier takes {WINDOW}", ctx.input)
    ids = None if any(r["ids"] is None for r in results) else [i for r in results for i in r["ids"]]
    provenance = {"input": str(Path(ctx.input).resolve()), "seed": int(params.seed), "per_event": PER_EVENT,
                  "neg_ratio": NEG_RATIO, "recordings": [it["id"] for it in ctx.items]}
    # one recording's overlapping windows: `ephys train` splits them in time by default
    extra = {"default_split": "blocked"} if len(results) == 1 and results[0].get("blocked") else None
    write_window_dataset(out, x, [lab for r in results for lab in r["labels"]],
                         [g for r in results for g in r["groups"]],
                         np.concatenate([np.asarray(r["t_s"], dtype=np.float64) for r in results]),
                         results[0]["fs_hz"], provenance=provenance, ids=ids, extra=extra)
    return Path(out) / "manifest.json"


def prepare_event_windows(input: str | Path, out: str | Path, seed: int = 0, log=print) -> Path:
    """Write the windows dataset (``ephys prepare events`` from Python); returns ``OUT/manifest.json``.

    Raises
    ------
    EphysError
        Not a simulated events folder nor a miniML HDF5 file, or ``OUT`` already holds a dataset
        prepared from other input or settings.
    """
    from ..core.prepare import ShardOptions, run_prepare
    from . import PREPARE_EVENTS
    from .params import WindowParams

    return run_prepare("events", PREPARE_EVENTS, input, out, WindowParams(seed=seed),
                       run=ShardOptions(scheduler="synchronous"), log=log).main_file
