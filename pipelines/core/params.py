"""Parameters as data: one dataclass field per setting, the single source of a command's options.

A pipeline declares the settings of a step (``ephys prepare NAME``, ``ephys PIPELINE COMMAND``,
``ephys fetch synthetic``) as a dataclass whose fields are made with :func:`param`: the default,
a help text, the unit, the allowed range or choices, and how the value is spelled on the command
line (an option name, a scale such as ms on the command line for a field in seconds, a positional
argument). From that one declaration come

- the CLI options (``cli/`` builds typer parameters from :func:`describe`),
- the check of every value (:func:`check`: type, range, choices; the dataclass may add a
  ``check()`` method for rules that tie fields together),
- what a prepared dataset's manifest records (:func:`as_record`, :func:`params_key`),
- the generated reference in the docs.

Nothing here imports a heavy library: declaring parameters stays cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .errors import EphysError

__all__ = ["param", "ParamInfo", "describe", "check", "from_options", "as_record", "params_key", "from_record",
           "option_name"]


def param(default: Any = MISSING, help: str = "", *, unit: str = "", min: float | None = None,
          max: float | None = None, choices: tuple | None = None, flag: str | None = None,
          cli_scale: float = 1.0, cli_unit: str = "", argument: bool = False, cli: bool = True,
          default_text: str | None = None, default_factory: Any = MISSING, hidden: bool = False,
          list_sep: str | None = None, min_exclusive: bool = False, envvar: str | None = None):
    """A dataclass field carrying its command-line description.

    Parameters
    ----------
    default, default_factory : the field's default (as for :func:`dataclasses.field`).
    help : one sentence for ``--help`` and the docs (units in the text where they matter).
    unit : the field's unit (``"s"``, ``"Hz"``, ``"ms"``...), shown in the help and the docs.
    min, max : allowed range (inclusive, ``min_exclusive`` makes the lower bound strict).
    choices : allowed values.
    flag : the option's name (default ``--`` + the field name with ``_`` as ``-``).
    cli_scale, cli_unit : the option takes ``value / cli_scale`` in ``cli_unit`` (e.g. a field
        ``bin_s`` offered as ``--bin-ms``: ``cli_scale=1e-3, cli_unit="ms"``).
    argument : a positional argument rather than an option.
    cli : False keeps the field out of the command line (recorded in manifests only).
    default_text : what ``[default: ...]`` says when the default is computed (e.g. "bin_s").
    hidden : an option kept for old command lines, not shown in ``--help``.
    list_sep : a tuple / list field given as one string split on this separator (``","``).
    envvar : an environment variable the option is read from when not given.
    """
    meta = {"help": help, "unit": unit, "min": min, "max": max, "choices": tuple(choices) if choices else None,
            "flag": flag, "cli_scale": cli_scale, "cli_unit": cli_unit, "argument": argument, "cli": cli,
            "default_text": default_text, "hidden": hidden, "list_sep": list_sep, "min_exclusive": min_exclusive,
            "envvar": envvar}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"ephys": meta})
    if isinstance(default, (list, dict, set)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"ephys": meta})
    return field(default=default, metadata={"ephys": meta})


@dataclass
class ParamInfo:
    """One setting as the CLI and the docs see it.

    Attributes
    ----------
    name : the dataclass field name.
    type : the base Python type (int, float, str, bool, Path), of the items for a tuple / list.
    kind : ``"scalar"``, ``"tuple"`` (fixed length ``n``), ``"list"`` (any length).
    n : items of a fixed-length tuple (0 otherwise).
    optional : None is allowed.
    default : the field's default (a value in the field's unit).
    help, unit, min, max, choices, flag, cli_scale, cli_unit, argument, cli, default_text, hidden,
    list_sep, min_exclusive, envvar : as given to :func:`param`.
    """

    name: str
    type: type
    kind: str
    n: int
    optional: bool
    default: Any
    help: str = ""
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    flag: str | None = None
    cli_scale: float = 1.0
    cli_unit: str = ""
    argument: bool = False
    cli: bool = True
    default_text: str | None = None
    hidden: bool = False
    list_sep: str | None = None
    min_exclusive: bool = False
    envvar: str | None = None

    @property
    def option(self) -> str:
        """How a user names it: ``--bin-ms``, or the argument's name in capitals."""
        return self.name.upper() if self.argument else option_name(self.name, self.flag)

    def help_text(self) -> str:
        """The help sentence with the unit, range and choices appended where not already said."""
        text = self.help.strip()
        unit = self.cli_unit or self.unit
        bits = []
        if unit and not re.search(rf"(?<![\w]){re.escape(unit)}(?![\w])", text):
            bits.append(unit)
        if self.choices and not all(str(c) in text for c in self.choices):
            bits.append(" | ".join(str(c) for c in self.choices))
        if self.min is not None or self.max is not None:
            scale = self.cli_scale or 1.0
            lo = None if self.min is None else self.min / scale
            hi = None if self.max is None else self.max / scale
            op = ">" if self.min_exclusive else ">="
            rng = (f"{op} {lo:g}" if hi is None else f"<= {hi:g}" if lo is None else f"{lo:g}..{hi:g}")
            if rng not in text:
                bits.append(rng)
        if self.default_text:
            bits.append(f"default: {self.default_text}")
        return text + (f" [{'; '.join(bits)}]" if bits else "")


def option_name(field_name: str, flag: str | None = None) -> str:
    """``--bin-ms`` for ``flag``, else ``--`` + the field name with ``_`` written as ``-``."""
    return flag or "--" + field_name.replace("_", "-")


