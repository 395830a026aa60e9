"""One rule for every verb that writes a folder: what wrote it is recorded, a second writer is locked out.

Every ``ephys`` verb that writes an output folder (``fetch synthetic``, ``aggregate --out``, a
pipeline's commands such as ``detect`` or ``cluster``, ``predict``; ``prepare`` through its own
dataset check plus the lock) goes through :class:`OutputFolder`:

* **A record.** ``OUT/.ephys-output.json`` names the command (``kind``), its settings and inputs
  and their ``key`` (a hash). It is written when the command starts (``complete: false``) and
  again when it ends (``complete: true``), so an interrupted run can be resumed by the same command.
* **The rule.** A folder that holds another command's output, or this command's output made from
  other input or with other settings, is refused with one line naming what differs; ``force``
  replaces it (its contents are removed first). A trained run or a prepared dataset that has no
  record is recognised by its main file and treated the same way. A folder of files that no
  ephys command recorded writing is never removed, even with ``force``: the user chooses another
  OUT. ``accept(out)`` lets a command write into a folder it shares with other output (e.g. the
  pooled metrics of a cross-validation beside its fold runs).
* **A lock.** While a command writes OUT, a lock file beside it (``.NAME.HOST-PID.ephys-lock`` in
  OUT's parent, or inside OUT when the parent is read-only) holds the host, the process id, the
  start time and the command; a second command into the same OUT refuses with one line naming
  the holder (refusing, not waiting: a batch job should fail fast rather than sit idle behind a
  run that may take hours, and two commands into one folder are usually a mistake). A lock whose
  process is gone (same host) or whose heartbeat (the file's modification time, refreshed every
  :data:`HEARTBEAT_S` seconds) is older than :data:`STALE_S` (another host) is stale and removed.
  Locks that declare the same ``share`` value (the shards of one ``prepare --shard K/N`` array)
  may be held together.
* **Nothing left behind.** A folder the command created is removed when it fails or is
  interrupted (commands that resume, such as ``prepare``, keep their own partial state instead);
  the lock file always goes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from .atomic import check_writable_dir, write_json
from .errors import EphysError

__all__ = ["RECORD", "OutputFolder", "FolderLock", "read_record", "output_key", "holds", "remove_contents"]

#: the record of what wrote an output folder (inside it)
RECORD = ".ephys-output.json"
#: lock file suffix (beside the output folder)
LOCK_SUFFIX = ".ephys-lock"
#: seconds between refreshes of a held lock's modification time
HEARTBEAT_S = 30.0
#: a lock of another host not refreshed for this long belongs to a dead process
STALE_S = 300.0

#: top-level keys by which a JSON file is recognised as a prepared dataset's main file
_DATASET_KEYS = ("modality", "prepared_by", "units", "samples")


def output_key(kind: str, settings: dict, inputs: dict) -> str:
    """Short hash of what an output is made of (the command, its settings and inputs)."""
    text = json.dumps({"kind": kind, "settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(out: str | Path) -> dict | None:
    """``OUT/.ephys-output.json`` as a dict, or None when absent or unreadable."""
    try:
        rec = json.loads((Path(out) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("kind") else None


def holds(out: str | Path) -> str | None:
    """What an output folder without a record holds, when ephys made it: ``"a trained run"``
    (``config.yaml``), ``"a prepared dataset"`` (a ``manifest.json`` / ``index.json`` naming its
    modality or samples); None otherwise (empty, or files ephys cannot vouch for)."""
    out = Path(out)
    if (out / "config.yaml").is_file():
        return "a trained run (config.yaml)"
    for name in ("manifest.json", "index.json"):
        try:
            m = json.loads((out / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and any(k in m for k in _DATASET_KEYS):
            return f"a prepared dataset ({name})"
    return None


def remove_contents(out: str | Path) -> None:
    """Remove everything inside folder ``out`` (the folder itself stays)."""
    for p in Path(out).iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _visible(out: Path) -> list[Path]:
    """Entries of ``out`` other than the record and lock files."""
    return [p for p in out.iterdir() if p.name != RECORD and not p.name.endswith(LOCK_SUFFIX)]


def _differences(old: dict, new: dict) -> list[str]:
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _host() -> str:
    return socket.gethostname().split(".")[0] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class FolderLock:
    """A lock on output folder ``out`` held by this process (see the module docstring).

    Parameters
    ----------
    out : the output folder (need not exist).
    command : what holds it, for the refusal message (e.g. ``"ephys spikes cluster"``).
    share : locks with the same non-empty ``share`` may be held together (shards of one run).

    Raises
    ------
    EphysError
        (from :meth:`acquire`) another live process holds a lock on ``out``.
    """

    def __init__(self, out: str | Path, command: str = "ephys", share: str | None = None):
        self.out = Path(out)
        self.command = command
        self.share = share
        self.path: Path | None = None
        self._made: list[Path] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _where(self) -> Path:
        parent = self.out.parent
        if self.out.is_dir() and parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
            return self.out  # a writable OUT inside a read-only folder: the lock lives inside
        return parent

    def acquire(self) -> "FolderLock":
        folder = self._where()
        p = folder
        while not p.exists():
            self._made.append(p)
            p = p.parent
        folder.mkdir(parents=True, exist_ok=True)
        me = {"host": _host(), "pid": os.getpid(), "started": time.time(), "command": self.command,
              "share": self.share, "out": str(self.out.resolve())}
        stem = f".{self.out.name}." if folder != self.out else "."
        self.path = folder / f"{stem}{me['host']}-{me['pid']}{LOCK_SUFFIX}"
        if self.path.exists():  # this process holds it already (a command calling another)
            self.path = None
            return self
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        try:
            for other in sorted(folder.glob(f"{stem}*{LOCK_SUFFIX}")):
                if other == self.path:
                    continue
                held = self._live(other)
                if held is None or (self.share and held.get("share") == self.share):
                    continue
                if (held.get("started", 0), other.name) < (me["started"], self.path.name):
                    since = _dt.datetime.fromtimestamp(float(held.get("started", 0))).strftime("%Y-%m-%d %H:%M:%S")
                    raise EphysError(f"is being written by another run ({held.get('command', 'ephys')}, host "
                                     f"{held.get('host')}, pid {held.get('pid')}, since {since}); wait for it to "
                                     "finish or choose another OUT (a lock left by a killed run on another host "
                                     f"expires {STALE_S / 60:.0f} min after its last heartbeat: {other})", self.out)
        except BaseException:
            self.release()
            raise
        self._thread = threading.Thread(target=self._beat, name="ephys-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _live(self, path: Path) -> dict | None:
        """The holder of lock file ``path``, or None when it is stale (then the file is removed)."""
        try:
            held = json.loads(path.read_text(encoding="utf-8"))
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return None  # vanished, or being written this instant: its writer checks against us
        if held.get("host") == _host():
            stale = not _pid_alive(int(held.get("pid", 0)))
        else:
            stale = age > STALE_S
        if stale:
            try:
                path.unlink()
            except OSError:
                pass
            return None
        return held

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self.path is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            self.path = None
        for d in self._made:  # folders made only to hold the lock
            try:
                d.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


class OutputFolder:
    """The output folder of one command: checked, locked, recorded (see the module docstring).

    Use as a context manager::

        with OutputFolder(out, "spikes cluster", settings, {"tetrode": path}, force=p.force) as o:
            ...write into o.path...

    Parameters
    ----------
    out : the folder.
    kind : the command as a user types it after ``ephys`` (``"fetch synthetic"``).
    settings, inputs : JSON-able dicts; together with ``kind`` they are the output's identity
        (inputs as resolved paths).
    force : replace an output of another command or made from other input / settings.
    accept : ``accept(out) -> bool``: a folder without a record this command may write into.
    what : how messages call the folder ("output folder", "run folder").
    create : make the folder and write the (incomplete) record on entry; False for a command
        that builds its output elsewhere and moves it into place (:meth:`write_record` then).
    log : where "replacing ..." is said.

    Raises
    ------
    EphysError
        (on entry) OUT cannot be written, holds another output (without ``force``), holds files
        no ephys command recorded writing, or is being written by another run.
    """

    def __init__(self, out: str | Path, kind: str, settings: dict | None = None, inputs: dict | None = None,
                 force: bool = False, accept: Callable[[Path], bool] | None = None, what: str = "output folder",
                 create: bool = True, log: Callable[[str], None] = print, share: str | None = None):
        self.path = Path(out)
        self.kind = kind
        # as the record will hold them (tuples become lists), so an unchanged setting never differs
        self.settings = json.loads(json.dumps(dict(settings or {}), default=str))
        self.inputs = {k: (str(v) if isinstance(v, Path) else v) for k, v in (inputs or {}).items()}
        self.key = output_key(kind, self.settings, self.inputs)
        self.force, self.accept, self.what, self.create, self.log = force, accept, what, create, log
        self.created = False
        self.lock = FolderLock(self.path, f"ephys {kind}", share=share)

    @classmethod
    def of_params(cls, out: str | Path, kind: str, params, inputs: tuple[str, ...] = (), **kw) -> "OutputFolder":
        """An OutputFolder for a command declared by a parameters dataclass: the fields named in
        ``inputs`` (paths) are its inputs, resolved; every other field except ``out`` and ``force``
        is a setting; ``force`` is read from ``params.force``."""
        from .params import as_record

        rec = as_record(params)
        ins = {k: (None if rec.get(k) in (None, "") else str(Path(str(rec[k])).resolve())) for k in inputs}
        settings = {k: v for k, v in rec.items() if k not in (*inputs, "out", "force")}
        return cls(out, kind, settings, ins, force=bool(getattr(params, "force", False)), **kw)

    # -- the rule ----------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse (or, with ``force``, empty) a folder holding another output; see the module docstring."""
        out = self.path
        if not out.is_dir() or not _visible(out) and read_record(out) is None:
            return
        rec = read_record(out)
        shared = self.accept is not None and self.accept(out)  # a folder this command shares with others
        if rec is not None:
            if rec.get("kind") == self.kind and rec.get("key") == self.key:
                return
            if rec.get("kind") != self.kind:
                what = f"holds the output of `ephys {rec.get('kind')}`"
            else:
                diff = _differences(rec.get("inputs") or {}, self.inputs)
                sdiff = _differences(rec.get("settings") or {}, self.settings)
                what = ("holds an earlier result made from other input (" + "; ".join(diff[:4]) + ")" if diff else
                        "holds an earlier result made with other settings (" + "; ".join(sdiff[:6]) + ")")
        else:
            if shared:
                return
            made = holds(out)
            if made is None:
                raise EphysError(f"{self.what} exists and holds files no ephys command recorded writing (an older "
                                 "version's output, or your own files); choose an empty or new OUT", out)
            what = f"holds {made}"
        if not self.force:
            raise EphysError(f"{what}; pass --force to replace it, or choose another OUT", out)
        self.log(f"replacing {out} ({what})")
        if not shared:  # a shared folder keeps the others' files; this command's own are overwritten
            remove_contents(out)

    def record(self, complete: bool) -> dict:
        return {"kind": self.kind, "key": self.key, "settings": self.settings, "inputs": self.inputs,
                "complete": bool(complete),
                "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def write_record(self, folder: str | Path | None = None, complete: bool = True) -> None:
        """Write the record into ``folder`` (default: the output folder)."""
        from .. import __version__

        write_json(Path(folder or self.path) / RECORD, {**self.record(complete), "ephys_version": __version__})

    # -- context -----------------------------------------------------------------------------
    def __enter__(self) -> "OutputFolder":
        check_writable_dir(self.path, self.what)
        self.lock.acquire()
        try:
            self.check()
            if self.create:
                self.created = not self.path.exists()
                self.path.mkdir(parents=True, exist_ok=True)
                self.write_record(complete=False)
        except BaseException:
            self._cleanup()
            self.lock.release()
            raise
        return self

    def _cleanup(self) -> None:
        if self.created and self.path.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self.path.is_dir():
                    self.write_record(complete=True)
            else:
                self._cleanup()
        finally:
            self.lock.release()
        return False
