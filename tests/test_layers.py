"""medgan's layering, checked: every import of a medgan module, module-level or inside a function.

The layer map is the picture in docs/architecture.md (section "Layers"), read from there so that
the picture and this test cannot disagree. A module may import modules of its own layer and of
the layers below it; the modules form no import cycle; a function-local import of a medgan
module carries a ``# lazy: <reason>`` comment on its line (the reason it is not at the top); and
only the data layer builds a SliceSet.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "medgan"
ARCHITECTURE = REPO / "docs" / "architecture.md"
LAYER_MARKER = "<!-- layer map: read by tests/test_layers.py -->"

#: Files whose function-local medgan imports are not yet moved or justified (being edited
#: elsewhere), e.g. ``"medgan/generate.py"``. Only rule (c), the ``# lazy:`` comment, is waived
#: for them; a listed file that no longer needs the waiver fails the test. Empty: every file
#: follows the rules.
PENDING: frozenset[str] = frozenset()

#: Names only the data layer may call: the ways a SliceSet comes into being.
SLICESET_BUILDERS = frozenset({"SliceSet", "build_sliceset", "volume_to_slices"})


@dataclass(frozen=True)
class Edge:
    """One import of a medgan module."""

    source: str  # importing module, dotted
    target: str  # imported module, dotted
    path: str  # importing file, relative to the repository
    line: int
    local: bool  # inside a function
    comment: str  # the comment on the import's line(s), "" when none

    def where(self) -> str:
        """``medgan/x.py:12``."""
        return f"{self.path}:{self.line}"


def read_layers(text: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """The layer map from docs/architecture.md, bottom layer first: ``[(layer, modules), ...]``.

    The map is the fenced block after :data:`LAYER_MARKER`; each row is ``name │ module ...``
    (top layer first), module names relative to the package, ``medgan`` for the package itself.
    """
    text = ARCHITECTURE.read_text(encoding="utf-8") if text is None else text
    assert LAYER_MARKER in text, f"{ARCHITECTURE}: the layer map marker {LAYER_MARKER!r} is missing"
    lines = text.split(LAYER_MARKER, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("```"))
    rows: list[tuple[str, tuple[str, ...]]] = []
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            break
        if "│" not in line:
            continue
        name, modules = line.split("│", 1)
        names = tuple("medgan" if m == "medgan" else f"medgan.{m}" for m in modules.split())
        rows.append((name.strip(), names))
    assert rows, f"{ARCHITECTURE}: the layer map has no rows"
    return rows[::-1]


def module_files() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line."""
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def _local_nodes(tree: ast.AST) -> set[int]:
    """``id`` of every import statement inside a function body."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.update(id(sub) for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom)))
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The medgan module ``name`` refers to (longest known prefix), or None for other packages."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    """The medgan modules one import statement loads by name."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        # ``from medgan import distributed`` loads the module medgan.distributed
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = [_resolve(n, modules) for n in names if n == "medgan" or n.startswith("medgan.")]
    return list(dict.fromkeys(t for t in found if t))


def collect_edges() -> list[Edge]:
    """Every import of a medgan module by a medgan module."""
    modules = module_files()
    edges: list[Edge] = []
    for module, path in modules.items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        comments = _comments(source)
        local = _local_nodes(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            comment = " ".join(comments[n] for n in lines if n in comments)
            for target in _targets(node, module, path.name == "__init__.py", modules):
                if target != module:
                    rel = path.relative_to(REPO).as_posix()
                    edges.append(Edge(module, target, rel, node.lineno, id(node) in local, comment))
    return edges


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    """Index (0 = bottom) of the layer whose entry is the longest prefix of ``module``."""
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, entries) in enumerate(layers):
        for entry in entries:
            hit = module == entry or (entry != "medgan" and module.startswith(entry + "."))
            if hit and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return None if best is None else best[1]


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def is_justified(comment: str) -> bool:
    """A ``# lazy: <reason>`` comment with a reason."""
    return comment.startswith("# lazy:") and len(comment.removeprefix("# lazy:").strip()) >= 10


@pytest.fixture(scope="module")
def layers() -> list[tuple[str, tuple[str, ...]]]:
    return read_layers()


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return collect_edges()


