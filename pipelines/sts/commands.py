"""The sts pipeline's extra commands: ``ephys fetch dandi`` and ``ephys fetch allen``."""

from __future__ import annotations

from pathlib import Path


def _split_ids(values) -> list[str]:
    """``--specimens 1 2,3`` style lists: split on commas and whitespace."""
    ids = []
    for v in values or []:
        ids.extend(x for x in str(v).replace(",", " ").split() if x)
    return ids


def fetch_dandi(p, ctx) -> Path:
    """Download NWB files of a DANDI dandiset (:func:`.dandi.fetch_dandi`); returns OUT."""
    from .dandi import fetch_dandi as run

    out = Path(p.out) if p.out else ctx.data_root / "raw" / "dandi" / p.dandiset
    with ctx.progress("fetching DANDI assets") as advance:
        res = run(out, dandiset=p.dandiset, version=p.version, limit=p.limit, include=p.include,
                  specimens=_split_ids(p.specimens), jobs=p.jobs, api_url=p.api_url, file_manifest=p.file_manifest,
                  progress=lambda done, total, path: advance(1, text=path, total=total))
    ctx.info(f"{res.n_downloaded} downloaded, {res.n_skipped} already complete; manifest {res.manifest}")
    return out


def fetch_allen(p, ctx) -> Path:
    """The Allen Cell Types specimen table, per-cell NWB files and labels (:func:`.allen.fetch_allen`)."""
    from .allen import fetch_allen as run

    out = Path(p.out) if p.out else ctx.data_root / "raw" / "allen"
    with ctx.progress("fetching Allen NWB files") as advance:
        res = run(out, features=p.features, nwb=_split_ids(p.nwb), api_url=p.api_url, refresh=p.refresh,
                  progress=lambda done, total, sid: advance(1, text=sid, total=total))
    n_dl = sum(v == "downloaded" for v in res.nwb.values())
    ctx.info(f"{res.n_cells} cells in the specimen table; {n_dl} NWB downloaded, {len(res.nwb) - n_dl} already there")
    return out
