"""The docs cannot drift from the code: the generated reference is complete and current, every
``--help`` renders whole and names only options that exist, and every command the docs show parses.

The full site build (``mkdocs build --strict``: broken links, missing pages) is ``make docs``, run
by ``.ci/run``; these tests need no documentation package.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "tests"))
import toy_modality  # noqa: E402,F401  (the architecture page runs its commands: `ephys toy hello`)

#: a rich-markup casualty: ``OUT/events_<method>.csv`` renders as ``OUT/events_.csv``,
#: ``p_<class>`` as ``p_``, ``runs/<model>-<dataset>`` as ``runs/-``, ``OUT/<fold>.`` as ``OUT/.``
_DAMAGE = re.compile(r"[A-Za-z0-9]_(?=[.;,)\]]|\s)|runs/[\w-]*-(?=[\s\]])|/-(?=[\s\].])|\b[A-Z]+/(?=[.\s\]])")
#: an angle-bracket placeholder in a help string (rich's markdown mode drops it)
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w .:/-]*>")
_OPTION = re.compile(r"(?<![\w=/-])--[a-z][a-z0-9-]*")
_MENTION = re.compile(r"\bephys ((?:[a-z][\w-]*)(?: [a-z][\w-]*)?)")


def _app():
    import typer.main

    from ephys.cli.main import get_app

    return get_app(), typer.main.get_command(get_app())


def _commands():
    """(path words, command) for every visible command, root first."""
    _, root = _app()
    out = []

    def walk(cmd, path):
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            if not sub.hidden:
                walk(sub, path + [name])

    walk(root, [])
    return out


def _visible_params(cmd):
    return [p for p in cmd.params if not getattr(p, "hidden", False) and p.name != "help"]


def _flags(cmd) -> set[str]:
    out = {"--help"}
    for p in cmd.params:
        out |= set(p.opts) | set(p.secondary_opts)
        out |= {f"--no-{o[2:]}" for o in p.opts if o.startswith("--")}
    return out


def _find(words: list[str]):
    """The command at ``words`` (two words, else one), or None. A group stands for its commands."""
    _, root = _app()
    for n in (2, 1):
        cmd = root
        for w in words[:n]:
            cmd = getattr(cmd, "commands", {}).get(w)
            if cmd is None:
                break
        else:
            if len(words) >= n:
                return cmd
    return None


def _render(args: list[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    app, _ = _app()
    res = CliRunner().invoke(app, args, env={"COLUMNS": "220", "TERM": "dumb", "NO_COLOR": "1"},
                             prog_name="ephys")
    return res.exit_code, res.output


def test_reference_is_complete_and_current():
    """docs/reference/*.md and the generated parts of docs/pipelines/*.md hold an entry for every
    command, argument, option, model, hyper-parameter, pipeline, prepare step and recipe, and equal
    a fresh generation (removing an entry, or a new option or model, fails here)."""
    proc = subprocess.run([sys.executable, str(REPO / "docs" / "gen_reference.py"), "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]


def test_every_argument_and_option_has_help():
    missing = [f"ephys {' '.join(path)}: {p.opts[0] if p.opts else p.name}"
               for path, cmd in _commands() for p in _visible_params(cmd) if not (p.help or "").strip()]
    assert not missing, "no help text: " + ", ".join(missing)


def test_every_help_renders_whole_and_names_real_options():
    problems = []
    for words, cmd in _commands():
        where = "ephys " + " ".join(words)
        code, out = _render(words + ["--help"])
        if code != 0:
            problems.append(f"{where} --help: exit {code}")
            continue
        summary = (cmd.help or "").strip().split("\n\n")[0].strip()
        if not summary or len(" ".join(summary.split())) > 110:
            problems.append(f"{where}: the first line must say briefly what it does, not {summary[:80]!r}...")
        texts = [cmd.help or ""] + [p.help or "" for p in _visible_params(cmd)]
        for text in texts:
            for m in _PLACEHOLDER.finditer(text):
                problems.append(f"{where}: placeholder {m.group()} (the help's markdown drops it; write NAME)")
            mentions = [(m.start(), m.group(1).split()) for m in _MENTION.finditer(text)]
            for m in _OPTION.finditer(text):
                flag = m.group()
                if flag in _flags(cmd):
                    continue
                before = [w for pos, w in mentions if pos < m.start()]
                other = _find(before[-1]) if before else None
                owners = [other, *getattr(other, "commands", {}).values()] if other is not None else []
                if not any(flag in _flags(c) for c in owners):
                    problems.append(f"{where}: its help names {flag}, which it does not have")
        flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
        for m in _DAMAGE.finditer(flat):
            problems.append(f"{where}: damaged text ...{flat[max(0, m.start() - 30):m.end() + 10]}...")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------
# commands shown in the docs
# ----------------------------------------------------------------------------------------------

_DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```(?:bash|sh|console)\n(.*?)^```", re.S | re.M)


def documented_commands() -> list[tuple[str, list[str]]]:
    """(file, words) of every command in the docs' bash blocks: ``ephys ...`` and ``make ...``."""
    out = []
    for f in _DOC_FILES:
        for block in _BLOCK.findall(f.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                seg: list[str] = []
                for w in words + ["&&"]:
                    if w in ("&&", "||", ";", "|"):
                        while seg and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", seg[0]):
                            seg.pop(0)  # VAR=value before the command
                        if seg and seg[0] in ("ephys", "make"):
                            out.append((f.relative_to(REPO).as_posix(), seg))
                        seg = []
                    else:
                        seg.append(w)
    return out


def test_the_docs_show_commands():
    cmds = documented_commands()
    assert len([c for c in cmds if c[1][0] == "ephys"]) >= 30, cmds  # the extraction finds them
    files = {f for f, _ in cmds}
    assert "README.md" in files and "docs/getting-started.md" in files


def test_every_documented_command_parses():
    """``ephys WORDS --help`` succeeds with each documented command's options (an unknown command or
    option fails the parse), and each documented ``make`` target exists."""
    from ephys.pipelines.core.models import REGISTRY, resolve_model_name
    from ephys.pipelines.core.registry import pipelines, recipes

    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    problems = []
    for f, words in documented_commands():
        if words[0] == "make":
            for w in words[1:]:
                if "=" not in w and not w.startswith("-") and w not in targets:
                    problems.append(f"{f}: make {w}: no such target")
                if w.startswith("PIPELINE=") and w.split("=", 1)[1] not in pipelines():
                    problems.append(f"{f}: make {w}: no such pipeline")
            continue
        # the names a command line gives must exist too: recipes, models, pipelines
        if words[1:2] == ["reproduce"] and len(words) > 2 and not words[2].startswith("-") \
                and words[2] not in recipes():
            problems.append(f"{f}: ephys reproduce {words[2]}: no such recipe")
        for opt, known in (("--model", None), ("--pipeline", pipelines())):
            if opt in words[:-1]:
                value = words[words.index(opt) + 1]
                if value.isupper():
                    continue  # a placeholder (M, NAME)
                if known is None:
                    try:
                        REGISTRY[resolve_model_name(value)]
                    except Exception:
                        problems.append(f"{f}: {opt} {value}: no such model")
                elif value not in known:
                    problems.append(f"{f}: {opt} {value}: no such pipeline")
        args = [w for w in words[1:] if w not in ("--quiet", "--debug", "-q")]  # global, anywhere (cli.entry)
        if args and args[0] == "--version":
            continue
        code, out = _render(args + ["--help"])
        if code != 0:
            text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
            problems.append(f"{f}: `{shlex.join(words)}` does not parse: {text[-200:]}")
    assert not problems, "\n".join(problems)