def _base(tp) -> tuple[type, str, int, bool]:
    """(item type, kind, n, optional) of a field annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return args[0], "tuple", len(args), optional
        return (args[0] if args else str), "list", 0, optional
    if origin is dict or tp is dict:
        return dict, "scalar", 0, optional
    return tp, "scalar", 0, optional


def describe(cls) -> list[ParamInfo]:
    """Every field of the parameters dataclass ``cls`` as a :class:`ParamInfo` (declaration order).

    Raises
    ------
    TypeError
        ``cls`` is not a dataclass (a programming error).
    """
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata.get("ephys") or {})
        tp, kind, n, optional = _base(hints[f.name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        out.append(ParamInfo(f.name, tp, kind, n, optional or default is None, default,
                             **{k: v for k, v in meta.items() if k in ParamInfo.__dataclass_fields__}))
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(info: ParamInfo, v) -> str:
    """A value as the user typed it (in the option's unit)."""
    if _num(v) and info.cli_scale != 1.0:
        return f"{v / info.cli_scale:g}"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return " ".join(_show(info, x) for x in v)
    return repr(v) if isinstance(v, str) else str(v)


def _check_one(info: ParamInfo, v, where: str) -> Any:
    """``v`` coerced to the field's type and checked; EphysError naming ``where`` otherwise."""
    if v is None:
        if info.optional:
            return None
        raise EphysError(f"{where} is required")
    if info.kind in ("tuple", "list"):
        items = list(v) if isinstance(v, (tuple, list)) else [v]
        if info.kind == "tuple" and len(items) != info.n:
            raise EphysError(f"{where} takes {info.n} values, not {len(items)}")
        one = dataclasses.replace(info, kind="scalar", optional=False)
        return tuple(_check_one(one, x, where) for x in items)
    tp = info.type
    if tp is bool:
        if not isinstance(v, bool):
            raise EphysError(f"{where} must be true or false, not {v!r}")
        return v
    if tp is int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not (isinstance(v, int) and not isinstance(v, bool)):
            raise EphysError(f"{where} must be an integer, not {_show(info, v)}")
    elif tp is float:
        if not _num(v):
            raise EphysError(f"{where} must be a number, not {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise EphysError(f"{where} must be a finite number, not {_show(info, v)}")
    elif tp is str:
        v = str(v)
    elif tp is Path:
        v = Path(v)
    if info.choices is not None and v not in info.choices:
        raise EphysError(f"{where} must be one of {', '.join(map(str, info.choices))}, not {_show(info, v)}")
    if _num(v):
        unit = f" {info.cli_unit or info.unit}".rstrip()
        lo_bad = info.min is not None and (v <= info.min if info.min_exclusive else v < info.min)
        if lo_bad:
            op = ">" if info.min_exclusive else ">="
            raise EphysError(f"{where} must be {op} {_show(info, info.min)}{unit}, not {_show(info, v)}")
        if info.max is not None and v > info.max:
            raise EphysError(f"{where} must be <= {_show(info, info.max)}{unit}, not {_show(info, v)}")
    return v


def check(obj):
    """Check and coerce every field of the parameters dataclass instance ``obj`` in place, then call
    its own ``check()`` when it has one (rules that tie fields together). Returns ``obj``.

    Raises
    ------
    EphysError
        The first value of the wrong type, out of range or not among the choices, naming the option
        a user types (``--bin-ms must be > 0 ms, not -1``).
    """
    for info in describe(type(obj)):
        value = getattr(obj, info.name)
        if info.type is dict:
            continue
        setattr(obj, info.name, _check_one(info, value, info.option))
    own = getattr(obj, "check", None)
    if callable(own):
        res = own()
        return obj if res is None else res
    return obj


def from_options(cls, given: dict):
    """An instance of ``cls`` from option values as the CLI parsed them (in the options' units;
    None = not given, so the field's default applies); scaled to the fields' units and checked.

    Raises
    ------
    EphysError
        As :func:`check`.
    """
    kwargs = {}
    for info in describe(cls):
        if info.name not in given or given[info.name] is None:
            continue
        v = given[info.name]
        if info.list_sep is not None and isinstance(v, str):
            v = tuple(s.strip() for s in v.split(info.list_sep) if s.strip())
        elif info.kind == "list" and isinstance(v, list):
            v = tuple(x for item in v for x in ([item] if not isinstance(item, str) or info.list_sep is None
                                                else item.split(info.list_sep)))
        if info.cli_scale != 1.0:
            v = tuple(x * info.cli_scale for x in v) if isinstance(v, (tuple, list)) else v * info.cli_scale
        kwargs[info.name] = v
    return check(cls(**kwargs))


def _jsonable(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def as_record(obj) -> dict:
    """The parameters as a JSON-ready dict (tuples as lists), for a manifest's ``parameters``."""
    return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def params_key(obj) -> str:
    """A short hash of :func:`as_record`: equal parameters, equal key (16 hex digits)."""
    blob = json.dumps(as_record(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def from_record(cls, record: dict, where=None):
    """``cls`` rebuilt from a manifest's ``parameters`` (lists back to tuples; ``key`` ignored).

    Raises
    ------
    EphysError
        A recorded parameter this version does not know (naming it), or a value that fails :func:`check`.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    raw = {k: v for k, v in (record or {}).items() if k != "key"}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise EphysError("the dataset was prepared with parameters this version does not know: "
                         + ", ".join(unknown), where)
    infos = {i.name: i for i in describe(cls)}
    for k, v in raw.items():
        if infos[k].kind in ("tuple", "list") and isinstance(v, list):
            raw[k] = tuple(v)
    return check(cls(**raw))
