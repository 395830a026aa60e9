"""Quality of spike clusters, and their agreement with a manual cut.

Per cluster: isolation distance (Harris et al. 2000, J. Neurophysiol. 84:401; as defined in
Schmitzer-Torbert, Jackson, Henze, Harris & Redish 2005, Neuroscience 131:1), L-ratio
(Schmitzer-Torbert et al. 2005), the fraction of inter-spike intervals shorter than a 2 ms
refractory period, the signal-to-noise ratio, the spike count and the firing rate.
Agreement with a manual sorting (e.g. a Tint ``.cut``): the confusion table (clusters x manual
units) and, per manual unit, the precision and recall of its best-matching cluster. The manual
labels are only compared with, never used to fit anything.
"""

from __future__ import annotations

import numpy as np

#: refractory period for the ISI-violation fraction, s
REFRACTORY_S = 0.002
#: a cluster "looks like a single unit" when isolation distance >= 20, L-ratio <= 0.05 and at most
#: 1 % of its ISIs are < 2 ms -- a common convention in hippocampal tetrode work, not a rule of
#: Schmitzer-Torbert et al. (2005), who give no fixed threshold
SINGLE_UNIT_RULE = {"isolation_distance_min": 20.0, "l_ratio_max": 0.05, "isi_violation_max": 0.01}


def quality_space(waveforms: np.ndarray) -> np.ndarray:
    """The feature space of Schmitzer-Torbert et al. (2005) for isolation distance and L-ratio.

    Energy (L2 norm of the snippet) and the first principal component of the energy-normalised
    waveform, per channel; constant channels (a dead wire) left out.

    Parameters
    ----------
    waveforms : np.ndarray (n_spikes, n_channels, n_samples), ADC units

    Returns
    -------
    np.ndarray float64 (n_spikes, 2 x live channels)
    """
    from sklearn.decomposition import PCA

    w = np.asarray(waveforms, dtype=np.float64)
    cols = []
    for c in range(w.shape[1]):
        x = w[:, c, :]
        energy = np.linalg.norm(x, axis=1)
        if float(energy.std()) <= 0:
            continue
        xn = x / np.where(energy > 0, energy, 1.0)[:, None]
        xn = xn - xn.mean(axis=0)
        pc1 = PCA(n_components=1, random_state=0).fit_transform(xn)[:, 0] if float(xn.std()) > 0 else np.zeros(len(x))
        cols += [energy, pc1]
    return np.column_stack(cols) if cols else np.zeros((len(w), 0))


