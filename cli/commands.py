"""The pipelines' extra commands (``ephys PIPELINE NAME``, ``ephys fetch NAME``), built from their
:class:`~ephys.pipelines.core.registry.Command` declarations."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

from ephys.pipelines.core.registry import Command, CommandContext

from . import common
from .options import command_from, help_doc, parameters, values


def context() -> CommandContext:
    """What a command's ``run`` gets from the command line: messages, progress, roots."""

    @contextmanager
    def progress(description: str, total: int | None = None):
        with common.progress_bar(description, total) as advance:
            yield advance

    return CommandContext(info=common.info, notice=common.notice, progress=progress,
                          import_backend=common.import_backend, data_root=common.data_root(),
                          runs_root=common.runs_root(),
                          echo=lambda line: common.out.print(line, highlight=False, markup=False, soft_wrap=True))


def _body(cmd: Command, old: str | None = None):
    def body(kw: dict):
        if old is not None:
            print(f"ephys: note: `ephys {old}` is now `ephys {cmd_path(cmd)}`; the old spelling goes in the next "
                  "release", file=sys.stderr)
        result = cmd.hook("run")(values(cmd.params, kw), context())
        if result is not None:
            common.out.print(str(result), highlight=False, markup=False, soft_wrap=True)

    return body


_PIPELINE_OF: dict[int, str] = {}


def cmd_path(cmd: Command) -> str:
    """``PIPELINE NAME`` or ``fetch NAME``: how a user types the command."""
    return f"{cmd.group or _PIPELINE_OF.get(id(cmd), '?')} {cmd.name}"


def register(app: typer.Typer, groups: dict[str, typer.Typer], pipelines) -> None:
    """Mount every declared command: under ``ephys PIPELINE`` (a group per pipeline that has any) or
    under an existing group (``fetch``), plus each hidden top-level alias."""
    for p in pipelines.values():
        for cmd in p.commands:
            _PIPELINE_OF[id(cmd)] = p.name
            doc = help_doc(cmd.summary, cmd.description)
            params = parameters(cmd.params)
            target = groups.get(cmd.group or p.name)
            if target is None:
                target = typer.Typer(help=p.description[:1].upper() + p.description[1:] + ".",
                                     no_args_is_help=True)
                groups[p.name] = target
                app.add_typer(target, name=p.name)
            target.command(cmd.name, help=doc)(command_from(_body(cmd), params, doc))
            for alias in cmd.aliases:
                app.command(alias, help=doc, hidden=True)(command_from(_body(cmd, alias), params, doc))
