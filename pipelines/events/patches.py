"""The ``event_patch`` dataset of a simulated cohort: what ``unet1d`` and ``autoencoder`` train on.

Per recording of a ``ephys fetch synthetic --pipeline events`` folder (``recordings.csv``, traces
and ground-truth masks), overlapping patches of the normalised trace with the event mask beside
them (layout: :mod:`ephys.pipelines.events.windows`, :func:`~.windows.write_patch_dataset`);
``group`` = recording, so no recording is on both sides of a split. The folder is written under a
temporary name and renamed when complete. Then ``ephys train --model unet1d --data OUT`` (or
``--model autoencoder``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from ..core.errors import EphysError
from .windows import EventPatchParams

__all__ = ["EventPatchParams", "prepare_event_patches"]


def prepare_event_patches(input: str | Path, out: str | Path, params: EventPatchParams | None = None,
                          log=print) -> Path:
    """Write the patch dataset of the cohort folder ``input`` into ``out``; returns
    ``OUT/manifest.json``.

    Parameters
    ----------
    input : a simulated events folder (``recordings.csv`` naming ``<id>.npy`` traces with
        ``<id>_mask.npy`` masks; :func:`ephys.pipelines.events.events_sim.load_cohort`)
    out : dataset folder (must not hold another dataset)
    params : :class:`EventPatchParams` (default: 1024-sample patches at half overlap, the U-Net's;
        ``EventPatchParams(256)`` for the autoencoder as in ``events-sim``)

    Raises
    ------
    EphysError
        Bad parameters; not a simulated events folder (no ``recordings.csv`` or a missing
        file); ``OUT`` already holds a dataset prepared from other input or parameters.
    """
    from ..core.atomic import check_writable_dir
    from .events_sim import load_cohort
    from .windows import write_patch_dataset

    prm = (params or EventPatchParams()).checked()
    input, out = Path(input), Path(out)
    provenance = {"input": str(input.resolve()), **asdict(prm)}
    if (out / "manifest.json").is_file():
        old = json.loads((out / "manifest.json").read_text()).get("provenance", {})
        if {k: old.get(k) for k in provenance} == provenance:
            log(f"{out}: already prepared from {input}; nothing to do")
            return out / "manifest.json"
        raise EphysError("holds a dataset prepared from other input or parameters; pass another OUT", out)
    check_writable_dir(out, "dataset folder")
    recs = load_cohort(input)
    tmp = out.with_name(f".{out.name}.part-{os.getpid()}")
    try:
        man = write_patch_dataset(tmp, recs, prm, provenance={**provenance, "recordings": [r["id"] for r in recs]})
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"{out}: {man['n_samples']} patches of {prm.patch_samples} samples from {len(recs)} recordings "
        f"({man['class_counts']['event']} with events)")
    return out / "manifest.json"
