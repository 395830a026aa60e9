"""``ephys cluster``: spike sorting of a tetrode file by clustering."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def cluster(
    tetrode: Path = typer.Argument(..., help="Axona tetrode spike file (TRIAL.N)."),
    out: Path = typer.Argument(None, help="Output folder [default: runs/cluster-<file name>]."),
    cut: Path = typer.Option(None, "--cut", help="Tint .cut file of the same tetrode: report ARI / NMI, a confusion table and best matches against it (never used to fit)."),
    method: str = typer.Option(None, "--method", help="gmm (Gaussian mixture, k by BIC; default) | isosplit (ISO-SPLIT, isosplit6) | hdbscan (sklearn) | dbscan (eps at the knee of the k-distance curve)."),
    embed: str = typer.Option(None, "--embed", "--features", help="features (per-channel features of --feature-kinds, standardised; default) | peaks (peak amplitude per channel) | pca (PCA of the whole waveform) | autoencoder (bottleneck of a dense autoencoder fitted to these spikes); --dims sets the size."),
    dims: int = typer.Option(None, "--dims", min=0, help="PCA components of the features (0 = all, the default for features) / of the waveform, autoencoder bottleneck."),
    kinds: str = typer.Option(None, "--feature-kinds", help="Comma-separated per-channel features for --embed features, from peak,trough,p2p,logp2p,width,energy,pc [default: see README]."),
    merge_dip: float = typer.Option(None, "--merge-dip", min=0.0, help="gmm: merge clusters with no isocut dip below this score along their discriminant axis whose union is better isolated (0 = no merge) [default: see README]."),
    min_posterior: float = typer.Option(None, "--min-posterior", min=0.0, max=1.0, help="gmm: spikes whose posterior probability of their component is below this are noise (0 = none) [default: see README]."),
    merge_entropy: float = typer.Option(None, "--merge-entropy", min=0.0, help="gmm: merge mixture components by the entropy criterion (Baudry et al. 2010) while a merge lowers the posterior entropy by at least this many nats per spike (0 = none) [default: see README]."),
    max_k: int = typer.Option(None, "--max-k", min=1, help="gmm: largest number of components tried by BIC [default: 12]."),
    p_outlier: float = typer.Option(None, "--p-outlier", help="gmm / isosplit noise rule: spikes beyond the chi-square 1 - p quantile of their cluster's Mahalanobis distance are noise [default: 0.001]."),
    min_samples: int = typer.Option(10, "--min-samples", min=1, help="DBSCAN / HDBSCAN min_samples (k of the k-distance curve)."),
    min_cluster_size: int = typer.Option(None, "--min-cluster-size", min=2, help="Smallest cluster (HDBSCAN; gmm / isosplit: smaller clusters are noise) [default: 30]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the PCA solver, the mixture and the autoencoder."),
    ae_epochs: int = typer.Option(60, "--ae-epochs", min=1, help="Autoencoder training passes."),
    ae_batch_size: int = typer.Option(256, "--ae-batch-size", min=1, help="Autoencoder mini-batch size."),
    ae_lr: float = typer.Option(1e-3, "--ae-lr", help="Autoencoder Adam learning rate (seed: 1e-3)."),
):
    """Cluster the spikes of one tetrode; writes OUT/clusters.csv, OUT/embedding.npy,
    OUT/cluster_metrics.json (quality per cluster: isolation distance, L-ratio, ISI violations,
    SNR, rate; with --cut: ARI / NMI, confusion table, best matches) and OUT/report.html / .md."""
    if embed == "autoencoder":
        common.import_backend()
    from ephys.pipelines.spikes.cluster import cluster_tetrode

    given = {"method": method, "features": embed, "n_dims": dims, "max_k": max_k, "p_outlier": p_outlier,
             "min_cluster_size": min_cluster_size, "merge_dip": merge_dip, "min_posterior": min_posterior,
             "merge_entropy_gain": merge_entropy,
             "kinds": tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else None}
    out = out or common.runs_root() / f"cluster-{tetrode.name}"
    res = cluster_tetrode(tetrode, out, cut, min_samples=min_samples, seed=seed, ae_epochs=ae_epochs,
                          ae_batch_size=ae_batch_size, ae_lr=ae_lr,
                          **{k: v for k, v in given.items() if v is not None})
    sil = res.get("silhouette")
    msg = (f"{res['n_clusters']} clusters, {res['n_noise']} noise spikes of {res['n_spikes']}; silhouette "
           + ("n/a" if sil is None else f"{sil:.3f}"))
    if "ari" in res:
        msg += f"; vs cut: ARI {res['ari']:.3f}, NMI {res['nmi']:.3f}"
        if "units_only" in res:
            msg += f", units only ARI {res['units_only']['ari']:.3f}"
    common.info(msg)
    if res.get("warning"):
        common.notice(f"warning: {res['warning']}")
    common.out.print(str(out / "cluster_metrics.json"), highlight=False, markup=False, soft_wrap=True)
