"""Spike sorting by clustering: peak, PCA or autoencoder embeddings + DBSCAN or HDBSCAN.

After the spike seed's clustering stage (henryxcham/spike_detection_classification,
``src/cluster.py``): an embedding of the waveforms -- PCA to 3 dimensions, or the bottleneck of
a shallow dense autoencoder (seed ``ShallowAutoencoder``: ``n_in -> n_in/2 -> 3 -> n_in/2 ->
n_in``, ReLU, MSE, Adam 1e-3) -- then DBSCAN. ``eps`` for DBSCAN is the knee of the sorted
k-distance curve (Ester et al. 1996, KDD: the k-dist graph; the knee as the point farthest from
the chord, Satopaa et al. 2011 "Kneedle" in its simplest form). HDBSCAN is
``sklearn.cluster.HDBSCAN`` (Campello, Moulavi & Sander 2013). Agreement with a manual sorting
(e.g. Tint ``.cut`` files) is measured with the adjusted Rand index and normalised mutual
information; the internal quality of a clustering with the silhouette coefficient (Rousseeuw
1987, J. Comput. Appl. Math. 20:53) on the embedding, noise points excluded. No step uses the
manual labels to fit or choose anything: they are only compared with at the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.atomic import write_json, write_npy, write_text
from ..core.errors import EphysError

METHODS = ("dbscan", "hdbscan")
EMBEDDINGS = ("peaks", "pca", "autoencoder")
FEATURES = EMBEDDINGS  # the option's former name


def spike_features(waveforms: np.ndarray, features: str = "peaks", n_dims: int = 3, seed: int = 0,
                   ae_epochs: int = 60, ae_batch_size: int = 256, ae_lr: float = 1e-3,
                   info: dict | None = None) -> np.ndarray:
    """Embedding of tetrode spikes for clustering.

    Parameters
    ----------
    waveforms : np.ndarray, shape (n_spikes, n_channels, n_samples), any units
    features : ``"peaks"``: peak amplitude on each channel, (n, n_channels), the classic
        tetrode feature (what Tint clusters on by default); ``"pca"``: :func:`pca_embed` of the
        whole waveform to ``n_dims`` (the spike seed's embedding); ``"autoencoder"``:
        :func:`autoencoder_embed` to ``n_dims`` (the seed's other embedding; ``ae_*`` settings)
    n_dims : PCA components / autoencoder bottleneck size (seed: 3)
    seed : random seed (PCA solver, autoencoder initialisation and batch order)
    info : optional dict filled with the autoencoder's training facts

    Returns
    -------
    np.ndarray float64 (n_spikes, n_features)

    Raises
    ------
    EphysError
        Unknown embedding, waveforms not 3-D, too few spikes (see :func:`pca_embed`).
    """
    w = np.asarray(waveforms, dtype=np.float64)
    if w.ndim != 3:
        raise EphysError(f"waveforms must be (n_spikes, n_channels, n_samples), got {w.shape}")
    if features == "peaks":
        return w.max(axis=2)
    if features == "pca":
        return pca_embed(w, n_dims, seed)
    if features == "autoencoder":
        emb, facts = autoencoder_embed(w, n_dims, seed, epochs=ae_epochs, batch_size=ae_batch_size, lr=ae_lr)
        if info is not None:
            info.update(facts)
        return emb
    raise EphysError(f"unknown embedding {features!r}; choose one of {', '.join(EMBEDDINGS)}")


def autoencoder_embed(waveforms: np.ndarray, n_dims: int = 3, seed: int = 0, epochs: int = 60,
                      batch_size: int = 256, lr: float = 1e-3, hidden: int | None = None) -> tuple[np.ndarray, dict]:
    """Bottleneck of a shallow dense autoencoder fitted to the spikes themselves (unsupervised).

    After the spike seed's ``ShallowAutoencoder`` (henryxcham/spike_detection_classification,
    ``src/models.py``): encoder ``Dense(hidden, relu) -> Dense(n_dims)``, decoder
    ``Dense(hidden, relu) -> Dense(n_in)``, mean-squared reconstruction error, Adam (seed: lr
    1e-3); ``hidden`` defaults to ``n_in // 2`` (the seed's 21 for 42 samples). The seed trains
    full-batch for 200 steps; here mini-batches of ``batch_size`` for ``epochs`` passes (60 x
    53 = 3,180 steps for 13,432 spikes), the same optimiser. Inputs are flattened, centred per
    feature (the mean spike) and divided by one global standard deviation, so relative
    amplitudes across tetrode channels are kept (as for :func:`pca_embed`). Keras 3 only
    (``keras.layers``), so it runs on the TensorFlow, JAX or PyTorch backend. Deterministic for
    a given ``seed`` on one backend and machine (``keras.utils.set_random_seed``; the batch
    order is drawn by NumPy from ``seed``). No label is used.

    Parameters
    ----------
    waveforms : np.ndarray, shape (n_spikes, ...) (e.g. (n, 4 channels, 50 samples)), any units
    n_dims : int, bottleneck size (default: PCA's 3)
    seed : int
    epochs, batch_size, lr : training settings (see above)
    hidden : width of the hidden layers (default ``max(n_dims, n_in // 2)``)

    Returns
    -------
    (embedding float64 (n_spikes, n_dims), facts dict: ``hidden``, ``epochs``, ``batch_size``,
    ``lr``, ``final_loss`` (MSE in units of the global SD, squared), ``explained_variance``
    (1 - reconstruction MSE / variance of the centred input), ``train_seconds``)

    Raises
    ------
    EphysError
        Fewer spikes than ``n_dims + 1``, a constant input, or bad settings (epochs, batch size
        or lr not positive, n_dims < 1).
    """
    import time

    import keras
    from keras import layers

    x = np.asarray(waveforms, dtype=np.float64).reshape(len(waveforms), -1)
    if n_dims < 1 or epochs < 1 or batch_size < 1 or not lr > 0:
        raise EphysError(f"autoencoder settings must be positive (dims {n_dims}, epochs {epochs}, "
                         f"batch size {batch_size}, lr {lr})")
    if x.shape[0] <= n_dims:
        raise EphysError(f"need more than {n_dims} spikes to embed, got {x.shape[0]}")
    x = x - x.mean(axis=0, keepdims=True)
    scale = float(x.std())
    if not np.isfinite(scale) or scale <= 0:
        raise EphysError("cannot embed constant waveforms (standard deviation 0)")
    x = (x / scale).astype(np.float32)
    n_in = x.shape[1]
    hidden = int(hidden or max(n_dims, n_in // 2))
    keras.utils.set_random_seed(int(seed))
    inp = keras.Input((n_in,), name="waveform")
    h = layers.Dense(hidden, activation="relu", name="enc_hidden")(inp)
    z = layers.Dense(int(n_dims), name="embedding")(h)
    h2 = layers.Dense(hidden, activation="relu", name="dec_hidden")(z)
    rec = layers.Dense(n_in, name="reconstruction")(h2)
    ae = keras.Model(inp, rec, name="autoencoder")
    encoder = keras.Model(inp, z, name="encoder")
    ae.compile(optimizer=keras.optimizers.Adam(lr), loss="mse", jit_compile=False)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(int(epochs)):  # our own shuffling: the batch order depends on seed only
        order = rng.permutation(x.shape[0])
        hist = ae.fit(x[order], x[order], batch_size=int(batch_size), epochs=1, shuffle=False, verbose=0)
        loss = float(hist.history["loss"][-1])
    train_s = time.perf_counter() - t0
    emb = np.asarray(encoder.predict(x, batch_size=4096, verbose=0), dtype=np.float64)
    rec_x = np.asarray(ae.predict(x, batch_size=4096, verbose=0), dtype=np.float64)
    mse = float(np.mean((rec_x - x) ** 2))
    facts = {"hidden": hidden, "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
             "final_loss": loss, "reconstruction_mse": mse,
             "explained_variance": float(1.0 - mse / float(np.mean(x.astype(np.float64) ** 2))),
             "train_seconds": round(train_s, 2), "input_scale": scale}
    return emb, facts


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


def silhouette(x: np.ndarray, labels: np.ndarray, noise: int = -1, max_n: int = 20000,
               seed: int = 0) -> float | None:
    """Mean silhouette coefficient (Rousseeuw 1987) of ``labels`` in the embedding ``x``.

    Parameters
    ----------
    x : np.ndarray, shape (n, d), the embedding that was clustered (Euclidean distance, as
        DBSCAN / HDBSCAN used)
    labels : np.ndarray of int, shape (n,)
    noise : label of unassigned points, left out of the score (DBSCAN / HDBSCAN -1; Tint 0)
    max_n : above this many points a random subset of ``max_n`` (drawn with ``seed``) is scored

    Returns
    -------
    float in [-1, 1], or None when fewer than 2 clusters (or fewer than 3 points) remain.
    """
    from sklearn.metrics import silhouette_score

    keep = np.asarray(labels) != noise
    xs, ls = np.asarray(x, dtype=np.float64)[keep], np.asarray(labels)[keep]
    if len(set(ls.tolist())) < 2 or ls.size < 3 or len(set(ls.tolist())) >= ls.size:
        return None
    sample = min(max_n, ls.size) if ls.size > max_n else None
    return float(silhouette_score(xs, ls, sample_size=sample, random_state=seed))


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
                    min_samples: int = 10, min_cluster_size: int = 30, seed: int = 0,
                    ae_epochs: int = 60, ae_batch_size: int = 256, ae_lr: float = 1e-3,
                    report: bool = True) -> dict:
    """``ephys cluster``: sort an Axona tetrode file; compare with a Tint cut file if given.

    Parameters
    ----------
    tetrode : Axona tetrode file ``TRIAL.N`` (see :func:`ephys.pipelines.axona.read_tetrode`)
    out_dir : output folder
    cut : Tint ``.cut`` file of the same tetrode (only compared with, never used to fit)
    method : ``"hdbscan"`` | ``"dbscan"`` (see :func:`cluster_embedding`)
    features : the embedding, one of :data:`EMBEDDINGS` (see :func:`spike_features`)
    n_dims : PCA components / autoencoder bottleneck (seed: 3)
    seed : PCA / autoencoder seed; the result is deterministic for a seed
    ae_epochs, ae_batch_size, ae_lr : autoencoder training (see :func:`autoencoder_embed`)
    report : also write ``OUT/report.html`` and ``OUT/report.md`` (+ ``OUT/report_files/``)

    Writes ``OUT/clusters.csv`` (spike, time_s, cluster; -1 = noise), ``OUT/embedding.npy``
    (float32 (n_spikes, n_features)) and ``OUT/cluster_metrics.json``: parameters,
    ``n_clusters``, ``n_noise``, ``silhouette`` (of the clusters in the embedding, noise
    excluded; None with < 2 clusters), and with ``cut``: ``ari``, ``nmi``, ``units_only``,
    the reference's unit count and ``reference.silhouette`` (of the manual units in the same
    embedding, Tint noise cluster 0 excluded). All files are written via a temporary name.
    Returns the metrics dict.

    Raises
    ------
    EphysError
        Unreadable tetrode or cut file, a cut file of another length, unknown method or
        embedding, bad autoencoder settings.
    """
    from ..blocks.readers.axona import read_cut, read_tetrode

    if method not in METHODS:
        raise EphysError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    if features not in EMBEDDINGS:
        raise EphysError(f"unknown embedding {features!r}; choose one of {', '.join(EMBEDDINGS)}")
    spk = read_tetrode(tetrode)
    ref = read_cut(cut, len(spk.times_s)) if cut else None
    ae_info: dict = {}
    emb = spike_features(spk.waveforms, features, n_dims, seed, ae_epochs=ae_epochs, ae_batch_size=ae_batch_size,
                         ae_lr=ae_lr, info=ae_info)
    labels, params = cluster_embedding(emb, method, min_samples, min_cluster_size)
    res = {"input": str(Path(tetrode).resolve()), "n_spikes": int(labels.size),
           "embed": features, "n_dims": int(emb.shape[1]), "seed": int(seed),
           "features": features if features == "peaks" else f"{features} {n_dims}",
           **params, "n_clusters": int(len(set(labels.tolist()) - {-1})), "n_noise": int((labels == -1).sum()),
           "silhouette": silhouette(emb, labels, noise=-1, seed=seed),
           "silhouette_rule": "mean silhouette (Euclidean) in the clustered embedding, noise (-1) excluded"}
    if ae_info:
        res["autoencoder"] = ae_info
    if ref is not None:
        res["reference"] = {"cut": str(Path(cut).resolve()), "n_units": int(len(set(ref.tolist()) - {0})),
                            "n_noise": int((ref == 0).sum()),
                            "silhouette": silhouette(emb, ref, noise=0, seed=seed)}
        res.update(agreement(labels, ref))
    out = Path(out_dir)
    lines = ["spike,time_s,cluster"] + [f"{i},{t:.6f},{c}" for i, (t, c) in enumerate(zip(spk.times_s, labels))]
    write_text(out / "clusters.csv", "\n".join(lines) + "\n")
    write_npy(out / "embedding.npy", emb.astype(np.float32))
    write_json(out / "cluster_metrics.json", res)
    if report:
        from .cluster_report import build_cluster_report

        build_cluster_report(out, res, emb, labels, spk.waveforms, ref, spk.fs_hz)
    return res
