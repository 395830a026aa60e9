"""The events pipeline's extra command: ``ephys events detect``."""

from __future__ import annotations

from pathlib import Path


def detect(p, ctx) -> Path:
    """Detect events in a trace with each method (:func:`.apply.run_detect`); prints a line per
    method and returns ``OUT/summary.json``."""
    from ..core.outputs import OutputFolder
    from .apply import run_detect

    trace = Path(p.trace)
    out = Path(p.out) if p.out else ctx.runs_root / f"events-{trace.stem}"
    with OutputFolder.of_params(out, "events detect", p, ("trace", "run", "labels"), log=ctx.notice):
        res = run_detect(trace, out, run_dir=Path(p.run) if p.run else None, methods=list(p.method), fs_hz=p.fs_hz,
                         units=p.units, polarity=p.polarity, labels=Path(p.labels) if p.labels else None,
                         resample=not p.no_resample, channel=p.channel, shape=p.shape_limits(), log=ctx.info,
                         import_backend=ctx.import_backend)
    ctx.info(f"channel: {res['channel']}")
    ctx.info(f"polarity: {res['polarity']} ({res['polarity_reason']})")
    for m, s in res["methods"].items():
        amp = s["amplitude"]["median"]
        line = (f"{m}: {s['n_events']} events, {s['frequency_hz']:.2f} Hz, median amplitude "
                + ("n/a" if amp is None else f"{amp:.3g} {res['units']}")
                + f"; {s['n_rejected']} of {s['n_candidates']} candidates rejected by the shape check")
        if s["rejected_by_reason"]:
            line += " (" + ", ".join(f"{k} {v}" for k, v in s["rejected_by_reason"].items()) + ")"
        if "f1" in s:
            line += f"; F1 {s['f1']:.3f} (P {s['precision']:.3f}, R {s['recall']:.3f})"
        ctx.info(line)
    return out / "summary.json"
