"""The layout the owner asked for: building and shipping apart, and no import circles inside them."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(path, package):
    """Modules of ``package`` that the file at ``path`` imports (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "")
            found.update(f"{node.module}.{a.name}" if node.module else a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == package:  # from package import module
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
            found.add(node.module[len(package) + 1:])
    return found


def _graph(folder, package):
    files = {p.stem: p for p in (ROOT / folder).glob("*.py") if p.stem != "__init__"}
    return {name: sorted(_imports(path, package) & set(files) - {name}) for name, path in files.items()}


def _cycle(graph):
    """One import circle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in graph:
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


@pytest.mark.parametrize("folder, package", [
    ("mlops", "orchzip.mlops"),
    ("builder", "orchzip.builder"),
    ("runtime/shim/connectors", "orchzip_shim.connectors"),
    ("orchzip/commands", "orchzip.commands"),
])
def test_modules_of_a_package_import_each_other_without_circles(folder, package):
    graph = _graph(folder, package)
    assert graph, f"no modules found in {folder}"
    assert _cycle(graph) is None, f"import circle in {folder}: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a"]}) is None


def test_building_never_imports_the_mlops_client():
    for path in (ROOT / "builder").glob("*.py"):
        text = path.read_text()
        assert "mlops" not in text.replace("orchzip.mlops``", ""), f"{path.name} reaches for the MLOps client"
        assert "import requests" not in text, f"{path.name} imports requests: shipping is orchzip.mlops's job"


def test_the_bigquery_reader_and_writer_share_one_module_not_the_factory():
    graph = _graph("runtime/shim/connectors", "orchzip_shim.connectors")
    assert "bigquery_common" in graph["bigquery_read"] and "bigquery_common" in graph["bigquery_write"]
    assert "bigquery_connector" not in graph["bigquery_read"] + graph["bigquery_write"]
