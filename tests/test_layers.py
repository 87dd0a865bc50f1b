"""The layering of README's ARCHITECTURE section, checked: which modules may import the WebUI,
gradio or the heavy libraries at import time, and no import circles (function-level imports
count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lib_multipass"
WEBUI_ONLY = {"modules", "gradio", "fastapi", "starlette", "networks", "launch"}
HEAVY = {"torch", "diffusers", "transformers", "peft", "accelerate", "safetensors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            found += [(target, id(node) in top) for target in targets]
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}


def host_side(name: str) -> bool:
    """The WebUI adapter: it alone may import the WebUI, gradio and FastAPI."""
    return name.startswith(f"{PACKAGE}.webui")


def test_only_the_webui_adapter_imports_the_webui():
    wrong = [(name, target) for name, path in modules().items() if not host_side(name)
             for target, _ in imports(path) if target.split(".")[0] in WEBUI_ONLY]
    assert wrong == []


def test_the_core_never_imports_upward_into_the_adapter():
    wrong = [(name, target) for name, path in modules().items() if not host_side(name)
             for target, _ in imports(path) if host_side(target)]
    assert wrong == []


def test_heavy_libraries_load_only_when_used():
    """At import time only the standalone engine (its LoRA loading, its latent blend) loads torch/diffusers:
    the WebUI imports the core under its own pins, and the CLI's `parse` answers in a moment."""
    allowed = {f"{PACKAGE}.engines.diffusers", f"{PACKAGE}.engines.lora_loading", f"{PACKAGE}.engines.latent_blend"}
    wrong = [(name, target) for name, path in modules().items() if name not in allowed
             for target, top in imports(path) if top and target.split(".")[0] in HEAVY]
    assert wrong == []


def module_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {name: {t for t, _ in imports(path) if t in known and t != name} for name, path in known.items()}
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def folder_of(name: str) -> str:
    """`lib_multipass.faces.swap` -> `lib_multipass.faces`; a top-level module stands for itself."""
    return ".".join(name.split(".")[:2])


def test_no_import_circles():
    assert circles_in(module_graph()) == []


def test_no_circles_between_sub_packages():
    """faces/, masks/, engines/, webui/ ... as wholes: an arrow between two runs one way only."""
    graph: dict[str, set[str]] = {}
    for name, targets in module_graph().items():
        graph.setdefault(folder_of(name), set()).update(folder_of(t) for t in targets if folder_of(t) != folder_of(name))
    assert circles_in(graph) == []


def circles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name, stack):
        state[name] = "open"
        for target in sorted(graph[name]):
            if target not in graph:
                continue
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return circles
