"""The package's shape (docs/ARCHITECTURE.md): each level imports only the
levels below it, and no lasres module imports itself round a cycle.

The import graph is read from the sources with :mod:`ast`: every ``import``
and ``from ... import`` of a lasres module, at the top of a module or inside
a function alike (a function-level import is still a dependency, and a cycle
through one breaks as soon as the import order changes), plus the package
``__init__`` that importing a submodule runs. The root package ``lasres``
(the Lasagne-style façade, ``import lasres``) is left out as a target.
"""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lasres")

#: The levels, lowest first: a module may import its own level and the ones
#: below. The longest matching prefix places a module.
LEVELS = [
    ("base", ["lasres.errors", "lasres.recipes"]),
    ("io", ["lasres.io"]),
    ("ops and backends", ["lasres.ops", "lasres.config"]),
    ("Lasagne", ["lasres.layers", "lasres.init", "lasres.nonlinearities", "lasres.objectives",
                 "lasres.regularization", "lasres.updates", "lasres.utils", "lasres.random",
                 "lasres.theano_extensions"]),
    ("data", ["lasres.data"]),
    ("weights", ["lasres.weights"]),
    ("models", ["lasres.models"]),
    ("running", ["lasres.train", "lasres.compare"]),
    ("export", ["lasres.export"]),
    ("front ends", ["lasres.cli"]),
]

#: Imports left out of the cycle check, each with its reason.
KNOWN = {}


def _modules():
    mods = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def _targets(mods, module, is_package, node):
    """The lasres modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in mods]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    out = []
    for alias in node.names:
        if f"{source}.{alias.name}" in mods:  # a submodule
            out.append(f"{source}.{alias.name}")
            if not module.startswith(source + "."):
                out.append(source)
        else:
            out.append(source)
    return [t for t in out if t in mods]


def import_graph():
    """``{module: set of the lasres modules it imports}``."""
    mods = _modules()
    graph = {}
    for module, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(_targets(mods, module, path.endswith("__init__.py"), node))
        for t in list(targets):  # importing a.b.c runs a.b's __init__ first
            parts = t.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in mods and not module.startswith(parent + "."):
                    targets.add(parent)
        targets.discard(module)
        targets.discard("lasres")
        graph[module] = targets
    return graph


def level(module):
    best = None
    for i, (_, prefixes) in enumerate(LEVELS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None
                                                                 or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_module_has_a_level(graph):
    assert [m for m in sorted(graph) if m != "lasres" and level(m) is None] == []


def test_no_upward_import(graph):
    upward = [f"{m} ({LEVELS[level(m)][0]}) imports {t} ({LEVELS[level(t)][0]})"
              for m in sorted(graph) if level(m) is not None for t in sorted(graph[m])
              if level(t) is not None and level(t) > level(m)]
    assert upward == []


def test_no_import_cycle(graph):
    pruned = {m: {t for t in ts if (m, t) not in KNOWN} for m, ts in graph.items()}
    assert cycles(pruned) == []


def test_the_known_exceptions_still_exist(graph):
    """An exception that no longer happens leaves KNOWN."""
    assert [edge for edge in KNOWN if edge[1] not in graph.get(edge[0], ())] == []


def test_no_import_hidden_in_a_code_string():
    """Below the front ends, no module runs lasres code from a string (an
    import no import statement shows, as ``python -c 'from lasres.cli ...'``)."""
    hidden = []
    for module, path in _modules().items():
        if module.startswith("lasres.cli"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                    s in node.value for s in ("from lasres", "import lasres")):
                hidden.append(f"{module}:{node.lineno}")
    assert hidden == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The graph code itself: a made-up cycle and upward arrow are found."""
    made_up = {"lasres.layers.base": {"lasres.random"}, "lasres.random": {"lasres.layers.base"},
               "lasres.data.cifar": set()}
    assert cycles(made_up) == [["lasres.layers.base", "lasres.random"]]
    assert level("lasres.data.cifar") < level("lasres.train.loop")
    assert level("lasres.cli.run_train") == len(LEVELS) - 1
