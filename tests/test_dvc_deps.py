"""dvc.yaml stays honest: each stage lists exactly the project's .py files its script imports.

The import closure is read from the source (ast: module-level and function-level imports, the
project's own modules only), so the check needs no TensorFlow and runs in a second.
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mcuvision", "stages")
# .py files a stage reads as data, not as code: export copies the custom layer's source next to
# the .keras model (stages/export.py, LAYERS_SOURCE).
READ_AS_DATA = {"export": {ROOT / "mcuvision" / "model" / "layers.py"}}


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (package → its __init__.py); None outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(path: Path, package: str | None = None) -> set[Path]:
    """Project files `path` imports anywhere in its body (relative imports resolved against
    `package`, by default the file's own), with the __init__.py of every package on the way."""
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module`
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                file = module_file(".".join(parts[:i]))
                if file is not None:
                    found.add(file)
    return found


def closure(path: Path) -> set[Path]:
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += imported_files(current) - seen
    return seen


def listed_code(deps: list) -> set[Path]:
    """The .py files among a stage's deps (a folder dep counts every .py file under it)."""
    files = set()
    for dep in deps:
        path = ROOT / (dep if isinstance(dep, str) else next(iter(dep)))
        if path.is_dir():
            files |= set(path.rglob("*.py"))
        elif path.suffix == ".py":
            files.add(path)
    return files


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_every_stage_module_is_a_dvc_stage_and_the_reverse():
    modules = {p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules == set(stages())  # user commands live in mcuvision/ (console scripts in pyproject.toml)


# Code that changes no stage's output, left out of both sides: package __init__ files, the filter
# of what stderr shows (a change to it must not re-run every stage) and the name in usage lines.
NO_OUTPUT_EFFECT = {"__init__.py", "native_log.py", "cli.py"}


def test_each_stage_lists_exactly_the_code_its_script_imports():
    wrong = {}
    for name, stage in stages().items():
        script = ROOT / "stages" / f"{name}.py"
        needed = {p for p in closure(script) if p.name not in NO_OUTPUT_EFFECT} | READ_AS_DATA.get(name, set())
        listed = {p for p in listed_code(stage.get("deps", [])) if p.name not in NO_OUTPUT_EFFECT}
        if needed != listed:
            wrong[name] = {"unlisted": sorted(str(p.relative_to(ROOT)) for p in needed - listed),
                           "not imported": sorted(str(p.relative_to(ROOT)) for p in listed - needed)}
    assert not wrong, wrong


def test_the_closure_sees_function_level_and_relative_imports(tmp_path):
    # runners.py imports the custom layer inside a function: the edge must be seen.
    assert ROOT / "mcuvision" / "model" / "layers.py" in closure(ROOT / "mcuvision" / "runtime" / "runners.py")
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ..data import splits\n    import mcuvision.config.base as b\n")
    expected = {ROOT / "mcuvision" / "data" / "splits.py", ROOT / "mcuvision" / "config" / "base.py"}
    assert expected <= imported_files(module, package="mcuvision.report")
