"""``ephys events detect`` results as a new NWB file (``OUT/events.nwb``).

One ``EventsTable`` per method (``events_METHOD``) in ``NWBFile.events``: ``timestamp`` = the
event onset (s), ``duration`` = the half-width (s, NaN when not measured), and the
measurements of :data:`ephys.pipelines.events.detect.EVENT_COLUMNS` as extra columns (amplitude
in the trace's units, 10-90 % rise and decay tau in ms, charge in units x ms, the detector's
score, the sweep index and the time within the sweep).

Why the core ``EventsTable``: it is the NWB core type since schema 2.10 (NWB Enhancement Proposal
NWBEP001, "Events", first released as the ``ndx-events`` 0.4 extension; pynwb >= 4 ships it as
``pynwb.event.EventsTable``). ``ndx-events`` itself cannot be loaded beside it (pynwb warns that
the extension redefines ``EventsTable``, ``TimestampVectorData`` and ``DurationVectorData``
differently from the core), and core ``TimeIntervals`` would force a stop time on events that
have none.

The source recording is named, never modified nor copied: its file name, size and SHA-256 are in
the file's ``notes`` and each table's ``source_description``; the analysed channel, the polarity
and why, and the shape limits are in ``notes``. ``session_start_time`` is the recording's own
start (ABF ``abfDateTime``, NWB ``session_start_time``) or, for ``.npy`` traces, the file's
modification time (said in ``notes``). Times are seconds from the start of the first sweep with
the sweeps laid end to end (as in ``events_METHOD.csv``).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_path, sha256_file
from ..core.errors import EphysError

__all__ = ["write_events_nwb", "source_fingerprint"]


def source_fingerprint(path: str | Path) -> dict:
    """``{"name", "bytes", "sha256"}`` of a file (read in 1-MiB blocks, never written)."""
    path = Path(path)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _start_time(trace, src: Path) -> tuple[_dt.datetime, str]:
    st = trace.meta.get("start_time")
    if isinstance(st, _dt.datetime):
        if st.tzinfo:
            return st, "the recording's start time"
        return st.replace(tzinfo=_dt.timezone.utc), "the recording's start time (its time zone not stated: taken as UTC)"
    mtime = _dt.datetime.fromtimestamp(src.stat().st_mtime, tz=_dt.timezone.utc)
    return mtime, "the source file's modification time (the recording states no start time)"


def write_events_nwb(path: str | Path, trace, events: dict, summary: dict) -> Path:
    """Write ``path`` (a new NWB file, atomically) with one ``EventsTable`` per method.

    Parameters
    ----------
    path : the NWB file to write (``OUT/events.nwb``)
    trace : :class:`ephys.pipelines.events.readers.Trace` that was analysed
    events : {method: list of event dicts} (accepted events, onsets in s)
    summary : the ``summary.json`` dict of :func:`ephys.pipelines.events.apply.run_detect`

    Returns the path. Raises EphysError when the file cannot be written.
    """
    import pynwb
    from hdmf.common import VectorData
    from pynwb.event import DurationVectorData, EventsTable, TimestampVectorData

    from ..core.nwb_out import subject_of

    path = Path(path)
    src = Path(trace.source)
    fp = source_fingerprint(src) if src.is_file() else {"name": src.name, "bytes": None, "sha256": None}
    start, start_how = _start_time(trace, src)
    ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ephys-events:{fp['sha256'] or src}:{summary.get('polarity')}:"
                                                f"{summary.get('channel')}:{','.join(events)}"))
    notes = (f"Events detected by `ephys events detect` in {fp['name']} ({fp['bytes']} bytes, sha256 "
             f"{fp['sha256']}); the source file was read, never modified. Channel: {summary.get('channel')}. "
             f"Polarity: {summary.get('polarity')} ({summary.get('polarity_reason')}). Shape limits: "
             f"{summary.get('shape_check')}. session_start_time: {start_how}. Times: seconds from the start of "
             f"the first sweep, sweeps laid end to end.")
    try:
        from importlib.metadata import version

        ver = version("ephys")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        ver = "unknown"
    nwb = pynwb.NWBFile(session_description=f"miniature synaptic events detected in {fp['name']}",
                        identifier=ident, session_start_time=start, notes=notes,
                        source_script="ephys events detect", source_script_file_name="ephys",
                        was_generated_by=[["ephys", ver]], keywords=["miniature synaptic events", "event detection"],
                        experiment_description=f"Event detection on {fp['name']} ({summary.get('channel')}).",
                        subject=subject_of(src))
    units = trace.units
    seg_starts = np.array([s0 for s0, _ in trace.segments], dtype=np.int64)
    cols = [("peak_s", "time of the peak, s from the session start"),
            ("amplitude", f"peak minus baseline, {units} (signed as recorded)"),
            ("rise_10_90_ms", "10-90 % rise time, ms"),
            ("decay_tau_ms", "single-exponential decay time constant, ms (NaN: fit failed)"),
            ("charge", f"integral of the event, {units} x ms"),
            ("score", "the detector's score of the candidate region (0-1)")]
    for m, ev in events.items():
        # columns built from typed arrays, so a method that found nothing still writes its table
        on = np.array([e["onset_s"] for e in ev], dtype=np.float64)
        hw = np.array([e.get("half_width_ms", np.nan) for e in ev], dtype=np.float64) / 1e3
        sweep = (np.searchsorted(seg_starts, np.round(on * trace.fs_hz).astype(np.int64), side="right") - 1
                 ).clip(0).astype(np.int64)
        columns = [TimestampVectorData(name="timestamp", description="event onset, s from the session start",
                                       data=on, resolution=1.0 / float(trace.fs_hz)),
                   DurationVectorData(name="duration", description="half-width of the event, s (NaN: not measured)",
                                      data=hw, resolution=1.0 / float(trace.fs_hz))]
        columns += [VectorData(name=c, description=doc, data=np.array([e[c] for e in ev], dtype=np.float64))
                    for c, doc in cols]
        columns.append(VectorData(name="sweep", description="index of the sweep (segment) the event lies in, from 0",
                                  data=sweep))
        t = EventsTable(name=f"events_{m}", description=(
            f"Onsets of {summary.get('polarity')} miniature synaptic events found by the {m} detector of ephys "
            "and accepted by the event-shape check; onset = the 20-80 % rise line extrapolated to the baseline; "
            "duration = half-width."),
            source_description=f"ephys events detect --method {m} on {fp['name']} (sha256 {fp['sha256']})",
            columns=columns)
        nwb.add_events_table(t)
    try:
        with atomic_path(path) as tmp:
            with pynwb.NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwb)
    except OSError as exc:
        raise EphysError(f"cannot write the NWB file ({exc})", path) from None
    return path
