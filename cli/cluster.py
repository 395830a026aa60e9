"""``ephys cluster``: spike sorting of a tetrode file by clustering."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def cluster(
    tetrode: Path = typer.Argument(..., help="Axona tetrode spike file (TRIAL.N)."),
    out: Path = typer.Argument(None, help="Output folder [default: runs/cluster-<file name>]."),
    cut: Path = typer.Option(None, "--cut", help="Tint .cut file of the same tetrode: report ARI / NMI against it (never used to fit)."),
    method: str = typer.Option("hdbscan", "--method", help="hdbscan (sklearn) | dbscan (eps at the knee of the k-distance curve)."),
    embed: str = typer.Option("peaks", "--embed", "--features", help="peaks (peak amplitude per channel) | pca (PCA of the whole waveform) | autoencoder (bottleneck of a dense autoencoder fitted to these spikes); --dims sets the size."),
    dims: int = typer.Option(3, "--dims", min=1, help="PCA components / autoencoder bottleneck (seed: 3)."),
    min_samples: int = typer.Option(10, "--min-samples", min=1, help="DBSCAN / HDBSCAN min_samples (k of the k-distance curve)."),
    min_cluster_size: int = typer.Option(30, "--min-cluster-size", min=2, help="HDBSCAN smallest cluster."),
    seed: int = typer.Option(0, "--seed", help="Seed of the PCA solver and the autoencoder (initialisation, batch order)."),
    ae_epochs: int = typer.Option(60, "--ae-epochs", min=1, help="Autoencoder training passes."),
    ae_batch_size: int = typer.Option(256, "--ae-batch-size", min=1, help="Autoencoder mini-batch size."),
    ae_lr: float = typer.Option(1e-3, "--ae-lr", help="Autoencoder Adam learning rate (seed: 1e-3)."),
):
    """Cluster the spikes of one tetrode; writes OUT/clusters.csv, OUT/embedding.npy,
    OUT/cluster_metrics.json (silhouette; with --cut: adjusted Rand index and NMI against the
    manual sorting) and OUT/report.html / report.md."""
    if embed == "autoencoder":
        common.import_backend()
    from ephys.pipelines.spikes.cluster import cluster_tetrode

    out = out or common.runs_root() / f"cluster-{tetrode.name}"
    res = cluster_tetrode(tetrode, out, cut, method=method, features=embed, n_dims=dims,
                          min_samples=min_samples, min_cluster_size=min_cluster_size, seed=seed,
                          ae_epochs=ae_epochs, ae_batch_size=ae_batch_size, ae_lr=ae_lr)
    sil = res.get("silhouette")
    msg = (f"{res['n_clusters']} clusters, {res['n_noise']} noise spikes of {res['n_spikes']}; silhouette "
           + ("n/a" if sil is None else f"{sil:.3f}"))
    if "ari" in res:
        msg += f"; vs cut: ARI {res['ari']:.3f}, NMI {res['nmi']:.3f}"
    common.info(msg)
    common.out.print(str(out / "cluster_metrics.json"), highlight=False, markup=False, soft_wrap=True)
