"""The settings of the spikes pipeline's steps, declared once (CLI options, manifest, docs).

Kept free of heavy imports: the command line reads these declarations at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.errors import EphysError
from ..core.params import param

#: the per-channel waveform features of :func:`ephys.pipelines.spikes.cluster.waveform_features`
FEATURE_KINDS = ("peak", "trough", "p2p", "logp2p", "width", "energy", "pc")
#: ``ephys spikes cluster`` defaults, chosen on the two hand-cut tetrodes (see the docs' spikes page)
CLUSTER_DEFAULTS = {"method": "gmm", "features": "features", "n_dims": 0, "max_k": 12, "p_outlier": 1e-3,
                    "min_cluster_size": 30, "kinds": ("logp2p",), "merge_dip": 0.0, "min_posterior": 0.0,
                    "merge_entropy_gain": 0.2}


@dataclass
class SpikesParams:
    """Parameters of ``ephys prepare spikes`` (detection settings apply to a raw trace; the spike
    seed's values by default: band-pass 300-8000 Hz, 50 Hz notch, -3 SD, 1 ms refractory,
    0.4 ms + 1.0 ms snippets)."""

    fs_hz: Optional[float] = param(None, "Sampling rate (required for a raw .npy trace; snippet sets default to "
                                   "the seed's 30000).", unit="Hz", min=0.0, min_exclusive=True)
    normalise: str = param("none", "none (µV) | channel (divide each channel by its own noise level, "
                           "median|x|/0.6745, from that channel's data only).", choices=("none", "channel"))
    band_hz: tuple[float, float] = param((300.0, 8000.0), "Raw trace: band-pass edges LOW HIGH.", unit="Hz",
                                         flag="--band")
    notch_hz: float = param(50.0, "Raw trace: line-noise notch; 0 = none, 60 in the Americas.", unit="Hz",
                            flag="--notch", min=0.0)
    k: float = param(3.0, "Raw trace: threshold = -k x noise.", min=0.0, min_exclusive=True)
    noise: str = param("sd", "Raw trace: noise estimate, sd (the seed) or mad (Quiroga et al. 2004).",
                       choices=("sd", "mad"))
    refractory_ms: float = param(1.0, "Raw trace: refractory period.", unit="ms", min=0.0)
    pre_ms: float = param(0.4, "Snippet start before the crossing.", unit="ms", min=0.0, min_exclusive=True)
    post_ms: float = param(1.0, "Raw trace: snippet end after the crossing.", unit="ms", min=0.0,
                           min_exclusive=True)
    channel: int = param(0, "Raw trace: column of a 2-D .npy or of the NWB ElectricalSeries.", min=0)
    series: Optional[str] = param(None, "NWB: name of the ElectricalSeries in acquisition.",
                                  default_text="the first")


@dataclass
class ClusterParams:
    """``ephys spikes cluster``: spike sorting of one Axona tetrode file by clustering."""

    tetrode: str = param(None, "Axona tetrode spike file (TRIAL.N).", argument=True)
    out: Optional[str] = param(None, "Output folder.", argument=True, default_text="runs/cluster-FILENAME")
    cut: Optional[str] = param(None, "Tint .cut file of the same tetrode: report SpikeInterface's comparison with its "
                               "units as ground truth (per-unit accuracy, agreement matrix), ARI / NMI, a confusion "
                               "table and best matches against it (never used to fit).")
    method: str = param(CLUSTER_DEFAULTS["method"], "gmm (Gaussian mixture, k by BIC) | isosplit (ISO-SPLIT, "
                        "isosplit6) | hdbscan (sklearn) | dbscan (eps at the knee of the k-distance curve).",
                        choices=("gmm", "isosplit", "hdbscan", "dbscan"))
    features: str = param(CLUSTER_DEFAULTS["features"], "features (per-channel features of --feature-kinds, "
                          "standardised) | peaks (peak amplitude per channel) | pca (PCA of the whole waveform) | "
                          "autoencoder (bottleneck of a dense autoencoder fitted to these spikes); --dims sets the "
                          "size.", flag="--embed", choices=("features", "peaks", "pca", "autoencoder"))
    n_dims: Optional[int] = param(None, "PCA components of the features (0 = all) / of the waveform, autoencoder "
                                  "bottleneck.", flag="--dims", min=0, default_text="0 for features, 8 otherwise")
    kinds: tuple[str, ...] = param(CLUSTER_DEFAULTS["kinds"], "Comma-separated per-channel features for --embed "
                                   "features, from peak,trough,p2p,logp2p,width,energy,pc.", flag="--feature-kinds",
                                   list_sep=",")
    merge_dip: float = param(CLUSTER_DEFAULTS["merge_dip"], "gmm: merge clusters with no isocut dip below this "
                             "score along their discriminant axis whose union is better isolated (0 = no merge).",
                             min=0.0)
    min_posterior: float = param(CLUSTER_DEFAULTS["min_posterior"], "gmm: spikes whose posterior probability of "
                                 "their component is below this are noise (0 = none).", min=0.0, max=1.0)
    merge_entropy_gain: float = param(CLUSTER_DEFAULTS["merge_entropy_gain"], "gmm: merge mixture components by "
                                      "the entropy criterion (Baudry et al. 2010) while a merge lowers the posterior "
                                      "entropy by at least this many nats per spike (0 = none).",
                                      flag="--merge-entropy", min=0.0)
    max_k: int = param(CLUSTER_DEFAULTS["max_k"], "gmm: largest number of components tried by BIC.", min=1)
    p_outlier: float = param(CLUSTER_DEFAULTS["p_outlier"], "gmm / isosplit noise rule: spikes beyond the "
                             "chi-square 1 - p quantile of their cluster's Mahalanobis distance are noise.",
                             min=0.0, max=1.0)
    min_samples: int = param(10, "DBSCAN / HDBSCAN min_samples (k of the k-distance curve).", min=1)
    min_cluster_size: int = param(CLUSTER_DEFAULTS["min_cluster_size"], "Smallest cluster (HDBSCAN; gmm / "
                                  "isosplit: smaller clusters are noise).", min=2)
    seed: int = param(0, "Seed of the PCA solver, the mixture and the autoencoder.", min=0)
    ae_epochs: int = param(60, "Autoencoder training passes.", min=1)
    ae_batch_size: int = param(256, "Autoencoder mini-batch size.", min=1)
    ae_lr: float = param(1e-3, "Autoencoder Adam learning rate (seed: 1e-3).", min=0.0, min_exclusive=True)
    force: bool = param(False, "Replace OUT when it holds other output (a run, another tetrode's or other "
                        "settings' clusters).")

    def check(self):
        bad = [k for k in self.kinds if k not in FEATURE_KINDS]
        if bad or not self.kinds:
            raise EphysError(f"--feature-kinds must be among {', '.join(FEATURE_KINDS)}, not "
                             f"{', '.join(bad) or 'none'}")
        return self


#: ``ephys spikes sort`` defaults, chosen on generated ground-truth recordings (benchmarks/bench_sorting.py)
SORT_DEFAULTS = {"k": 3.5, "exclude_ms": 0.4, "ms_before": 0.5, "ms_after": 1.0, "n_neighbours": 8, "n_pcs": 8,
                 "method": "isosplit", "min_cluster_size": 30, "merge_distance": 0.15, "duplicate_ms": 1.0}


@dataclass
class SortParams:
    """``ephys spikes sort``: spike sorting of a continuous recording."""

    recording: str = param(None, "Continuous recording: a SpikeInterface folder, .nwb, Axona .set, Intan .rhd/.rhs, "
                           "an Open Ephys or SpikeGLX folder, or .npy (samples x channels, µV, with --fs-hz).",
                           argument=True)
    out: Optional[str] = param(None, "Output folder.", argument=True, default_text="runs/sort-FILENAME")
    fs_hz: Optional[float] = param(None, "Sampling rate of a .npy recording.", unit="Hz", min=0.0, min_exclusive=True)
    probe: Optional[str] = param(None, "probeinterface JSON or .prb file of the channels' geometry (default: the "
                                 "file's own; a tetrode for 4 channels, else a linear 20 µm layout).")
    band_hz: tuple[float, float] = param((300.0, 6000.0), "Band-pass edges LOW HIGH.", unit="Hz", flag="--band")
    notch_hz: float = param(0.0, "Line-noise notch; 0 = none.", unit="Hz", flag="--notch", min=0.0)
    cmr: str = param("auto", "Common median reference: auto (only with more than 4 channels) | median | none.",
                     choices=("auto", "median", "none"))
    whiten: bool = param(False, "Whiten the channels (global) before detection.")
    k: float = param(SORT_DEFAULTS["k"], "Detection threshold, multiples of each channel's noise (MAD / 0.6745).",
                     min=0.0, min_exclusive=True)
    exclude_ms: float = param(SORT_DEFAULTS["exclude_ms"], "A peak must be the lowest within this time and its "
                              "channel's neighbourhood.", unit="ms", min=0.0, min_exclusive=True)
    ms_before: float = param(SORT_DEFAULTS["ms_before"], "Snippet start before the peak.", unit="ms", min=0.0,
                             min_exclusive=True)
    ms_after: float = param(SORT_DEFAULTS["ms_after"], "Snippet end after the peak.", unit="ms", min=0.0,
                            min_exclusive=True)
    n_neighbours: int = param(SORT_DEFAULTS["n_neighbours"], "Channels per neighbourhood (nearest, itself "
                              "included); a recording with this many channels or fewer is one group.", min=1)
    n_pcs: int = param(SORT_DEFAULTS["n_pcs"], "PCA components of a neighbourhood's snippets.", min=1)
    method: str = param(SORT_DEFAULTS["method"], "isosplit (ISO-SPLIT, isosplit6) | gmm (the Gaussian mixture of "
                        "`ephys spikes cluster`).", choices=("isosplit", "gmm"))
    min_cluster_size: int = param(SORT_DEFAULTS["min_cluster_size"], "Smaller clusters are left unsorted.", min=2)
    merge_distance: float = param(SORT_DEFAULTS["merge_distance"], "Merge clusters whose mean waveforms differ by "
                                  "less than this (relative L2, best of +-3 samples; 0 = no merge).", min=0.0)
    duplicate_ms: float = param(SORT_DEFAULTS["duplicate_ms"], "Remove units more than half of whose spikes lie "
                                "within this time of a deeper unit's spikes (echoes on a probe; 0 = keep all).",
                                unit="ms", min=0.0)
    metrics: bool = param(True, "Compute SpikeInterface's quality metrics (--no-metrics: counts and rates only).")
    ground_truth: Optional[str] = param(None, "A SpikeInterface sorting folder (loadable with spikeinterface.load) of "
                                        "the same recording: score the sorting against it with SpikeInterface's "
                                        "comparison (per-unit accuracy, agreement matrix) in sort.json and the report.")
    seed: int = param(0, "Seed of the noise estimate, the PCA and the clustering.", min=0)
    force: bool = param(False, "Replace OUT when it holds other output.")
