"""A griffe extension for the docs' API page: the project's docstrings as mkdocstrings reads them.

The docstrings follow numpy style with two house habits the numpy parser does not know:
Sphinx roles (``:func:`x` ``), rendered here as plain code spans, and ``name : text`` lines in
Parameters / Attributes sections where the text is a description rather than a type
(``info : a progress message``) or a type followed by a description after two spaces
(``config : dict          the run's config.yaml``); those become ``name : type`` with the
description on the next line. Loaded by mkdocs.yml (mkdocstrings' ``extensions``).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`~?([^`]+)`")
_SECTIONS = {"parameters", "attributes", "other parameters", "keyword arguments"}
_ITEM = re.compile(r"^(\s*)([A-Za-z_*][\w, *]*?) : (.+)$")
_TYPE_WORDS = {"str", "int", "float", "bool", "dict", "list", "tuple", "set", "bytes", "None", "or", "of",
               "callable", "optional", "type", "object", "any", "Any", "Path", "sequence", "iterable", "mapping"}


def _is_type(text: str) -> bool:
    for tok in text.replace("|", " | ").split():
        t = tok.strip(",")
        if t in ("|", "") or t in _TYPE_WORDS or "[" in t or "." in t.rstrip(".")[:-1] or re.match(r"^[A-Z]\w*$", t):
            continue
        return False
    return True


def fix_items(doc: str) -> str:
    """Rewrite the ``name : text`` lines of Parameters / Attributes sections (see the module docstring)."""
    lines = doc.split("\n")
    out, section, base = [], None, None
    for k, line in enumerate(lines):
        nxt = lines[k + 1] if k + 1 < len(lines) else ""
        if re.fullmatch(r"\s*-{3,}\s*", nxt) and line.strip():
            section, base = line.strip().lower(), len(line) - len(line.lstrip())
            out.append(line)
            continue
        m = _ITEM.match(line)
        if section in _SECTIONS and m and len(m.group(1)) == base:
            indent, name, rest = m.groups()
            parts = re.split(r"\s{2,}", rest.strip(), maxsplit=1)
            if len(parts) == 2 and _is_type(parts[0]):
                out += [f"{indent}{name} : {parts[0]}", f"{indent}    {parts[1]}"]
                continue
            if not _is_type(rest.strip()):
                out += [f"{indent}{name}", f"{indent}    {rest.strip()}"]
                continue
        out.append(line)
    return "\n".join(out)


class HouseDocstrings(griffe.Extension):
    """Apply :func:`fix_items` and plain code spans for Sphinx roles to every docstring griffe loads."""

    def on_object(self, *, obj, **kwargs) -> None:  # griffe >= 1.0
        if obj.docstring is not None:
            obj.docstring.value = fix_items(_ROLE.sub(r"`\1`", obj.docstring.value))
