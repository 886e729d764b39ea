"""Imports point down (STYLE.md, "Boundaries"): marketplace basics ← billing, nodes ← jobs, privacy ← the top.

Every ``import`` and ``from … import`` (at any depth: inside functions and ``TYPE_CHECKING``
blocks too, relative ones resolved) of the lower layers is read from its source; one that
names a higher layer fails the test with its file and line. The node agent runs on miners'
machines: it imports no Django at all and nothing of the marketplace's apps. ``wire``, the
formats the agent, the marketplace and the customer's client share, sits under everything.
Migrations are skipped: they are history, and name a field by the path it had when written.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DJANGO = {"django", "rest_framework", "drf_spectacular", "channels", "daphne", "dramatiq", "django_dramatiq"}
APPS = {"marketplace", "billing", "nodes", "jobs", "privacy"}

# marketplace's top layer (pages, SDK, commands, wiring) may import anything
MARKETPLACE_TOP = {"web", "sdk", "management", "templatetags", "urls.py", "asgi.py", "wsgi.py", "admin.py"}


@dataclass(frozen=True)
class Layer:
    name: str
    forbidden: frozenset[str]  # top-level packages this layer must not import
    only_below_self: str | None = None  # its own package, exempt from ``forbidden`` (the agent's)


LAYERS = {
    "billing": Layer("billing", frozenset({"jobs", "privacy"})),
    "nodes": Layer("nodes", frozenset({"jobs", "billing", "privacy"})),
    "nodes.agent": Layer("nodes.agent", frozenset(APPS | DJANGO), only_below_self="nodes.agent"),
    "marketplace": Layer("marketplace", frozenset({"jobs", "nodes", "billing", "privacy"})),
    # the formats on the wire, under everything: the agent and the customer's client use them too
    "wire": Layer("wire", frozenset(APPS | DJANGO)),
}

# (file, imported module) → why it may stay for now. Keep this short: fix, don't list.
ALLOWED: dict[tuple[str, str], str] = {}


def _layer_of(relative: Path) -> Layer | None:
    parts = relative.parts
    if "migrations" in parts:
        return None
    if parts[0] == "billing":
        return LAYERS["billing"]
    if parts[0] == "nodes":
        return LAYERS["nodes.agent"] if parts[1:2] == ("agent",) else LAYERS["nodes"]
    if parts[0] == "marketplace":
        return None if parts[1] in MARKETPLACE_TOP else LAYERS["marketplace"]
    if parts[0] == "wire":
        return LAYERS["wire"]
    return None


def _module_of(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(relative: Path):
    """(line, dotted module) for every import in the file, relative ones made absolute."""
    tree = ast.parse((ROOT / relative).read_text(), filename=str(relative))
    package = _module_of(relative).split(".")
    if relative.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:  # ``from . import x``: x is a module of that package
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"
            else:
                yield node.lineno, module
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) in
                   {"import_module", "__import__"})):
            yield node.lineno, node.args[0].value


def _points_up(layer: Layer, module: str) -> bool:
    own = layer.only_below_self
    if own is not None and (module == own or module.startswith(own + ".")):
        return False
    return module.split(".")[0] in layer.forbidden


def _scanned_files() -> list[Path]:
    files = []
    for package in ("billing", "nodes", "marketplace", "wire"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if _layer_of(relative) is not None:
                files.append(relative)
    return files


def _offenders() -> list[tuple[str, int, str, str]]:
    found = []
    for relative in _scanned_files():
        layer = _layer_of(relative)
        for line, module in _imports(relative):
            if _points_up(layer, module):
                found.append((relative.as_posix(), line, module, layer.name))
    return found


def test_the_scan_sees_every_layer():
    files = {f.as_posix() for f in _scanned_files()}
    assert {"billing/services.py", "nodes/models.py", "nodes/agent/main.py", "marketplace/models.py",
            "wire/envelope.py"} <= files
    assert not any(f.startswith(("marketplace/web/", "marketplace/sdk/", "marketplace/management/")) for f in files)
    assert not any("/migrations/" in f for f in files)
    assert "marketplace/urls.py" not in files


def test_no_import_points_up():
    offenders = [
        f"{path}:{line}: {layer} imports {module}"
        for path, line, module, layer in _offenders()
        if (path, module) not in ALLOWED
    ]
    assert not offenders, "imports that point up a layer (STYLE.md, Boundaries):\n" + "\n".join(offenders)


def test_every_allowed_import_is_still_there():
    """An entry nobody needs any more is removed, so the list only shrinks."""
    present = {(path, module) for path, _, module, _ in _offenders()}
    stale = sorted(set(ALLOWED) - present)
    assert not stale, f"no longer imported; remove from ALLOWED: {stale}"


@pytest.mark.parametrize(
    "path, source, expected",
    [
        ("billing/x.py", "from jobs.models import Job", ["jobs.models"]),
        ("billing/x.py", "def f():\n    import privacy.keys", ["privacy.keys"]),
        ("billing/x.py", "from marketplace.errors import ApiError", []),
        ("nodes/x.py", "from billing.fields import WeiField", ["billing.fields"]),
        ("nodes/agent/x.py", "from django.conf import settings", ["django.conf"]),
        ("nodes/agent/x.py", "from nodes.models import Node", ["nodes.models"]),
        ("nodes/agent/x.py", "from ..models import Node", ["nodes.models"]),
        ("nodes/agent/x.py", "from . import wire\nfrom nodes.agent.config import AgentConfig", []),
        ("nodes/agent/x.py", "import importlib\nimportlib.import_module('marketplace.ids')", ["marketplace.ids"]),
        ("marketplace/x.py", "from nodes.models import Node", ["nodes.models"]),
        ("marketplace/x.py", "from marketplace.ids import public_id", []),
        ("nodes/agent/x.py", "from wire.frames import decode_frame", []),
        ("wire/x.py", "from wire.encoding import b64u\nimport cryptography", []),
        ("wire/x.py", "from privacy.relay import private_push", ["privacy.relay"]),
        ("wire/x.py", "from django.conf import settings", ["django.conf"]),
    ],
)
def test_the_scan_reads_what_it_should(tmp_path, monkeypatch, path, source, expected):
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text(source)
    relative = Path(path)
    layer = _layer_of(relative)
    assert [m for _, m in _imports(relative) if _points_up(layer, m)] == expected
