"""``ephys prepare events``: labelled windows of a simulated cohort -> an ``event_window`` dataset.

The window classifier's dataset as a stand-alone step (``make slurm-all PIPELINE=events`` trains
it by cross-validation over recordings): per recording of a ``ephys fetch synthetic --pipeline
events`` folder, event windows (onset at a random position of the detection range), hard negatives
and event-free windows (:func:`ephys.pipelines.events.windows.training_windows`, the ones the
``events-sim`` recipe trains ``cnn_bilstm`` on), each min-max scaled; ``group`` = recording, so
that no recording is on both sides of a fold. The folder is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..core.errors import EphysError

#: windows per event / negatives per positive, as in the events-sim recipe
PER_EVENT, NEG_RATIO = 4, 4.0


def prepare_event_windows(input: str | Path, out: str | Path, seed: int = 0, log=print) -> Path:
    """Write the windows dataset; returns ``OUT/manifest.json``.

    Raises
    ------
    EphysError
        Not a simulated events folder (no ``recordings.csv`` or a missing file), or ``OUT``
        already holds a dataset prepared from other input or another seed.
    """
    from ..core.atomic import check_writable_dir
    from .events_sim import load_cohort
    from .windows import LABEL_NAMES, training_windows, write_window_dataset

    input, out = Path(input), Path(out)
    provenance = {"input": str(input.resolve()), "seed": int(seed), "per_event": PER_EVENT, "neg_ratio": NEG_RATIO}
    if (out / "manifest.json").is_file():
        import json

        old = json.loads((out / "manifest.json").read_text()).get("provenance", {})
        if {k: old.get(k) for k in provenance} == provenance:
            log(f"{out}: already prepared from {input}; nothing to do")
            return out / "manifest.json"
        raise EphysError("holds a dataset prepared from other input or settings; pass another OUT", out)
    check_writable_dir(out, "dataset folder")
    recs = load_cohort(input)
    rng = np.random.default_rng(seed)
    ws, labs, groups, ts = [], [], [], []
    for r in recs:
        w, lab, st = training_windows(r["x"], r["truth"]["onset_s"], r["fs_hz"], r["polarity"], rng,
                                      per_event=PER_EVENT, neg_ratio=NEG_RATIO)
        ws.append(w)
        labs += [LABEL_NAMES[k] for k in lab]
        groups += [r["id"]] * len(lab)
        ts += list(st / r["fs_hz"])
        log(f"{r['id']}: {int(lab.sum())} event windows, {int((lab == 0).sum())} without")
    tmp = out.with_name(f".{out.name}.part-{os.getpid()}")
    try:
        write_window_dataset(tmp, np.concatenate(ws), labs, groups, ts, None,
                             provenance={**provenance, "recordings": [r["id"] for r in recs]})
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.json"
