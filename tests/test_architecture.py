"""The shape of the code: DESIGN.md's layers, small modules and functions, no class checks.

Read from the source, so each rule fails the moment someone breaks it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "collab"
MODULES = sorted(PACKAGE.rglob("*.py"))

# Lowest first; a module may import its own layer and those below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "trace", "messages", "options", "config", "ledger"),
    ("models",),
    ("speculative",),
    ("tools",),
    ("privacy",),
    ("strategies",),
    ("chat_model", "policy"),
    ("agents", "middleware"),
    ("cli", "chat_cli", "demo", "server"),
]
BACKENDS = {
    "LocalChatModel", "LlamaCppChatModel", "TransformersChatModel", "OpenAICompatibleChatModel",
    "LocalServerChatModel", "SpeculativeChatModel", "LlamaCppEngine", "TransformersEngine",
}  # fmt: skip


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _layer(module: str) -> int:
    if module == "collab":
        return len(LAYERS) - 1  # the package's front door re-exports from every layer
    top = module.split(".")[1]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} belongs to no layer of DESIGN.md")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 450, f"{_name(path)} has {lines} lines: split it along its jobs"
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 60, f"{_name(path)}.{node.name} has {length} lines"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_imports_point_down(path: Path) -> None:
    own = _layer(_name(path))
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("collab."):
            target = node.module or ""
            assert _layer(target) <= own, f"{_name(path)} imports {target}, a higher layer"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_backend_class_checks_and_no_asserts(path: Path) -> None:
    in_models = _name(path).startswith("collab.models")
    for node in ast.walk(_tree(path)):
        assert not isinstance(node, ast.Assert), (
            f"{_name(path)}:{node.lineno} uses assert, which python -O removes: raise instead"
        )
        if in_models or not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            checked = ast.unparse(node.args[1])
            hits = BACKENDS & set(re.findall(r"\w+", checked))
            assert not hits, (
                f"{_name(path)}:{node.lineno} asks whether a model is a {hits}: "
                "ask its capability profile (collab.models.profile) instead"
            )


def _readme_api() -> dict[str, set[str]]:
    """The README's public API section: for each package, the names it lists."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Public API", 1)[1].split("\n## ", 1)[0]
    api: dict[str, set[str]] = {}
    for line in section.splitlines():
        found = re.match(r"- `(collab[\w.]*)`: (.*)", line)
        if found:
            api[found.group(1)] = set(re.findall(r"`(\w+)`", found.group(2)))
    return api


def test_each_package_exports_what_the_readme_lists() -> None:
    import importlib

    api = _readme_api()
    assert set(api) >= {"collab", "collab.models", "collab.strategies", "collab.tools",
                        "collab.agents"}  # fmt: skip
    for package, names in api.items():
        module = importlib.import_module(package)
        assert set(module.__all__) == names, f"{package}.__all__ differs from the README"
        for name in names:
            assert hasattr(module, name), f"{package} lists {name} but has none"
