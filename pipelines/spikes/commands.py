"""The spikes pipeline's extra commands: ``ephys spikes cluster`` and ``ephys spikes sort``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path


def cluster(p, ctx) -> Path:
    """Cluster the spikes of one tetrode (:func:`.cluster.cluster_tetrode`); prints a one-line
    summary and returns ``OUT/cluster_metrics.json``."""
    if p.features == "autoencoder":
        from ..core.errors import EphysError

        if not Path(p.tetrode).is_file():  # before the deep-learning import
            raise EphysError("no such Axona tetrode file", p.tetrode)
        ctx.import_backend()
    from ..core.outputs import OutputFolder
    from .cluster import cluster_tetrode

    kw = {k: v for k, v in asdict(p).items() if k not in ("tetrode", "out", "cut", "force") and v is not None}
    out = Path(p.out) if p.out else ctx.runs_root / f"cluster-{Path(p.tetrode).name}"
    with OutputFolder.of_params(out, "spikes cluster", p, ("tetrode", "cut"), log=ctx.notice):
        res = cluster_tetrode(Path(p.tetrode), out, Path(p.cut) if p.cut else None, **kw)
    sil = res.get("silhouette")
    msg = (f"{res['n_clusters']} clusters, {res['n_noise']} noise spikes of {res['n_spikes']}; silhouette "
           + ("n/a" if sil is None else f"{sil:.3f}"))
    if "ari" in res:
        msg += f"; vs cut: ARI {res['ari']:.3f}, NMI {res['nmi']:.3f}"
        if "units_only" in res:
            msg += f", units only ARI {res['units_only']['ari']:.3f}"
    if "comparison" in res:
        from .compare import summary_line

        msg += f"; {summary_line(res['comparison'])}"
        if "comparison_units_only" in res:
            cu = res["comparison_units_only"]
            msg += f"; units only: mean accuracy {cu['mean_accuracy']:.3f}, {cu['well_detected']} well detected"
    ctx.info(msg)
    if res.get("warning"):
        ctx.notice(f"warning: {res['warning']}")
    return out / "cluster_metrics.json"


def sort(p, ctx) -> Path:
    """Sort a continuous recording (:func:`.sort.sort_recording`); prints a one-line summary and
    returns ``OUT/sort.json``."""
    from ..core.errors import EphysError
    from ..core.outputs import OutputFolder

    if not Path(p.recording).exists():  # before the SpikeInterface import
        raise EphysError("no such recording", p.recording)
    from .sort import sort_recording

    kw = {k: v for k, v in asdict(p).items()
          if k not in ("recording", "out", "fs_hz", "probe", "band_hz", "notch_hz", "cmr", "whiten", "metrics",
                       "force", "ground_truth")}
    out = Path(p.out) if p.out else ctx.runs_root / f"sort-{Path(p.recording).name}"
    if p.ground_truth and not Path(p.ground_truth).exists():
        raise EphysError("no such ground-truth sorting folder (--ground-truth)", p.ground_truth)
    with OutputFolder.of_params(out, "spikes sort", p, ("recording", "probe", "ground_truth"), log=ctx.notice):
        res = sort_recording(p.recording, out, fs_hz=p.fs_hz, probe=p.probe, band_hz=tuple(p.band_hz),
                             notch_hz=p.notch_hz, cmr=p.cmr, whiten=p.whiten, metrics=p.metrics,
                             ground_truth=p.ground_truth, **kw)
    msg = (f"{res['n_units']} units from {res['n_peaks']} peaks ({res['n_sorted_spikes']} sorted) on "
           f"{res['n_channels']} channels, {res['duration_s']:.1f} s; sorting {res['seconds_sort']:.1f} s")
    if "comparison" in res:
        from .compare import summary_line

        msg += f"; vs ground truth: {summary_line(res['comparison'])}"
    ctx.info(msg)
    return out / "sort.json"
