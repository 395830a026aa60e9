"""The in-process / dask rule of ``--scheduler auto`` (issue 15)."""

from __future__ import annotations

import time

from ephys.pipelines.core import runner


def _fn(cell, sleep_s):
    time.sleep(sleep_s)
    return {"id": cell}


def _spy():
    calls = []

    def make_client(scheduler, workers):
        calls.append((scheduler, workers))
        return None, None  # the remaining cells then run here: enough to see the decision

    return calls, make_client


def test_small_input_never_starts_a_cluster():
    calls, make = _spy()
    got = runner.run_items(_fn, list(range(20)), (0.001,), "auto", 2, make)
    assert [r["id"] for r in got] == list(range(20)) and calls == []


def test_large_input_moves_to_a_cluster_once_it_pays(monkeypatch):
    monkeypatch.setattr(runner, "CLUSTER_START_S", 0.05)
    calls, make = _spy()
    seen = []
    got = runner.run_items(_fn, list(range(30)), (0.01,), "auto", 2, make,
                           progress=lambda done, total, rec: seen.append((done, total)))
    # 30 cells x 0.01 s x (1 - 1/2) = 0.15 s > 0.05 s: the cluster is asked for after the first cell
    assert calls == [("local", 2)]
    assert sorted(r["id"] for r in got) == list(range(30)) and seen[-1] == (30, 30)


def test_one_worker_and_synchronous_stay_in_process(monkeypatch):
    monkeypatch.setattr(runner, "CLUSTER_START_S", 0.0)
    for sched, workers in (("auto", 1), ("synchronous", 2)):
        calls, make = _spy()
        runner.run_items(_fn, list(range(5)), (0.002,), sched, workers, make)
        assert calls == []
    calls, make = _spy()
    runner.run_items(_fn, list(range(3)), (0.0,), "local", 2, make)
    assert calls == [("local", 2)]  # 'local' always asks for the cluster
