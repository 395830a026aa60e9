"""Spike sorting by clustering: per-channel peak or PCA features + DBSCAN or HDBSCAN.

After the spike seed's clustering stage (PCA to 3 dimensions, DBSCAN); its autoencoder
embedding is not built here. ``eps`` for DBSCAN is
the knee of the sorted k-distance curve (Ester et al. 1996, KDD: the k-dist graph; the knee as
the point farthest from the chord, Satopaa et al. 2011 "Kneedle" in its simplest form).
HDBSCAN is ``sklearn.cluster.HDBSCAN`` (Campello, Moulavi & Sander 2013). Agreement with a
manual sorting (e.g. Tint ``.cut`` files) is measured with the adjusted Rand index and
normalised mutual information.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import write_json, write_text
from .errors import EphysError

METHODS = ("dbscan", "hdbscan")
FEATURES = ("peaks", "pca")


def spike_features(waveforms: np.ndarray, features: str = "peaks", n_dims: int = 3, seed: int = 0) -> np.ndarray:
    """Features of tetrode spikes for clustering.

    Parameters
    ----------
    waveforms : np.ndarray, shape (n_spikes, n_channels, n_samples), any units
    features : ``"peaks"``: peak amplitude on each channel, (n, n_channels), the classic
        tetrode feature (what Tint clusters on by default); ``"pca"``: :func:`pca_embed` of the
        whole waveform to ``n_dims`` (the spike seed's embedding)

    Returns
    -------
    np.ndarray float64 (n_spikes, n_features)

    Raises
    ------
    EphysError
        Unknown feature set, waveforms not 3-D.
    """
    w = np.asarray(waveforms, dtype=np.float64)
    if w.ndim != 3:
        raise EphysError(f"waveforms must be (n_spikes, n_channels, n_samples), got {w.shape}")
    if features == "peaks":
        return w.max(axis=2)
    if features == "pca":
        return pca_embed(w, n_dims, seed)
    raise EphysError(f"unknown features {features!r}; choose one of {', '.join(FEATURES)}")


def pca_embed(waveforms: np.ndarray, n_dims: int = 3, seed: int = 0) -> np.ndarray:
    """PCA embedding of spike waveforms.

    Parameters
    ----------
    waveforms : np.ndarray, shape (n_spikes, ...) (e.g. (n, 4 channels, 50 samples)), any units;
        flattened per spike and centred (not scaled: amplitude differences between channels are
        what separates units on a tetrode)
    n_dims : int, output dimensions (seed: 3)

    Returns
    -------
    np.ndarray float64 (n_spikes, n_dims)

    Raises
    ------
    EphysError
        Fewer spikes than ``n_dims + 1``.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(waveforms, dtype=np.float64).reshape(len(waveforms), -1)
    if x.shape[0] <= n_dims:
        raise EphysError(f"need more than {n_dims} spikes to embed, got {x.shape[0]}")
    return PCA(n_components=n_dims, random_state=seed).fit_transform(x)


def kdistance_eps(x: np.ndarray, k: int) -> float:
    """DBSCAN eps at the knee of the sorted distances to each point's k-th nearest neighbour.

    The knee is the point of the ascending k-distance curve farthest from the straight line
    joining its ends (both axes scaled to [0, 1]). Returns a positive float in the units of x.
    """
    from sklearn.neighbors import NearestNeighbors

    d = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)[0][:, -1]
    d = np.sort(d)
    xs = np.linspace(0.0, 1.0, d.size)
    span = d[-1] - d[0]
    ys = (d - d[0]) / span if span > 0 else np.zeros_like(d)
    knee = int(np.argmax(xs - ys))  # convex increasing curve: farthest below the chord
    return float(max(d[knee], 1e-12))


def cluster_embedding(x: np.ndarray, method: str = "hdbscan", min_samples: int = 10,
                      min_cluster_size: int = 30) -> tuple[np.ndarray, dict]:
    """Cluster an embedding; returns labels (int64, -1 = noise) and the parameters used."""
    from sklearn.cluster import DBSCAN, HDBSCAN

    if method == "dbscan":
        eps = kdistance_eps(x, min_samples)
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(x)
        return labels.astype(np.int64), {"method": method, "eps": eps, "min_samples": min_samples,
                                         "eps_rule": "knee of the k-distance curve, k = min_samples"}
    if method == "hdbscan":
        labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True).fit_predict(x)
        return labels.astype(np.int64), {"method": method, "min_cluster_size": min_cluster_size,
                                         "min_samples": min_samples}
    raise EphysError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")


def agreement(pred: np.ndarray, ref: np.ndarray) -> dict:
    """ARI and NMI of cluster labels ``pred`` against reference ids ``ref`` (both (n,) ints).

    ``all``: every spike, noise labels kept as their own class (DBSCAN -1, Tint 0);
    ``units_only``: spikes the reference assigns to a unit (ref != 0).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    out = {"ari": float(adjusted_rand_score(ref, pred)), "nmi": float(normalized_mutual_info_score(ref, pred))}
    sel = ref != 0
    if sel.sum() > 1:
        out["units_only"] = {"ari": float(adjusted_rand_score(ref[sel], pred[sel])),
                             "nmi": float(normalized_mutual_info_score(ref[sel], pred[sel])),
                             "n": int(sel.sum())}
    return out


def cluster_tetrode(tetrode: str | Path, out_dir: str | Path, cut: str | Path | None = None,
                    method: str = "hdbscan", features: str = "peaks", n_dims: int = 3,
                    min_samples: int = 10, min_cluster_size: int = 30) -> dict:
    """``ephys cluster``: sort an Axona tetrode file; compare with a Tint cut file if given.

    Writes ``OUT/clusters.csv`` (spike, time_s, cluster; -1 = noise) and
    ``OUT/cluster_metrics.json`` (parameters, n_clusters, n_noise, and with ``cut``: ``ari``,
    ``nmi``, ``units_only`` and the reference's cluster count). Returns the metrics dict.

    Raises
    ------
    EphysError
        Unreadable tetrode or cut file, a cut file of another length, unknown method.
    """
    from .axona import read_cut, read_tetrode

    spk = read_tetrode(tetrode)
    ref = read_cut(cut, len(spk.times_s)) if cut else None
    emb = spike_features(spk.waveforms, features, n_dims)
    labels, params = cluster_embedding(emb, method, min_samples, min_cluster_size)
    res = {"input": str(Path(tetrode).resolve()), "n_spikes": int(labels.size),
           "features": features if features == "peaks" else f"pca {n_dims}",
           **params, "n_clusters": int(len(set(labels.tolist()) - {-1})), "n_noise": int((labels == -1).sum())}
    if ref is not None:
        res["reference"] = {"cut": str(Path(cut).resolve()), "n_units": int(len(set(ref.tolist()) - {0})),
                            "n_noise": int((ref == 0).sum())}
        res.update(agreement(labels, ref))
    out = Path(out_dir)
    lines = ["spike,time_s,cluster"] + [f"{i},{t:.6f},{c}" for i, (t, c) in enumerate(zip(spk.times_s, labels))]
    write_text(out / "clusters.csv", "\n".join(lines) + "\n")
    write_json(out / "cluster_metrics.json", res)
    return res
