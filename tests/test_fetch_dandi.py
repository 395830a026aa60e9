"""`ephys fetch dandi` against a local double of the DANDI REST API (no network).

The double (http.server on 127.0.0.1, random port) speaks exactly what the ``dandi`` client
asks for: ``/server-info`` (``DandiAPIClient(api_url=...)`` probes it for an unknown URL),
``/api/dandisets/<id>/``, the paginated asset listing (``?order=path``, ``glob``, ``path``,
``page``, ``page_size``; ``next`` is the same URL with ``page=2`` so dandi fetches the rest in
parallel), per-asset metadata with ``digest`` (sha256 and dandi-etag), and
``/api/assets/<id>/download/`` redirecting to ``/blobs/<blob>``, which honours ``Range``.
Faults: a blob that drops the connection after N bytes (once or always), a blob that is 404.
The production code path is the same; only ``EPHYS_DANDI_API_URL`` differs.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

import pytest

from conftest import ephys, one_line_error
from ephys.pipelines.sts import dandi as D
from ephys.pipelines.core.errors import EphysError

DANDISET = "000020"
STAMP = "2024-01-01T00:00:00.000000Z"


def _nwb_bytes(tmp: Path, label: str, index: int) -> bytes:
    """A small real NWB file (one simulated cell), as bytes."""
    from ephys.pipelines.sts.synthetic import simulate_cells, write_cell_nwb

    cell = simulate_cells([label], seed=index)[0]
    path = write_cell_nwb(tmp / f"cell{index}.nwb", cell)
    return path.read_bytes()


@pytest.fixture(scope="module")
def nwb_blobs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nwb")
    return [_nwb_bytes(tmp, lab, i) for i, lab in enumerate(["Pvalb", "Sst", "Excitatory"])]


class DandiDouble:
    """State of the fake archive: assets, blobs, faults, and a log of requests."""

    def __init__(self, files: dict[str, bytes], page_size: int = 2):
        from dandischema.digests.dandietag import ETagHashlike

        self.page_size = page_size
        self.assets = []
        self.blobs: dict[str, bytes] = {}
        for i, (path, data) in enumerate(sorted(files.items())):
            aid, blob = f"aaaa{i:04d}-0000-0000-0000-000000000000", f"b{i:03d}"
            tagger = ETagHashlike(len(data))
            tagger.update(data)
            self.assets.append({"asset_id": aid, "blob": blob, "zarr": None, "path": path, "size": len(data),
                                "created": STAMP, "modified": STAMP,
                                "_digest": {D.SHA256: hashlib.sha256(data).hexdigest(),
                                            D.ETAG: tagger.hexdigest()}})
            self.blobs[blob] = data
        self.drop_after: dict[str, tuple[int, int]] = {}  # blob -> (bytes, how many requests; -1 always)
        self.missing: set[str] = set()
        self.log: list[tuple[str, str | None]] = []
        self.base = ""

    def version(self):
        return {"version": "draft", "name": "double", "asset_count": len(self.assets),
                "size": sum(a["size"] for a in self.assets), "created": STAMP, "modified": STAMP,
                "status": "Valid"}

    def public(self, a):
        return {k: v for k, v in a.items() if not k.startswith("_")}


def _handler(dd: DandiDouble):
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):  # noqa: C901 - a router
            u = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            p = u.path
            dd.log.append((p, self.headers.get("Range")))
            if p == "/server-info":
                return self._json({"version": "0.0.0-double", "cli-minimal-version": "0.0.0",
                                   "cli-bad-versions": [],
                                   "services": {"api": {"url": dd.base + "/api"}, "webui": {"url": dd.base}}})
            if p == f"/api/dandisets/{DANDISET}/":
                return self._json({"identifier": DANDISET, "created": STAMP, "modified": STAMP,
                                   "contact_person": "Test", "embargo_status": "OPEN",
                                   "most_recent_published_version": None, "draft_version": dd.version()})
            prefix = f"/api/dandisets/{DANDISET}/versions/draft/assets/"
            if p == prefix:
                sel = [a for a in sorted(dd.assets, key=lambda a: a["path"])
                       if p and a["path"].startswith(q.get("path", ""))
                       and (not q.get("glob") or fnmatch.fnmatchcase(a["path"], q["glob"]))]
                size = int(q.get("page_size", dd.page_size))
                page = int(q.get("page", 1))
                chunk = sel[(page - 1) * size: page * size]
                nxt = None
                if page * size < len(sel):
                    q2 = {**q, "page": str(page + 1)}
                    nxt = f"{dd.base}{p}?{urllib.parse.urlencode(q2)}"
                return self._json({"count": len(sel), "next": nxt, "previous": None,
                                   "results": [dd.public(a) for a in chunk]})
            if p.startswith(prefix):
                aid = p[len(prefix):].strip("/")
                for a in dd.assets:
                    if a["asset_id"] == aid:
                        return self._json({"id": f"dandiasset:{aid}", "path": a["path"], "contentSize": a["size"],
                                           "digest": a["_digest"],
                                           "contentUrl": [f"{dd.base}/api/assets/{aid}/download/",
                                                          f"{dd.base}/blobs/{a['blob']}"]})
                return self._json({"detail": "Not found."}, 404)
            if p.startswith("/api/assets/") and p.endswith("/download/"):
                aid = p.split("/")[3]
                for a in dd.assets:
                    if a["asset_id"] == aid:
                        self.send_response(302)
                        self.send_header("Location", f"{dd.base}/blobs/{a['blob']}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                return self._json({"detail": "Not found."}, 404)
            if p.startswith("/blobs/"):
                blob = p.split("/")[2]
                if blob in dd.missing or blob not in dd.blobs:
                    return self._json({"detail": "NoSuchKey"}, 404)
                data = dd.blobs[blob]
                start, end = 0, len(data) - 1
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    start = int(first)
                    end = min(int(last), len(data) - 1) if last else len(data) - 1  # bytes=a-b (remfile)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end + 1 - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if self.command == "HEAD":
                    return
                drop = dd.drop_after.get(blob)
                if drop and drop[1] != 0:
                    n, times = drop
                    dd.drop_after[blob] = (n, times - 1 if times > 0 else times)
                    self.wfile.write(data[start:start + n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:end + 1])
                return
            return self._json({"detail": "Not found."}, 404)

    return H


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up mid-body is expected
        pass


@pytest.fixture
def dandi_double(nwb_blobs, monkeypatch):
    """A running double with 3 assets under two subjects; yields the DandiDouble."""
    files = {
        "sub-599387254/sub-599387254_ses-601506492_icephys.nwb": nwb_blobs[0],
        "sub-599387254/sub-599387254_ses-601506493_icephys.nwb": nwb_blobs[1],
        "sub-700000001/sub-700000001_ses-700000002_icephys.nwb": nwb_blobs[2],
    }
    dd = DandiDouble(files)
    server = QuietServer(("127.0.0.1", 0), _handler(dd))
    dd.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(D.API_URL_ENV, dd.base + "/api")
    monkeypatch.setenv("DANDI_NO_ET", "1")  # dandi's version check would go to the internet
    monkeypatch.setattr(D, "RETRY_SLEEP_S", 0.05)
    try:
        yield dd
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _blob_requests(dd):
    return [(p, r) for p, r in dd.log if p.startswith("/blobs/")]


def _manifest(out):
    with open(out / D.MANIFEST_NAME, newline="") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def _visible_files(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_fresh_fetch_then_rerun_downloads_nothing(dandi_double, tmp_path):
    dd = dandi_double
    out = tmp_path / "dandi"
    seen = []
    res = D.fetch_dandi(out, jobs=2, progress=lambda d, t, p: seen.append((d, t)))
    assert res.n_downloaded == 3 and res.n_skipped == 0
    assert seen[-1] == (3, 3)
    for a in dd.assets:
        assert (out / a["path"]).read_bytes() == dd.blobs[a["blob"]]
    man = _manifest(out)
    assert set(man) == {a["path"] for a in dd.assets}
    row = man[dd.assets[0]["path"]]
    assert row["checksum_type"] == D.SHA256 and row["checksum"] == dd.assets[0]["_digest"][D.SHA256]
    assert row["status"] == "downloaded" and int(row["size"]) == dd.assets[0]["size"]
    # the listing was paginated (page size 2) and dandi asked for page 2
    assert any(p.endswith("/assets/") for p, _ in dd.log)
    assert _visible_files(out) == sorted([*man, D.MANIFEST_NAME])

    dd.log.clear()
    res2 = D.fetch_dandi(out, jobs=2)
    assert res2.n_downloaded == 0 and res2.n_skipped == 3
    assert _blob_requests(dd) == []
    assert {r["status"] for r in _manifest(out).values()} == {"skipped"}


def test_interrupted_download_resumes_with_range(dandi_double, tmp_path):
    dd = dandi_double
    a = dd.assets[1]
    dd.drop_after[a["blob"]] = (200_000, 1)  # first request: 200 kB, then the connection drops
    out = tmp_path / "dandi"
    res = D.fetch_dandi(out, jobs=1)
    assert res.n_downloaded == 3
    assert (out / a["path"]).read_bytes() == dd.blobs[a["blob"]]
    ranges = [r for p, r in _blob_requests(dd) if p == f"/blobs/{a['blob']}"]
    kept = 200_000 // D.CHUNK_BYTES * D.CHUNK_BYTES  # whole chunks reach the .part file
    assert ranges == [None, f"bytes={kept}-"]


def test_interrupted_run_resumes_on_next_run(dandi_double, tmp_path, monkeypatch):
    dd = dandi_double
    a = dd.assets[0]
    dd.drop_after[a["blob"]] = (150_000, 1)
    monkeypatch.setattr(D, "DOWNLOAD_ATTEMPTS", 1)
    out = tmp_path / "dandi"
    with pytest.raises(EphysError) as ei:
        D.fetch_dandi(out, jobs=1, limit=1)
    assert a["path"] in str(ei.value) and "run the command again to resume" in str(ei.value)
    final = out / a["path"]
    assert not final.exists() and not (out / D.MANIFEST_NAME).exists()
    part = D._part_path(final)
    kept = 150_000 // D.CHUNK_BYTES * D.CHUNK_BYTES
    assert part.stat().st_size == kept > 0
    dd.log.clear()
    res = D.fetch_dandi(out, jobs=1, limit=1)
    assert res.n_downloaded == 1 and final.read_bytes() == dd.blobs[a["blob"]]
    assert [r for _, r in _blob_requests(dd)] == [f"bytes={kept}-"]
    assert not part.exists()


def test_corrupted_file_is_detected_and_fetched_again(dandi_double, tmp_path):
    dd = dandi_double
    out = tmp_path / "dandi"
    D.fetch_dandi(out, jobs=2)
    a = dd.assets[2]
    f = out / a["path"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    f.write_bytes(bytes(data))
    truncated = out / dd.assets[0]["path"]
    truncated.write_bytes(truncated.read_bytes()[:100])  # a truncated file too
    dd.log.clear()
    res = D.fetch_dandi(out, jobs=2)
    status = {r.path: r.status for r in res.records}
    assert status == {dd.assets[0]["path"]: "downloaded", dd.assets[1]["path"]: "skipped",
                      a["path"]: "downloaded"}
    assert f.read_bytes() == dd.blobs[a["blob"]]
    assert truncated.read_bytes() == dd.blobs[dd.assets[0]["blob"]]


def test_dandi_etag_is_used_when_no_sha256(dandi_double, tmp_path):
    dd = dandi_double
    for a in dd.assets:
        del a["_digest"][D.SHA256]
    out = tmp_path / "dandi"
    D.fetch_dandi(out, limit=1)
    row = next(iter(_manifest(out).values()))
    assert row["checksum_type"] == D.ETAG and row["checksum"].endswith("-1")
    assert D.fetch_dandi(out, limit=1).n_skipped == 1


def test_include_limit_and_specimens(dandi_double, tmp_path):
    dd = dandi_double
    out = tmp_path / "inc"
    res = D.fetch_dandi(out, include="sub-7*/*.nwb")
    assert [r.path for r in res.records] == [dd.assets[2]["path"]]
    res = D.fetch_dandi(tmp_path / "lim", limit=2)
    assert [r.path for r in res.records] == [a["path"] for a in dd.assets[:2]]

    # the Allen file manifest, served over HTTP by the double's host (a user fetches it by URL)
    fm = tmp_path / D.FILE_MANIFEST_NAME
    with open(fm, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_id", "file_name", "file_size", "sha256_checksum", "md5_checksum", "technique",
                    "file_type", "archive", "archive_uri", "project", "cell_specimen_id"])
        w.writerow(["601506492", "sub-599387254_ses-601506492_icephys.nwb", dd.assets[0]["size"], "", "",
                    "intracellular_electrophysiology", "nwb", "DANDI", "", "mIVSCC-MET", "601506507"])
        w.writerow(["1", "601506507.marker", "268", "", "", "morphology", "marker_swc", "BIL", "", "", "601506507"])
        w.writerow(["700000002", "sub-700000001_ses-700000002_icephys.nwb", dd.assets[2]["size"], "", "",
                    "intracellular_electrophysiology", "nwb", "DANDI", "", "mIVSCC-MET", "700000003"])
    out = tmp_path / "spec"
    res = D.fetch_dandi(out, specimens=["700000003", "601506507"], file_manifest=fm)
    assert {r.path: r.specimen_id for r in res.records} == {dd.assets[2]["path"]: "700000003",
                                                            dd.assets[0]["path"]: "601506507"}
    assert _manifest(out)[dd.assets[2]["path"]]["specimen_id"] == "700000003"
    with pytest.raises(EphysError, match="unknown cell specimen id 123"):
        D.fetch_dandi(out, specimens=["123"], file_manifest=fm)


def test_file_manifest_from_url_is_downloaded_and_kept(dandi_double, tmp_path):
    data = ("file_id,file_name,file_size,sha256_checksum,md5_checksum,technique,file_type,archive,"
            "archive_uri,project,cell_specimen_id\n"
            "700000002,sub-700000001_ses-700000002_icephys.nwb,1,,,x,nwb,DANDI,,p,700000003\n").encode()
    served = {"n": 0}

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            served["n"] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = QuietServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{D.FILE_MANIFEST_NAME}"
        out = tmp_path / "d"
        res = D.fetch_dandi(out, specimens=["700000003"], file_manifest=url)
        assert res.records[0].specimen_id == "700000003"
        assert (out / D.FILE_MANIFEST_NAME).read_bytes() == data
        D.fetch_dandi(out, specimens=["700000003"], file_manifest=url)
        assert served["n"] == 1  # the kept copy is reused
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ the CLI: one-line errors


def test_cli_fetch_and_rerun(dandi_double, tmp_path):
    out = tmp_path / "cli"
    proc = ephys("--quiet", "fetch", "dandi", DANDISET, out, "--jobs", "2", check=0)
    assert proc.stdout.strip() == str(out)
    assert len(_manifest(out)) == 3
    proc = ephys("fetch", "dandi", DANDISET, out, check=0)
    assert "0 downloaded, 3 already complete" in proc.stderr


def test_cli_404_is_one_line(dandi_double, tmp_path):
    dd = dandi_double
    a = dd.assets[1]
    dd.missing.add(a["blob"])
    out = tmp_path / "cli"
    proc = ephys("fetch", "dandi", DANDISET, out, "--jobs", "1")
    one_line_error(proc, "404", a["path"], f"/api/assets/{a['asset_id']}/download/")
    assert not (out / a["path"]).exists()
    assert not (out / D.MANIFEST_NAME).exists()
    assert not D._part_path(out / a["path"]).exists()  # nothing to resume from a 404
    for rel in _visible_files(out):  # anything at a final name is complete and verified
        src = next(x for x in dd.assets if x["path"] == rel)
        assert (out / rel).read_bytes() == dd.blobs[src["blob"]]


def test_cli_dropped_connection_is_one_line(dandi_double, tmp_path):
    dd = dandi_double
    a = dd.assets[0]
    dd.drop_after[a["blob"]] = (100_000, -1)  # always drops
    out = tmp_path / "cli"
    proc = ephys("fetch", "dandi", DANDISET, out, "--limit", "1")
    one_line_error(proc, a["path"], "failed after", "connection dropped", "resume", f"/api/assets/{a['asset_id']}/download/")
    assert not (out / a["path"]).exists() and not (out / D.MANIFEST_NAME).exists()
    assert _visible_files(out) == []  # only the hidden .part remains, for resuming


def test_cli_unknown_dandiset_and_specimen(dandi_double, tmp_path):
    one_line_error(ephys("fetch", "dandi", "999999", tmp_path / "x"), "999999")
    fm = tmp_path / "fm.csv"
    fm.write_text("file_id,file_name,file_size,sha256_checksum,file_type,archive,cell_specimen_id\n"
                  "1,sub-1_ses-2_icephys.nwb,10,,nwb,DANDI,42\n")
    one_line_error(ephys("fetch", "dandi", DANDISET, tmp_path / "y", "--specimens", "42,77",
                          "--file-manifest", fm), "unknown cell specimen id 77")
    one_line_error(ephys("fetch", "dandi", DANDISET, tmp_path / "y", "--specimens", "42",
                          "--file-manifest", tmp_path / "missing.csv"), "missing.csv")
    assert not (tmp_path / "y" / D.MANIFEST_NAME).exists()


def test_cli_unreachable_api_is_one_line(tmp_path, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("DANDI_NO_ET", "1")
    proc = ephys("fetch", "dandi", DANDISET, tmp_path / "z", "--api-url", f"http://127.0.0.1:{port}/api")
    one_line_error(proc, f"127.0.0.1:{port}")
