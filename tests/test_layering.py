"""How the package is layered: imports go down the layers below and never up, there is no
import cycle, no simulator module is over 600 lines, and the simulator side imports neither
torch nor (until a figure is drawn) matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "simqos"

LAYERS = [
    # lowest first; a module imports only from its own layer or those below
    ["simqos.errors", "simqos.outputs", "simqos.userfiles", "simqos.cache", "simqos.jit", "simqos.markov", "simqos.realtime"],
    ["simqos.specs"],
    ["simqos.scenario", "simqos.bundle"],
    # the serving core and what it serves: a model's service, the device, the workload, the tallies
    ["simqos.sim.metrics", "simqos.sim.serving", "simqos.sim.service", "simqos.sim.device", "simqos.sim.workload",
     "simqos.sim.timeslice", "simqos.sim.tally", "simqos.sim.plausible", "simqos.sim.workers"],
    ["simqos.policies"],  # and its modules: the decisions the core calls, over the core's types
    ["simqos.sim.inputs"],
    ["simqos.sim.simpy_model", "simqos.sim.compiled", "simqos.results"],  # the two drivers; records on disk
    ["simqos.sim.plan"],  # building a plan may time a policy's decisions on the SimPy model
    ["simqos.sim.replication"],
    ["simqos.sim.execution"],
    ["simqos.overrides", "simqos.bound", "simqos.sim.stopping"],
    ["simqos.verdict", "simqos.experiments", "simqos.accuracy", "simqos.nested", "simqos.kernels", "simqos.profiler", "simqos.models"],
    ["simqos.report", "simqos.plots", "simqos.sweep", "simqos.validate"],
    ["simqos.api"],  # what each command does
    ["simqos.cli", "simqos.__main__"],
]

SIMULATOR = ("simqos.sim", "simqos.policies", "simqos.specs", "simqos.scenario", "simqos.bundle", "simqos.bound", "simqos.verdict",
             "simqos.results", "simqos.overrides", "simqos.sweep", "simqos.report", "simqos.validate.server", "simqos.realtime")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.with_suffix("").relative_to(PACKAGE.parent).parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _layer(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return i
    return None


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules ``path`` imports when it runs (wherever the import is: at the top,
    in a function), leaving out ``if TYPE_CHECKING:`` blocks, which only annotations read."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for node in ast.walk(stmt)}  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("simqos"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("simqos")}
    return {m for m in found if m in modules and m != "simqos"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in _modules() if m != "simqos" and _layer(m) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
              for m, deps in _graph().items() if m != "simqos" for d in deps if _layer(d) > _layer(m)]  # fmt: skip
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.startswith(SIMULATOR)))
def test_no_simulator_module_is_over_600_lines(module):
    assert len(_modules()[module].read_text().splitlines()) <= 600


@pytest.mark.parametrize(("heavy", "drawing"), [("torch", ()), ("matplotlib", ("simqos.report",))])
def test_the_simulator_imports_no_torch_nor_matplotlib_until_it_draws(heavy, drawing):
    """Every simulator module and the CLI, imported together: no torch; and no matplotlib
    but for the report, which draws."""
    simulator = sorted(m for m in _modules() if (m.startswith(SIMULATOR) or m == "simqos.cli") and m not in drawing)
    code = f"import sys; import {', '.join(simulator)}; assert {heavy!r} not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_an_upward_import_is_caught(tmp_path):
    """The check itself: a module of the serving core that imports the CLI is refused."""
    path = tmp_path / "serving.py"
    path.write_text("from simqos.cli import app\n")
    deps = _imports(path, _modules())
    assert deps == {"simqos.cli"} and _layer("simqos.cli") > _layer("simqos.sim.serving")


def _functions(path: Path) -> list[ast.FunctionDef]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_few_long_functions():
    """No more than 10 functions of the package over 50 lines (docstring included)."""
    long = sorted(f"{path.relative_to(PACKAGE.parent)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
                  for path in PACKAGE.rglob("*.py") for f in _functions(path) if f.end_lineno - f.lineno + 1 > 50)
    assert len(long) <= 10, long


def test_every_command_is_parse_one_call_print():
    """A command's code (after its options and docstring) is at most 30 lines: it parses, makes
    one call (simqos.api or the module that does the work) and prints."""
    commands = [f for f in ast.parse((PACKAGE / "cli.py").read_text()).body
                if isinstance(f, ast.FunctionDef) and any("command" in ast.unparse(d) for d in f.decorator_list)]
    assert len(commands) >= 8
    for f in commands:
        body = f.body[1:] if isinstance(f.body[0], ast.Expr) else f.body
        assert body[-1].end_lineno - body[0].lineno + 1 <= 30, f.name
