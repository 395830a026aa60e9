"""`ephys fetch allen` against a local double of the Allen Brain Map RMA API (no network),
and the Cre line / t-type -> STS class mapping (checked against the STS labels when
../shared/data is there)."""

from __future__ import annotations

import csv
import http.server
import json
import threading
import urllib.parse

import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.sts import allen as A
from ephys.pipelines.core.errors import EphysError


def _row(sid, line, species="Mus musculus", erwkf=None, **ef):
    r = {c: None for c in A.SPECIMEN_COLUMNS}
    r.update(specimen__id=sid, line_name=line, donor__species=species, erwkf__id=erwkf,
             specimen__name=f"cell-{sid}", structure__layer="4", tag__dendrite_type="aspiny",
             ef__vrest=-70.5, ef__tau=12.25, ef__ri=150.0, ef__avg_firing_rate=9.5)
    r.update(ef)
    return r


ROWS = [
    _row(111, "Pvalb-IRES-Cre", erwkf=9001),
    _row(222, "Rorb-IRES2-Cre", erwkf=9002),
    _row(333, "Nos1-CreERT2|Sst-IRES-FlpO", erwkf=9003),
    _row(444, "", species="Homo Sapiens", erwkf=None),
]


class AllenDouble:
    def __init__(self, nwb: bytes):
        self.nwb = nwb
        self.wkf = {9001: 70001, 9002: 70002, 9003: 70003}  # ephys result id -> well known file id
        self.by_file_id_only: set[int] = set()  # erwkf ids answered only by [id$eq...]
        self.missing: set[int] = set()  # well known file ids that are 404
        self.drop: set[int] = set()  # well known file ids whose download drops halfway
        self.table_fails = False
        self.log: list[str] = []
        self.base = ""


