"""Remote NWB files over HTTP(S): h5py on a ``remfile`` file object, only the bytes needed.

DANDI's own documentation streams NWB assets this way (``remfile.File(s3_url)`` handed to
``h5py.File``). With the fast icephys reader (:mod:`.nwb_fast`), which opens only the
acquisition / stimulus groups and the intracellular-recordings table, a file's traffic is its
HDF5 metadata plus the current-clamp series' data, in ``remfile`` chunks (HTTP ``Range``
requests of >= 100 kB, so small files come nearly whole).

Dropped connections: every ``Range`` request is retried by remfile (8 retries, back-off 0.1 s
doubling: ~25 s in all); a permanent HTTP error (404, 403) is not retried. Whatever still fails
becomes an :class:`~ephys.pipelines.core.errors.UnreadableRecording` with the reason, and the
cell is skipped with it, like a broken local file.

Byte count: :func:`read_nwb_url` records the bytes received for each URL (successful responses
only) in :data:`BYTES_READ`; :func:`input_records` puts them in a sample's ``inputs``.
"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import UnreadableRecording
from .sweeps import Sweep

#: url -> {"bytes_read": bytes received, "size": file size in bytes}, for this process's reads
BYTES_READ: dict[str, dict] = {}


def is_url(path) -> bool:
    """True for ``http://`` / ``https://`` strings (a remote file), False for local paths."""
    return isinstance(path, str) and path.startswith(("http://", "https://"))


def read_nwb_url(url: str, pynwb_sweeps=None) -> list[Sweep]:
    """The current-clamp sweeps of a remote NWB file, read through remfile + h5py.

    Returns the same sweeps as :func:`~.patchclamp.read_nwb` on the downloaded file
    (``meta["file"]`` is the URL). Files the fast reader cannot handle are read by pynwb over
    the same remote file object (slower, more bytes), turned into sweeps by ``pynwb_sweeps(
    nwbfile, url)`` (the pynwb reader's tree walk, passed in by :func:`.patchclamp.read_recording`);
    without it such a file is refused.

    Raises
    ------
    UnreadableRecording
        The server refuses or keeps failing (``"cannot stream (<reason>)"``), or the file is
        not a readable current-clamp NWB file (the reasons of the local reader).
    """
    import remfile

    from .nwb_fast import NeedPynwb, read_nwb_h5
    from .stepcommon import _fill_windows_from_siblings, _short

    count = {"bytes_read": 0, "size": None}
    BYTES_READ[url] = count
    try:
        rf = remfile.File(url)
    except Exception as exc:  # noqa: BLE001 - requests/remfile raise many kinds
        raise UnreadableRecording(f"cannot stream ({_short(exc)})", url) from exc
    count["size"] = int(rf.length)

    def on_response(response, *args, **kwargs):
        if response.status_code in (200, 206):
            count["bytes_read"] += len(response.content)

    if getattr(rf, "session", None) is not None:
        rf.session.hooks["response"].append(on_response)
    try:
        try:
            sweeps = read_nwb_h5(rf, url)
        except NeedPynwb as why:
            if pynwb_sweeps is None:
                raise UnreadableRecording(f"cannot stream this NWB layout ({why})", url) from None
            sweeps = _read_pynwb_remote(rf, url, pynwb_sweeps)
        _fill_windows_from_siblings(sweeps)
        return sweeps
    except UnreadableRecording:
        raise
    except Exception as exc:  # noqa: BLE001 - a connection that stayed down
        raise UnreadableRecording(f"cannot stream ({_short(exc)})", url) from exc
    finally:
        rf.close()


def _read_pynwb_remote(rf, url: str, pynwb_sweeps) -> list[Sweep]:
    import warnings

    import h5py
    from pynwb import NWBHDF5IO

    from .stepcommon import _short

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            f = h5py.File(rf, "r")
            io = NWBHDF5IO(file=f, mode="r", load_namespaces=True)
            nwbfile = io.read()
        except Exception as exc:  # noqa: BLE001
            raise UnreadableRecording(f"not a readable NWB file ({_short(exc)})", url) from exc
        try:
            return pynwb_sweeps(nwbfile, url)
        finally:
            io.close()


def input_records(paths) -> list[dict]:
    """A sample's ``inputs``: ``{"path", "sha256"}`` for a local file, ``{"path", "url",
    "bytes_read", "size"}`` for a streamed one (bytes from :data:`BYTES_READ`)."""
    from ...core.atomic import sha256_file

    out = []
    for p in paths:
        if is_url(p):
            got = BYTES_READ.get(p, {})
            out.append({"path": p, "url": p, "bytes_read": got.get("bytes_read"), "size": got.get("size")})
        elif Path(p).is_file():
            out.append({"path": str(p), "sha256": sha256_file(p)})
    return out
