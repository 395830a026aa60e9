"""The core knows no pipeline: a toy modality registered from a test module trains, evaluates,
predicts and reports through the same CLI; the core has no import cycles and names no pipeline."""

from __future__ import annotations

import ast
import csv
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from conftest import REPO, ephys, one_line_error

sys.path.insert(0, str(Path(__file__).parent))
import toy_modality  # noqa: E402

PLUGIN_ENV = {"EPHYS_PLUGINS": "toy_modality", "PYTHONPATH": str(Path(__file__).parent)}


def test_toy_modality_train_evaluate_predict_report(tmp_path):
    # the declared prepare step: its options (with units) in --help, its parameters in the manifest
    helptext = ephys("prepare", "toy", "--help", env=PLUGIN_ENV, check=0).stdout
    assert "--offset-mV" in helptext and "[mV" in helptext and "--scale" in helptext and "--shard" in helptext
    assert "--n-t" not in helptext  # declared cli=False
    x, y = toy_modality.simulate(20, seed=1)
    raw = tmp_path / "raw"
    raw.mkdir()
    np.save(raw / "sequences.npy", x)
    (raw / "labels.txt").write_text("\n".join(y))
    data = tmp_path / "toy"
    ephys("prepare", "toy", raw, data, "--offset-mV", "0", env=PLUGIN_ENV, check=0)
    man = json.loads((data / "manifest.json").read_text())
    assert man["prepared_by"]["step"] == "toy" and man["parameters"]["offset_mV"] == 0.0
    one_line_error(ephys("prepare", "toy", raw, tmp_path / "bad", "--scale", "-1", env=PLUGIN_ENV), "--scale", "> 0")
    assert not (tmp_path / "bad").exists()
    # the same folder with other parameters is refused, naming what differs; --force replaces it
    one_line_error(ephys("prepare", "toy", raw, data, "--scale", "2", env=PLUGIN_ENV), "scale 1.0 -> 2.0", "--force")
    # the declared extra command, mounted under the pipeline's name
    hello = ephys("toy", "hello", "world", "--times", "2", env=PLUGIN_ENV, check=0)
    assert hello.stdout.split("\n")[:2] == ["hello world", "hello world"]
    assert "toy" in ephys("--help", env=PLUGIN_ENV, check=0).stdout
    run = tmp_path / "run"
    # a plug-in model's declared hyper-parameter: checked by the core, listed, and given to its builder
    one_line_error(ephys("train", "--model", "toy_dense", "--data", data, "--hparam", "unit=12", "--out", run,
                         env=PLUGIN_ENV), "--hparam", "toy_dense has no hyper-parameter unit", "accepts: units")
    assert not run.exists()
    assert "units of the hidden layer" in ephys("models", "toy_dense", env=PLUGIN_ENV, check=0).stdout
    ephys("train", "--model", "toy_dense", "--data", data, "--epochs", "15", "--lr", "0.01", "--batch-size", "8",
          "--hparam", "units=12", "--out", run, env=PLUGIN_ENV, check=0)
    assert (run / "model.keras").is_file()
    with zipfile.ZipFile(run / "model.keras") as z:
        layers = json.loads(z.read("config.json"))["config"]["layers"]
    assert [ly["config"]["units"] for ly in layers if ly["config"].get("name") == "hidden"] == [12]
    ephys("evaluate", run, env=PLUGIN_ENV, check=0)
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_test"] > 0 and 0.0 <= m["balanced_accuracy"] <= 1.0
    # raw input through the declared prepare step, with the run's dataset's parameters
    xn, yn = toy_modality.simulate(6, seed=2)
    np.save(tmp_path / "new.npy", xn)
    ephys("predict", run, tmp_path / "new.npy", tmp_path / "pred", env=PLUGIN_ENV, check=0)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    assert len(rows) == len(xn) and set(rows[0]) >= {"id", "source", "predicted", "p_falling", "p_rising"}
    assert all(abs(float(r["p_falling"]) + float(r["p_rising"]) - 1) < 1e-4 for r in rows)
    agree = np.mean([r["predicted"] == t for r, t in zip(rows, yn)])
    assert agree >= 0.75, agree  # the classes are easy: a trained model gets most right
    page = (tmp_path / "pred" / "report.html").read_text()
    assert "Counts per predicted class" in page and 'alt="toy sequences"' in page
    ephys("report", run, env=PLUGIN_ENV, check=0)
    html = (run / "report.html").read_text()
    assert "Toy examples" in html and 'alt="toy sequences"' in html and "Toy section" in html
    # a prepared dataset with other parameters is refused, naming the difference
    toy_modality.write_dataset(tmp_path / "other", xn, [None] * len(xn), {"n_t": 32, "scale": 2.0})
    proc = ephys("predict", run, tmp_path / "other", tmp_path / "pred2", env=PLUGIN_ENV)
    one_line_error(proc, "parameters.scale")
    assert not (tmp_path / "pred2").exists()