def _mahalanobis_sq(x: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """Squared Mahalanobis distance of each row of x to the mean / covariance of ref."""
    if ref.shape[0] <= ref.shape[1]:
        return None
    mu = ref.mean(axis=0)
    cov = np.cov(ref, rowvar=False).reshape(ref.shape[1], ref.shape[1])
    inv = np.linalg.pinv(cov)
    d = x - mu
    return np.einsum("ij,ij->i", d @ inv, d)


def isolation_and_lratio(feats: np.ndarray, labels: np.ndarray, cluster: int) -> tuple[float | None, float | None]:
    """Isolation distance and L-ratio of one cluster.

    Isolation distance: the squared Mahalanobis distance (cluster mean and covariance) of the
    n_C-th closest spike outside the cluster, n_C = the cluster's size; None when fewer spikes
    lie outside than inside. L-ratio: sum over the spikes outside the cluster of
    ``1 - CDF_chi2(df)(D^2)``, df = number of features, divided by n_C. Large isolation
    distance and small L-ratio mean a well-separated cluster. Spikes labelled -1 (noise) count
    as outside the cluster, as in the paper (all other spikes on the tetrode).

    Parameters
    ----------
    feats : (n_spikes, d) float, e.g. :func:`quality_space`
    labels : (n_spikes,) int
    cluster : the cluster id

    Returns
    -------
    (isolation distance or None, L-ratio or None); both None if the cluster has <= d spikes.
    """
    from scipy.stats import chi2

    m = np.asarray(labels) == cluster
    d2 = _mahalanobis_sq(feats[~m], feats[m]) if feats.shape[1] else None
    if d2 is None:
        return None, None
    n_c = int(m.sum())
    lratio = float(np.sum(chi2.sf(d2, feats.shape[1])) / n_c)
    iso = float(np.sort(d2)[n_c - 1]) if d2.size >= n_c else None
    return iso, lratio


def cluster_snr(waveforms: np.ndarray, sel: np.ndarray) -> tuple[float, int]:
    """SNR of one cluster: peak amplitude of its mean waveform over the noise SD, best channel.

    The best channel is the one with the largest peak of the mean waveform; the noise SD is the
    standard deviation of the cluster's spikes around their mean on that channel (all samples
    pooled), so a tight cluster of large spikes scores high and a mixed multi-unit cluster low.

    Returns
    -------
    (SNR float, best channel index 0-based)
    """
    w = np.asarray(waveforms, dtype=np.float64)[sel]
    mean = w.mean(axis=0)
    ch = int(np.argmax(mean.max(axis=1)))
    sd = float((w[:, ch, :] - mean[ch]).std())
    return (float(mean[ch].max() / sd) if sd > 0 else float("inf")), ch


def isi_violation_fraction(times_s: np.ndarray, refractory_s: float = REFRACTORY_S) -> float | None:
    """Fraction of inter-spike intervals shorter than ``refractory_s`` (None with < 2 spikes)."""
    t = np.sort(np.asarray(times_s, dtype=np.float64))
    if t.size < 2:
        return None
    return float(np.mean(np.diff(t) < refractory_s))


def cluster_quality(waveforms: np.ndarray, times_s: np.ndarray, labels: np.ndarray,
                    duration_s: float, noise: int = -1) -> list[dict]:
    """Quality metrics of every cluster (noise label excluded).

    Parameters
    ----------
    waveforms : (n_spikes, n_channels, n_samples), ADC units
    times_s : (n_spikes,) spike times, s
    labels : (n_spikes,) int cluster ids, ``noise`` = unassigned
    duration_s : recording length, s (for the firing rate)

    Returns
    -------
    list of dicts, one per cluster in id order: ``cluster``, ``n_spikes``, ``rate_hz``,
    ``isi_violation_fraction`` (< 2 ms), ``snr``, ``best_channel`` (1-based),
    ``isolation_distance``, ``l_ratio``, ``looks_like`` (``"single unit"`` by
    :data:`SINGLE_UNIT_RULE`, else ``"multi-unit"``).
    """
    lab = np.asarray(labels)
    q = quality_space(waveforms)
    rows = []
    for c in sorted(set(lab.tolist()) - {noise}):
        m = lab == c
        iso, lr = isolation_and_lratio(q, lab, c)
        snr, ch = cluster_snr(waveforms, m)
        rows.append({"cluster": int(c), "n_spikes": int(m.sum()),
                     "rate_hz": float(m.sum() / duration_s) if duration_s > 0 else None,
                     "isi_violation_fraction": isi_violation_fraction(np.asarray(times_s)[m]),
                     "snr": round(snr, 3), "best_channel": ch + 1,
                     "isolation_distance": None if iso is None else round(iso, 3),
                     "l_ratio": None if lr is None else round(lr, 5)})
        r, isi = rows[-1], rows[-1]["isi_violation_fraction"]
        single = (iso is not None and lr is not None and iso >= SINGLE_UNIT_RULE["isolation_distance_min"]
                  and lr <= SINGLE_UNIT_RULE["l_ratio_max"] and (isi or 0.0) <= SINGLE_UNIT_RULE["isi_violation_max"])
        r["looks_like"] = "single unit" if single else "multi-unit"
    return rows


def confusion(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Confusion table of clusters (rows) x manual units (columns) and best matches per unit.

    For each manual unit u (reference id != 0) the best-matching cluster is the one with the
    highest F1 = 2PR / (P + R), with precision P = |C and u| / |C| and recall R = |C and u| / |u|
    over all spikes (the noise cluster -1 is never a match).

    Returns
    -------
    dict: ``clusters`` (row ids), ``units`` (column ids, 0 = manual noise), ``table`` (list of
    rows of counts), ``best_match`` (list of {``unit``, ``cluster``, ``precision``, ``recall``,
    ``f1``, ``n_unit``}).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    rows, cols = sorted(set(pred.tolist())), sorted(set(ref.tolist()))
    ri = {c: i for i, c in enumerate(rows)}
    ci = {u: j for j, u in enumerate(cols)}
    tab = np.zeros((len(rows), len(cols)), dtype=np.int64)
    np.add.at(tab, (np.array([ri[c] for c in pred.tolist()], dtype=np.int64),
                    np.array([ci[u] for u in ref.tolist()], dtype=np.int64)), 1)
    best = []
    for u in cols:
        if u == 0:
            continue
        n_u = int(tab[:, ci[u]].sum())
        cand = None
        for c in rows:
            if c == -1:
                continue
            inter = int(tab[ri[c], ci[u]])
            p = inter / max(1, int(tab[ri[c]].sum()))
            r = inter / max(1, n_u)
            f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
            if cand is None or f1 > cand["f1"]:
                cand = {"unit": int(u), "cluster": int(c), "precision": round(p, 4), "recall": round(r, 4),
                        "f1": round(f1, 4), "n_unit": n_u}
        best.append(cand or {"unit": int(u), "cluster": None, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                             "n_unit": n_u})
    return {"clusters": [int(c) for c in rows], "units": [int(u) for u in cols], "table": tab.tolist(),
            "best_match": best}
