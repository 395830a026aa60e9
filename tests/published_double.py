"""A test double of a published model: ML-STIM's declaration with the checksum and size of a
parameter file generated here (tests/data/mlp_9_7_4_4_2_1.pth, random weights of ML-STIM's
architecture; no file of the ML-STIM repository), and a loopback HTTP server that serves it at the
path of the real download (plain GET, as raw.githubusercontent.com answers).

Importing this module registers the double as ``ml-stim-double`` (``EPHYS_PLUGINS=published_double``).
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import urllib.parse
from dataclasses import replace
from pathlib import Path

from ephys.pipelines.core.registry import Pipeline, register_pipeline
from ephys.pipelines.mer import ML_STIM

PTH = Path(__file__).parent / "data" / "mlp_9_7_4_4_2_1.pth"
NAME = "ml-stim-double"
DOUBLE = replace(ML_STIM, name=NAME, sha256=hashlib.sha256(PTH.read_bytes()).hexdigest(), size=PTH.stat().st_size,
                 summary="test double of ml-stim (random weights of its architecture)")
register_pipeline(Pipeline("published-double", "test double of a published model's download", published=(DOUBLE,)),
                  replace=True)


class Server:
    """``with Server(root) as base_url``: files under ``root`` over HTTP on 127.0.0.1 (a free port)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __enter__(self) -> str:
        handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(self.root), **k))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def publish(root: Path, content: Path = PTH) -> Path:
    """Put ``content`` under ``root`` at the real URL's path (as GitHub serves it)."""
    dest = Path(root) / urllib.parse.urlparse(ML_STIM.url).path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(content, dest)
    return dest
