"""The plan of the house: the import rules of pyproject's ``[tool.importlinter]`` hold (and would catch a
break), settings are read from the environment in one place, modules stay short, the engine type-checks.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fixtures.data import REPO

CODE = ("core", "ui", "pages")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
            "--config",
            str(root / "pyproject.toml"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _python_files(*folders: str) -> list[Path]:
    return [*sorted(p for folder in folders for p in (REPO / folder).rglob("*.py")), REPO / "app.py"]


def test_the_import_rules_hold() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "6 kept" in result.stdout


def test_the_import_rules_catch_the_store_inside_the_engine(tmp_path: Path) -> None:
    for name in CODE:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "core" / "engine" / "matching.py").open("a") as handle:
        handle.write("\nfrom core.store import models  # noqa: E402,F401\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1
    assert "the engine knows no database, no review, no app BROKEN" in result.stdout
    assert "core.engine.matching -> core.store.models" in result.stdout


def _reads_environment(node: ast.AST) -> bool:
    """``os.environ``, ``os.getenv`` or ``environ`` imported from os."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
        return node.attr in ("environ", "getenv", "environb")
    return isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name == "environ" for a in node.names)


def test_settings_are_read_from_the_environment_in_one_place() -> None:
    """Only core/settings.py reads the environment; backup passes it, whole, to pg_dump (a child process)."""
    readers = set()
    for path in _python_files(*CODE):
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(_reads_environment(node) for node in ast.walk(tree)):
            readers.add(path.relative_to(REPO).as_posix())
    assert readers == {"core/settings.py", "core/store/backup.py"}
    backup = (REPO / "core/store/backup.py").read_text()
    assert backup.count("os.environ") == 1 and "env = dict(os.environ)" in backup


def test_modules_stay_short_or_say_why() -> None:
    """About 500 lines at most; a longer module says why in its docstring ("Over 500 lines because …")."""
    long = []
    for path in _python_files(*CODE):
        text = path.read_text()
        if text.count("\n") > 520 and "Over 500 lines because" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(path.relative_to(REPO).as_posix())
    assert long == []


def test_the_app_entry_point_goes_through_the_service_layer() -> None:
    tree = ast.parse((REPO / "app.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    ours = {m for m in imported if m.startswith(("core", "ui"))}
    allowed = ("core.service", "core.viz", "core.errors", "core.settings", "ui")
    assert ours and all(m.startswith(allowed) for m in ours), ours
    assert not imported & {"sqlmodel", "sqlalchemy"}


def test_the_engine_type_checks() -> None:
    """mypy with the project's settings (pyproject ``[tool.mypy]``): core/engine and the modules it uses."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
