"""Prepare scalograms: resume after an interruption, dask result equals the in-process one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ephys
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.sts.scalograms import ScalogramParams, prepare_scalograms

SMALL = ScalogramParams(n_scales=32)


def test_resume_recomputes_only_missing_cells(tiny_synthetic, tmp_path):
    out = tmp_path / "ds"
    first = prepare_scalograms(tiny_synthetic, out, tiny_synthetic / "labels.csv", SMALL, scheduler="synchronous")
    assert first.n_ok == 12 and first.n_resumed == 0
    samples = sorted((out / "samples").glob("*.npy"))
    gone = samples[:2]
    for p in gone:
        p.unlink()
    (out / "manifest.json").unlink()
    (out / "samples" / ".stale.part.npy").write_bytes(b"half")  # what a kill leaves behind
    mtimes = {p: p.stat().st_mtime_ns for p in samples[2:]}
    second = prepare_scalograms(tiny_synthetic, out, tiny_synthetic / "labels.csv", SMALL, scheduler="synchronous")
    assert second.n_ok == 12 and second.n_resumed == 10
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert all(p.exists() for p in gone)
    assert not list((out / "samples").glob(".*part*"))
    # other parameters are refused (issue 14: they silently replaced a dataset runs point to);
    # with force they replace every cell
    with pytest.raises(EphysError, match="other parameters"):
        prepare_scalograms(tiny_synthetic, out, tiny_synthetic / "labels.csv", ScalogramParams(n_scales=24),
                           scheduler="synchronous")
    third = prepare_scalograms(tiny_synthetic, out, tiny_synthetic / "labels.csv", ScalogramParams(n_scales=24),
                               scheduler="synchronous", force=True, log=lambda m: None)
    assert third.n_resumed == 0


def test_dask_local_cluster_gives_the_same_arrays(tiny_synthetic, tmp_path):
    a = prepare_scalograms(tiny_synthetic, tmp_path / "a", None, SMALL, scheduler="synchronous")
    b = prepare_scalograms(tiny_synthetic, tmp_path / "b", None, SMALL, scheduler="local", workers=2)
    ma = json.loads(a.manifest_path.read_text())
    mb = json.loads(b.manifest_path.read_text())
    assert [s["id"] for s in ma["samples"]] == [s["id"] for s in mb["samples"]]
    for s in ma["samples"]:
        np.testing.assert_array_equal(np.load(tmp_path / "a" / s["file"]), np.load(tmp_path / "b" / s["file"]))


def test_killed_prepare_resumes(tiny_synthetic, tmp_path):
    out = tmp_path / "ds"
    args = [sys.executable, "-m", "ephys.cli.main", "--quiet", "prepare", "scalograms", str(tiny_synthetic),
            str(out), "--scheduler", "synchronous", "--n-scales", "32"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "samples").glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists() or not killed
    ephys("prepare", "scalograms", tiny_synthetic, out, "--scheduler", "synchronous", "--n-scales", "32", check=0)
    man = json.loads((out / "manifest.json").read_text())
    assert len(man["samples"]) == 12
    for s in man["samples"]:
        assert np.load(out / s["file"]).shape == (32, 1200, 3)


def test_scheduler_address_is_used(tiny_synthetic, tmp_path):
    """`--scheduler ADDRESS`: connect to a running dask scheduler instead of starting one."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = prepare_scalograms(tiny_synthetic, tmp_path / "c", None, SMALL, scheduler=cluster.scheduler_address)
        man = json.loads(res.manifest_path.read_text())
        assert res.n_ok == 12 and man["provenance"]["scheduler"] == cluster.scheduler_address
        ref = prepare_scalograms(tiny_synthetic, tmp_path / "d", None, SMALL, scheduler="synchronous")
        for s in man["samples"]:
            np.testing.assert_array_equal(np.load(tmp_path / "c" / s["file"]), np.load(tmp_path / "d" / s["file"]))
    assert ref.n_ok == 12
    from ephys.pipelines.core.errors import EphysError
    import pytest

    with pytest.raises(EphysError, match="cannot connect"):
        prepare_scalograms(tiny_synthetic, tmp_path / "e", None, SMALL, scheduler="tcp://127.0.0.1:9")


def test_shards_cover_every_cell_once_then_full_run_writes_manifest(tiny_synthetic, tmp_path):
    from ephys.pipelines.sts.scalograms import count_array_tasks

    out = tmp_path / "ds"
    n = count_array_tasks(tiny_synthetic, None, cells_per_task=5)
    assert n == 3  # 12 cells
    done = 0
    for k in range(n):
        res = prepare_scalograms(tiny_synthetic, out, None, SMALL, scheduler="synchronous", shard=(k, n))
        assert res.manifest_path is None and res.n_resumed == 0
        done += res.n_ok
    assert done == 12 and not (out / "manifest.json").exists()
    # an array task re-run (requeue) redoes nothing
    again = prepare_scalograms(tiny_synthetic, out, None, SMALL, scheduler="synchronous", shard=(1, n))
    assert again.n_resumed == again.n_ok == 4
    final = prepare_scalograms(tiny_synthetic, out, None, SMALL, scheduler="synchronous")
    assert final.n_resumed == 12 and final.manifest_path.exists()
