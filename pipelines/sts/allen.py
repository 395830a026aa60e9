"""Allen Cell Types Database: specimen table, per-cell NWB files, and STS class labels.

Plain HTTP (urllib) against the Allen Brain Map API (the allensdk pins an old numpy):

- specimen table: RMA query ``model::ApiCellTypesSpecimenDetail,rma::options[num_rows$eqall]``
  on ``/api/v2/data/query.json`` (the table behind celltypes.brain-map.org's
  ``cell_types_specimen_details.csv``; one row per cell, mouse and human);
- NWB of one cell: the ``WellKnownFile`` of type ``NWBDownload`` attached to the cell's ephys
  result (``erwkf__id`` in the table), then ``GET <api root><download_link>``.

Sources: Allen Brain Map API, RESTful Model Access (RMA),
https://help.brain-map.org/display/api/RESTful+Model+Access+%28RMA%29 and
https://help.brain-map.org/display/api/Downloading+a+WellKnownFile ; Allen Cell Types
Database technical white paper (electrophysiology), 2017.

The class mapping (:func:`sts_class_from_cre`, :func:`sts_class_from_ttype`) turns a Cre line
or a Patch-seq transcriptomic type into the four STS classes of Amprimo et al. (2025):
``Excitatory``, ``Pvalb``, ``Sst``, ``Vip/Lamp5``, or ``None`` when the line does not
determine one.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..core.atomic import atomic_path
from ..core.errors import EphysError

#: Allen Brain Map API root; ``$EPHYS_ALLEN_API_URL`` overrides it (a mirror, a test double)
ALLEN_API_URL = "http://api.brain-map.org"
API_URL_ENV = "EPHYS_ALLEN_API_URL"
QUERY_PATH = "/api/v2/data/query.json"
SPECIMEN_CRITERIA = "model::ApiCellTypesSpecimenDetail,rma::options[num_rows$eqall]"
NWB_CRITERIA = ("model::WellKnownFile,rma::criteria,[attachable_id$eq{id}],"
                "well_known_file_type[name$eqNWBDownload]")
#: fallback when ``erwkf__id`` is the NWB's own WellKnownFile id rather than its ephys result id
NWB_CRITERIA_BY_ID = ("model::WellKnownFile,rma::criteria,[id$eq{id}],"
                      "well_known_file_type[name$eqNWBDownload]")
TABLE_NAME = "cell_types_specimen_details.csv"
FEATURES_NAME = "ef_features.csv"
LABELS_NAME = "labels.csv"
SPECIMEN_LABELS_NAME = "specimen_labels.csv"
HTTP_TIMEOUT_S = 60
STS_CLASSES = ("Excitatory", "Pvalb", "Sst", "Vip/Lamp5")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: column order of celltypes.brain-map.org's ``cell_types_specimen_details.csv``
SPECIMEN_COLUMNS = (
    "line_name", "specimen__id", "specimen__name", "specimen__hemisphere", "structure__id",
    "structure__name", "structure__acronym", "structure_parent__id", "structure_parent__acronym",
    "structure__layer", "nr__max_euclidean_distance", "nr__number_stems",
    "nr__number_bifurcations", "nr__average_contraction", "nr__average_parent_daughter_ratio",
    "nr__reconstruction_type", "nrwkf__id", "erwkf__id", "ef__fast_trough_v_long_square",
    "ef__upstroke_downstroke_ratio_long_square", "ef__adaptation", "ef__f_i_curve_slope",
    "ef__threshold_i_long_square", "ef__tau", "ef__avg_isi", "ef__avg_firing_rate", "ef__ri",
    "ef__peak_t_ramp", "ef__vrest", "si__height", "si__width", "si__path", "csl__x", "csl__y",
    "csl__z", "csl__normalized_depth", "cell_reporter_status", "m__glif", "m__biophys",
    "m__biophys_perisomatic", "m__biophys_all_active", "tag__apical", "tag__dendrite_type",
    "morph_thumb_path", "ephys_thumb_path", "ephys_inst_thresh_thumb_path", "donor__age",
    "donor__sex", "donor__disease_state", "donor__race", "donor__years_of_seizure_history",
    "donor__species", "donor__id", "donor__name",
)

# --------------------------------------------------------------------------- class mapping

#: Cre/Flp/Dre driver gene -> STS class (None: the driver does not determine one). The key is
#: the gene part of the allele name, before the first "-" (``Pvalb-IRES-Cre`` -> ``Pvalb``).
DRIVER_CLASS: dict[str, str | None] = {
    # class-defining knock-ins: Hippenmeyer et al. 2005 (Pvalb-IRES-Cre); Taniguchi et al. 2011
    # Neuron 71:995 (Sst-IRES-Cre, Vip-IRES-Cre); Madisen et al. 2015 (Pvalb-T2A-Dre/FlpO/CreERT2)
    "Pvalb": "Pvalb",
    "Sst": "Sst",
    "Vip": "Vip/Lamp5",
    # Lamp5 / neurogliaform: Tasic et al. 2018 Nature 563:72 (Lamp5 subclass; Ndnf-IRES2-dgCre
    # labels Lamp5 neurogliaform cells, also Tasic et al. 2016 Nat Neurosci 19:335)
    "Lamp5": "Vip/Lamp5",
    "Ndnf": "Vip/Lamp5",
    # Htr3a-Cre_NO152 (GENSAT) labels the 5HT3aR, CGE-derived group = Vip + Lamp5 + Sncg
    # (Lee et al. 2010 J Neurosci 30:16796; Rudy et al. 2011 Dev Neurobiol 71:45)
    "Htr3a": "Vip/Lamp5",
    # cortical ChAT interneurons are VIP+ bipolar cells (von Engelhardt et al. 2007 J Neurosci
    # 27:5633; the "Vip Chat" types of Tasic et al. 2016)
    "Chat": "Vip/Lamp5",
    # Chrna2-Cre_OE25 labels layer-5 Martinotti (Sst) cells (Hilscher et al. 2017 PLoS Biol
    # 15:e2001392)
    "Chrna2": "Sst",
    # glutamatergic lines (Harris et al. 2014 Front Neural Circuits 8:76; Gerfen et al. 2013
    # Neuron 80:1368; Madisen et al. 2010 Nat Neurosci 13:133; Gouwens et al. 2019 Fig. 1)
    "Rbp4": "Excitatory",      # L5 IT+PT
    "Cux2": "Excitatory",      # L2/3-4 IT (Franco et al. 2012)
    "Scnn1a": "Excitatory",    # L4
    "Nr5a1": "Excitatory",     # L4
    "Rorb": "Excitatory",      # L4-5
    "Tlx3": "Excitatory",      # L5 IT
    "Ntsr1": "Excitatory",     # L6 CT (Gong et al. 2007)
    "Sim1": "Excitatory",      # L5 PT
    "Fezf2": "Excitatory",     # L5 PT
    "Glt25d2": "Excitatory",   # L5 PT (Gerfen et al. 2013)
    "Syt6": "Excitatory",      # L6 CT (Gerfen et al. 2013)
    "Emx1": "Excitatory",      # pan-pyramidal (Gorski et al. 2002)
    "Slc17a6": "Excitatory",   # VGluT2
    "Slc17a7": "Excitatory",   # VGluT1
    "Ctgf": "Excitatory",      # L6b (Tasic et al. 2016, "L6b Ctgf")
    # not determined by the driver alone:
    "Gad2": None,      # pan-GABAergic
    "Slc32a1": None,   # VGAT, pan-GABAergic
    "Nkx2-1": None,    # MGE-derived: Pvalb *or* Sst; which depends on tamoxifen timing
                       # (Taniguchi et al. 2013 Science 339:70)
    "Nos1": None,      # Sst Chodl long-range cells and others (Tasic et al. 2018)
    "Oxtr": None,      # Sst interneurons and pyramidal cells (Nakajima et al. 2014 Cell 159:295)
    "Penk": None,      # IT pyramidal types and some Vip types (Tasic et al. 2018)
    "Vipr2": None,     # chandelier (Pvalb) cells *and* excitatory cells; see the GABAergic rule
    "Esr2": None,      # no clear cortical class in the literature consulted
    "Gng7": None,
    "Calb2": None,
    "Tac1": None,
    "Npr3": None,
    "Th": None,
    "Gpr139": None,
}

#: GABAergic drivers that, intersected with Vipr2-IRES2-Cre, label chandelier cells, which
#: belong to the Pvalb subclass (Tasic et al. 2018, "Pvalb Vipr2"; Gouwens et al. 2019)
_PAN_GABA = {"Slc32a1", "Gad2"}


def _driver_gene(allele: str) -> str:
    allele = allele.strip()
    if allele.startswith("Nkx2-1"):
        return "Nkx2-1"
    return allele.split("-", 1)[0].split("_", 1)[0]


def sts_class_from_cre(line_name: str | None) -> str | None:
    """STS class of a cell from its Cre line (the ``line_name`` column of the specimen table).

    ``line_name`` may name one driver (``Sst-IRES-Cre``) or an intersection joined by ``|``
    (``Nos1-CreERT2|Sst-IRES-FlpO``). Each driver's gene is looked up in
    :data:`DRIVER_CLASS` (sources there). Rules, in order:

    1. a class-defining knock-in (``Pvalb``, ``Sst``, ``Vip``) in the line decides (an
       intersection with it can only narrow that population); two different ones -> None;
    2. ``Vipr2`` intersected with a pan-GABAergic driver (``Slc32a1``, ``Gad2``) -> ``Pvalb``
       (chandelier cells);
    3. otherwise the drivers with a class must agree; none, or a disagreement -> None.

    Returns one of :data:`STS_CLASSES` or None (empty / unknown / ambiguous line, e.g. human
    cells, ``Gad2-IRES-Cre``, ``Nkx2-1-CreERT2``). Never raises.
    """
    if not line_name or not str(line_name).strip():
        return None
    genes = [_driver_gene(a) for a in str(line_name).split("|") if a.strip()]
    defining = {DRIVER_CLASS[g] for g in genes if g in ("Pvalb", "Sst", "Vip")}
    if defining:
        return defining.pop() if len(defining) == 1 else None
    if "Vipr2" in genes and _PAN_GABA & set(genes):
        return "Pvalb"
    classes = {DRIVER_CLASS.get(g) for g in genes} - {None}
    return classes.pop() if len(classes) == 1 else None


#: t-type prefix (first word of the AIT2.3.1 alias) -> STS class. Tasic et al. 2018 subclasses;
#: the CGE-derived subclasses Vip, Lamp5, Sncg and Serpinf1 form "Vip/Lamp5" as in the STS
#: labels (Amprimo et al. 2025, after Gouwens et al. 2020 Cell 183:935).
TTYPE_PREFIX_CLASS: dict[str, str | None] = {
    "Pvalb": "Pvalb",
    "Sst": "Sst",
    "Vip": "Vip/Lamp5",
    "Lamp5": "Vip/Lamp5",
    "Sncg": "Vip/Lamp5",
    "Serpinf1": "Vip/Lamp5",
    "Meis2": None,  # white-matter Meis2 Adamts19 type: neither MGE nor CGE class
    "CR": None,     # Cajal-Retzius cells
}
_EXCITATORY_TTYPE = re.compile(r"^(L\d|L2/3|NP\b|L6b|CT\b|IT\b|PT\b)")


def sts_class_from_ttype(ttype: str | None) -> str | None:
    """STS class of a Patch-seq cell from its transcriptomic type.

    ``ttype`` is the ``corresponding_AIT2.3.1_alias`` of the Allen Patch-seq metadata (e.g.
    ``"Vip Gpc3 Slc18a3"``, ``"Sst Calb2 Pdlim5"``, ``"L2/3 IT VISp Agmat"``). The first word
    is looked up in :data:`TTYPE_PREFIX_CLASS`; glutamatergic types (``L2/3 IT``, ``L5 PT``,
    ``L6 CT``, ``L5 NP``, ``L6b`` ...; Tasic et al. 2018) are ``Excitatory``. Empty or unknown
    -> None. Never raises.
    """
    if not ttype or not str(ttype).strip():
        return None
    t = str(ttype).strip()
    first = t.split()[0]
    if first in TTYPE_PREFIX_CLASS:
        return TTYPE_PREFIX_CLASS[first]
    if _EXCITATORY_TTYPE.match(t):
        return "Excitatory"
    return None


# --------------------------------------------------------------------------- HTTP


def api_root(api_url: str | None = None) -> str:
    """``api_url``, else ``$EPHYS_ALLEN_API_URL``, else :data:`ALLEN_API_URL` (no trailing /)."""
    return (api_url or os.environ.get(API_URL_ENV) or ALLEN_API_URL).rstrip("/")


def query_url(root: str, criteria: str) -> str:
    """The RMA query URL for ``criteria`` (``$``, ``[]``, ``::`` kept as the Allen docs write them)."""
    return f"{root}{QUERY_PATH}?criteria=" + urllib.parse.quote(criteria, safe=":,[]$=_()*|.-")


def rma_query(root: str, criteria: str) -> list[dict]:
    """Run one RMA query; return its rows (the ``msg`` list of the JSON answer).

    Raises ``EphysError`` (naming the URL) on a network or HTTP error, non-JSON, or an
    answer with ``"success": false``.
    """
    url = query_url(root, criteria)
    data = _get_bytes(url)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EphysError("the Allen API answered with something that is not JSON", url) from None
    if not isinstance(doc, dict) or not doc.get("success", False) or not isinstance(doc.get("msg"), list):
        msg = doc.get("msg") if isinstance(doc, dict) else None
        raise EphysError(f"the Allen API query failed: {str(msg)[:200] if msg else 'no rows'}", url)
    return doc["msg"]


def _get_bytes(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            data = resp.read()
            expected = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as e:
        raise EphysError(f"HTTP {e.code} {e.reason}", url) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise EphysError(f"cannot download: {_reason(e)}", url) from None
    if expected is not None and expected.isdigit() and len(data) != int(expected):
        raise EphysError(f"connection dropped after {len(data)} of {expected} bytes", url)
    return data


def _reason(e: BaseException) -> str:
    r = getattr(e, "reason", None) or e
    if isinstance(e, http.client.IncompleteRead):
        return f"connection dropped after {len(e.partial)} bytes"
    text = " ".join(str(r).split()) or type(e).__name__
    return text[:300]


def download_file(url: str, final: Path, chunk: int = 1 << 20, check_hdf5: bool = True) -> Path:
    """Stream ``url`` into ``final`` through a temporary name; rename only when complete.

    Complete means: as many bytes as ``Content-Length`` said, and (``check_hdf5``) the HDF5
    signature at the start, so an HTML error page is never saved as an ``.nwb``.
    Raises ``EphysError`` naming the URL (HTTP error, dropped connection, not HDF5).
    """
    final = Path(final)
    with atomic_path(final) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp, open(tmp, "wb") as fh:
                expected = resp.headers.get("Content-Length")
                got = 0
                while True:
                    block = resp.read(chunk)
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
        except urllib.error.HTTPError as e:
            raise EphysError(f"HTTP {e.code} {e.reason}", url) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise EphysError(f"cannot download: {_reason(e)}", url) from None
        if expected is not None and expected.isdigit() and got != int(expected):
            raise EphysError(f"connection dropped after {got} of {expected} bytes", url)
        if check_hdf5:
            with open(tmp, "rb") as fh:
                if fh.read(8) != HDF5_MAGIC:
                    raise EphysError("downloaded file is not NWB/HDF5", url)
    return final


# --------------------------------------------------------------------------- fetch


@dataclass
class AllenResult:
    """Files written by :func:`fetch_allen` (paths are None when not requested)."""

    out: Path
    table: Path
    n_cells: int
    labels: Path
    specimen_labels: Path
    features: Path | None = None
    nwb: dict[str, str] = field(default_factory=dict)  # specimen id -> "downloaded" / "skipped"


def fetch_specimen_table(root: str) -> list[dict]:
    """All rows of ``ApiCellTypesSpecimenDetail`` (mouse and human), as dicts keyed by column."""
    return rma_query(root, SPECIMEN_CRITERIA)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_table(path: Path, rows: list[dict], columns: Iterable[str] | None = None) -> Path:
    """Write ``rows`` as CSV atomically; columns: ``columns`` or :data:`SPECIMEN_COLUMNS`
    first (those present), then any others in sorted order."""
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    if columns is None:
        cols = [c for c in SPECIMEN_COLUMNS if c in keys] + sorted(keys - set(SPECIMEN_COLUMNS))
    else:
        cols = list(columns)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


def read_table(path: Path) -> list[dict]:
    """Read a specimen table CSV written by :func:`write_table` (or celltypes.brain-map.org)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as e:
        raise EphysError(f"cannot read the specimen table: {e}", path) from None
    if rows and "specimen__id" not in rows[0]:
        raise EphysError("not a specimen table: no specimen__id column", path)
    return rows


