"""``ephys cluster``: spike sorting of a tetrode file by clustering."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def cluster(
    tetrode: Path = typer.Argument(..., help="Axona tetrode spike file (TRIAL.N)."),
    out: Path = typer.Argument(None, help="Output folder [default: runs/cluster-<file name>]."),
    cut: Path = typer.Option(None, "--cut", help="Tint .cut file of the same tetrode: report ARI / NMI against it."),
    method: str = typer.Option("hdbscan", "--method", help="hdbscan (sklearn) | dbscan (eps at the knee of the k-distance curve)."),
    features: str = typer.Option("peaks", "--features", help="peaks (peak amplitude per channel) | pca (PCA of the whole waveform, --dims)."),
    dims: int = typer.Option(3, "--dims", min=1, help="PCA dimensions (seed: 3)."),
    min_samples: int = typer.Option(10, "--min-samples", min=1, help="DBSCAN / HDBSCAN min_samples (k of the k-distance curve)."),
    min_cluster_size: int = typer.Option(30, "--min-cluster-size", min=2, help="HDBSCAN smallest cluster."),
):
    """Cluster the spikes of one tetrode; writes OUT/clusters.csv and OUT/cluster_metrics.json
    (with --cut: adjusted Rand index and NMI against the manual sorting)."""
    from ephys.pipelines.cluster import cluster_tetrode

    out = out or common.runs_root() / f"cluster-{tetrode.name}"
    res = cluster_tetrode(tetrode, out, cut, method=method, features=features, n_dims=dims,
                          min_samples=min_samples, min_cluster_size=min_cluster_size)
    msg = f"{res['n_clusters']} clusters, {res['n_noise']} noise spikes of {res['n_spikes']}"
    if "ari" in res:
        msg += f"; vs cut: ARI {res['ari']:.3f}, NMI {res['nmi']:.3f}"
    common.info(msg)
    common.out.print(str(out / "cluster_metrics.json"), highlight=False, markup=False, soft_wrap=True)
