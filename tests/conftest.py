"""Shared fixtures: the real-data folder, a CLI runner, a tiny synthetic dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# tiny CPU runs: skip the ~1 min graph build of the training step (see `ephys train --eager`)
os.environ.setdefault("EPHYS_EAGER", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason=f"{SHARED_DATA} is absent: real recordings not available")


def ephys(*args, cwd=None, env=None, timeout=600, check=None):
    """Run the installed CLI (`python -m ephys.cli.main ...`) and return the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "ephys.cli.main", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def one_line_error(proc, *needles):
    """Assert the CLI failed the documented way: exit 2, one stderr line naming ``needles``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """3 simulated cells per class (12 NWB files + labels.csv), made once per test session."""
    from ephys.pipelines.sts.synthetic import fetch_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    fetch_synthetic(out, n_per_class=3, seed=7)
    return out
