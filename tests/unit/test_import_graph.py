"""The package's modules import each other without a circle, and the server stays apart.

Every module of ``src/runtime_job`` is parsed (not imported) with :mod:`ast`; each
``import`` and ``from ... import`` statement, at any depth (a function-level import counts:
it runs too), adds an edge from the module to the module it names. Imports under
``if TYPE_CHECKING:`` do not count (they never run). A package's ``__init__`` is a module
like the others; importing a submodule is not counted as importing its package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import runtime_job

ROOT = Path(runtime_job.__file__).resolve().parent
PACKAGE = "runtime_job"
SERVER_FORBIDDEN = (
    "runtime_job.job",
    "runtime_job.service",
    "runtime_job.futures",
    "runtime_job.aio",
    "runtime_job.monitor",
    "runtime_job.cli",
    "runtime_job.api.client",
    "runtime_job.api.session",
    "runtime_job.api.retry",
    "runtime_job.api.errors",
    "runtime_job.api.body",
    "runtime_job.api.stream",
    "runtime_job._job_stream",
    "runtime_job._job_state",
)
"""What the local server must never import (it runs without the client's user objects)."""


LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "shared leaves",
        ("_version", "_redact", "timing", "exceptions", "_logging", "_process", "_pool"),
    ),
    ("codec", ("codec", "v2", "pubs")),
    ("transport", ("api", "api.*")),
    (
        "job core",
        ("_job_stream", "_job_state", "_callbacks", "decoders", "backend", "options", "status"),
    ),
    ("configuration", ("config",)),
    ("user objects", ("job", "_job_members", "futures", "aio", "monitor", "service", "sessions")),
    ("entry points", ("cli", "")),
)
"""The client's layers, lowest first, as ``docs/architecture.md`` draws them (the package root
``""`` re-exports the public names). A module may import its own layer and those below."""
CORE_FORBIDDEN_PREFIXES = (
    "runtime_job.api.client",
    "runtime_job.api.session",
    "runtime_job.api.stream",
)
"""The job core and the user objects reach the transport only through its protocol and models."""


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([PACKAGE, *parts])] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (``if TYPE_CHECKING:`` bodies skipped)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    yield from _imports(node)


def _deepest_module(name: str) -> str | None:
    """The module ``name`` refers to, or the closest enclosing one of ours (else ``None``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                target = _deepest_module(alias.name)
                if target is not None:
                    yield target
        return
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base_parts = module.split(".")
        drop = node.level - 1 if is_package else node.level
        base = ".".join(base_parts[: len(base_parts) - drop] if drop else base_parts)
        base = f"{base}.{node.module}" if node.module else base
    else:
        if not node.module or node.module.split(".")[0] != PACKAGE:
            return
        base = node.module
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        target = candidate if candidate in MODULES else _deepest_module(base)
        if target is not None:
            yield target


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (statements that can run)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = {t for node in _imports(tree) for t in _targets(module, node)}
        edges.discard(module)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        for succ in graph.get(node, ()):
            if succ not in seen:
                seen.add(succ)
                todo.append(succ)
    return seen


def test_the_graph_sees_function_level_imports_and_skips_type_checking_ones() -> None:
    """The parser itself: a lazy import counts, a TYPE_CHECKING one does not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import codec\n"
        "if TYPE_CHECKING:\n"
        "    from .job import RuntimeJob\n"
        "def f():\n"
        "    from .futures import Watcher\n"
        "    import runtime_job.api.models\n"
    )
    module = "runtime_job.status"
    targets = {t for node in _imports(ast.parse(source)) for t in _targets(module, node)}
    assert targets == {"runtime_job.codec", "runtime_job.futures", "runtime_job.api.models"}


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_of_the_package_imports_in_a_circle() -> None:
    cycles = _cycles(import_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_server_imports_none_of_the_user_objects_or_the_http_client() -> None:
    graph = import_graph()
    for module in sorted(m for m in MODULES if m.startswith("runtime_job.server")):
        reached = _reachable(graph, module)
        bad = sorted(reached.intersection(SERVER_FORBIDDEN))
        assert not bad, f"{module} imports {bad}"


def _layer(module: str) -> int | None:
    """The index in :data:`LAYERS` of a client module (``None``: a server module)."""
    short = module.removeprefix(PACKAGE).removeprefix(".")
    if short == "server" or short.startswith("server."):
        return None
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if short == pattern or (pattern.endswith(".*") and short.startswith(pattern[:-1])):
                return index
    raise AssertionError(f"{module} is in no layer of docs/architecture.md: place it there")


def test_every_client_module_imports_only_its_layer_and_those_below() -> None:
    upward = []
    for module, targets in sorted(import_graph().items()):
        mine = _layer(module)
        if mine is None:
            continue
        for target in sorted(targets):
            theirs = _layer(target)
            if theirs is None:
                # The CLI serves; the service starts or joins the embedded server
                # (channel="local"). Nothing else of the client reaches the server.
                allowed = module == "runtime_job.cli" or (
                    module == "runtime_job.service" and target == "runtime_job.server"
                )
                if not allowed:
                    upward.append(f"{module} -> {target} (the server)")
            elif theirs > mine:
                upward.append(f"{module} ({LAYERS[mine][0]}) -> {target} ({LAYERS[theirs][0]})")
    assert upward == [], "upward imports: " + "; ".join(upward)


def test_the_job_core_and_user_objects_see_the_transport_only_through_its_protocol() -> None:
    graph = import_graph()
    core_and_up = [m for m in MODULES if (_layer(m) or 0) >= 3 and m != "runtime_job.service"]
    bad = [
        f"{m} -> {t}"
        for m in sorted(core_and_up)
        if m not in ("runtime_job", "runtime_job.cli")
        for t in sorted(graph[m])
        if t.startswith(CORE_FORBIDDEN_PREFIXES)
    ]
    assert bad == [], "reaches into the transport: " + "; ".join(bad)
