"""The core knows no protocol: hems/ imports no protocol library and nothing from integrations/ or web/,
except the composition root (hems/runtime.py), which wires them."""

import ast
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_LIBS = {
    "zigpy",
    "pymodbus",
    "ocpp",
    "paho",
    "openleadr",
    "websockets",
    "aiohttp",
    "bellows",
    "zigpy_znp",
}
COMPOSITION_ROOT = {"hems/runtime.py", "hems/cli.py"}  # the CLI starts the runtime and reads accounts


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_protocol_and_no_adapter():
    offenders = []
    for path in sorted((ROOT / "hems").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        bad = imported_modules(path) & (PROTOCOL_LIBS | {"integrations", "web"})
        if rel in COMPOSITION_ROOT:
            bad -= {"web", "aiohttp"}
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert offenders == []


def test_integrations_are_found_through_entry_points():
    eps = {ep.name: ep.value for ep in entry_points(group="hems.integrations")}
    assert eps.get("sim") == "integrations.sim:create"
    for name in eps:
        assert (ROOT / "integrations" / name).is_dir(), (
            f"entry point {name} has no integrations/{name}/ folder"
        )
