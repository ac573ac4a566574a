"""The shape of the code, checked: every file a stage runs is in that stage's DVC deps, and imports point
one way (pipelines -> registry -> mednns; mednns reaches registry only from its CLI shell)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PACKAGES = ("mednns", "registry", "pipelines")


def module_file(module: str, root: Path = REPO) -> Path | None:
    """The file of a module of this repo (a package's __init__.py), or None for anything else."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _lazy_exports(module: str) -> dict[str, str]:
    """A package's PEP 562 re-exports (`_EXPORTS`: name -> module), which `from pkg import name` runs."""
    path = module_file(module)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imported_modules(path: Path, module: str) -> set[str]:
    """Every repo module `path` imports anywhere (top level or inside functions)."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            lazy = _lazy_exports(base)
            for alias in node.names:
                if alias.name in lazy:
                    out.add(lazy[alias.name])
                elif module_file(f"{base}.{alias.name}"):
                    out.add(f"{base}.{alias.name}")
    return {m for m in out if module_file(m)}


def import_closure(module: str) -> set[Path]:
    """The repo files that running `python -m module` executes: its imports, theirs, and their packages."""
    seen, todo, files = set(), [module], set()
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            m = ".".join(parts[:i])
            if m in seen or module_file(m) is None:
                continue
            seen.add(m)
            path = module_file(m)
            files.add(path)
            todo.extend(imported_modules(path, m))
    return files


def stage_commands(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, tuple[str, list[str]]]:
    """stage name -> (the `python -m` module its cmd runs, its code deps)."""
    out = {}
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        stage = stage.get("do", stage)  # a foreach stage's body
        m = re.search(r"python -m ([\w.]+)", stage["cmd"])
        assert m, f"stage {name}: cmd does not run `python -m <module>`"
        out[name] = (m.group(1), [d for d in stage.get("deps", []) if "${" not in d])
    return out


def uncovered(module: str, deps: list[str]) -> list[str]:
    """Files of the closure that no dep (the file itself or a folder above it) covers."""
    dep_paths = [(REPO / d).resolve() for d in deps]
    missing = []
    for f in sorted(import_closure(module)):
        if not any(f == d or d in f.parents for d in dep_paths):
            missing.append(f.relative_to(REPO).as_posix())
    return missing


@pytest.mark.parametrize("stage", sorted(stage_commands()))
def test_every_file_a_stage_runs_is_in_its_deps(stage):
    module, deps = stage_commands()[stage]
    assert uncovered(module, deps) == [], f"dvc.yaml stage {stage}: add these to its deps"


@pytest.mark.parametrize("stage", sorted(stage_commands()))
def test_no_stage_depends_on_code_it_never_runs(stage):
    """An over-wide dep re-runs a stage (hours at the paper scale) for a change it cannot see."""
    module, deps = stage_commands()[stage]
    closure = import_closure(module)
    for d in deps:
        if d.split("/")[0] in PACKAGES:
            path = (REPO / d).resolve()
            assert any(f == path or path in f.parents for f in closure), f"stage {stage}: {d} is never imported"


def test_the_deps_check_fails_when_a_dep_is_removed():
    module, deps = stage_commands()["build_zoo"]
    assert "mednns/nn/bn.py" in {f.relative_to(REPO).as_posix() for f in import_closure(module)}
    without = [d for d in deps if d != "mednns/nn"]
    assert "mednns/nn/bn.py" in uncovered(module, without)


def test_stage_commands_take_their_paths_from_dvc_yaml():
    """Every output a stage writes appears in its cmd: no stage script builds a path of its own."""
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        outs = [next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots")
                for o in stage.get(key, [])]
        for out in outs:
            stem = out.removesuffix(".json").removesuffix(".md")
            assert stem in stage["cmd"] or out in stage["cmd"] or str(Path(out).parent) in stage["cmd"], \
                f"stage {name}: output {out} is not in its cmd"


def _imports(path: Path) -> list[ast.AST]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _names(node) -> list[str]:
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def test_mednns_imports_neither_registry_nor_pipelines_outside_its_cli():
    for path in (REPO / "mednns").rglob("*.py"):
        if path.parent == REPO / "mednns" / "cli":  # the command-line shell may reach the registry
            continue
        for node in _imports(path):
            for name in _names(node):
                assert name.split(".")[0] not in ("registry", "pipelines"), f"{path.relative_to(REPO)} imports {name}"


def test_registry_uses_only_the_public_api_of_mednns():
    import mednns

    for path in (REPO / "registry").rglob("*.py"):
        for node in _imports(path):
            for name in _names(node):
                if name.split(".")[0] == "mednns":
                    assert name == "mednns", f"{path.relative_to(REPO)} imports {name}: use `from mednns import ...`"
                    assert all(a.name in mednns.__all__ for a in node.names), \
                        f"{path.relative_to(REPO)}: {[a.name for a in node.names]} not all in mednns.__all__"


def test_the_public_api_resolves():
    import mednns

    for name in mednns.__all__:
        assert getattr(mednns, name) is not None, name
