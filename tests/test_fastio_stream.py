"""`--stream`: NWB files read over HTTP Range requests (remfile + h5py), issue 15.

A local server on 127.0.0.1 (random port) serves test NWB files with ``Range: bytes=a-b``
(206 + Content-Range), logs every request, and can drop the connection once (send the headers
and part of the body, then hang up). Streamed sweeps, scalograms and features must equal those
from the local files; a dropped connection is retried; the bytes read are counted.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys
from test_fetch_dandi import dandi_double, nwb_blobs  # noqa: F401 - the local DANDI API double
from ephys.pipelines.blocks.readers import remote
from ephys.pipelines.blocks.readers.patchclamp import read_nwb
from ephys.pipelines.core.errors import UnreadableRecording
from ephys.pipelines.sts.scalograms import ScalogramParams, prepare_scalograms

SMALL = ScalogramParams(n_scales=16, window_s=(-0.1, 0.5))


class RangeServer:
    def __init__(self, root: Path):
        self.root = root
        self.log: list[tuple[str, str | None]] = []
        self.drop_next = 0  # how many of the next Range responses to cut short
        self.dropped = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                path = server.root / name
                rng = self.headers.get("Range")
                server.log.append((name, rng))
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                m = re.match(r"bytes=(\d+)-(\d*)$", rng or "")
                if m:
                    a = int(m.group(1))
                    b = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                    body = data[a:b + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
                else:
                    body = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if m and server.drop_next > 0 and len(body) > 16:
                    server.drop_next -= 1
                    server.dropped += 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # hang up mid-body
                    return
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client hanging up is expected
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def served(tiny_synthetic, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    for p in sorted(tiny_synthetic.glob("*.nwb"))[:4]:
        shutil.copy(p, root / p.name)
    shared = SHARED_DATA / "patchclamp" / "nwb" / "FergusonEtAl2015_PYR2.nwb"
    if shared.is_file():
        shutil.copy(shared, root / shared.name)
    with RangeServer(root) as srv:
        yield srv


def _same(a, b):
    assert [s.sweep_id for s in a] == [s.sweep_id for s in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.v_mV, y.v_mV)
        np.testing.assert_array_equal(x.i_pA, y.i_pA)
        assert (x.fs_hz, x.t0_s) == (y.fs_hz, y.t0_s)
        np.testing.assert_equal([x.stim_amp_pA, x.stim_start_s, x.stim_end_s],
                                [y.stim_amp_pA, y.stim_start_s, y.stim_end_s])


def test_streamed_sweeps_equal_local_and_survive_a_dropped_connection(served):
    for p in sorted(served.root.glob("*.nwb")):
        url = f"{served.base}/{p.name}"
        served.drop_next = 1  # the first Range response of this file is cut mid-body
        before = served.dropped
        got = remote.read_nwb_url(url)
        assert served.dropped == before + 1
        _same(got, read_nwb(p))
        assert got[0].meta["file"] == url
        count = remote.BYTES_READ[url]
        assert count["size"] == p.stat().st_size and 0 < count["bytes_read"]
        assert any(r for n, r in served.log if n == p.name)  # Range requests were made


def test_missing_url_is_one_reason(served):
    with pytest.raises(UnreadableRecording, match="cannot stream"):
        remote.read_nwb_url(f"{served.base}/nope.nwb")


def test_stream_prepare_equals_local_prepare(served, tmp_path):
    files = sorted(served.root.glob("syn_*.nwb"))
    listing = tmp_path / "urls.txt"
    listing.write_text("# streamed cells\n" + "".join(f"{served.base}/{p.name}\n" for p in files))
    local = tmp_path / "local"
    local.mkdir()
    for p in files:
        shutil.copy(p, local / p.name)
    a = prepare_scalograms(local, tmp_path / "a", None, SMALL, scheduler="synchronous")
    b = prepare_scalograms(listing, tmp_path / "b", None, SMALL, scheduler="synchronous", stream=True)
    ma, mb = (json.loads(r.manifest_path.read_text()) for r in (a, b))
    assert [s["id"] for s in ma["samples"]] == [s["id"] for s in mb["samples"]]
    for sa, sb in zip(ma["samples"], mb["samples"]):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / sa["file"]), np.load(tmp_path / "b" / sb["file"]))
        (inp,) = sb["inputs"]
        assert inp["url"].startswith(served.base) and 0 < inp["bytes_read"] <= inp["size"] * 1.01


def test_cli_stream_features_equal_local(served, tmp_path):
    (p,) = sorted(served.root.glob("syn_*.nwb"))[:1]
    url = f"{served.base}/{p.name}"
    ephys("--quiet", "prepare", "features", url, tmp_path / "remote", "--stream", check=0)
    ephys("--quiet", "prepare", "features", p, tmp_path / "local", check=0)
    np.testing.assert_array_equal(np.load(tmp_path / "remote" / "features.npy"),
                                  np.load(tmp_path / "local" / "features.npy"))


def test_stream_a_dandiset_through_the_dandi_api_double(dandi_double, tmp_path):
    """`--stream 000020`: assets listed by the (local) DANDI API, read through its download
    redirect with Range requests; the same features as from the downloaded files."""
    from ephys.pipelines.sts.ep_features import prepare_features

    res = prepare_features("000020", tmp_path / "remote", stream=True, include="sub-5*/*.nwb")
    man = json.loads(res.manifest_path.read_text())
    cells = man["provenance"]["cells"]
    assert len(cells) == 2 and "601506492" in cells[0]["id"] and "601506493" in cells[1]["id"]
    assert all(c["inputs"][0]["bytes_read"] > 0 for c in cells)
    assert any(r for p, r in dandi_double.log if p.startswith("/blobs/") and r and "-" in r[6:] and r[-1] != "-")
    local = tmp_path / "local"
    for a in dandi_double.assets[:2]:
        dest = local / a["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(dandi_double.blobs[a["blob"]])
    prepare_features(local, tmp_path / "ref")
    np.testing.assert_array_equal(np.load(tmp_path / "remote" / "features.npy"), np.load(tmp_path / "ref" / "features.npy"))
