"""Write-to-temp-then-rename helpers, so a killed process never leaves a half-written file;
up-front checks that an output can be written at all (:func:`check_writable_dir`,
:func:`check_writable_file`); removal of temporary files left by dead writers only
(:func:`remove_stale_parts`)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import EphysError

#: errno values that mean "this output cannot be written" (a user's problem, not a bug)
UNWRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                               errno.EEXIST, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP})


def os_error(exc: OSError, path: str | Path | None = None) -> EphysError:
    """An :class:`EphysError` for an ``OSError`` raised while writing: one line naming the file
    (``exc.filename`` when the OS names it) and what the OS said (e.g. read-only file system)."""
    where = exc.filename if getattr(exc, "filename", None) else path
    reason = exc.strerror or type(exc).__name__
    hint = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.ENOTDIR: "a parent of it is a file, not a folder",
            errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}.get(exc.errno)
    return EphysError(f"cannot write: {hint or reason}", where)


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, before any work starts, that folder ``path`` exists and is writable or can be
    created: not a file, no parent that is a file, the nearest existing folder writable (not
    read-only, permission granted). Creates nothing.

    Raises
    ------
    EphysError
        One line naming the offending path: ``OUT: output folder is a file``, ``A/file: cannot
        create OUT/...: a parent is a file, not a folder``, ``DIR: not writable (permission
        denied or read-only file system)``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EphysError(f"{what} is a file, not a folder", path)
    base = _first_existing(path)
    if base.exists() and not base.is_dir():
        raise EphysError(f"cannot create the {what} {path}: {base} is a file, not a folder", base)
    if base.exists() and not os.access(base, os.W_OK | os.X_OK):
        ro = _read_only(base)
        raise EphysError(f"{what} cannot be written here: "
                         + ("read-only file system" if ro else "permission denied"), base)
    return path


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Like :func:`check_writable_dir` for a file to (re)write: not a folder, its folder writable
    or creatable, and, if it exists, writable itself.

    Raises
    ------
    EphysError
        One line naming the offending path.
    """
    path = Path(path)
    if path.is_dir():
        raise EphysError(f"{what} is a folder, not a file", path)
    check_writable_dir(path.parent, f"folder of the {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise EphysError(f"{what} is not writable (permission denied)", path)
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname().split(".")[0])[:32] or "host"


_PART_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]*\.part")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(folder: str | Path, started: float, pattern: str = ".*.part*",
                       grace_s: float = 60.0) -> int:
    """Remove temporary files (from :func:`atomic_path`) or folders (:func:`part_dir`) that no live
    writer owns; returns how many.

    A temp name carries its writer's host and process id. A file is removed when its writer
    ran on this host and is no longer running; a writer on another host's file when it was
    last modified more than ``grace_s`` before ``started`` (the caller's own start,
    ``time.time()``); a name without an owner when it is older than ``started``. The in-flight file of a
    concurrent shard or a requeued duplicate task is therefore left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    here, n = _host_tag(), 0
    for p in folder.glob(pattern):
        m = _PART_OWNER.search(p.name)
        try:
            if m and m["host"] == here:
                stale = not _pid_alive(int(m["pid"]))
            elif m:  # a writer on another node: older than our start by a margin for slow writes
                stale = p.stat().st_mtime < started - grace_s
            else:  # no owner in the name (older versions): older than our own start
                stale = p.stat().st_mtime < started
            if stale:
                if p.is_dir() and not p.is_symlink():  # a temporary folder (e.g. predict's)
                    import shutil

                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()
                n += 1
        except FileNotFoundError:
            continue
    return n


def part_dir(final: str | Path) -> Path:
    """A new temporary folder next to ``final`` (``.NAME.HOST-PID.XXXX.part``), to be renamed onto
    ``final`` when complete; :func:`remove_stale_parts` removes one whose writer died."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.{_host_tag()}-{os.getpid()}.", suffix=".part",
                                 dir=final.parent))


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` on success.

    The temporary file lives in the same folder (same filesystem), so the rename is atomic.
    On an exception the temporary file is removed and ``final`` is left untouched.
    An ``OSError`` that means the output cannot be written (permission, read-only file system,
    a parent that is a file, disk full) becomes one-line :class:`EphysError` naming the file.
    The temporary name carries the writer's host and pid (see :func:`remove_stale_parts`).
    """
    final = Path(final)
    sfx = suffix if suffix is not None else "".join(final.suffixes) or ".tmp"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.{_host_tag()}-{os.getpid()}.",
                                   suffix=".part" + sfx, dir=final.parent)
    except OSError as exc:
        if exc.errno in UNWRITABLE_ERRNOS or isinstance(exc, (FileExistsError, NotADirectoryError)):
            raise os_error(exc, final) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600; give the file the usual umask permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        try:
            os.replace(tmp_path, final)
        except OSError as exc:
            if exc.errno in UNWRITABLE_ERRNOS:
                raise os_error(exc, final) from None
            raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise os_error(exc, final) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(final: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``final``."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def write_json(final: str | Path, obj, indent: int = 2) -> Path:
    """Atomically write ``obj`` as JSON (NaN written as null is the caller's job)."""
    return write_text(final, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def write_npy(final: str | Path, array: np.ndarray, require_finite: bool = False) -> Path:
    """Atomically save ``array`` as ``.npy``.

    ``require_finite``: refuse NaN / ±Inf values (checked on the array as stored, i.e. after any
    dtype cast the caller made: 1e300 cast to float32 is Inf) with an :class:`EphysError` naming
    the file and how many values are not finite; nothing is written then.
    """
    if require_finite:
        check_finite(array, final)
    with atomic_path(final, suffix=".npy") as tmp:
        np.save(tmp, array)
    return Path(final)


def check_finite(array: np.ndarray, where: str | Path | None, what: str = "values") -> None:
    """Raise :class:`EphysError` (naming ``where``, the count and the first flat index) when a
    numeric ``array`` holds NaN or ±Inf."""
    a = np.asarray(array)
    if a.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        raise EphysError(f"{int(bad.sum())} of {a.size} {what} are not finite (NaN or Inf; first at "
                         f"flat index {first}, e.g. an overflow when cast to {a.dtype})", where)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