def _imports(path: Path) -> set[str]:
    """Modules (dotted, under ephys.pipelines) that ``path`` imports."""
    rel = path.relative_to(REPO / "pipelines").with_suffix("")
    pkg = ["ephys", "pipelines", *rel.parts[:-1]] if rel.name != "__init__" else ["ephys", "pipelines", *rel.parts[:-1]]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("ephys.pipelines"):
                out.add(mod)
                for a in node.names:
                    out.add(f"{mod}.{a.name}")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ephys.pipelines")}
    return out


def test_core_names_no_pipeline_and_imports_none():
    from ephys.pipelines import PIPELINES

    for f in sorted((REPO / "pipelines" / "core").glob("*.py")):
        imported = _imports(f)
        for name in PIPELINES:
            assert not any(m.startswith(f"ephys.pipelines.{name}") for m in imported), (f, name)
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):  # no `modality == "..."` test in the core
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and isinstance(c.value, str)
                                                     for c in [node.left, *node.comparators]):
                src = ast.unparse(node)
                assert "modality" not in src, (f.name, src)


def test_no_import_cycles_between_modules():
    mods = {}
    for f in (REPO / "pipelines").rglob("*.py"):
        rel = f.relative_to(REPO / "pipelines").with_suffix("")
        name = ".".join(["ephys", "pipelines", *[p for p in rel.parts if p != "__init__"]])
        mods[name] = {m for m in _imports(f)}
    graph = {m: {d for d in deps if d in mods and d != m} for m, deps in mods.items()}

    def pkg_of(m):  # importing a package's module also runs the package __init__: ignore parents
        return m

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in graph[m]:
            if d.startswith(m + ".") or m.startswith(d + "."):
                continue  # a package and its own modules
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(pkg_of(m))


# ---------------------------------------------------------------------------------------------
# the house: cli/ is generated from the declarations; models train through the core
# ---------------------------------------------------------------------------------------------

#: the words of the done-criterion (`grep -rniE 'sts|scalogram|spikes|mer|lfp|events' cli/`)
_PIPELINE_WORDS = re.compile(r"sts|scalogram|spikes|mer|lfp|events", re.IGNORECASE)


def test_cli_names_no_pipeline_and_stays_small():
    for f in sorted((REPO / "cli").glob("*.py")):
        lines = f.read_text().splitlines()
        assert len(lines) <= 120, (f.name, len(lines))
        for k, line in enumerate(lines, 1):
            if line.lstrip().startswith("#"):
                continue
            code = line.split("  # ", 1)[0]  # an inline comment
            assert not _PIPELINE_WORDS.search(code), f"cli/{f.name}:{k}: {line.strip()}"


def _declared_flags() -> set[str]:
    from ephys.pipelines.core.params import describe
    from ephys.pipelines.core.registry import pipelines

    flags = set()
    for p in pipelines().values():
        classes = [s.params for s in p.prepare] + [s.options for s in p.prepare] + [c.params for c in p.commands]
        classes.append(p.synthetic_params)
        for cls in filter(None, classes):
            flags |= {i.option for i in describe(cls) if not i.argument}
    return flags


