"""``--stream``: the cells of ``prepare scalograms`` / ``prepare features`` as remote NWB files.

INPUT (with ``--stream``) is one of

* an ``http(s)://`` URL of one NWB file (one cell);
* a text file of URLs, one per line (``#`` comments and blank lines ignored);
* a dandiset identifier (``000020``, ``DANDI:000020``, optionally ``/<version>``): its
  ``.nwb`` assets (``--include`` glob evaluated by the DANDI server, ``--limit`` the first N in
  path order), each read from its download URL (the archive redirects to the S3 object) through
  :mod:`ephys.pipelines.blocks.readers.remote` (remfile + h5py: only the bytes of the sweeps used).

Labels: an optional ``path,label`` CSV whose ``path`` is the URL or the asset path (``unknown`` or
empty = unlabelled). Cell ids: a slug of the asset path (or URL path) without ``.nwb``.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from ..core.errors import EphysError

_DANDISET = re.compile(r"^(?:DANDI:)?(\d{6})(?:/([\w.]+))?$", re.IGNORECASE)


def stream_cells(source: str, labels_csv: str | Path | None = None, include: str | None = None,
                 limit: int | None = None, api_url: str | None = None):
    """``(cells, skipped)`` for a streamed INPUT (see the module docstring).

    ``cells``: :class:`~ephys.pipelines.blocks.readers.patchclamp.CellSource` with ``paths =
    [url]`` (a string), ``source`` the asset path or URL; ``skipped``: ``[]`` (nothing is
    fetched here).

    Raises
    ------
    EphysError
        An INPUT that is none of the three forms, a URL list without URLs, an unknown dandiset
        (the DANDI client's reason), or no NWB asset left after ``--include`` / ``--limit``.
    """
    from ..blocks.readers.patchclamp import CellSource, _IdMaker

    source = str(source).strip()
    labels = _labels(labels_csv) if labels_csv else {}
    entries: list[tuple[str, str]] = []  # (url, name)
    if source.startswith(("http://", "https://")):
        entries = [(source, urllib.parse.urlsplit(source).path)]
    elif _DANDISET.match(source):
        entries = _dandiset_entries(source, include, limit, api_url)
    elif Path(source).is_file():
        for line in Path(source).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                if not line.startswith(("http://", "https://")):
                    raise EphysError(f"--stream URL list: {line!r} is not an http(s) URL", source)
                entries.append((line, urllib.parse.urlsplit(line).path))
        if not entries:
            raise EphysError("--stream URL list names no URL", source)
    else:
        raise EphysError("--stream INPUT must be an http(s) URL, a file listing URLs, or a dandiset id "
                         "such as 000020", source)
    if limit is not None and not _DANDISET.match(source):
        entries = entries[:max(0, int(limit))]
    ids = _IdMaker()
    cells = []
    for url, name in entries:
        stem = re.sub(r"\.nwb$", "", name.strip("/"), flags=re.IGNORECASE)
        label = labels.get(url, labels.get(name.strip("/")))
        cells.append(CellSource(ids.make(stem), [url], label, name.strip("/") or url))
    return cells, []


def _dandiset_entries(source: str, include, limit, api_url) -> list[tuple[str, str]]:
    from . import dandi as D

    m = _DANDISET.match(source)
    dandiset, version = m.group(1), m.group(2) or "draft"
    D._quiet_dandi_logs()
    client = D.dandi_client(api_url)
    ds = D._get_dandiset(client, dandiset, version)
    assets = D._select_assets(ds, None, include, limit)
    entries = [(a.base_download_url, a.path) for a in assets if a.path.lower().endswith(".nwb")]
    if not entries:
        raise EphysError(f"dandiset {dandiset} has no .nwb asset"
                         + (f" matching {include!r}" if include else ""), client.api_url)
    return entries


def _labels(csv_path) -> dict[str, str | None]:
    import pandas as pd

    p = Path(csv_path)
    if not p.is_file():
        raise EphysError("labels CSV not found", p)
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    if "path" not in df.columns or "label" not in df.columns:
        raise EphysError("labels CSV needs columns 'path' and 'label'", p)
    out = {}
    for path, lab in zip(df["path"], df["label"]):
        lab = lab.strip()
        out[path.strip().strip("/") if not path.startswith("http") else path.strip()] = \
            None if lab in ("", "unknown") else lab
    return out
