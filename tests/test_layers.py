"""The package's layering: every import of a helper module points down, never up or sideways.

``parse`` ← ``sources`` ← ``index`` ← ``service`` ← ``cli`` (``config`` sits beside ``service`` and
reads only ``parse``; ``extension_ids``, a leaf of constants, is read by ``config`` and ``service``).
The ``config_*`` modules (``config_imap``, ``config_sites``…) are parts of ``config``, its layer.
A violation is named with its file and line, so a reviewer sees what to move.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "helper"

#: For each layer, the layers it may import from (besides itself and the package root).
ALLOWED: dict[str, set[str]] = {
    "parse": set(),
    "sources": {"parse"},
    "index": {"parse", "sources"},
    "extension_ids": set(),
    "config": {"parse", "extension_ids"},
    "service": {"parse", "sources", "index", "config", "extension_ids"},
    "cli": {"parse", "sources", "index", "config", "service", "extension_ids"},
    "__main__": {"cli"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    return "config" if name.startswith("config_") else name


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "helper":
                found += [(node.lineno, f"helper.{alias.name}") for alias in node.names]
            elif node.module.startswith("helper."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("helper.")]
    return found


def test_every_helper_import_points_down() -> None:
    bad = []
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 15
    for path in files:
        rel = path.relative_to(ROOT.parent).with_suffix("")
        layer = _layer(".".join(rel.parts))
        if layer == "__init__":
            continue
        for line, target in _imports(path):
            other = _layer(target)
            if other in ("", "__version__", layer) or other in ALLOWED[layer]:
                continue
            bad.append(f"{rel}.py:{line} imports {target}")
    assert not bad, "imports pointing up or sideways:\n" + "\n".join(bad)