def test_cli_defines_no_option_a_declaration_owns():
    """The CLI's own options are the verbs' (train, reproduce, ...); a pipeline's options live in its
    declaration. Generic names every verb may use are allowed."""
    generic = {"--seed", "--out", "--labels", "--data", "--epochs", "--version", "--force"}
    owned = _declared_flags() - generic
    for f in sorted((REPO / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Option":
                if any(k.arg == "hidden" and getattr(k.value, "value", False) for k in node.keywords):
                    continue  # an old spelling kept for one release
                names = {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
                assert not names & owned, (f.name, sorted(names & owned))


def test_pipelines_fit_and_cross_validate_only_through_the_core():
    """No pipeline module calls a Keras model's fit or runs its own fold loop: every network trains in
    core.training (``ModelSpec`` targets) and cross-validation is core.crossval's."""
    fit = re.compile(r"\bmodel\.fit\(|\.fit\(\s*(?:x=)?[A-Za-z_]+\s*,\s*(?:y=)?[A-Za-z_]+\s*,\s*(?:epochs|batch_size|validation)")
    for name in ("sts", "spikes", "mer", "events", "lfp"):
        for f in sorted((REPO / "pipelines" / name).glob("*.py")):
            text = f.read_text()
            assert not fit.search(text), f"pipelines/{name}/{f.name}: a Keras fit outside the core"
            assert "for fold in" not in text and "StratifiedGroupKFold(" not in text, \
                f"pipelines/{name}/{f.name}: a fold loop outside the core"


#: literals left to the owner of the model builders (Keras input-layer names saved in model files,
#: the builders' shape messages); remove an entry when its literal goes
_WORDS_LEFT = {
    ("blocks/models/backbones.py", "scalogram"),
    ("blocks/models/sequence.py", "waveform"),
    ("blocks/models/sequence.py", " needs waveforms of shape (n_samples >= 4, n_channels), got "),
    ("blocks/models/bilstm.py", "window"),
    ("blocks/models/bilstm.py", " needs windows of shape (n_time >= 2, n_channels), got "),
}


def test_core_and_blocks_speak_no_pipelines_words():
    """No string literal in core/ or blocks/ holds a pipeline's name, the name of a modality only
    one pipeline declares, or a pipeline's sample noun (singular or plural): messages, logs and
    reports take their words from the dataset (core/nouns.py). Docstrings may name examples.
    blocks/readers/ is exempt: a reader named by its file format reads that format's own fields
    (a MATLAB variable ``lfp``, an Axona header ``spikes:``)."""
    import re

    from ephys.pipelines import PIPELINES
    from ephys.pipelines.core.nouns import plural
    from ephys.pipelines.core.registry import pipelines

    declared: dict[str, set] = {}
    words = set(PIPELINES) | {"cell", "snippet", "segment", "scalogram", "spike", "waveform", "mer", "lfp", "sts",
                              "events"}
    for p in pipelines().values():
        for m in p.modalities:
            declared.setdefault(m.name, set()).add(p.name)
            if m.sample_noun not in ("sample", ""):
                words.add(m.sample_noun)
    words |= {name for name, by in declared.items() if len(by) == 1}
    words |= {plural(w) for w in list(words)}
    assert {"cell", "snippets", "window", "scalogram", "spikes", "mer"} <= words
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")\b", re.I)
    found = []
    root = REPO / "pipelines"
    for f in sorted([*(root / "core").rglob("*.py"), *(root / "blocks").rglob("*.py")]):
        rel = f.relative_to(root).as_posix()
        if rel.startswith("blocks/readers/"):
            continue
        tree = ast.parse(f.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and pattern.search(node.value) and (rel, node.value) not in _WORDS_LEFT):
                found.append(f"{rel}:{node.lineno}: {node.value[:70]!r}")
    assert not found, "pipeline words in core/ or blocks/:\n" + "\n".join(found)
