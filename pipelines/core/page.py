"""One page builder for every ephys report: the run report, the cross-validation report, the
predict report and the pages pipelines write (clustering, recipes, event detection).

A :class:`Page` is a title, a few pills and a list of sections; a section is a list of blocks
(:class:`Text`, :class:`Notice`, :class:`Fig`, :class:`Table`, :class:`Params`, :class:`Cards`,
:class:`Grid`, :class:`Details`). The same page renders to

- ``report.html``: one self-contained file (the shared style sheet :data:`CSS` inline, figures as
  base64 PNG data URIs, no JavaScript, nothing fetched), opening with the :data:`PAGE_MARKER`
  ``<meta name="generator">`` every ephys page carries;
- ``report.md`` (optional): Markdown whose figures are ``report_files/<key>.png`` beside it.

Every string is escaped when rendered; numbers are formatted by :func:`format_number` (3
decimals, integers as integers, ``n/a`` for null / NaN), so both renderings show the same text.
Figure helpers for pipelines' own figures: :func:`pyplot` (matplotlib on Agg), :func:`png_bytes`,
:func:`style_axes`, the Okabe-Ito palette :data:`OKABE_ITO` (Okabe & Ito 2008, colour-blind safe).

Example::

    page = Page("Clustering of t.1", kicker="ephys cluster", pills=["gmm", "3 clusters"])
    page.section("Summary", Cards([Card("Clusters", "3"), Card("ARI vs manual", "0.951")]),
                 Params({"min_samples": 10, "seed": 0}))
    page.section("Figures", Fig(png, "embedding", "The embedding coloured by cluster."))
    page.write(out_dir, md=True)   # OUT/report.html, OUT/report.md, OUT/report_files/*.png
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from markupsafe import Markup, escape

from .atomic import atomic_path, write_text

__all__ = ["PAGE_MARKER", "CSS", "OKABE_ITO", "format_number", "pyplot", "png_bytes", "style_axes", "data_uri",
           "flatten", "Page", "Text", "Notice", "Fig", "Table", "Params", "Card", "Cards", "Grid", "Details",
           "Block", "hook_blocks"]

#: carried by every page the builder renders (``<meta name="generator" content="ephys-page">``)
PAGE_MARKER = "ephys-page"
#: Okabe–Ito colour-blind-safe palette (black last; it doubles as the chance line colour)
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FIG_DPI = 100

#: the one style sheet of every ephys page
CSS = """/* ephys-page style sheet */
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f5f6f8;--card:#fff;--accent:#0072B2;--warn:#b45309}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,"DejaVu Sans","Liberation Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1f2937;color:#f9fafb;padding:28px 0 22px}
.wrap{max-width:1120px;margin:0 auto;padding:0 24px}
header .kicker{text-transform:uppercase;letter-spacing:.08em;font-size:12px;color:#9ca3af}
header h1{margin:4px 0 8px;font-size:28px;font-weight:650;word-break:break-word}
header .sub{color:#d1d5db;margin:0 0 8px}
header .meta{display:flex;flex-wrap:wrap;gap:8px}
.pill{display:inline-block;background:#374151;color:#e5e7eb;border-radius:999px;padding:2px 12px;font-size:13px}
nav{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
nav .wrap{display:flex;flex-wrap:wrap;gap:18px;padding-top:10px;padding-bottom:10px}
nav a{color:var(--muted);text-decoration:none;font-size:14px}
nav a:hover{color:var(--accent)}
section{margin:28px 0}
h2{font-size:20px;margin:0 0 12px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:0 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;box-shadow:0 1px 2px rgba(0,0,0,.04);margin-bottom:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:14px;margin-bottom:16px}
.cards .card{margin-bottom:0}
.metric .name{color:var(--muted);font-size:13.5px;font-weight:500}
.metric .value{font-size:28px;font-weight:650;font-variant-numeric:tabular-nums;margin:2px 0 6px;word-break:break-word}
.metric .value.small{font-size:20px}
.metric .sub{color:var(--muted);font-size:12.5px}
.bar{height:6px;background:#eef0f3;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%;background:var(--accent)}
.notice{border-left:4px solid var(--warn);background:#fffbeb;padding:12px 16px;border-radius:6px;margin:8px 0 16px}
code{background:#f3f4f6;padding:1px 5px;border-radius:4px;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;color:#374151}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
tr.total td{font-weight:600;border-top:2px solid #d1d5db}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
figure{margin:0}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption,.caption{color:var(--muted);font-size:13px;margin-top:6px}
.muted{color:var(--muted)}
.kv td:first-child{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;color:#374151;white-space:nowrap}
.kv td:last-child{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;word-break:break-word}
.scroll{max-height:420px;overflow:auto}
details{margin:8px 0 16px}
details summary{cursor:pointer;color:var(--muted)}
details pre{background:#f9fafb;border:1px solid var(--line);border-radius:6px;padding:10px;font-size:12px;overflow:auto;max-height:480px}
footer{color:var(--muted);font-size:13px;padding:24px 0 40px}
@media print{nav{display:none}header{background:#fff;color:#000}.card{box-shadow:none}}
"""


# --------------------------------------------------------------------------------------
# Numbers and figures
# --------------------------------------------------------------------------------------


def format_number(value, decimals: int = 3) -> str:
    """Format a metric for display.

    ``None``/NaN -> ``"n/a"``; bool -> ``"yes"``/``"no"``; integers -> ``"12"``; other numbers
    -> fixed ``decimals`` (``0.8125`` -> ``"0.813"``); anything else -> ``str(value)``.
    """
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "n/a"
        return f"{float(value):.{decimals}f}"
    return str(value)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = FIG_DPI, tight: bool = False) -> bytes:
    """``fig`` as PNG bytes (closed afterwards); ``tight`` crops to the drawn area."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    return buf.getvalue()


def style_axes(ax) -> None:
    """The house style of an axes: no top / right spines, a light grid below the data."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def flatten(d: dict, prefix: str = "", max_len: int = 300) -> list[tuple[str, str]]:
    """A nested mapping as ``(dotted.key, text)`` rows: lists joined by ", ", floats ``%g``,
    None as ``null``, texts longer than ``max_len`` cut with an ellipsis."""
    out = []
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += flatten(v, key + ".", max_len)
            continue
        if isinstance(v, (list, tuple)):
            text = ", ".join(str(x) for x in v)
        elif isinstance(v, float):
            text = f"{v:g}"
        elif v is None:
            text = "null"
        else:
            text = str(v)
        if len(text) > max_len:
            text = text[: max_len - 3] + "…"
        out.append((key, text))
    return out


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_NUM = re.compile(r"^[\s+\-−]?(\d[\d,]*\.?\d*|\.\d+)(e[+-]?\d+)?\s*(%|±.*|\(.*\)|[a-zµ]{0,3})?\s*$", re.I)
_NUMCLS = ' class="num"'
_EMPTY = {"", "n/a", "–", "-", "—", "null", "none"}


def _numeric(cells: Iterable[str]) -> bool:
    vals = [str(c).strip() for c in cells]
    real = [c for c in vals if c.lower() not in _EMPTY]
    return bool(real) and all(_NUM.match(c) for c in real)


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------


class Block:
    """A piece of a section; renders to HTML (``html(page)``) and Markdown (``md(page)``)."""

    def html(self, page: "Page") -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def md(self, page: "Page") -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Text(Block):
    """A paragraph of plain text (``muted``: grey, for notes under a table)."""

    text: str
    muted: bool = False

    def html(self, page):
        return (f'<p class="muted">{escape(self.text)}</p>' if self.muted else f"<p>{escape(self.text)}</p>")

    def md(self, page):
        return str(self.text)


@dataclass
class Notice(Block):
    """A highlighted one-line note (a missing input, a warning), optionally ending in a command."""

    text: str
    command: str = ""

    def html(self, page):
        cmd = f" <code>{escape(self.command)}</code>" if self.command else ""
        return f'<div class="notice">{escape(self.text)}{cmd}</div>'

    def md(self, page):
        return f"> {self.text}" + (f" `{self.command}`" if self.command else "")


@dataclass
class Fig(Block):
    """A figure: PNG bytes, alt text, a caption; ``key`` is its file stem under ``report_files/``
    in the Markdown rendering (derived from ``alt`` when empty, made unique per page)."""

    png: bytes
    alt: str
    caption: str = ""
    key: str = ""
    max_width: int | None = None

    def html(self, page):
        style = f' style="max-width:{int(self.max_width)}px"' if self.max_width else ""
        cap = f"<figcaption>{escape(self.caption)}</figcaption>" if self.caption else ""
        return (f'<div class="card"><figure><img alt="{escape(self.alt)}" src="{data_uri(self.png)}"{style}>'
                f"{cap}</figure></div>")

    def md(self, page):
        key = page._register(self)
        return f"![{_md(self.alt)}]({page.files_prefix}/{key}.png)" + (f"\n\n{self.caption}" if self.caption else "")


@dataclass
class Table(Block):
    """A table from rows of cells (any value; numbers through :func:`format_number`).

    Attributes
    ----------
    rows : list of sequences
    header : sequence or None
    title : str            an ``h3`` above the table, inside its card
    caption : str          a muted note below it
    numeric : sequence of bool or None
        Right-align each column (None: columns whose cells all look like numbers, never the first).
    total : bool           the last row is a total (bold)
    highlight : set[int]   row indices drawn bold (e.g. the chosen setting)
    scroll : bool          limit the height (long tables)
    kv : bool              a key / value table (monospace)
    card : bool            wrap in a card
    """

    rows: Sequence[Sequence[Any]]
    header: Sequence[Any] | None = None
    title: str = ""
    caption: str = ""
    numeric: Sequence[bool] | None = None
    total: bool = False
    highlight: set = field(default_factory=set)
    scroll: bool = False
    kv: bool = False
    card: bool = True

    def _cells(self):
        return [[c if isinstance(c, str) else format_number(c) for c in r] for r in self.rows]

    def _numeric(self, rows):
        n = max([len(r) for r in rows] + [len(self.header or [])])
        if self.numeric is not None:
            return list(self.numeric) + [False] * (n - len(self.numeric))
        return [False] + [_numeric(r[j] for r in rows if j < len(r)) for j in range(1, n)]

    def html(self, page):
        rows = self._cells()
        num = self._numeric(rows) if not self.kv else [False] * 99
        out = []
        if self.title:
            out.append(f"<h3>{escape(self.title)}</h3>")
        table = ['<table class="kv">' if self.kv else "<table>"]
        if self.header:
            table.append("<thead><tr>" + "".join(
                f"<th{_NUMCLS if j < len(num) and num[j] else ''}>{escape(h)}</th>"
                for j, h in enumerate(self.header)) + "</tr></thead>")
        table.append("<tbody>")
        for i, r in enumerate(rows):
            bold = (self.total and i == len(rows) - 1) or i in self.highlight
            table.append(("<tr class=\"total\">" if bold else "<tr>") + "".join(
                f"<td{_NUMCLS if j < len(num) and num[j] else ''}>{escape(c)}</td>"
                for j, c in enumerate(r)) + "</tr>")
        table.append("</tbody></table>")
        body = "".join(table)
        out.append(f'<div class="scroll">{body}</div>' if self.scroll else body)
        if self.caption:
            out.append(f'<p class="caption">{escape(self.caption)}</p>')
        inner = "\n".join(out)
        return f'<div class="card">{inner}</div>' if self.card else inner

    def md(self, page):
        rows = self._cells()
        if not rows and not self.header:
            return ""
        num = self._numeric(rows)
        n = max([len(r) for r in rows] + [len(self.header or [])])
        head = list(self.header) if self.header else [""] * n
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(_md(h) for h in head) + " |")
        lines.append("|" + "".join("---:|" if j < len(num) and num[j] else "---|" for j in range(n)))
        lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
        if self.caption:
            lines += ["", str(self.caption)]
        return "\n".join(lines)


@dataclass
class Params(Block):
    """A parameters table from a (nested) mapping: one ``key | value`` row per leaf (dotted keys)."""

    params: dict
    title: str = ""
    caption: str = ""

    def _table(self):
        return Table(flatten(self.params), ["parameter", "value"], title=self.title, caption=self.caption, kv=True)

    def html(self, page):
        return self._table().html(page)

    def md(self, page):
        rows = flatten(self.params)
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += ["| parameter | value |", "|---|---|"] + [f"| `{k}` | {_md(v)} |" for k, v in rows]
        if self.caption:
            lines += ["", str(self.caption)]
        return "\n".join(lines)


@dataclass
class Card:
    """One headline number: name, value (formatted when not a string), a sub line, and ``frac``
    in [0, 1] for a bar under it (None: no bar)."""

    name: str
    value: Any
    sub: str = ""
    frac: float | None = None
    small: bool = False


@dataclass
class Cards(Block):
    """A row of :class:`Card` (headline numbers)."""

    items: Sequence[Card]

    def html(self, page):
        out = []
        for c in self.items:
            v = c.value if isinstance(c.value, str) else format_number(c.value)
            bar = ""
            if c.frac is not None and math.isfinite(float(c.frac)):
                bar = f'<div class="bar"><span style="width:{100 * min(max(float(c.frac), 0.0), 1.0):.1f}%"></span></div>'
            sub = f'<div class="sub">{escape(c.sub)}</div>' if c.sub else ""
            small = " small" if c.small or len(v) > 12 else ""
            out.append(f'<div class="card metric"><div class="name">{escape(c.name)}</div>'
                       f'<div class="value{small}">{escape(v)}</div>{bar}{sub}</div>')
        return '<div class="cards">' + "".join(out) + "</div>"

    def md(self, page):
        return "\n".join(f"- **{_md(c.name)}**: {c.value if isinstance(c.value, str) else format_number(c.value)}"
                         + (f" ({c.sub})" if c.sub else "") for c in self.items)


@dataclass
class Grid(Block):
    """Blocks side by side (two columns on a wide screen)."""

    blocks: Sequence[Block]

    def html(self, page):
        return '<div class="grid2">' + "".join(f"<div>{b.html(page)}</div>" for b in self.blocks) + "</div>"

    def md(self, page):
        return "\n\n".join(b.md(page) for b in self.blocks)


@dataclass
class Details(Block):
    """Collapsed raw text (e.g. the full JSON behind a summary), shown on request."""

    summary: str
    text: str

    @classmethod
    def json(cls, summary: str, obj, max_chars: int = 20000) -> "Details":
        """The JSON of ``obj`` (indented), cut at ``max_chars``."""
        text = json.dumps(obj, indent=1, default=str)
        return cls(summary, text if len(text) <= max_chars else text[:max_chars] + "\n…")

    def html(self, page):
        return f"<details><summary>{escape(self.summary)}</summary><pre>{escape(self.text)}</pre></details>"

    def md(self, page):
        return f"<details><summary>{self.summary}</summary>\n\n```\n{self.text}\n```\n\n</details>"


def hook_blocks(sec) -> list[Block]:
    """The blocks of a modality's report section (:class:`ephys.pipelines.core.registry.Section`):
    its text, figures and table (first row = header)."""
    out: list[Block] = [Text(sec.text)] if sec.text else []
    out += [Fig(f.png, f.alt, f.caption, f.key) for f in sec.figures]
    if sec.table:
        out.append(Table(sec.table[1:], sec.table[0], scroll=len(sec.table) > 16))
    return out


# --------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------


@dataclass
class _Section:
    title: str
    blocks: list
    id: str


class Page:
    """A report page: header (kicker, title, sub line, pills), a navigation bar, sections, footer.

    Parameters
    ----------
    title : str
    kicker : str          small caps line above the title (what produced the page)
    pills : list[str]     short facts beside the title (model, date, backend ...)
    subtitle : str        one line under the title
    source : str          named in the footer ("from OUT")
    """

    def __init__(self, title: str, kicker: str = "ephys report", pills: Sequence[str] = (), subtitle: str = "",
                 source: str = ""):
        self.title, self.kicker, self.pills, self.subtitle, self.source = title, kicker, list(pills), subtitle, source
        self.sections: list[_Section] = []
        self.files_prefix = "report_files"
        self._figures: dict[str, bytes] = {}
        self._keys: dict[int, str] = {}

    def section(self, title: str, *blocks: Block | None, id: str = "") -> "Page":
        """Append a section of ``blocks`` (None entries are skipped); returns the page."""
        sid = id or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or f"s{len(self.sections) + 1}"
        used = {s.id for s in self.sections}
        base, k = sid, 2
        while sid in used:
            sid, k = f"{base}-{k}", k + 1
        self.sections.append(_Section(title, [b for b in blocks if b is not None], sid))
        return self

    def _register(self, fig: Fig) -> str:
        if id(fig) in self._keys:
            return self._keys[id(fig)]
        key = fig.key or re.sub(r"[^a-z0-9]+", "_", fig.alt.lower()).strip("_") or "figure"
        base, k = key, 2
        while key in self._figures:
            key, k = f"{base}_{k}", k + 1
        self._figures[key] = fig.png
        self._keys[id(fig)] = key
        return key

    def figures(self) -> dict[str, bytes]:
        """Every figure of the page by file stem (the keys the Markdown links to)."""
        self._figures, self._keys = {}, {}
        for s in self.sections:
            for b in s.blocks:
                for f in ([b] if isinstance(b, Fig) else [x for x in getattr(b, "blocks", []) if isinstance(x, Fig)]):
                    self._register(f)
        return dict(self._figures)

    def html(self, generated: str | None = None) -> str:
        """The self-contained HTML page."""
        from .. import __version__

        when = generated or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        pills = "".join(f'<span class="pill">{escape(p)}</span>' for p in self.pills)
        sub = f'<p class="sub">{escape(self.subtitle)}</p>' if self.subtitle else ""
        nav = ""
        if len(self.sections) >= 3:
            nav = ('<nav><div class="wrap">' + "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in self.sections)
                   + "</div></nav>")
        body = "\n".join(f'<section id="{s.id}"><h2>{escape(s.title)}</h2>\n'
                         + "\n".join(b.html(self) for b in s.blocks) + "\n</section>" for s in self.sections)
        src = f" from {escape(self.source)}" if self.source else ""
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f'<meta name="generator" content="{PAGE_MARKER}">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>{escape(self.kicker)} — {escape(self.title)}</title>\n<style>{Markup(CSS)}</style></head>\n"
                f'<body>\n<header><div class="wrap"><div class="kicker">{escape(self.kicker)}</div>'
                f"<h1>{escape(self.title)}</h1>{sub}<div class=\"meta\">{pills}</div></div></header>\n{nav}\n"
                f'<main class="wrap">\n{body}\n</main>\n<footer><div class="wrap">Generated by ephys {escape(__version__)} '
                f"on {escape(when)}{src}.</div></footer>\n</body></html>\n")

    def markdown(self, generated: str | None = None) -> str:
        """The Markdown rendering; figures link to ``report_files/<key>.png`` (see :meth:`figures`)."""
        from .. import __version__

        self.figures()
        when = generated or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        out = [f"# {self.kicker} — {_md(self.title)}", ""]
        if self.subtitle:
            out += [self.subtitle, ""]
        if self.pills:
            out += [" · ".join(_md(p) for p in self.pills), ""]
        for s in self.sections:
            out += [f"## {s.title}", ""]
            for b in s.blocks:
                text = b.md(self)
                if text:
                    out += [text, ""]
        out += ["---", f"Generated by ephys {__version__} on {when}."]
        return "\n".join(out) + "\n"

    def write(self, out_dir: str | Path, md: bool = False, name: str = "report") -> Path:
        """Write ``OUT/<name>.html`` (and, with ``md``, ``OUT/<name>.md`` plus its figures under
        ``OUT/report_files/``, removing PNGs there that this page does not have) atomically;
        returns the HTML path."""
        out = Path(out_dir)
        when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        if md:
            figs = self.figures()
            files = out / self.files_prefix
            files.mkdir(parents=True, exist_ok=True)
            for stale in files.glob("*.png"):
                if stale.stem not in figs:
                    stale.unlink()
            for key, png in figs.items():
                with atomic_path(files / f"{key}.png", suffix=".png") as tmp:
                    tmp.write_bytes(png)
            write_text(out / f"{name}.md", self.markdown(when))
        return write_text(out / f"{name}.html", self.html(when))
