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

METHODS = ("gmm", "isosplit", "hdbscan", "dbscan")
EMBEDDINGS = ("features", "peaks", "pca", "autoencoder")
FEATURES = EMBEDDINGS  # the option's former name
from .params import CLUSTER_DEFAULTS, FEATURE_KINDS  # noqa: E402  (the per-channel features of waveform_features)
#: the per-channel features computed when none are named (``logp2p`` is left out: it repeats ``p2p``)
BASE_KINDS = ("peak", "trough", "p2p", "width", "energy", "pc")


def waveform_features(waveforms: np.ndarray, fs_hz: float = 48000.0, n_pcs: int = 3,
                      kinds: tuple[str, ...] = BASE_KINDS, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Per-channel tetrode features, standardised (the field's practice: Tint, MClust, KlustaKwik).

    For each channel ``c`` of each spike: ``peak`` (maximum, ADC units), ``trough`` (minimum),
    ``p2p`` (peak-to-trough amplitude, maximum minus minimum, ADC units: Tint's amplitude; unlike
    ``peak`` it does not pile up at the trigger threshold of the channel that fired),
    ``logp2p`` (natural logarithm of 1 + ``p2p``: amplitudes are heavy-tailed and their spread
    grows with their size, so a unit's cloud is closer to Gaussian on a log scale),
    ``width`` (time from the peak to the lowest sample after it, ms), ``energy`` (root mean
    square of the snippet, ADC units; Schmitzer-Torbert et al. 2005 use the L2 norm, the same up
    to a constant) and ``pc`` (scores on the first ``n_pcs`` principal components of that
    channel's waveforms, fitted on this file's spikes only). Every column is then centred and
    divided by its standard deviation; columns that are constant (a dead or grounded channel,
    e.g. tetrode 7 channel 4 of the RatGPS data) are dropped.

    Parameters
    ----------
    waveforms : np.ndarray, shape (n_spikes, n_channels, n_samples), ADC units
    fs_hz : waveform sampling rate, Hz (for ``width``)
    n_pcs : principal components per channel (default 3)
    kinds : which of :data:`FEATURE_KINDS` to compute, in this order per channel (default
        :data:`BASE_KINDS`)
    seed : PCA solver seed

    Returns
    -------
    (features float64 (n_spikes, n_features), names list[str] like ``"ch1 peak"``, ``"ch2 pc1"``)

    Raises
    ------
    EphysError
        Waveforms not 3-D, an unknown feature kind, fewer spikes than ``n_pcs + 1``, or every
        column constant.
    """
    from sklearn.decomposition import PCA

    w = np.asarray(waveforms, dtype=np.float64)
    if w.ndim != 3:
        raise EphysError(f"waveforms must be (n_spikes, n_channels, n_samples), got {w.shape}")
    bad = [k for k in kinds if k not in FEATURE_KINDS]
    if bad:
        raise EphysError(f"unknown feature kind {bad[0]!r}; choose from {', '.join(FEATURE_KINDS)}")
    n, n_ch, n_s = w.shape
    if n <= n_pcs:
        raise EphysError(f"need more than {n_pcs} spikes to compute features, got {n}")
    cols, names = [], []
    for c in range(n_ch):
        x = w[:, c, :]
        i_pk = x.argmax(axis=1)
        for kind in kinds:
            if kind == "peak":
                cols.append(x.max(axis=1)); names.append(f"ch{c + 1} peak")
            elif kind == "trough":
                cols.append(x.min(axis=1)); names.append(f"ch{c + 1} trough")
            elif kind == "p2p":
                cols.append(x.max(axis=1) - x.min(axis=1)); names.append(f"ch{c + 1} p2p")
            elif kind == "logp2p":
                cols.append(np.log1p(x.max(axis=1) - x.min(axis=1))); names.append(f"ch{c + 1} log_p2p")
            elif kind == "width":
                after = np.where(np.arange(n_s)[None, :] >= i_pk[:, None], x, np.inf)
                cols.append((after.argmin(axis=1) - i_pk) / fs_hz * 1e3); names.append(f"ch{c + 1} width_ms")
            elif kind == "energy":
                cols.append(np.sqrt(np.mean(x ** 2, axis=1))); names.append(f"ch{c + 1} energy")
            elif kind == "pc" and n_pcs > 0:
                xc = x - x.mean(axis=0)
                if float(xc.std()) > 0:
                    k = min(n_pcs, n_s)
                    scores = PCA(n_components=k, random_state=seed).fit_transform(xc)
                    for j in range(k):
                        cols.append(scores[:, j]); names.append(f"ch{c + 1} pc{j + 1}")
    f = np.column_stack(cols) if cols else np.zeros((n, 0))
    sd = f.std(axis=0)
    keep = sd > 1e-9 * max(1.0, float(np.abs(f).max(initial=0.0)))
    if not keep.any():
        raise EphysError("every waveform feature is constant: nothing to cluster on")
    f = (f[:, keep] - f[:, keep].mean(axis=0)) / sd[keep]
    return f, [nm for nm, k in zip(names, keep) if k]


def spike_features(waveforms: np.ndarray, features: str = "peaks", n_dims: int = 3, seed: int = 0,
                   ae_epochs: int = 60, ae_batch_size: int = 256, ae_lr: float = 1e-3,
                   info: dict | None = None, fs_hz: float = 48000.0,
                   kinds: tuple[str, ...] = BASE_KINDS, n_pcs: int = 3) -> np.ndarray:
    """Embedding of tetrode spikes for clustering.

    Parameters
    ----------
    waveforms : np.ndarray, shape (n_spikes, n_channels, n_samples), any units
    features : ``"features"``: :func:`waveform_features` (per-channel peak, trough, width,
        energy, ``n_pcs`` PCs; ``kinds`` selects), standardised, then reduced by PCA to
        ``n_dims`` dimensions when ``n_dims`` is smaller than the feature count (``n_dims`` 0
        keeps all); ``"peaks"``: peak amplitude on each channel, (n, n_channels), the classic
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
    if features == "features":
        f, names = waveform_features(w, fs_hz=fs_hz, n_pcs=n_pcs, kinds=kinds, seed=seed)
        if info is not None:
            info["feature_names"] = names
        if 0 < n_dims < f.shape[1]:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=n_dims, random_state=seed).fit(f)
            if info is not None:
                info["explained_variance"] = round(float(pca.explained_variance_ratio_.sum()), 4)
            return pca.transform(f)
        return f
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


def gmm_bic(x: np.ndarray, max_k: int = 12, seed: int = 0, patience: int = 2,
            reg_covar: float = 1e-4) -> tuple[np.ndarray, dict]:
    """Gaussian mixture (full covariances) with the number of components chosen by BIC.

    ``sklearn.mixture.GaussianMixture`` is fitted for k = 1, 2, ... up to ``max_k``; the k of the
    lowest Bayesian information criterion (Schwarz 1978) is kept. The search stops early once
    BIC has not improved for ``patience`` consecutive k (the curve is in practice U-shaped). Each
    spike goes to its most probable component.

    Parameters
    ----------
    x : np.ndarray float (n_spikes, d), standardised features
    max_k : largest number of components tried
    seed : k-means initialisation seed (the result is deterministic for a seed)
    patience : see above
    reg_covar : added to the covariance diagonals (units of x squared)

    Returns
    -------
    (labels int64 (n,), 0..k-1; facts dict: ``k``, ``bic`` {k: value}, ``posterior`` float64 (n,):
    each spike's posterior probability of the component it is given, ``proba`` float64 (n, k): all
    posterior probabilities)
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(x, dtype=np.float64)
    bics: dict[int, float] = {}
    best = None
    worse = 0
    for k in range(1, int(max_k) + 1):
        if k > x.shape[0]:
            break
        g = GaussianMixture(k, covariance_type="full", reg_covar=reg_covar, random_state=seed, max_iter=200).fit(x)
        b = float(g.bic(x))
        bics[k] = round(b, 2)
        if best is None or b < best[0]:
            best, worse = (b, k, g), 0
        else:
            worse += 1
            if worse >= patience:
                break
    _, k, g = best
    post = g.predict_proba(x)
    return post.argmax(axis=1).astype(np.int64), {"k": int(k), "bic": bics, "posterior": post.max(axis=1),
                                                  "proba": post}


def merge_entropy(proba: np.ndarray, min_gain: float = 0.2) -> tuple[np.ndarray, np.ndarray, dict]:
    """Combine mixture components by the entropy criterion (Baudry et al. 2010).

    Baudry, Raftery, Celeux, Lo & Gottardo (2010), "Combining mixture components for clustering",
    J. Comput. Graph. Stat. 19:332: a mixture chosen by BIC fits a non-Gaussian cluster (here the
    multi-unit / noise cloud) with several overlapping components; merging two components i, j
    (adding their posterior columns) lowers the entropy of the posterior
    ``-sum_n sum_c p_nc log p_nc`` by ``sum_n [(p_i + p_j) log(p_i + p_j) - p_i log p_i - p_j log p_j]``
    (nats, >= 0). The pair with the largest decrease is merged, repeatedly. Baudry et al. read the
    number of clusters off an elbow of the entropy plot, normalised by the number of observations
    merged; here a stated threshold replaces the elbow: the best merge is made while its entropy
    decrease per spike of the two components (spikes whose most probable component is i or j)
    is at least ``min_gain`` nats (ln 2 = 0.69 for two components that are indistinguishable).

    Parameters
    ----------
    proba : np.ndarray float (n_spikes, k), mixture posterior probabilities (rows sum to 1)
    min_gain : threshold above, nats per spike; 0 disables merging

    Returns
    -------
    (labels int64 (n,) 0..k'-1 after merging, proba float64 (n, k') merged, facts dict:
    ``n_entropy_merges``, ``entropy_merges`` [[n clusters before, gain per spike], ...],
    ``entropy_merge_rule`` in words)
    """
    p = np.asarray(proba, dtype=np.float64).copy()
    done: list[list] = []

    def plogp(v: np.ndarray) -> np.ndarray:
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)

    while min_gain > 0 and p.shape[1] > 1:
        lab = p.argmax(axis=1)
        pl = plogp(p)
        best = None
        for i in range(p.shape[1]):
            for j in range(i + 1, p.shape[1]):
                gain = float(np.sum(plogp(p[:, i] + p[:, j]) - pl[:, i] - pl[:, j]))
                n_pair = int(np.sum((lab == i) | (lab == j)))
                per = gain / max(n_pair, 1)
                if best is None or gain > best[0]:
                    best = (gain, per, i, j)
        gain, per, i, j = best
        if per < min_gain:
            break
        done.append([int(p.shape[1]), round(per, 4)])
        p[:, i] += p[:, j]
        p = np.delete(p, j, axis=1)
    rule = (f"merge the two mixture components whose merging lowers the posterior entropy most (Baudry et al. "
            f"2010), while that decrease is >= {min_gain:g} nats per spike of the two") if min_gain > 0 else "none"
    return p.argmax(axis=1).astype(np.int64), p, {"n_entropy_merges": len(done), "entropy_merges": done,
                                                   "entropy_merge_min_gain": float(min_gain),
                                                   "entropy_merge_rule": rule}


def isosplit(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    """ISO-SPLIT clustering (Magland & Barnett 2015; isosplit6, the clusterer of MountainSort 5).

    Clusters are merged or split by a test of unimodality along the line joining each pair, so
    the number of clusters follows from the data with no parameter. The library aborts the
    process on exactly repeated points (a singular covariance), which int8 tetrode data can
    produce; a seeded jitter of 1e-3 standard deviations (1e-3 in the units of standardised
    features, far below one ADC step) is added before the call.

    Returns
    -------
    (labels int64 (n,), 0..k-1; facts dict: ``k``, ``jitter_sd``)
    """
    import isosplit6

    x = np.asarray(x, dtype=np.float64)
    scale = float(np.std(x)) or 1.0
    xj = x + np.random.default_rng(seed).normal(0.0, 1e-3 * scale, x.shape)
    lab = np.asarray(isosplit6.isosplit6(np.ascontiguousarray(xj)), dtype=np.int64)
    _, lab = np.unique(lab, return_inverse=True)
    return lab.astype(np.int64), {"k": int(lab.max() + 1) if lab.size else 0, "jitter_sd": 1e-3 * scale}


def _isocut_dip(proj: np.ndarray) -> float:
    """Dip score of isosplit6's isocut (1-D unimodality test of ISO-SPLIT) on sorted values.

    isosplit6 0.1.4's Python ``isocut6`` calls a misspelt C++ entry (``isocut6_fn``; the module
    exports ``isocust6_fn``), so the C++ function is called directly, under either name.
    """
    import isosplit6_cpp

    fn = getattr(isosplit6_cpp, "isocut6_fn", None) or getattr(isosplit6_cpp, "isocust6_fn")
    out = np.zeros(2, dtype=np.float64)
    fn(out, np.ascontiguousarray(np.sort(np.asarray(proj, dtype=np.float64))))
    return float(out[0])


def _isolation_sq(x: np.ndarray, inside: np.ndarray) -> float:
    """Isolation distance (Harris et al. 2000) of the spikes ``inside`` in the space x.

    The squared Mahalanobis distance of the n_C-th closest spike outside; when fewer than n_C
    spikes lie outside (a cluster holding most of the file), of the farthest one; inf if none.
    """
    xi = x[inside]
    d = x[~inside] - xi.mean(axis=0)
    if d.shape[0] == 0:
        return float("inf")
    d2 = np.einsum("ij,ij->i", d @ np.linalg.pinv(np.cov(xi, rowvar=False)), d)
    k = min(int(inside.sum()), d2.size)
    return float(np.partition(d2, k - 1)[k - 1])


def merge_unimodal(x: np.ndarray, labels: np.ndarray, dip_threshold: float = 2.0,
                   min_size: int = 10) -> tuple[np.ndarray, dict]:
    """Merge mixture components that over-split one cluster (ISO-SPLIT's merge test, guarded).

    A Gaussian mixture chosen by BIC covers a non-Gaussian cluster (e.g. a multi-unit cloud, or
    Tint's noise cluster) with several components. For every pair of clusters the spikes of both
    are projected on the Fisher discriminant axis ``(S_i + S_j)^-1 (mu_i - mu_j)`` and the
    projection is tested for unimodality with isocut (Magland & Barnett 2015, the test of
    ISO-SPLIT; isosplit6's implementation): a dip score below ``dip_threshold`` means no
    significant dip, i.e. one cluster. Candidate pairs are taken in increasing dip score, and a
    merge is accepted only when the union's isolation distance (in ``x``) exceeds both parts' —
    a cut through one cloud leaves two poorly isolated halves, two distinct units touching each
    other do not gain isolation by being merged. Repeats until no pair qualifies.

    Parameters
    ----------
    x : np.ndarray float (n_spikes, d), the clustered space
    labels : np.ndarray int (n_spikes,), cluster ids (-1 = noise, left alone)
    dip_threshold : isocut dip score under which a pair counts as unimodal (ISO-SPLIT: 2.0);
        0 disables merging
    min_size : clusters smaller than this are left alone (the noise rule handles them)

    Returns
    -------
    (labels int64 (n,), the ids of merged clusters replaced by the kept id; facts dict:
    ``n_merges``, ``merges`` [[kept, merged, dip], ...], ``merge_rule`` in words)
    """
    x = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64).copy()
    merges: list[list] = []
    rejected: set = set()
    d = x.shape[1]
    while dip_threshold > 0:
        ids = [c for c in sorted(set(lab.tolist()) - {-1}) if (lab == c).sum() >= max(min_size, d + 2)]
        cand = []
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                i, j = ids[a], ids[b]
                mi, mj = lab == i, lab == j
                key = (i, j, int(mi.sum()), int(mj.sum()))
                if key in rejected:
                    continue
                xi, xj = x[mi], x[mj]
                s = np.cov(xi, rowvar=False) + np.cov(xj, rowvar=False) + 1e-9 * np.eye(d)
                v = np.linalg.solve(s.reshape(d, d), xi.mean(axis=0) - xj.mean(axis=0))
                dip = _isocut_dip(np.concatenate([xi, xj]) @ v)
                if dip < dip_threshold:
                    cand.append((dip, i, j, key))
        merged = False
        for dip, i, j, key in sorted(cand):
            union = (lab == i) | (lab == j)
            if _isolation_sq(x, union) > max(_isolation_sq(x, lab == i), _isolation_sq(x, lab == j)):
                lab[lab == j] = i
                merges.append([int(i), int(j), round(dip, 3)])
                merged = True
                break
            rejected.add(key)
        if not merged:
            break
    return lab, {"n_merges": len(merges), "merges": merges, "merge_dip_threshold": dip_threshold,
                 "merge_rule": (f"merge two clusters when isocut finds no dip (score < {dip_threshold:g}) along "
                                "their Fisher discriminant axis and the union is better isolated than either part")
                 if dip_threshold > 0 else "no merge step"}


def outlier_noise(x: np.ndarray, labels: np.ndarray, p_outlier: float = 1e-3,
                  min_cluster_size: int = 30) -> tuple[np.ndarray, dict]:
    """The noise rule for mixture / ISO-SPLIT clusters: outliers and tiny clusters get -1.

    A spike is an outlier of its cluster when its squared Mahalanobis distance to the cluster's
    mean (with the cluster's own covariance, in the clustered space of d dimensions) exceeds the
    chi-square (d degrees of freedom) quantile ``1 - p_outlier``: for a Gaussian cluster, a
    fraction ``p_outlier`` of its own spikes would fall beyond it. Clusters with fewer than
    ``min_cluster_size`` spikes (before or after removing outliers) are noise as a whole.
    Remaining clusters are renumbered 0..k-1 by decreasing size.

    Returns
    -------
    (labels int64 (n,), -1 = noise; facts dict: ``n_outliers``, ``n_small``, the rule in words)
    """
    from scipy.stats import chi2

    x = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64).copy()
    d = x.shape[1]
    cut = float(chi2.ppf(1.0 - p_outlier, d))
    n_out = n_small = 0
    for c in sorted(set(lab.tolist()) - {-1}):
        m = lab == c
        if m.sum() < max(min_cluster_size, d + 2):
            lab[m] = -1
            n_small += int(m.sum())
            continue
        xc = x[m]
        mu = xc.mean(axis=0)
        cov = np.cov(xc, rowvar=False) + 1e-9 * np.eye(d)
        diff = xc - mu
        d2 = np.einsum("ij,ij->i", diff @ np.linalg.pinv(cov), diff)
        idx = np.flatnonzero(m)
        out = d2 > cut
        lab[idx[out]] = -1
        n_out += int(out.sum())
        if (~out).sum() < min_cluster_size:
            lab[idx[~out]] = -1
            n_small += int((~out).sum())
    ids = [c for c in set(lab.tolist()) if c != -1]
    order = sorted(ids, key=lambda c: (-(lab == c).sum(), c))
    remap = {c: i for i, c in enumerate(order)}
    lab = np.array([remap.get(c, -1) for c in lab.tolist()], dtype=np.int64)
    return lab, {"n_outliers": n_out, "n_small": n_small, "p_outlier": p_outlier,
                 "noise_rule": f"squared Mahalanobis distance to its cluster > chi2({d}) quantile "
                               f"{1 - p_outlier:g} ({cut:.1f}), or a cluster under {min_cluster_size} spikes"}


def cluster_embedding(x: np.ndarray, method: str = "gmm", min_samples: int = 10,
                      min_cluster_size: int = 30, max_k: int = 12, p_outlier: float = 1e-3,
                      seed: int = 0, merge_dip: float = 0.0,
                      min_posterior: float = 0.0, merge_entropy_gain: float = 0.0) -> tuple[np.ndarray, dict]:
    """Cluster an embedding; returns labels (int64, -1 = noise) and the parameters used.

    ``gmm``: :func:`gmm_bic`; :func:`merge_entropy` (when ``merge_entropy_gain`` > 0); spikes whose posterior probability of their component is below
    ``min_posterior`` are noise (ambiguous spikes between components: what a manual cutter leaves
    in Tint's cluster 0; 0 = none); :func:`merge_unimodal` (when ``merge_dip`` > 0), then
    :func:`outlier_noise`; ``isosplit``: :func:`isosplit` then
    :func:`outlier_noise`; ``hdbscan``: ``sklearn.cluster.HDBSCAN`` (its own noise);
    ``dbscan``: eps at the knee of the k-distance curve (:func:`kdistance_eps`).

    Raises
    ------
    EphysError
        Unknown method.
    """
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
    if method in ("gmm", "isosplit"):
        if method == "gmm":
            raw, facts = gmm_bic(x, max_k=max_k, seed=seed)
            params = {"method": method, "max_k": int(max_k), "k_bic": facts["k"], "bic": facts["bic"]}
            raw, proba, efacts = merge_entropy(facts["proba"], merge_entropy_gain)
            params.update(efacts)
            ambiguous = proba.max(axis=1) < min_posterior
            raw[ambiguous] = -1
            params.update({"min_posterior": float(min_posterior), "n_ambiguous": int(ambiguous.sum())})
            raw, mfacts = merge_unimodal(x, raw, dip_threshold=merge_dip)
            params.update(mfacts)
        else:
            raw, facts = isosplit(x, seed=seed)
            params = {"method": method, "k_isosplit": facts["k"], "jitter_sd": facts["jitter_sd"]}
        labels, noise = outlier_noise(x, raw, p_outlier=p_outlier, min_cluster_size=min_cluster_size)
        params.update({"min_cluster_size": int(min_cluster_size), **noise})
        return labels, params
    raise EphysError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")


def silhouette(x: np.ndarray, labels: np.ndarray, noise: int = -1, max_n: int = 5000,
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


#: Axona files of a trial that are not tetrode spike files: suffix -> what it is
NOT_TETRODE = {".eeg": "an Axona EEG (LFP) file", ".egf": "an Axona high-rate EEG file",
               ".pos": "an Axona position file", ".set": "an Axona settings file",
               ".cut": "a Tint cut file", ".clu": "a cluster file", ".inp": "an Axona input file",
               ".log": "a log file"}

#: the frozen defaults of ``ephys cluster``: chosen on RatGPS tetrodes 5 and 7 only, by the rule and
#: the candidates of ``benchmarks/bench_cluster.py --table`` (results in benchmarks/results/cluster.json;
#: README): Gaussian mixture + BIC on the standardised log peak-to-trough amplitude of each channel,
#: then the entropy merge step at 0.2 nats per spike (Baudry et al. 2010); no PCA, no isocut merge, no
#: posterior noise rule (fourth round, seed means over seeds 0-2: 3 of issue 13's 4 goals met)
DEFAULTS = CLUSTER_DEFAULTS


#: default size of the ``pca`` / ``autoencoder`` embeddings
EMBED_DIMS = 8


def _check_tetrode_path(path: Path) -> None:
    suffix = path.suffix.lower()
    kind = next((v for k, v in NOT_TETRODE.items() if suffix.startswith(k)), None)
    if kind is not None:
        raise EphysError(f"this is {kind} ({path.suffix}), not a tetrode spike file; "
                         "pass TRIAL.N (N = the tetrode number, e.g. 83812141.5)", path)


def outcome_warning(res: dict) -> str | None:
    """One line when a clustering result is unlikely to be a useful sorting, else None.

    Fewer than two clusters, or more than half of the spikes called noise; the line hints at
    the option to change.
    """
    n, k, noise = res["n_spikes"], res["n_clusters"], res["n_noise"]
    if k < 2:
        return (f"found {k} cluster{'s' if k != 1 else ''} in {n} spikes: no sorting; try --method gmm "
                "--embed features (the default), or fewer --dims / a smaller --min-cluster-size")
    if noise > n / 2:
        return (f"{noise} of {n} spikes ({noise / n:.0%}) called noise: try --method gmm --embed features "
                "(the default), a smaller --min-samples / --min-cluster-size, or fewer --dims")
    return None


def cluster_tetrode(tetrode: str | Path, out_dir: str | Path, cut: str | Path | None = None,
                    method: str = DEFAULTS["method"], features: str = DEFAULTS["features"],
                    n_dims: int | None = None, min_samples: int = 10,
                    min_cluster_size: int = DEFAULTS["min_cluster_size"], seed: int = 0,
                    ae_epochs: int = 60, ae_batch_size: int = 256, ae_lr: float = 1e-3,
                    report: bool = True, max_k: int = DEFAULTS["max_k"],
                    p_outlier: float = DEFAULTS["p_outlier"],
                    kinds: tuple[str, ...] = DEFAULTS["kinds"],
                    merge_dip: float = DEFAULTS["merge_dip"],
                    min_posterior: float = DEFAULTS["min_posterior"],
                    merge_entropy_gain: float = DEFAULTS["merge_entropy_gain"]) -> dict:
    """``ephys cluster``: sort an Axona tetrode file; compare with a Tint cut file if given.

    Parameters
    ----------
    tetrode : Axona tetrode file ``TRIAL.N`` (see :func:`ephys.pipelines.blocks.readers.axona.read_tetrode`)
    out_dir : output folder
    cut : Tint ``.cut`` file of the same tetrode (only compared with, never used to fit)
    method : one of :data:`METHODS` (see :func:`cluster_embedding`); default ``gmm``
    features : the embedding, one of :data:`EMBEDDINGS` (see :func:`spike_features`)
    n_dims : PCA components of the features (default ``DEFAULTS["n_dims"]``, 0 = all) / of the
        waveform, autoencoder bottleneck (default :data:`EMBED_DIMS`)
    min_samples : DBSCAN / HDBSCAN
    min_cluster_size : HDBSCAN; for gmm / isosplit the smallest cluster kept (else noise)
    max_k : largest mixture tried by BIC (gmm)
    p_outlier : the outlier rule of :func:`outlier_noise` (gmm / isosplit)
    kinds : which per-channel features (``features`` embedding), see :func:`waveform_features`
    merge_dip : gmm: isocut dip threshold of the merge step (:func:`merge_unimodal`; 0 = none)
    min_posterior : gmm: spikes whose posterior probability of their component is below this are
        noise (see :func:`cluster_embedding`; 0 = none)
    merge_entropy_gain : gmm: the entropy merge step's threshold, nats per spike (:func:`merge_entropy`;
        0 = none)
    seed : PCA / mixture / autoencoder seed; the result is deterministic for a seed
    ae_epochs, ae_batch_size, ae_lr : autoencoder training (see :func:`autoencoder_embed`)
    report : also write ``OUT/report.html`` and ``OUT/report.md`` (+ ``OUT/report_files/``)

    Writes ``OUT/clusters.csv`` (spike, time_s, cluster; -1 = noise), ``OUT/embedding.npy``
    (float32 (n_spikes, n_features)) and ``OUT/cluster_metrics.json``: parameters,
    ``n_clusters``, ``n_noise``, ``silhouette`` (noise excluded; None with < 2 clusters),
    ``quality`` (per cluster: see :func:`ephys.pipelines.spikes.cluster_quality.cluster_quality`),
    ``warning`` (see :func:`outcome_warning`, or None), ``seconds`` (embedding + clustering), and
    with ``cut``: ``ari``, ``nmi``, ``units_only``, ``confusion`` (table and best match per
    manual unit), the reference's unit count, ``reference.silhouette`` and ``comparison`` (SpikeInterface's
    comparison with the cut's units as ground truth, its cluster 0 left out, noise clusters unsorted:
    per-unit accuracy / precision / recall, well-detected / redundant / over-merged / false-positive
    counts and the agreement matrix; :func:`ephys.pipelines.spikes.compare.compare_to_ground_truth`) and
    ``comparison_units_only`` (the same with the cut's cluster-0 spikes left out of the clusters too,
    without the matrix; as ``units_only``'s ARI). All files are written
    via a temporary name. Returns the metrics dict.

    Raises
    ------
    EphysError
        A file that is not a tetrode file (``.eeg``, ``.pos``, ``.set`` ...), an unreadable tetrode
        or cut file, a cut file of another length, unknown method or embedding, bad settings.
    """
    import time

    from ..blocks.readers.axona import read_cut, read_tetrode
    from .cluster_quality import REFRACTORY_S, cluster_quality, confusion

    if method not in METHODS:
        raise EphysError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    if n_dims is None:
        n_dims = DEFAULTS["n_dims"] if features == "features" else EMBED_DIMS
    if features in ("pca", "autoencoder") and n_dims < 1:
        raise EphysError(f"--dims must be at least 1 for the {features} embedding, got {n_dims}")
    if features not in EMBEDDINGS:
        raise EphysError(f"unknown embedding {features!r}; choose one of {', '.join(EMBEDDINGS)}")
    _check_tetrode_path(Path(tetrode))
    spk = read_tetrode(tetrode)
    if spk.waveforms.shape[0] < 3:
        raise EphysError(f"only {spk.waveforms.shape[0]} spikes in the file: nothing to cluster", tetrode)
    n_spk = int(spk.waveforms.shape[0])
    if method in ("dbscan", "hdbscan") and min_samples >= n_spk:
        raise EphysError(f"--min-samples {min_samples} must be below the number of spikes in the file ({n_spk})",
                         tetrode)
    if method in ("hdbscan", "gmm", "isosplit") and min_cluster_size > n_spk:
        raise EphysError(f"--min-cluster-size {min_cluster_size} is more than the spikes in the file ({n_spk})",
                         tetrode)
    ref = read_cut(cut, len(spk.times_s)) if cut else None
    cmp = None
    info: dict = {}
    t0 = time.perf_counter()
    emb = spike_features(spk.waveforms, features, n_dims, seed, ae_epochs=ae_epochs, ae_batch_size=ae_batch_size,
                         ae_lr=ae_lr, info=info, fs_hz=spk.fs_hz, kinds=tuple(kinds))
    labels, params = cluster_embedding(emb, method, min_samples, min_cluster_size, max_k=max_k,
                                       p_outlier=p_outlier, seed=seed, merge_dip=merge_dip,
                                       min_posterior=min_posterior, merge_entropy_gain=merge_entropy_gain)
    seconds = time.perf_counter() - t0
    try:
        duration = float(str(spk.header.get("duration", "")).split()[0])
    except (ValueError, IndexError):
        duration = float(spk.times_s[-1] - spk.times_s[0]) if spk.times_s.size > 1 else 0.0
    res = {"input": str(Path(tetrode).resolve()), "n_spikes": int(labels.size), "duration_s": duration,
           "embed": features, "n_dims": int(emb.shape[1]), "seed": int(seed),
           "features": features if features == "peaks" else f"{features} {n_dims}",
           **params, "n_clusters": int(len(set(labels.tolist()) - {-1})), "n_noise": int((labels == -1).sum()),
           "silhouette": silhouette(emb, labels, noise=-1, seed=seed),
           "silhouette_rule": "mean silhouette (Euclidean) in the clustered embedding, noise (-1) excluded",
           "seconds": round(seconds, 3)}
    if features == "features":
        res["feature_kinds"] = list(kinds)
        res["feature_names"] = info.pop("feature_names", [])
        if "explained_variance" in info:
            res["feature_pca_explained_variance"] = info.pop("explained_variance")
    elif info:
        res["autoencoder"] = info
    res["quality"] = cluster_quality(spk.waveforms, spk.times_s, labels, duration)
    res["quality_rule"] = (f"isolation distance and L-ratio (Schmitzer-Torbert et al. 2005) in energy + PC1 "
                           f"per live channel; ISI violations < {REFRACTORY_S * 1e3:g} ms; SNR = peak of the "
                           "mean waveform / SD around it, best channel; 'single unit' = isolation distance >= 20, "
                           "L-ratio <= 0.05, ISI violations <= 1 % (a common convention)")
    res["warning"] = outcome_warning(res)
    if ref is not None:
        res["reference"] = {"cut": str(Path(cut).resolve()), "n_units": int(len(set(ref.tolist()) - {0})),
                            "n_noise": int((ref == 0).sum()),
                            "silhouette": silhouette(emb, ref, noise=0, seed=seed)}
        res.update(agreement(labels, ref))
        res["confusion"] = confusion(labels, ref)
        from .compare import compare_labels

        res["comparison"], cmp = compare_labels(spk.times_s, spk.fs_hz, labels, ref, noise=-1, ref_noise=0)
        res["comparison"]["ground_truth"] = "the cut's units (its cluster 0 left out); clusters' noise (-1) unsorted"
        if (ref == 0).any() and (ref != 0).sum() > 1:  # as units_only's ARI: the cut's cluster 0 out of the clusters too
            u = ref != 0
            res["comparison_units_only"], _ = compare_labels(spk.times_s[u], spk.fs_hz, labels[u], ref[u])
            res["comparison_units_only"].pop("agreement")
            res["comparison_units_only"]["ground_truth"] = "as comparison, the cut's cluster-0 spikes left out of " \
                                                           "the clusters too"
    out = Path(out_dir)
    lines = ["spike,time_s,cluster"] + [f"{i},{t:.6f},{c}" for i, (t, c) in enumerate(zip(spk.times_s, labels))]
    write_text(out / "clusters.csv", "\n".join(lines) + "\n")
    write_npy(out / "embedding.npy", emb.astype(np.float32))
    write_json(out / "cluster_metrics.json", res)
    if report:
        from .cluster_report import build_cluster_report

        build_cluster_report(out, res, emb, labels, spk.waveforms, ref, spk.fs_hz, comparison=cmp)
    return res
