"""Arrows point down (../shared/DESIGN.md): cores import no shell, no gRPC, no SQLite, no
netlink and not the OpenFlow application; `controller` imports nothing of Mininet or of
the lab harness; `qoe` imports nothing of cems; `probes` nothing of the controller.

Checked twice: statically, over the import graph of the repository's own modules (what a
module imports directly and through other cems modules), and for real, by importing every
core module in a fresh interpreter and looking at what got loaded.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Cores: pure logic and data (controller/csm/store.py is the SQLite shell beside its core).
CORE_PACKAGES = ("controller.network", "controller.openflow", "controller.monitor",
                 "controller.policy")
CORE_MODULES = ("controller.csm.model", "controller.csm.rules", "controller.csm.admission",
                "controller.csm.mapping", "controller.csm.queues", "controller.csm.report",
                "controller.csm.service", "controller.config", "controller.events",
                "controller.state", "controller.validation", "controller.health")
# What a core may not reach: shells of cems, and third-party I/O and frameworks.
SHELLS = ("controller.app", "controller.main", "controller.runtime", "controller.api",
          "controller.cli", "controller.store", "controller.csm.store", "controller.edge",
          "controller.metrics", "controller.ryu_launcher", "lab")
FORBIDDEN_THIRD_PARTY = ("grpc", "grpc_health", "grpc_reflection", "cems", "sqlite3", "psycopg",
                         "nats", "pyroute2", "mininet", "prometheus_client")
# The framework door is for the one message builder and the packet codecs only.
COMPAT_ALLOWED = {"controller.openflow.messages", "controller.openflow.wire_stats",
                  "controller.network.discovery", "controller.network.packet_in"}
LOADED_NEVER = ("controller.app", "os_ken.base.app_manager", "ryu.base.app_manager",
                "os_ken.controller.controller", "grpc", "sqlite3", "pyroute2", "mininet",
                "prometheus_client")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, pathlib.Path]:
    found = {}
    for top in ("controller", "probes", "qoe", "lab", "mininet_topos", "client", "portal"):
        for path in (ROOT / top).rglob("*.py"):
            found[module_name(path)] = path
    return found


def direct_imports(path: pathlib.Path, name: str) -> set[str]:
    """Absolute names of everything a module imports, at any depth of its code."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


MODULES = all_modules()
GRAPH = {name: {i for i in direct_imports(path, name)} for name, path in MODULES.items()}


def reaches(name: str) -> dict[str, list[str]]:
    """Every module `name` imports, directly or through cems modules, with one path to it."""
    paths = {name: [name]}
    todo = [name]
    while todo:
        here = todo.pop()
        for target in GRAPH.get(here, ()):
            if target not in paths:
                paths[target] = paths[here] + [target]
                if target in GRAPH:
                    todo.append(target)
    return paths


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


CORES = sorted(m for m in MODULES if within(m, CORE_PACKAGES) or m in CORE_MODULES)


def test_the_core_list_names_real_modules():
    assert set(CORE_MODULES) <= set(MODULES)
    assert {"controller.openflow.reconcile", "controller.openflow.desired",
            "controller.monitor.kpis", "controller.policy"} <= set(CORES)


@pytest.mark.parametrize("core", CORES)
def test_a_core_reaches_no_shell_no_io_and_not_the_application(core):
    paths = reaches(core)
    for target, path in paths.items():
        assert not within(target, SHELLS), f"{core} imports a shell: {' -> '.join(path)}"
        assert not within(target, FORBIDDEN_THIRD_PARTY), \
            f"{core} imports {target}: {' -> '.join(path)}"
    if core not in COMPAT_ALLOWED:
        assert "controller.compat" not in GRAPH[core], \
            f"{core} imports the OpenFlow framework directly; build messages in " \
            "controller.openflow.messages"


def test_the_controller_imports_no_mininet_and_no_lab_code():
    for name in MODULES:
        if within(name, ("controller",)):
            for target, path in reaches(name).items():
                assert not within(target, ("mininet", "lab", "mininet_topos")), \
                    f"{' -> '.join(path)}"


def test_qoe_imports_nothing_of_cems_and_probes_and_clients_nothing_of_the_controller():
    assert {"portal.views", "portal.sessions", "portal.app"} <= set(MODULES)
    for name in MODULES:
        for target, path in reaches(name).items():
            if within(name, ("qoe",)):
                assert not within(target, ("controller", "probes", "lab", "cems")), path
            if within(name, ("probes",)):
                assert not within(target, ("controller", "lab")), path
            if within(name, ("client",)):
                assert not within(target, ("controller", "probes", "lab")), path
            if within(name, ("portal",)):   # a gRPC client that may run on another machine
                assert not within(target, ("controller", "probes", "qoe", "lab")), path
            if name in ("portal.views", "portal.sessions"):   # the portal's cores
                assert not within(target, ("grpc", "cems", "fastapi", "starlette",
                                           "portal.backend", "portal.app")), path


def test_importing_every_core_loads_no_application_grpc_sqlite_or_netlink():
    code = ("import importlib, json, sys\n"
            f"for name in {CORES!r}: importlib.import_module(name)\n"
            f"print(json.dumps([m for m in {LOADED_NEVER!r} if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]", f"importing the cores loaded {out.strip()}"


def test_importing_the_whole_controller_loads_no_mininet():
    names = sorted(m for m in MODULES if within(m, ("controller",))
                   and not m.endswith("__main__") and m != "controller.ryu_launcher")
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print('mininet' in sys.modules, 'lab' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "False False"
