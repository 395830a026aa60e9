"""CLI environment set-up that matters on clusters and in containers."""

import os
from pathlib import Path

from ephys.cli import common


def test_read_only_home_moves_library_caches_to_tmp(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(home)) else real_access(p, mode))
    common.writable_caches()
    cache = Path(os.environ["XDG_CACHE_HOME"])
    assert not str(cache).startswith(str(home)) and cache.is_dir()
    assert os.environ["MPLCONFIGDIR"].startswith(str(cache))


def test_writable_home_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    common.writable_caches()
    assert "XDG_CACHE_HOME" not in os.environ
