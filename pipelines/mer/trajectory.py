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

**Four states** (:func:`decode4`): before the STN (0) -> STN (1) -> gap (2, white matter) -> SNr (3),
the gap and the SNr optional, after Valsky et al. 2017 ("Stop! border ahead"), who find the STN exit
with a dedicated STN-vs-SNr classifier. The observations are the main classifier's ``p`` (inside
the STN vs everything else) and ``q``, the probability that a recording is SNr rather than STN from
a classifier trained on STN and SNr recordings only, whose inputs add the normalised amplitude
(NRMS: ``mad`` over the median ``mad`` of the trajectory's first :data:`NRMS_BASELINE` recordings,
white matter above the STN; Moran et al. 2006, Valsky et al. 2017) to the nine features. Emissions,
as scaled likelihoods in log space (:class:`DecoderSettings` gives the exponents)::

    before, gap:  log(1 - p)
    STN:          delta * log p + alpha * log((1 - q) / (1 - pi))
    SNr:          alpha * log(q / pi) + beta * log(1 - p) + gamma * log p

with ``pi`` the share of SNr among the STN and SNr training recordings (``q``'s prior). The STN
state has an explicit duration: a normal prior on the STN length in mm (the training trajectories'
labelled lengths; a hidden semi-Markov model, since a per-recording transition probability would
make the length depend on the step between depths), weighted by ``w_length``; a border at either
end of the trajectory uses the survival function (the length is only known to be longer). The most
likely segmentation is exact (every entry, exit and SNr start is scored; trajectories hold tens of
recordings). The settings were chosen on simulated patients outside the reported cohort (see
:class:`DecoderSettings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-3
#: the four states of :func:`decode4`, in depth order
REGIONS = ("before", "stn", "gap", "snr")
#: NRMS baseline: the median ``mad`` of the trajectory's first (shallowest) recordings, above the STN
NRMS_BASELINE = 5


@dataclass(frozen=True)
class DecoderSettings:
    """Exponents of the four-state decoder's emissions and the weight of its STN-length prior (see the
    module docstring). The defaults were chosen on a simulated cohort of another seed than the reported
    one (seed 0): ``benchmarks/mer_decoder_settings.py`` on the held-out outputs of ``ephys reproduce
    mer-sim --seed 101`` (20 patients, 56 trajectories), a grid of 432 settings, the lowest mean |exit
    error| + p90 / 2 over both models among those whose entry error is no worse than the 3-state
    HMM's; the grid, the scores and the choice are in ``benchmarks/results/mer_decoder_settings.json``.
    Never tuned on the reported cohort."""

    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 1.0
    delta: float = 0.5
    eps: float = 0.01
    w_length: float = 0.5


def nrms_baselines(depth_um, rec_mad, n: int = NRMS_BASELINE) -> np.ndarray:
    """Per recording of one trajectory, the NRMS baseline: the median of ``rec_mad`` (each recording's
    median segment ``mad``, µV) over the ``n`` shallowest recordings; (n_recordings,) float64."""
    d = np.asarray(depth_um, dtype=np.float64)
    m = np.asarray(rec_mad, dtype=np.float64)
    first = np.argsort(d, kind="stable")[:n]
    return np.full(d.size, float(np.median(m[first])) if first.size else np.nan)


def length_prior(runs, min_sd_mm: float = 0.3) -> tuple[float, float]:
    """(mean, sd) in mm of the STN length over labelled training trajectories, each ``(depth_um,
    0/1 labels)``; only trajectories whose STN lies wholly inside them count (sd at least ``min_sd_mm``).
    (5.5, 1.0) when none does."""
    lengths = []
    for depth, labels in runs:
        lab = np.asarray(labels).astype(bool)
        if lab.any() and not lab[0] and not lab[-1]:
            e, x = label_borders(depth, lab)
            lengths.append((x - e) / 1000)
    if not lengths:
        return 5.5, 1.0
    return float(np.mean(lengths)), max(float(np.std(lengths, ddof=1)) if len(lengths) > 1 else min_sd_mm,
                                         min_sd_mm)


def snr_prior(region_runs) -> float:
    """``pi``: the share of SNr among the STN and SNr recordings of training trajectories (each a
    sequence of region names); 0.5 when there are none."""
    n_stn = sum(1 for run in region_runs for r in run if r == "stn")
    n_snr = sum(1 for run in region_runs for r in run if r == "snr")
    return (n_snr + 1) / (n_stn + n_snr + 2)


def _norm_logpdf(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))


def _norm_logsf(x, mu, sd):
    return math.log(max(0.5 * math.erfc((x - mu) / (sd * math.sqrt(2))), 1e-300))


def decode4(depth_um, p, q, pi: float = 0.3, length: tuple[float, float] = (5.5, 1.0),
            settings: DecoderSettings = DecoderSettings()) -> dict:
    """The four-state left-to-right decoding of one trajectory (see the module docstring).

    Parameters
    ----------
    depth_um : (n,) EDT of the recordings (any order; sorted here)
    p : (n,) P(inside the STN) from the main classifier
    q : (n,) P(SNr | STN or SNr) from the STN-vs-SNr classifier
    pi : ``q``'s prior, the share of SNr among its training STN and SNr recordings
    length : (mean, sd) of the STN length prior, mm (:func:`length_prior`)
    settings : the emission exponents and the length weight

    Returns
    -------
    dict with ``depth_um`` (sorted), ``states`` (0 before, 1 STN, 2 gap, 3 SNr), ``entry_um``,
    ``exit_um`` (None when no STN is found) and ``snr_entry_um`` (None without an SNr).
    """
    order = np.argsort(np.asarray(depth_um, dtype=np.float64), kind="stable")
    d = np.asarray(depth_um, dtype=np.float64)[order]
    n = d.size
    if n == 0:
        return {"depth_um": [], "states": [], "entry_um": None, "exit_um": None, "snr_entry_um": None}
    st = settings
    pp = np.clip(np.asarray(p, dtype=np.float64)[order], st.eps, 1 - st.eps)
    qq = np.clip(np.asarray(q, dtype=np.float64)[order], st.eps, 1 - st.eps)
    pi = min(max(float(pi), st.eps), 1 - st.eps)
    le = np.stack([np.log1p(-pp),
                   st.delta * np.log(pp) + st.alpha * (np.log1p(-qq) - math.log1p(-pi)),
                   np.log1p(-pp),
                   st.alpha * (np.log(qq) - math.log(pi)) + st.beta * np.log1p(-pp) + st.gamma * np.log(pp)], axis=1)
    cum = np.vstack([np.zeros(4), np.cumsum(le, axis=0)])
    mids = np.concatenate([[d[0]], (d[:-1] + d[1:]) / 2, [d[-1]]])  # the border before recording i
    # best tail after the STN ends at b: gap [b, c), SNr [c, n), over every c >= b
    tail_c = [max(range(b, n + 1), key=lambda c: cum[c, 2] - cum[b, 2] + cum[n, 3] - cum[c, 3]) for b in range(n + 1)]
    mu, sd = length
    best, arg = cum[n, 0], None  # no STN at all
    for a in range(n):
        for b in range(a + 1, n + 1):
            length_mm = (mids[b] - mids[a]) / 1000
            prior = _norm_logsf(length_mm, mu, sd) if (a == 0 or b == n) else _norm_logpdf(length_mm, mu, sd)
            c = tail_c[b]
            score = (cum[a, 0] + cum[b, 1] - cum[a, 1] + st.w_length * prior
                     + cum[c, 2] - cum[b, 2] + cum[n, 3] - cum[c, 3])
            if score > best:
                best, arg = score, (a, b, c)
    states = np.zeros(n, dtype=np.int64)
    if arg is None:
        return {"depth_um": d.tolist(), "states": states.tolist(), "entry_um": None, "exit_um": None,
                "snr_entry_um": None}
    a, b, c = arg
    states[a:b], states[b:c], states[c:] = 1, 2, 3
    entry, exit_ = _borders(d, states == 1)
    return {"depth_um": d.tolist(), "states": states.tolist(), "entry_um": entry, "exit_um": exit_,
            "snr_entry_um": float(mids[c]) if c < n else None}


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
