"""A griffe extension for the docs' API pages: Sphinx roles (``:func:`x` ``) as plain code spans.

The docstrings follow numpy style and cross-reference with Sphinx roles; mkdocstrings renders
Markdown, where a role would show as literal text. Loaded by mkdocs.yml (mkdocstrings options).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target` `` to ```target` `` in every docstring griffe loads."""

    def on_object(self, *, obj, **kwargs) -> None:  # griffe >= 1.0 (griffelib 2)
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
