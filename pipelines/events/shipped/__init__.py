"""The trained event detector that ships with ephys (``ephys events detect`` without ``--run``).

This folder holds the output of ``ephys reproduce events-default`` that is committed with the
package (:data:`ephys.pipelines.events.default_model.SHIPPED_FILES`): ``runs/cnn_bilstm/model.keras``
(the window classifier), ``metrics.json`` (its training rates and the detection settings chosen on
calibration recordings, in the layout ``events detect --run`` reads) and ``shipped.json`` (recipe,
seed, data fingerprint, sha256 of the model file).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ...core.errors import EphysError

__all__ = ["shipped_run", "shipped_model_run", "shipped_card", "sha256", "FOLDER"]

#: where the shipped files lie (inside the installed package)
FOLDER = Path(__file__).parent


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_card() -> dict:
    """``shipped.json``: recipe, seed, settings, data fingerprint, ``model_sha256``.

    Raises
    ------
    EphysError
        The package ships no model (the files are missing).
    """
    path = FOLDER / "shipped.json"
    if not path.is_file():
        raise EphysError("this ephys ships no trained event detector (run `ephys reproduce events-default`)", FOLDER)
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_run(verify: bool = True) -> Path:
    """The folder ``ephys events detect --run`` takes, for the model that ships with ephys.

    ``verify``: check the model file's sha256 against ``shipped.json`` (a damaged install is an
    error, not a silently different model).

    Raises
    ------
    EphysError
        No shipped model, or a model file whose checksum is not the card's.
    """
    card = shipped_card()
    model = FOLDER / "runs" / "cnn_bilstm" / "model.keras"
    if not model.is_file():
        raise EphysError("the shipped model file is missing", model)
    if verify:
        if sha256(model) != card["model_sha256"]:
            raise EphysError("the shipped model file does not match its sha256 in shipped.json (a damaged install)",
                             model)
    return FOLDER


def shipped_model_run() -> Path:
    """The shipped window classifier's run folder (``runs/cnn_bilstm``: ``model.keras``,
    ``config.yaml``), checked as :func:`shipped_run` does: what ``ephys train --model cnn_bilstm
    --init shipped`` starts from (:attr:`ephys.pipelines.core.models.ModelSpec.shipped`)."""
    return shipped_run() / "runs" / "cnn_bilstm"
