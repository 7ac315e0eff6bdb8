"""The import contract (``.importlinter``): layers run one way and no module import cycle.

The contract is checked on the code as it is, and on a copy with one upward import added, so
that a contract that could never fail would fail this test. Names the import graph cannot see
(modules named by strings) are imported here, each from the package that names it.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aurora_rl", "actors", "rewards", "learner")


def lint(root: Path) -> subprocess.CompletedProcess:
    code = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_code_keeps_the_import_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def copy_sources(dest: Path) -> None:
    shutil.copy(ROOT / ".importlinter", dest)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy_sources(tmp_path)
    records = tmp_path / "aurora_rl" / "records.py"
    records.write_text(records.read_text() + "\n\ndef _upward():\n    from learner import grpo_job\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "Layers run one way" in result.stdout and "BROKEN" in result.stdout
    assert "aurora_rl.records -> learner.grpo_job" in result.stdout


def test_a_cycle_breaks_the_contract(tmp_path):
    copy_sources(tmp_path)
    answer_format = tmp_path / "aurora_rl" / "prompts" / "answer_format.py"
    answer_format.write_text(answer_format.read_text() + "\n\ndef _cycle():\n    from aurora_rl.prompts import cot_source\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "No import cycle between modules BROKEN" in result.stdout


def test_a_module_without_a_layer_breaks_the_contract(tmp_path):
    copy_sources(tmp_path)
    (tmp_path / "aurora_rl" / "helpers.py").write_text("X = 1\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "aurora_rl.helpers" in result.stdout


def resolve(dotted: str, separator: str = "."):
    module, _, name = dotted.rpartition(separator)
    return getattr(importlib.import_module(module), name)


def test_names_the_import_graph_cannot_see_resolve_within_their_package():
    from actors.policy_engine import WORKER_EXTENSION
    from aurora_rl import cli, data

    assert WORKER_EXTENSION.startswith("actors.")  # named inside actors/, vLLM imports it in the worker
    extension = resolve(WORKER_EXTENSION)  # the methods the engine calls by name
    assert all(callable(getattr(extension, m)) for m in ("load_hf_weights", "reload_hf_layers", "packed_modules"))
    for name in cli.COMMAND_MODULES:  # the CLI registers these by name
        assert callable(importlib.import_module(f"aurora_rl.commands.{name}").register)
    for name in data.__all__:  # aurora_rl.data exports these lazily, from its own modules
        assert getattr(data, name) is not None
    script = "aurora_rl.cli:main"  # pyproject.toml's console script
    assert script in (ROOT / "pyproject.toml").read_text()
    assert callable(resolve(script, ":"))
