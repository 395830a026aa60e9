"""Fetch NWB files from the DANDI Archive (default: dandiset 000020, Allen mouse Patch-seq).

All DANDI traffic goes through the ``dandi`` client (:class:`dandi.dandiapi.DandiAPIClient`):
dandiset and version lookup, the asset listing (paginated), each asset's metadata (size and
digests) and the download itself (``RemoteAsset.get_download_file_iter``, which follows the
``/assets/<id>/download/`` redirect to the blob store and sends ``Range`` to resume). Checksums
use dandi's own helpers (``dandischema``'s ``DandiETag`` for ``dandi:dandi-etag``, the
``Digester`` of ``dandi.support.digests`` for ``dandi:sha2-256``).

Why not ``dandi.download.download``? It renames a finished download onto its final name
*before* verifying the checksum (a corrupt file then looks complete) and retries a dropped
connection up to 10 times with long back-off, which does not fit the one-line-error contract.
The loop here keeps dandi's API for every request and adds: a hidden ``.<name>.part`` file
resumed with ``Range`` on the next attempt or the next run, a digest check before the rename,
and a final name that only ever holds verified bytes.

Sources: DANDI REST API (https://api.dandiarchive.org/swagger/), dandi-cli Python API
(https://dandi.readthedocs.io/en/latest/modref/dandiapi.html), the Allen Patch-seq file
manifest (Gouwens et al. 2020, Cell 183:935; distributed with IPFX, see ``FILE_MANIFEST_URL``).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from ..core.atomic import atomic_path
from ..core.errors import EphysError

#: the real archive's API root (dandi's known instance "dandi")
DANDI_API_URL = "https://api.dandiarchive.org/api"
#: environment variable overriding :data:`DANDI_API_URL` (a mirror, or a local test double)
API_URL_ENV = "EPHYS_DANDI_API_URL"
DEFAULT_DANDISET = "000020"
#: The DANDI 000020 file manifest (which NWB file holds which Allen cell specimen), as
#: distributed by the Allen Institute with IPFX (``ipfx/data_release/``, see the IPFX "Data
#: Access" page). Not reachable from the machine this was written on, so not verified here;
#: ``--file-manifest PATH_OR_URL`` (or ``$EPHYS_DANDI_FILE_MANIFEST``) points elsewhere.
FILE_MANIFEST_URL = ("https://raw.githubusercontent.com/AllenInstitute/ipfx/master/"
                     "ipfx/data_release/2020-06-26_mouse_file_manifest.csv")
FILE_MANIFEST_ENV = "EPHYS_DANDI_FILE_MANIFEST"
FILE_MANIFEST_NAME = "2020-06-26_mouse_file_manifest.csv"
#: written into OUT after every successful fetch
MANIFEST_NAME = "fetch_manifest.csv"
MANIFEST_COLUMNS = ("path", "asset_id", "size", "checksum_type", "checksum", "specimen_id",
                    "status", "mtime_ns")
#: attempts per file within one run (each resumes where the last stopped)
DOWNLOAD_ATTEMPTS = 3
RETRY_SLEEP_S = 0.5
HTTP_TIMEOUT_S = 60
#: bytes per read from the download stream; a dropped connection loses at most one chunk
#: (dandi's default, 8 MiB, would lose up to that much per drop)
CHUNK_BYTES = 1 << 16
SHA256 = "dandi:sha2-256"
ETAG = "dandi:dandi-etag"

_STOP = threading.Event()


@dataclass
class AssetRecord:
    """One row of ``fetch_manifest.csv``: where a file went and how it was verified."""

    path: str
    asset_id: str
    size: int
    checksum_type: str
    checksum: str
    specimen_id: str = ""
    status: str = ""
    mtime_ns: int = 0


@dataclass
class FetchResult:
    """What :func:`fetch_dandi` did: the output folder, one record per asset, the manifest."""

    out: Path
    records: list[AssetRecord] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def n_downloaded(self) -> int:
        return sum(r.status == "downloaded" for r in self.records)

    @property
    def n_skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.records)


# --------------------------------------------------------------------------- file manifest


def read_file_manifest(source: str | Path, cache_dir: Path | None = None) -> dict[str, list[dict]]:
    """Read the Allen Patch-seq file manifest; map cell specimen id -> its DANDI NWB rows.

    Parameters
    ----------
    source : str | Path
        A local CSV, or an ``http(s)://`` / ``file://`` URL (fetched with urllib). Columns used:
        ``file_name``, ``file_size`` (bytes), ``sha256_checksum``, ``file_type`` (``nwb``),
        ``archive`` (``DANDI``), ``cell_specimen_id``.
    cache_dir : Path | None
        When the source is a URL, the downloaded CSV is kept here (written atomically) and
        reused on the next run.

    Returns
    -------
    dict
        ``{specimen_id: [{"file_name", "asset_path", "size", "sha256"}, ...]}``; the asset
        path is ``sub-<subject>/<file_name>`` (the dandiset's BIDS-like layout).

    Raises
    ------
    EphysError
        Unreachable URL or HTTP error, missing file, or a CSV without the columns above.
    """
    text = _read_text_source(source, cache_dir)
    reader = csv.DictReader(io.StringIO(text))
    need = {"file_name", "file_type", "archive", "cell_specimen_id"}
    if not reader.fieldnames or not need <= set(reader.fieldnames):
        raise EphysError(f"not a DANDI file manifest: needs columns {', '.join(sorted(need))}", source)
    by_specimen: dict[str, list[dict]] = {}
    for row in reader:
        if row.get("file_type", "").lower() != "nwb" or row.get("archive", "").upper() != "DANDI":
            continue
        name = row["file_name"].strip()
        m = re.match(r"(sub-[^_/]+)_", name)
        if not m:
            continue
        by_specimen.setdefault(row["cell_specimen_id"].strip(), []).append({
            "file_name": name,
            "asset_path": f"{m.group(1)}/{name}",
            "size": int(row["file_size"]) if row.get("file_size", "").strip().isdigit() else None,
            "sha256": (row.get("sha256_checksum") or "").strip().lower(),
        })
    if not by_specimen:
        raise EphysError("file manifest lists no NWB file archived on DANDI", source)
    return by_specimen


def _read_text_source(source: str | Path, cache_dir: Path | None) -> str:
    s = str(source)
    if re.match(r"^(https?|file)://", s):
        cached = cache_dir / FILE_MANIFEST_NAME if cache_dir is not None else None
        if cached is not None and cached.is_file() and s.startswith("http"):
            return cached.read_text(encoding="utf-8")
        try:
            with urllib.request.urlopen(s, timeout=HTTP_TIMEOUT_S) as resp:
                data = resp.read()
        except urllib.error.HTTPError as e:
            raise EphysError(f"cannot download the file manifest: HTTP {e.code} {e.reason}", s) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EphysError(f"cannot download the file manifest: {reason}", s) from None
        text = data.decode("utf-8", errors="replace")
        if cached is not None and s.startswith("http"):
            with atomic_path(cached) as tmp:
                tmp.write_bytes(data)
        return text
    p = Path(s)
    if not p.is_file():
        raise EphysError("no such file (the DANDI file manifest)", p)
    return p.read_text(encoding="utf-8", errors="replace")


def specimen_assets(manifest: dict[str, list[dict]], specimens: Iterable[str | int],
                    source: str | Path = "file manifest") -> list[tuple[str, dict]]:
    """``[(specimen_id, row), ...]`` for the requested ids, in the given order.

    Raises ``EphysError`` naming the first id the manifest does not know.
    """
    out = []
    for sid in specimens:
        key = str(sid).strip()
        if key not in manifest:
            raise EphysError(f"unknown cell specimen id {key}: no NWB file for it in the DANDI "
                             f"file manifest ({source})")
        out.extend((key, row) for row in manifest[key])
    return out


# --------------------------------------------------------------------------- digests


def expected_digest(metadata: dict) -> tuple[str, str]:
    """(type, value) of the digest to verify against: sha256 if DANDI has one, else dandi-etag.

    ``metadata`` is an asset's raw DANDI metadata (``RemoteAsset.get_raw_metadata()``), whose
    ``digest`` maps ``"dandi:sha2-256"`` / ``"dandi:dandi-etag"`` to hex strings. Returns
    ``("", "")`` when neither is present (the size is then the only check).
    """
    digests = metadata.get("digest") or {}
    for key in (SHA256, ETAG):
        if digests.get(key):
            return key, str(digests[key]).lower()
    return "", ""


def file_digest(path: Path, digest_type: str) -> str:
    """The ``digest_type`` digest of a local file, with dandi's own helpers (hex, lower case).

    ``dandi:sha2-256`` -> ``dandi.support.digests.Digester(["sha256"])``; ``dandi:dandi-etag``
    -> ``dandischema.digests.dandietag.DandiETag.from_file`` (the S3 multipart ETag DANDI
    computes, ``<md5-of-part-md5s>-<n_parts>``). Uncached: a file changed in place is re-read.
    """
    if digest_type == SHA256:
        from dandi.support.digests import Digester

        return Digester(["sha256"], blocksize=1 << 20)(path)["sha256"].lower()
    if digest_type == ETAG:
        from dandischema.digests.dandietag import DandiETag

        return DandiETag.from_file(path).as_str().lower()
    raise ValueError(f"unknown digest type {digest_type!r}")


# --------------------------------------------------------------------------- client


def _quiet_dandi_logs() -> None:
    """dandi logs HTTP failures at ERROR on the "dandi" logger; with no handler configured,
    Python's last-resort handler would print them on stderr next to our one-line error."""
    lg = logging.getLogger("dandi")
    if not any(isinstance(h, logging.NullHandler) for h in lg.handlers):
        lg.addHandler(logging.NullHandler())
    lg.propagate = False


def dandi_client(api_url: str | None = None):
    """A ``DandiAPIClient`` for ``api_url`` (default ``$EPHYS_DANDI_API_URL`` or the archive).

    ``DandiAPIClient(api_url=...)`` asks the server for ``/server-info`` (``/api/info/`` for
    a known instance) to learn its services; a server that answers neither raises here.
    """
    from dandi.dandiapi import DandiAPIClient

    _quiet_dandi_logs()
    url = (api_url or os.environ.get(API_URL_ENV) or DANDI_API_URL).rstrip("/")
    try:
        return DandiAPIClient(api_url=url)
    except Exception as e:  # RuntimeError (no server info), requests errors, version errors
        raise EphysError(f"cannot reach the DANDI API: {_short(e)}", url) from None


def _net_reason(e: BaseException) -> str:
    """A short reason for a failed transfer (requests' own text nests urllib3 reprs)."""
    import requests

    if isinstance(e, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in str(e):
        return "connection dropped"
    if isinstance(e, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(e, requests.exceptions.ConnectionError):
        return "connection failed"
    return _short(e)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:300] + "..."


# --------------------------------------------------------------------------- fetch


def fetch_dandi(
    out: str | Path,
    dandiset: str = DEFAULT_DANDISET,
    version: str = "draft",
    limit: int | None = None,
    include: str | None = None,
    specimens: list[str] | None = None,
    jobs: int = 4,
    api_url: str | None = None,
    file_manifest: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> FetchResult:
    """Download (or verify) a dandiset's files into ``out``, resumably and in parallel.

    Parameters
    ----------
    out : folder; each asset goes to ``out/<asset path>`` (e.g.
        ``sub-599387254/sub-599387254_ses-601506492_icephys.nwb``).
    dandiset, version : DANDI identifier (``"000020"``) and version (``"draft"`` or a published
        version such as ``"0.210913.1639"``).
    limit : at most this many assets (in path order) after filtering.
    include : a glob on the asset path, evaluated by the server (``?glob=``), e.g. ``"*.nwb"``.
    specimens : Allen cell specimen ids; mapped to asset paths with the file manifest.
    jobs : parallel downloads (threads).
    api_url : DANDI API root; default ``$EPHYS_DANDI_API_URL`` or :data:`DANDI_API_URL`.
    file_manifest : path or URL of the Allen file manifest; default
        ``$EPHYS_DANDI_FILE_MANIFEST`` or :data:`FILE_MANIFEST_URL`. Read only with
        ``specimens`` or when given explicitly (then ``specimen_id`` is filled in).
    progress : called as ``progress(done, total, path)`` after each file.

    Behaviour: a file already at its final name with DANDI's size and digest is skipped (the
    digest is recomputed unless ``fetch_manifest.csv`` records the same size and mtime for
    it); a file with a wrong size or digest is fetched again; an interrupted download
    continues from ``.<name>.part`` (HTTP ``Range``). Verified bytes are renamed onto the final
    name, so a complete-looking file is always a verified one. ``out/fetch_manifest.csv``
    (columns :data:`MANIFEST_COLUMNS`; status ``downloaded`` or ``skipped``) is written last,
    atomically, only when every selected asset is in place.

    Raises
    ------
    EphysError
        The API cannot be reached; no such dandiset / version / asset; unknown specimen id; no
        asset selected; an HTTP error or dropped connection after :data:`DOWNLOAD_ATTEMPTS`
        attempts (the message names the asset path and URL; the partial file is kept for
        resuming); a digest mismatch after a clean re-download.
    """
    out = Path(out)
    _STOP.clear()
    spec_rows: list[tuple[str, dict]] = []
    by_path_specimen: dict[str, str] = {}
    manifest_src = file_manifest or os.environ.get(FILE_MANIFEST_ENV) or FILE_MANIFEST_URL
    if specimens or file_manifest:
        table = read_file_manifest(manifest_src, cache_dir=out)
        if specimens:
            spec_rows = specimen_assets(table, specimens, manifest_src)
        for sid, rows in table.items():
            for row in rows:
                by_path_specimen[row["asset_path"]] = sid

    client = dandi_client(api_url)
    with client:
        ds = _get_dandiset(client, dandiset, version)
        assets = _select_assets(ds, spec_rows, include, limit)
        if not assets:
            what = f" matching {include!r}" if include else ""
            raise EphysError(f"no asset{what} in dandiset {dandiset} version {version}", client.api_url)
        previous = _read_previous_manifest(out / MANIFEST_NAME)
        total = len(assets)
        records: list[AssetRecord | None] = [None] * total
        done = [0]
        lock = threading.Lock()

        def work(i, asset):
            rec = _fetch_one(asset, out, previous.get(asset.path))
            rec.specimen_id = by_path_specimen.get(asset.path, "")
            records[i] = rec
            with lock:
                done[0] += 1
                if progress is not None:
                    progress(done[0], total, asset.path)

        pool = ThreadPoolExecutor(max_workers=max(1, int(jobs)), thread_name_prefix="ephys-dandi")
        futures = [pool.submit(work, i, a) for i, a in enumerate(assets)]
        try:
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and f.exception() is not None]
            if failed:
                _STOP.set()
                for f in futures:
                    f.cancel()
                pool.shutdown(wait=True)
                raise failed[0].exception()
        except KeyboardInterrupt:
            _STOP.set()
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True)
            raise
        finally:
            pool.shutdown(wait=True)

    result = FetchResult(out=out, records=[r for r in records if r is not None])
    result.manifest = _write_manifest(out / MANIFEST_NAME, result.records)
    return result


def _get_dandiset(client, dandiset: str, version: str):
    from dandi.exceptions import NotFoundError

    try:
        return client.get_dandiset(dandiset, version, lazy=False)
    except NotFoundError as e:
        raise EphysError(f"{_short(e)} (dandiset {dandiset}, version {version})", client.api_url) from None
    except Exception as e:
        raise EphysError(f"cannot look up dandiset {dandiset} version {version}: {_short(e)}",
                         client.api_url) from None


def _select_assets(ds, spec_rows, include, limit):
    from dandi.exceptions import NotFoundError

    try:
        if spec_rows:
            assets = []
            for sid, row in spec_rows:
                try:
                    assets.append(ds.get_asset_by_path(row["asset_path"]))
                except NotFoundError:
                    raise EphysError(f"cell specimen {sid}: asset {row['asset_path']} is not in dandiset "
                                     f"{ds.identifier} version {ds.version_id}") from None
        elif include:
            assets = ds.get_assets_by_glob(include, order="path")
        else:
            assets = ds.get_assets(order="path")
        assets = [a for a in assets if getattr(a, "blob", None) is not None]  # no Zarr assets
        if limit is not None:
            assets = list(islice(assets, max(0, int(limit))))
        return assets
    except EphysError:
        raise
    except Exception as e:
        raise EphysError(f"cannot list the assets of dandiset {ds.identifier}: {_short(e)}",
                         ds.client.api_url) from None


def _local_path(out: Path, asset_path: str) -> Path:
    p = PurePosixPath(asset_path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise EphysError("refusing an asset path outside the output folder", asset_path)
    return out.joinpath(*p.parts)


def _part_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.part")


def _fetch_one(asset, out: Path, previous: dict | None) -> AssetRecord:
    final = _local_path(out, asset.path)
    url = getattr(asset, "base_download_url", asset.path)
    try:
        meta = asset.get_raw_metadata()
    except Exception as e:
        raise EphysError(f"cannot read the DANDI metadata of {asset.path}: {_short(e)}", asset.api_url) from None
    dtype, dvalue = expected_digest(meta)
    rec = AssetRecord(path=asset.path, asset_id=asset.identifier, size=int(asset.size),
                      checksum_type=dtype, checksum=dvalue)

    if final.is_file() and _is_complete(final, rec, previous):
        rec.status = "skipped"
        rec.mtime_ns = final.stat().st_mtime_ns
        return rec

    part = _part_path(final)
    part.parent.mkdir(parents=True, exist_ok=True)
    downloader = asset.get_download_file_iter(chunk_size=CHUNK_BYTES)
    restarted = False
    attempt = 0
    while True:
        attempt += 1
        offset = part.stat().st_size if part.exists() else 0
        if offset > rec.size:
            part.unlink()
            offset = 0
        try:
            if offset < rec.size or rec.size == 0:
                with open(part, "ab" if offset else "wb") as fh:
                    if offset or rec.size:
                        for chunk in downloader(offset):
                            if _STOP.is_set():
                                raise EphysError("download stopped (another download failed or interrupted); "
                                                 "run again to resume", asset.path)
                            fh.write(chunk)
        except EphysError:
            raise
        except Exception as e:  # requests.HTTPError, ConnectionError, ChunkedEncodingError, timeouts
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                part.unlink(missing_ok=True)
                raise EphysError(f"HTTP {status} from {url}", asset.path) from None
            if attempt < DOWNLOAD_ATTEMPTS and not _STOP.is_set():
                time.sleep(RETRY_SLEEP_S * attempt)
                continue
            got = part.stat().st_size if part.exists() else 0
            raise EphysError(f"download from {url} failed after {got} of {rec.size} bytes "
                             f"({_net_reason(e)}); run the command again to resume", asset.path) from None
        got = part.stat().st_size
        if got != rec.size or (rec.checksum and file_digest(part, rec.checksum_type) != rec.checksum):
            part.unlink(missing_ok=True)
            if not restarted and offset > 0:
                restarted = True  # a resumed file may hold stale bytes: one clean try
                continue
            what = f"{got} bytes instead of {rec.size}" if got != rec.size else f"{rec.checksum_type} mismatch"
            raise EphysError(f"downloaded from {url} but got {what}", asset.path)
        break
    os.chmod(part, 0o644)
    os.replace(part, final)
    rec.status = "downloaded"
    rec.mtime_ns = final.stat().st_mtime_ns
    return rec


def _is_complete(final: Path, rec: AssetRecord, previous: dict | None) -> bool:
    st = final.stat()
    if st.st_size != rec.size:
        return False
    if not rec.checksum:
        return True
    if (previous and previous.get("checksum", "").lower() == rec.checksum
            and str(previous.get("mtime_ns")) == str(st.st_mtime_ns)
            and str(previous.get("size")) == str(st.st_size)):
        return True  # verified by an earlier run and untouched since
    return file_digest(final, rec.checksum_type) == rec.checksum


def _read_previous_manifest(path: Path) -> dict[str, dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {row["path"]: row for row in csv.DictReader(fh) if row.get("path")}
    except (OSError, KeyError, csv.Error):
        return {}


def _write_manifest(path: Path, records: list[AssetRecord]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_COLUMNS)
    for r in sorted(records, key=lambda r: r.path):
        w.writerow([getattr(r, c) for c in MANIFEST_COLUMNS])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path
