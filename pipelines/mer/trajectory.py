"""STN entry and exit along a trajectory: a three-state left-to-right hidden Markov model.

The recordings of one trajectory (patient, side, electrode), ordered by depth (EDT), pass through
three states: before the STN (0) -> STN (1) -> after the STN (2), never backwards (Zaidel et al.
2009, Mov Disord 24:1785, "Delimiting subterritories of the human subthalamic nucleus by means of
microelectrode recordings and a Hidden Markov Model"; Valsky et al. 2017, Mov Disord 32:70). The
observation at each depth is the classifier's probability ``p`` that the recording is inside the
STN, used as a scaled likelihood (hybrid HMM): emission ``p`` in the STN state and ``1 - p`` in
the two outside states. The most likely path (Viterbi, in log space) gives the borders: the
entry is midway between the last depth before the STN and the first depth in it, the exit midway
between the last depth in it and the next one. The true borders are derived from the labels the
same way (:func:`label_borders`), so a perfect decoding has zero error.

Transition probabilities (leaving the before-STN and the STN state, per recording) are estimated
from labelled training trajectories (:func:`transitions_from_labels`), never from the test ones.
"""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-3


def _borders(depth_um: np.ndarray, inside: np.ndarray) -> tuple[float | None, float | None]:
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return None, None
    first, last = int(idx[0]), int(idx[-1])
    entry = float(depth_um[first]) if first == 0 else float(depth_um[first - 1] + depth_um[first]) / 2
    exit_ = float(depth_um[last]) if last == depth_um.size - 1 else float(depth_um[last] + depth_um[last + 1]) / 2
    return entry, exit_


def label_borders(depth_um, labels) -> tuple[float | None, float | None]:
    """True (entry, exit) EDT in µm from 0/1 labels of recordings sorted by depth; (None, None)
    when no recording is inside. If the labels are not one contiguous run, the first and last
    inside recordings bound it."""
    d = np.asarray(depth_um, dtype=np.float64)
    return _borders(d, np.asarray(labels).astype(bool))


def transitions_from_labels(label_runs) -> tuple[float, float]:
    """(p_enter, p_exit): per-recording probabilities of leaving the before-STN and the STN
    state, from labelled trajectories (each a 0/1 sequence sorted by depth).

    p_enter = trajectories that enter / recordings before the STN; p_exit likewise for the STN
    (add-one smoothing; both in (0, 1)).
    """
    n_before = n_stn = n_enter = n_exit = 0
    for labels in label_runs:
        lab = np.asarray(labels).astype(bool)
        idx = np.flatnonzero(lab)
        if idx.size == 0:
            n_before += lab.size
            continue
        n_before += int(idx[0])
        n_stn += int(idx[-1] - idx[0] + 1)
        n_enter += 1
        n_exit += int(idx[-1] < lab.size - 1)
    return (n_enter + 1) / (n_before + n_enter + 2), (n_exit + 1) / (n_stn + n_exit + 2)


def decode(depth_um, proba, p_enter: float = 0.1, p_exit: float = 0.2, eps: float = EPS) -> dict:
    """Viterbi path of the 3-state left-to-right HMM for one trajectory.

    Parameters
    ----------
    depth_um : (n,) EDT of the recordings (any order; sorted here)
    proba : (n,) probability that each recording is inside the STN, in [0, 1]
    p_enter, p_exit : per-recording transition probabilities before -> STN and STN -> after
    eps : emissions are clipped to [eps, 1 - eps]

    Returns
    -------
    dict with ``depth_um`` (sorted, list), ``states`` (list of 0/1/2), ``entry_um`` and
    ``exit_um`` (float, or None when the path never enters the STN).
    """
    order = np.argsort(np.asarray(depth_um, dtype=np.float64), kind="stable")
    d = np.asarray(depth_um, dtype=np.float64)[order]
    p = np.clip(np.asarray(proba, dtype=np.float64)[order], eps, 1 - eps)
    n = d.size
    if n == 0:
        return {"depth_um": [], "states": [], "entry_um": None, "exit_um": None}
    log_e = np.stack([np.log1p(-p), np.log(p), np.log1p(-p)], axis=1)
    lt = np.full((3, 3), -np.inf)
    lt[0, 0], lt[0, 1] = math.log1p(-p_enter), math.log(p_enter)
    lt[1, 1], lt[1, 2] = math.log1p(-p_exit), math.log(p_exit)
    lt[2, 2] = 0.0
    # start before the STN (or, rarely, already inside): the trajectory begins ~10 mm above target
    log_pi = np.log(np.array([1 - 2 * eps, eps, eps]))
    score = log_pi + log_e[0]
    back = np.zeros((n, 3), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + lt  # from x to
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(3)] + log_e[t]
    states = np.zeros(n, dtype=np.int64)
    states[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        states[t - 1] = back[t, states[t]]
    entry, exit_ = _borders(d, states == 1)
    return {"depth_um": d.tolist(), "states": states.tolist(), "entry_um": entry, "exit_um": exit_}


def transitions_of_run(run_dir, manifest: dict | None, default: tuple[float, float] = (0.1, 0.2)) -> tuple[float, float]:
    """(p_enter, p_exit) from the labels of a run's training recordings (its ``split.json``'s train ids in
    the dataset ``manifest``); ``default`` when they cannot be read or hold no labelled trajectory."""
    import json
    from pathlib import Path

    try:
        train_ids = set(json.loads((Path(run_dir) / "split.json").read_text())["train"])
        rec_ids = {s["id"].rsplit("_s", 1)[0] for s in manifest["samples"] if s["id"] in train_ids}
        trajs: dict = {}
        for r in manifest.get("recordings", []):
            if r["id"] in rec_ids and r["label"] is not None and r["depth_um"] is not None:
                trajs.setdefault((r["patient"], r["side"], r["electrode"]), []).append(
                    (r["depth_um"], int(r["label"] == "inside")))
        runs = [[lab for _, lab in sorted(v)] for v in trajs.values()]
        if runs:
            return transitions_from_labels(runs)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return default