def nwb_download_link(root: str, ephys_id: str) -> str:
    """The ``download_link`` of the NWBDownload WellKnownFile for ``erwkf__id`` ``ephys_id``.

    Queries ``[attachable_id$eq<id>]`` (the id as the ephys result) and, if that finds
    nothing, ``[id$eq<id>]`` (the id as the file itself). Raises ``EphysError`` if neither does.
    """
    for crit in (NWB_CRITERIA, NWB_CRITERIA_BY_ID):
        rows = rma_query(root, crit.format(id=ephys_id))
        links = [r.get("download_link") for r in rows if r.get("download_link")]
        if links:
            return links[0]
    raise EphysError(f"no NWBDownload file for ephys result {ephys_id}", query_url(root, NWB_CRITERIA.format(id=ephys_id)))


def fetch_allen(
    out: str | Path,
    features: bool = False,
    nwb: list[str] | None = None,
    api_url: str | None = None,
    refresh: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> AllenResult:
    """Fetch the Allen Cell Types specimen table, optional per-cell NWB files, write labels.

    Writes into ``out``:

    - ``cell_types_specimen_details.csv`` — the specimen table (kept and reused on the next
      run unless ``refresh``);
    - ``specimen_labels.csv`` — ``specimen_id, species, line_name, label`` for every cell
      (label from :func:`sts_class_from_cre`; ``unknown`` when None);
    - ``labels.csv`` — ``path, label, specimen_id, line_name`` for each NWB present in
      ``out/nwb/`` (the format ``ephys prepare scalograms --labels`` reads);
    - ``ef_features.csv`` (``features``) — ``specimen__id`` plus the ``ef__*`` columns
      (Allen electrophysiology features: mV, pA, ms, MOhm, Hz as in the Allen white paper);
    - ``nwb/<specimen_id>.nwb`` for each id in ``nwb`` (skipped when already there; files are
      only ever renamed into place complete).

    Raises ``EphysError``: network/HTTP failure (naming the URL), unknown specimen id, a
    specimen without an ephys NWB (``erwkf__id`` empty).
    """
    out = Path(out)
    root = api_root(api_url)
    table_path = out / TABLE_NAME
    if table_path.is_file() and not refresh:
        rows = read_table(table_path)
    else:
        rows = fetch_specimen_table(root)
        if not rows:
            raise EphysError("the Allen API returned an empty specimen table", query_url(root, SPECIMEN_CRITERIA))
        write_table(table_path, rows)
        rows = read_table(table_path)
    by_id = {str(r.get("specimen__id", "")).strip(): r for r in rows}

    wanted = [str(s).strip() for s in (nwb or [])]
    for sid in wanted:  # validate every id before downloading anything
        if sid not in by_id:
            raise EphysError(f"unknown cell specimen id {sid}: not in the Allen Cell Types specimen table", table_path)
        if not str(by_id[sid].get("erwkf__id", "")).strip():
            raise EphysError(f"cell specimen {sid} has no electrophysiology NWB (erwkf__id is empty)", table_path)

    result = AllenResult(out=out, table=table_path, n_cells=len(rows), labels=out / LABELS_NAME,
                         specimen_labels=out / SPECIMEN_LABELS_NAME)
    for i, sid in enumerate(wanted, 1):
        final = out / "nwb" / f"{sid}.nwb"
        if final.is_file() and final.stat().st_size > 0:
            result.nwb[sid] = "skipped"
        else:
            link = nwb_download_link(root, str(by_id[sid]["erwkf__id"]).strip())
            url = link if re.match(r"^https?://", link) else root + "/" + link.lstrip("/")
            download_file(url, final)
            result.nwb[sid] = "downloaded"
        if progress is not None:
            progress(i, len(wanted), sid)

    if features:
        ef_cols = ["specimen__id"] + [c for c in (rows[0].keys() if rows else []) if c.startswith("ef__")]
        result.features = write_table(out / FEATURES_NAME, rows, columns=ef_cols)
    _write_labels(out, rows, result)
    return result


def _write_labels(out: Path, rows: list[dict], result: AllenResult) -> None:
    spec_rows = []
    for r in rows:
        label = sts_class_from_cre(r.get("line_name"))
        spec_rows.append({"specimen_id": r.get("specimen__id", ""), "species": r.get("donor__species", ""),
                          "line_name": r.get("line_name", ""), "label": label or "unknown"})
    write_table(result.specimen_labels, spec_rows, columns=("specimen_id", "species", "line_name", "label"))
    by_id = {str(r["specimen_id"]): r for r in spec_rows}
    present = sorted((out / "nwb").glob("*.nwb")) if (out / "nwb").is_dir() else []
    lab_rows = []
    for p in present:
        r = by_id.get(p.stem)
        if r is None:
            continue
        lab_rows.append({"path": f"nwb/{p.name}", "label": r["label"], "specimen_id": p.stem,
                         "line_name": r["line_name"]})
    write_table(result.labels, lab_rows, columns=("path", "label", "specimen_id", "line_name"))


# --------------------------------------------------------------------------- checks


def read_sts_labels(path: str | Path) -> dict[str, str]:
    """``{specimen_id: label}`` from the STS label file (space-separated ``Label specimen_id``)."""
    labels = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 2:
                labels[parts[1]] = parts[0]
    return labels


def agreement(predicted: dict[str, str | None], reference: dict[str, str]) -> dict:
    """Compare mapped classes with reference labels (``Unsure`` references are left out).

    Returns ``{"n_reference", "n_mapped", "n_agree", "agreement", "coverage", "confusion"}``:
    ``agreement`` = agree / cells both sides label; ``coverage`` = cells we label / cells the
    reference labels; ``confusion`` maps ``"reference -> ours"`` to counts (ours ``None`` too).
    """
    n_ref = n_mapped = n_agree = 0
    confusion: dict[str, int] = {}
    for sid, ref in reference.items():
        if ref not in STS_CLASSES or sid not in predicted:
            continue
        n_ref += 1
        ours = predicted[sid]
        key = f"{ref} -> {ours}"
        confusion[key] = confusion.get(key, 0) + 1
        if ours is not None:
            n_mapped += 1
            n_agree += ours == ref
    return {"n_reference": n_ref, "n_mapped": n_mapped, "n_agree": n_agree,
            "agreement": n_agree / n_mapped if n_mapped else float("nan"),
            "coverage": n_mapped / n_ref if n_ref else float("nan"), "confusion": confusion}
