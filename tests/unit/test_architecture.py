"""The layout is the architecture: imports only point down the layers, whatever the style of the import
(top of module or inside a function).

    cli -> serving -> api, console -> service -> config, metrics, logs, embedded -> store -> domain
        -> flagsvc_client.protocol

The domain knows no Flask, Redis or marshmallow; the application tier no Flask; the HTTP layer no redis and no
store implementation (it talks to the services, and names store roles at most).
"""

from __future__ import annotations

import ast
from pathlib import Path

import flagsvc

PACKAGE = Path(flagsvc.__file__).parent
LAYERS = {"domain": 0, "store": 1, "config": 2, "metrics": 2, "logs": 2, "embedded": 2, "service": 3, "api": 4,
          "console": 4, "serving": 5, "cli": 6, "__main__": 6, "__init__": 0}
FORBIDDEN = {
    "domain": ("flask", "werkzeug", "redis", "marshmallow", "prometheus_client"),
    "service": ("flask", "werkzeug", "marshmallow"),
    "api": ("redis", "flagsvc.store.memory", "flagsvc.store.redis_store", "flagsvc.embedded",
            "flagsvc.store.RedisStore", "flagsvc.store.MemoryStore"),
}
FORBIDDEN["console"] = FORBIDDEN["api"]  # the web console is HTTP too, beside the API: it talks to the services


def _modules() -> dict[str, Path]:
    return {".".join(("flagsvc", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
            for path in PACKAGE.rglob("*.py")}


def _imports(module: str, path: Path) -> set[str]:
    """Every module (and `module.Name` for from-imports) that `module` imports, relative imports resolved."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _violations() -> list[str]:
    problems = []
    for module, path in sorted(_modules().items()):
        area = _area(module)
        for target in sorted(_imports(module, path)):
            if target.startswith("flagsvc.") and _area(target) in LAYERS and _area(target) != area \
                    and LAYERS[_area(target)] > LAYERS[area]:
                problems.append(f"{module} ({area}) imports {target} ({_area(target)}): an upward arrow")
            for banned in FORBIDDEN.get(area, ()):
                if target == banned or target.startswith(banned + "."):
                    problems.append(f"{module} ({area}) imports {target}")
    return problems


def test_every_module_has_a_layer():
    assert {_area(m) for m in _modules()} <= set(LAYERS)


def test_imports_only_point_down_the_layers():
    assert _violations() == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from flagsvc.store.redis_store import RedisStore\n    import redis\n")
    assert {"flagsvc.store.redis_store", "flagsvc.store.redis_store.RedisStore", "redis"} <= _imports("x.y", sample)
