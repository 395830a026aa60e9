"""Typer commands built from declarations: a parameters dataclass becomes a command's signature.

``ephys.pipelines.core.params`` describes every field (type, default, unit, range, option name);
:func:`command_from` turns such dataclasses into one typer command whose options are exactly those
fields, so a pipeline's prepare step or extra command needs no hand-written CLI code.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ephys.pipelines.core import params as P


def _default_text(info: P.ParamInfo) -> str | bool:
    """What ``[default: ...]`` shows (in the option's unit), or False for none."""
    if info.default_text is not None or info.default is None:
        return False
    v = info.default
    if isinstance(v, bool):
        return False
    if isinstance(v, (tuple, list)):
        if not v:
            return False
        v = (info.list_sep or " ").join(f"{x / info.cli_scale:g}" if isinstance(x, (int, float)) and not
                                         isinstance(x, bool) else str(x) for x in v)
        return v
    if isinstance(v, (int, float)):
        return f"{v / info.cli_scale:g}"
    return str(v)


def _annotation(info: P.ParamInfo):
    base = float if info.cli_scale != 1.0 and info.type is int else info.type
    if info.type is dict:
        base = str
    if info.kind == "tuple":
        return Optional[tuple[(base,) * info.n]]  # type: ignore[misc]
    if info.kind == "list":
        return Optional[str] if info.list_sep is not None else Optional[list[base]]
    return base if base is bool else Optional[base]


def parameters(cls, *, prefix: str = "", skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One ``inspect.Parameter`` (a typer Argument or Option) per CLI field of dataclass ``cls``.

    Every option defaults to None (so "not given" is known and the field's own default applies);
    the help shows the field's default in the option's unit. ``prefix`` is put before each help
    text (e.g. which pipeline an option belongs to).
    """
    out = []
    for info in P.describe(cls):
        if not info.cli or info.name in skip:
            continue
        shown = _default_text(info)
        help_text = prefix + info.help_text()
        if shown is not False:
            help_text = (help_text[:-1] + f"; default: {shown}]" if help_text.endswith("]")
                         else help_text + f" [default: {shown}]")
        if info.argument:
            default = typer.Argument(None if info.optional or info.default is not None else ..., help=help_text,
                                     show_default=False,
                                     metavar=info.name.upper())
        elif info.type is bool:
            flags = (info.option,) if not info.default else (f"{info.option}/--no-{info.option[2:]}",)
            default = typer.Option(bool(info.default), *flags, help=help_text, hidden=info.hidden)
        else:
            default = typer.Option(None, info.option, help=help_text, show_default=False,
                                   hidden=info.hidden, envvar=info.envvar)
        out.append(inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=_annotation(info)))
    return out


def extra_parameter(name: str, annotation, default) -> inspect.Parameter:
    """A hand-declared typer parameter for :func:`command_from` (generic options of a verb)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def command_from(body: Callable[[dict], Any], params: list[inspect.Parameter], doc: str) -> Callable[..., Any]:
    """A function typer can register: its signature is ``params`` (arguments first), calling it
    calls ``body(kwargs)``, its docstring (the ``--help``) is ``doc``."""
    params = sorted(params, key=lambda p: 0 if isinstance(p.default, typer.models.ArgumentInfo) else 1)

    def command(**kwargs):
        return body(kwargs)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command


def values(cls, given: dict) -> Any:
    """An instance of ``cls`` from the parsed options (``None`` = not given), checked."""
    names = {i.name for i in P.describe(cls)}
    return P.from_options(cls, {k: v for k, v in given.items() if k in names})


def help_doc(summary: str, description: str = "") -> str:
    """``--help`` text: the summary line, then the description (plain text, no markup)."""
    return summary.strip() + ("\n\n" + description.strip() if description.strip() else "")


def as_path(v) -> Path | None:
    return None if v is None else Path(v)
