"""``ephys prepare lfp``: paired LFP + spike times -> windows with a per-unit spike target."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common
from .prepare import prepare_app


@prepare_app.command("lfp")
def prepare_lfp(
    input: Path = typer.Argument(..., help="An .nwb file (LFP ElectricalSeries + Units table), a .mat file (lfp, fs_hz) with NAME_spikes.csv or spikes.csv (unit,t_s), an Axona trial folder (.eeg* + tetrode .N + Tint .cut), a folder with lfp.npy + spikes.csv (unit,t_s) + recording.json (fs_hz), or a folder of such folders (a cohort, e.g. `ephys fetch synthetic --pipeline lfp`)."),
    out: Path = typer.Argument(None, help="Output folder [default: DATA/processed/lfp]."),
    window_s: float = typer.Option(None, "--window-s", help="Window length (s) [default 0.1]; the seed: 100 samples at 1 kHz."),
    bin_s: float = typer.Option(None, "--bin-s", help="Prediction bin (s) [default 0.02]: spike = at least one spike in it."),
    after_s: float = typer.Option(None, "--after-s", help="LFP kept in the window after the prediction bin (s) [default 0: the bin is the window's last bin_s]; target last only."),
    target: str = typer.Option(None, "--target", help="last [default]: the bin ends after_s before the window's end; next: the bin follows the window (after_s ignored; the seed: --target next --bin-s 0.001)."),
    inputs: str = typer.Option(None, "--inputs", help="Comma list of raw, band (band-passed), amplitude, phase (cos and sin) per LFP channel and band [default raw,amplitude,phase]."),
    stride_s: float = typer.Option(None, "--stride-s", help="Window step (s) [default: bin_s]."),
    units: str = typer.Option(None, "--units", help="Comma list of unit ids to keep [default: every unit]."),
):
    """LFP recordings -> a prepared LFP folder: windows.npy (all windows), one "sequence" dataset
    per unit (units/UNIT/manifest.json, group = recording; `ephys train --model bilstm --data
    OUT/units/UNIT`), index.json written last. Bands delta..high gamma below 0.9 x Nyquist,
    zero-phase filters over each whole recording, Hilbert amplitude and phase."""
    from ephys.pipelines.lfp.sequence import SequenceParams, prepare_lfp as run

    given = {"window_s": window_s, "bin_s": bin_s, "after_s": after_s, "target": target, "stride_s": stride_s}
    params = SequenceParams(**{k: v for k, v in given.items() if v is not None})
    if inputs is not None:
        params.inputs = tuple(s.strip() for s in inputs.split(",") if s.strip())
    keep = [u.strip() for u in units.split(",") if u.strip()] if units else None
    path = run(input, out or common.data_root() / "processed" / "lfp", params, log=common.info, units=keep)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
