"""The mer pipeline's extra command: ``ephys mer stream``."""

from __future__ import annotations

from pathlib import Path


def stream(p, ctx) -> Path | None:
    """Real-time STN detection on a file played in chunks or an LSL stream (:func:`.stream.stream_run`);
    prints each recording's summary and each trajectory's borders; returns the CSV written (if any)."""
    from ..blocks.models.lightgbm import is_tabular_run
    from .stream import stream_run

    run = Path(p.run)
    if not is_tabular_run(run):
        ctx.import_backend()  # a Keras run: load it without the backend's start-up chatter

    def show(ev):
        if ev["event"] == "recording":
            prob = "n/a" if ev["p_inside"] is None else f"{ev['p_inside']:.3f}"
            border = ""
            if ev.get("entry_um") is not None:
                border = f"  STN entry {ev['entry_um'] / 1000:.2f} mm, exit {ev['exit_um'] / 1000:.2f} mm"
            ctx.info(f"{ev['recording']}: {ev['n_segments']} segments, P(inside) {prob}, "
                     f"artifacts {ev['artifact_fraction']:.1%}{border}")

    out = Path(p.out) if p.out else None
    res = stream_run(run, p.source, out=out, depth_stream=p.depth_stream, chunk_samples=p.chunk_samples,
                     fs_hz=p.fs_hz, idle_s=p.idle_s, on_event=show, units=p.units)
    lat = res["latency_ms"]
    if lat:
        ctx.info(f"{len(res['segments'])} segments; latency per segment median {lat['median']:.2f} ms, "
                 f"p95 {lat['p95']:.2f} ms")
    for key, t in res["trajectories"].items():
        e = "none" if t["entry_um"] is None else f"{t['entry_um'] / 1000:.2f} mm"
        x = "none" if t["exit_um"] is None else f"{t['exit_um'] / 1000:.2f} mm"
        ctx.echo(f"{key}: STN entry {e}, exit {x}")
    return out