def _handler(ad: AllenDouble):
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body: bytes, status=200, ctype="application/json", length=None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def _rma(self, rows):
            self._send(json.dumps({"success": True, "id": 0, "start_row": 0, "num_rows": len(rows),
                                   "total_rows": len(rows), "msg": rows}).encode())

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            ad.log.append(self.path)
            if u.path == A.QUERY_PATH:
                crit = urllib.parse.parse_qs(u.query)["criteria"][0]
                if crit == A.SPECIMEN_CRITERIA:
                    if ad.table_fails:
                        return self._send(json.dumps({"success": False, "msg": "Data Access error"}).encode())
                    return self._rma(ROWS)
                if crit.startswith("model::WellKnownFile") and "well_known_file_type[name$eqNWBDownload]" in crit:
                    attach = crit.split("[attachable_id$eq")[1].split("]")[0] if "attachable_id$eq" in crit else None
                    by_id = crit.split("[id$eq")[1].split("]")[0] if "[id$eq" in crit else None
                    if attach is not None and int(attach) in ad.wkf and int(attach) not in ad.by_file_id_only:
                        w = ad.wkf[int(attach)]
                        return self._rma([{"id": w, "attachable_id": int(attach),
                                           "download_link": f"/api/v2/well_known_file_download/{w}"}])
                    if by_id is not None and int(by_id) in ad.by_file_id_only:
                        return self._rma([{"id": int(by_id), "attachable_id": 1,
                                           "download_link": f"/api/v2/well_known_file_download/{by_id}"}])
                    return self._rma([])
                return self._send(b'{"success": false, "msg": "bad query"}')
            if u.path.startswith("/api/v2/well_known_file_download/"):
                w = int(u.path.rsplit("/", 1)[1])
                if w in ad.missing:
                    return self._send(b"<html>Not Found</html>", 404, "text/html")
                if w in ad.drop:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(ad.nwb)))
                    self.end_headers()
                    self.wfile.write(ad.nwb[: len(ad.nwb) // 2])
                    self.close_connection = True
                    return
                return self._send(ad.nwb, ctype="application/x-hdf5")
            return self._send(b"<html>Not Found</html>", 404, "text/html")

    return H


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@pytest.fixture(scope="module")
def nwb_bytes(tmp_path_factory):
    from ephys.pipelines.sts.synthetic import simulate_cells, write_cell_nwb

    tmp = tmp_path_factory.mktemp("allen_nwb")
    return write_cell_nwb(tmp / "c.nwb", simulate_cells(["Pvalb"], seed=3)[0]).read_bytes()


@pytest.fixture
def allen_double(nwb_bytes, monkeypatch):
    ad = AllenDouble(nwb_bytes)
    server = QuietServer(("127.0.0.1", 0), _handler(ad))
    ad.base = f"http://127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv(A.API_URL_ENV, ad.base)
    try:
        yield ad
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_table_features_one_nwb_labels_and_rerun(allen_double, tmp_path):
    ad = allen_double
    out = tmp_path / "allen"
    res = A.fetch_allen(out, features=True, nwb=["111"])
    assert res.n_cells == 4 and res.nwb == {"111": "downloaded"}
    table = _csv(out / A.TABLE_NAME)
    with open(out / A.TABLE_NAME) as fh:
        assert fh.readline().strip().split(",") == list(A.SPECIMEN_COLUMNS)
    assert [r["specimen__id"] for r in table] == ["111", "222", "333", "444"]
    assert table[0]["ef__vrest"] == "-70.5" and table[3]["erwkf__id"] == ""
    feats = _csv(out / A.FEATURES_NAME)
    assert list(feats[0]) == ["specimen__id"] + [c for c in A.SPECIMEN_COLUMNS if c.startswith("ef__")]
    assert (out / "nwb" / "111.nwb").read_bytes() == ad.nwb
    spec = {r["specimen_id"]: r["label"] for r in _csv(out / A.SPECIMEN_LABELS_NAME)}
    assert spec == {"111": "Pvalb", "222": "Excitatory", "333": "Sst", "444": "unknown"}
    assert _csv(out / A.LABELS_NAME) == [{"path": "nwb/111.nwb", "label": "Pvalb", "specimen_id": "111",
                                          "line_name": "Pvalb-IRES-Cre"}]
    # labels.csv is what `ephys prepare scalograms --labels` reads
    from ephys.pipelines.blocks.readers.patchclamp import discover_cells

    cells, _ = discover_cells(out, out / A.LABELS_NAME)
    assert [(c.label, [p.name for p in c.paths]) for c in cells] == [("Pvalb", ["111.nwb"])]

    ad.log.clear()
    res = A.fetch_allen(out, nwb=["111", "222"])
    assert res.nwb == {"111": "skipped", "222": "downloaded"}
    assert not any("well_known_file_download/70001" in p for p in ad.log)
    assert not any("ApiCellTypesSpecimenDetail" in urllib.parse.unquote(p) for p in ad.log)  # table kept
    assert len(_csv(out / A.LABELS_NAME)) == 2


def test_erwkf_as_file_id_fallback(allen_double, tmp_path):
    ad = allen_double
    ad.by_file_id_only.add(9003)
    res = A.fetch_allen(tmp_path / "a", nwb=["333"])
    assert res.nwb == {"333": "downloaded"}
    assert any("well_known_file_download/9003" in p for p in ad.log)


def test_cli_fetch_allen(allen_double, tmp_path):
    out = tmp_path / "cli"
    proc = ephys("--quiet", "fetch", "allen", out, "--features", "--nwb", "111", check=0)
    assert proc.stdout.strip() == str(out)
    assert (out / "nwb" / "111.nwb").is_file() and (out / A.FEATURES_NAME).is_file()


def test_cli_nwb_404_is_one_line(allen_double, tmp_path):
    ad = allen_double
    ad.missing.add(70002)
    out = tmp_path / "cli"
    one_line_error(ephys("fetch", "allen", out, "--nwb", "222"), "HTTP 404",
                    f"{ad.base}/api/v2/well_known_file_download/70002")
    assert not (out / "nwb").exists() or list((out / "nwb").iterdir()) == []


def test_cli_nwb_dropped_connection_is_one_line(allen_double, tmp_path):
    ad = allen_double
    ad.drop.add(70001)
    out = tmp_path / "cli"
    one_line_error(ephys("fetch", "allen", out, "--nwb", "111"), "well_known_file_download/70001", "dropped")
    assert not (out / "nwb").exists() or list((out / "nwb").iterdir()) == []


def test_cli_unknown_specimen_and_api_failure(allen_double, tmp_path):
    ad = allen_double
    one_line_error(ephys("fetch", "allen", tmp_path / "a", "--nwb", "111,999"), "unknown cell specimen id 999")
    assert not (tmp_path / "a" / "nwb").exists()
    one_line_error(ephys("fetch", "allen", tmp_path / "a", "--nwb", "444"), "444", "no electrophysiology NWB")
    ad.table_fails = True
    one_line_error(ephys("fetch", "allen", tmp_path / "b"), "Data Access error", "ApiCellTypesSpecimenDetail")
    assert not (tmp_path / "b" / A.TABLE_NAME).exists()


def test_unreachable_allen_api(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(EphysError, match=f"127.0.0.1:{port}"):
        A.fetch_allen(tmp_path / "x", api_url=f"http://127.0.0.1:{port}")


# ------------------------------------------------------------------ the class mapping


@pytest.mark.parametrize("line,cls", [
    ("Pvalb-IRES-Cre", "Pvalb"), ("Pvalb-T2A-CreERT2", "Pvalb"), ("Sst-IRES-Cre", "Sst"),
    ("Vip-IRES-Cre", "Vip/Lamp5"), ("Ndnf-IRES2-dgCre", "Vip/Lamp5"), ("Htr3a-Cre_NO152", "Vip/Lamp5"),
    ("Chat-IRES-Cre-neo", "Vip/Lamp5"), ("Chrna2-Cre_OE25", "Sst"), ("Rbp4-Cre_KL100", "Excitatory"),
    ("Cux2-CreERT2", "Excitatory"), ("Scnn1a-Tg3-Cre", "Excitatory"), ("Ntsr1-Cre_GN220", "Excitatory"),
    ("Ctgf-T2A-dgCre", "Excitatory"), ("Slc17a6-IRES-Cre", "Excitatory"),
    ("Nos1-CreERT2|Sst-IRES-FlpO", "Sst"), ("Htr3a-Cre_NO152|Pvalb-T2A-Dre", "Pvalb"),
    ("Slc32a1-T2A-FlpO|Vipr2-IRES2-Cre", "Pvalb"), ("Vipr2-IRES2-Cre", None),
    ("Gad2-IRES-Cre", None), ("Nkx2-1-CreERT2", None), ("Oxtr-T2A-Cre", None), ("Penk-IRES2-Cre-neo", None),
    ("", None), (None, None), ("Unknown-Cre", None),
])
def test_sts_class_from_cre(line, cls):
    assert A.sts_class_from_cre(line) == cls


@pytest.mark.parametrize("ttype,cls", [
    ("Pvalb Reln Itm2a", "Pvalb"), ("Sst Calb2 Pdlim5", "Sst"), ("Vip Gpc3 Slc18a3", "Vip/Lamp5"),
    ("Lamp5 Lsp1", "Vip/Lamp5"), ("Sncg Vip Itih5", "Vip/Lamp5"), ("Serpinf1 Clrn1", "Vip/Lamp5"),
    ("L2/3 IT VISp Agmat", "Excitatory"), ("L5 PT VISp Chrna6", "Excitatory"), ("L6 CT VISp Nxph2 Wls", "Excitatory"),
    ("Meis2 Adamts19", None), ("", None), (None, None),
])
def test_sts_class_from_ttype(ttype, cls):
    assert A.sts_class_from_ttype(ttype) == cls


@needs_shared
def test_mapping_agrees_with_sts_labels():
    """Every cell our mapping labels carries the same class in the STS label file."""
    ref = A.read_sts_labels(SHARED_DATA / "sts" / "cell_types_GouwensAll_new.txt")
    rows = A.read_table(SHARED_DATA / "allen" / "cell_types_specimen_details.csv")
    cre = {r["specimen__id"]: A.sts_class_from_cre(r["line_name"]) for r in rows
           if r["donor__species"] == "Mus musculus"}
    with open(SHARED_DATA / "allen" / "20200625_patchseq_metadata_mouse.csv", newline="") as fh:
        tt = {r["cell_specimen_id"]: A.sts_class_from_ttype(r["corresponding_AIT2.3.1_alias"])
              for r in csv.DictReader(fh)}
    a_cre, a_tt = A.agreement(cre, ref), A.agreement(tt, ref)
    assert a_cre["agreement"] == 1.0 and a_cre["coverage"] > 0.95, a_cre
    assert a_tt["agreement"] == 1.0 and a_tt["coverage"] > 0.96, a_tt
