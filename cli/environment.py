"""The process around a command: writable library caches, the backend import without its chatter,
third-party warnings as one line each."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .state import STATE


def writable_caches() -> None:
    """Point library caches at a temp folder when the home folder is not writable; keep
    TensorFlow's native start-up log lines (oneDNN notices, CPU feature lines) off stderr
    wherever it is imported (``TF_CPP_MIN_LOG_LEVEL=2`` unless set).

    pynwb writes a type-map cache under the user cache dir at import (platformdirs,
    ``$XDG_CACHE_HOME`` or ``~/.cache``) and matplotlib its config under ``~/.config``; inside
    an Apptainer image, or on compute nodes with a read-only home, that fails. Variables the
    user set are left alone.
    """
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    probe = home_cache if home_cache.is_dir() else home_cache.parent
    if os.access(probe, os.W_OK):
        return
    fallback = Path(tempfile.gettempdir()) / f"ephys-cache-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(fallback)
    os.environ.setdefault("MPLCONFIGDIR", str(fallback / "matplotlib"))


def import_backend() -> None:
    """Import Keras and its backend with native start-up chatter hidden.

    TensorFlow prints C++ log lines (oneDNN notices, absl warnings) on stderr when it is
    imported, which no environment variable fully silences; batch logs and the one-line error
    contract should not carry them. stderr is pointed at /dev/null only during the import
    (``--debug`` keeps it). Import errors still raise normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not STATE["debug"]:
        import logging

        # TensorFlow's Python-side warnings ("... triggered tf.function retracing", deprecations)
        # are for its developers; ours say what matters in one line each
        for name in ("tensorflow", "absl", "keras"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if STATE["debug"] or "keras" in sys.modules:
        import keras  # noqa: F401
        return
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import keras  # noqa: F401

        from ephys.pipelines.core import runtime

        runtime.backend_version()  # imports the backend module itself
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def route_warnings() -> None:
    """Third-party warnings become one ``ephys: warning: ...`` line each (once per message), not
    multi-line blocks with source lines; ``--debug`` leaves Python's default display."""
    import warnings

    if STATE["debug"]:
        return
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if len(text) > 200:
            text = text[:197] + "..."
        key = f"{category.__name__}:{text}"
        if key in seen:
            return
        seen.add(key)
        print(f"ephys: warning: {text} ({category.__name__}; --debug for details)", file=sys.stderr)

    warnings.showwarning = show