def test_the_layer_map_parses() -> None:
    doc = "x\n" + LAYER_MARKER + "\n```text\n top │ cli run\n  (arrow)\n low │ medgan errors\n```\n"
    assert read_layers(doc) == [("low", ("medgan", "medgan.errors")), ("top", ("medgan.cli", "medgan.run"))]


def test_every_module_has_a_layer(layers: list[tuple[str, tuple[str, ...]]]) -> None:
    entries = [e for _, names in layers for e in names]
    assert len(entries) == len(set(entries)), "a module is named in two layers"
    modules = module_files()
    missing = [m for m in modules if layer_of(m, layers) is None]
    assert not missing, f"place these modules in the layer map of docs/architecture.md: {missing}"
    unknown = [e for e in entries if e not in modules]
    assert not unknown, f"the layer map names modules that do not exist: {unknown}"


def test_no_import_from_a_layer_above(layers: list[tuple[str, tuple[str, ...]]], edges: list[Edge]) -> None:
    bad = []
    for e in edges:
        own, other = layer_of(e.source, layers), layer_of(e.target, layers)
        if own is not None and other is not None and other > own:
            bad.append(f"{e.where()}: {e.source} ({layers[own][0]}) imports {e.target} ({layers[other][0]})")
    assert not bad, "imports from a layer above:\n" + "\n".join(bad)


def test_no_import_cycles(edges: list[Edge]) -> None:
    cycles = find_cycles(edges)
    detail = []
    for group in cycles:
        members = set(group)
        detail += [f"{e.where()}: {e.source} -> {e.target}" for e in edges if {e.source, e.target} <= members]
    assert not cycles, f"import cycles {cycles}:\n" + "\n".join(detail)


def test_local_imports_are_justified(edges: list[Edge]) -> None:
    bad = [
        f"{e.where()}: {e.target} (move it to the top, or say why with '# lazy: <reason>' on its line)"
        for e in edges
        if e.local and not is_justified(e.comment) and e.path not in PENDING
    ]
    assert not bad, "function-local imports of medgan modules without a reason:\n" + "\n".join(bad)


def test_pending_files_still_need_the_waiver(edges: list[Edge]) -> None:
    waived = {e.path for e in edges if e.local and not is_justified(e.comment)}
    stale = sorted(PENDING - waived)
    assert not stale, f"no unjustified local imports left in {stale}: remove them from PENDING"


def test_only_the_data_layer_builds_slicesets(layers: list[tuple[str, tuple[str, ...]]]) -> None:
    data = next(i for i, (name, _) in enumerate(layers) if name == "data")
    bad = []
    for module, path in module_files().items():
        if layer_of(module, layers) == data:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in SLICESET_BUILDERS:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}(...)")
    assert not bad, "SliceSets are built in medgan.data only (medgan.data.sources):\n" + "\n".join(bad)


def test_io_takes_plain_arguments(edges: list[Edge]) -> None:
    """Readers and writers get paths and options, not configs, and return io.contract types."""
    bad = [
        f"{e.where()}: {e.target}"
        for e in edges
        if e.source.startswith("medgan.io.") and e.target.startswith(("medgan.config", "medgan.data"))
    ]
    assert not bad, "medgan.io imports medgan.config / medgan.data:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_should() -> None:
    """The rules on a made-up graph: an upward import, a cycle, an unexplained local import."""
    layers = [("low", ("medgan.a",)), ("high", ("medgan.b", "medgan.c"))]
    up = Edge("medgan.a", "medgan.b", "medgan/a.py", 1, False, "")
    assert layer_of(up.target, layers) == 1 > (layer_of(up.source, layers) or 0)
    loop = [Edge("medgan.b", "medgan.c", "b", 1, False, ""), Edge("medgan.c", "medgan.b", "c", 1, True, "")]
    assert find_cycles(loop) == [["medgan.b", "medgan.c"]]
    assert not is_justified("") and not is_justified("# lazy:") and not is_justified("# noqa")
    assert is_justified("# lazy: keeps medgan --help fast")
    assert layer_of("medgan.elsewhere", layers) is None
