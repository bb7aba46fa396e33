"""The package's layout: no import cycles, and imports point one way (base <- losses <- engine <- analysis, jobs,
video <- cli, web). Every import counts, also those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import stylelab

ROOT = Path(stylelab.__file__).parent
BASE = {"config", "flags", "errors", "files", "image", "layers", "presets", "provenance", "samples", "__init__",
        "__main__"}
# the rooms of the house, each allowed to import only from the rooms before it (and itself)
ORDER = ["base", "losses", "engine", "analysis", "jobs", "video", "web", "cli"]
MAY_IMPORT = {
    "base": {"base"},
    "losses": {"base", "losses"},
    "engine": {"base", "losses", "engine"},
    "analysis": {"base", "losses", "engine", "analysis"},
    "jobs": {"base", "losses", "engine", "jobs"},
    "video": {"base", "losses", "engine", "jobs", "video"},
    "web": {"base", "losses", "engine", "analysis", "jobs", "web"},
    "cli": set(ORDER),
}


def module_name(path: Path) -> str:
    parts = ["stylelab", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The stylelab modules `path` imports anywhere in its code, except under `if TYPE_CHECKING:`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("stylelab"):
                for alias in node.names:  # `from . import x` imports the module x when there is one
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("stylelab")}
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ORDER) else "base"


def graph() -> dict[str, set[str]]:
    # A module's package __init__ is run before it, so importing a.b.c also imports a.b: ignore those edges here
    # (a package may re-export its children), but count every import written in the code.
    return {m: imports(p) for m, p in MODULES.items()}


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n):], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# The one edge against the flow: the settings (config, flags) check a style-loss spec against the registry, which
# is plain data (names -> "module:function", and the spec's parser) and loads no loss until one is built.
ALLOWED = {("stylelab.config", "stylelab.losses.spec"), ("stylelab.flags", "stylelab.losses.spec")}


def test_imports_point_one_way():
    wrong = [f"{m} ({room(m)}) imports {n} ({room(n)})" for m, targets in graph().items() for n in sorted(targets)
             if room(n) not in MAY_IMPORT[room(m)] and m not in ("stylelab", "stylelab.__main__")
             and (m, n) not in ALLOWED]
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_a_cycle(tmp_path, monkeypatch):
    """The checker itself: two modules that import each other are reported."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from stylelab import b\n")
    b.write_text("def f():\n    from stylelab import a\n")
    monkeypatch.setitem(MODULES, "stylelab.a", a)
    monkeypatch.setitem(MODULES, "stylelab.b", b)
    monkeypatch.setattr(sys.modules[__name__], "module_name", lambda p: {a: "stylelab.a", b: "stylelab.b"}.get(p) or
                        "stylelab." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    try:
        test_no_import_cycles()
    except AssertionError as exc:
        assert "stylelab.a -> stylelab.b -> stylelab.a" in str(exc)
    else:
        raise AssertionError("a cycle went unseen")


def test_every_module_says_what_it_exports():
    """`__all__` in every module, naming only what the module defines or imports."""
    missing, unknown = [], []
    for name, path in MODULES.items():
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        exported = next((node.value for node in tree.body if isinstance(node, ast.Assign)
                         and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)), None)
        if exported is None:
            missing.append(name)
            continue
        defined = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        if "__getattr__" in defined:  # names served on first use (the package's public API): checked by importing
            continue
        unknown += [f"{name}.{n}" for n in ast.literal_eval(exported) if n not in defined]
    assert not missing, f"no __all__ in: {', '.join(missing)}"
    assert not unknown, f"__all__ names what is not there: {', '.join(unknown)}"


def test_the_public_names_stay_importable_from_stylelab():
    for name in stylelab.__all__:
        assert getattr(stylelab, name) is not None, name
