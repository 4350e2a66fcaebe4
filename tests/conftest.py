"""Shared fixtures: the project's own params, and small datasets made on the fly."""
from __future__ import annotations

import copy
import os
import shlex
import sys
from pathlib import Path

import pytest
import yaml

import mcuvision  # noqa: F401  (before any test module imports TensorFlow: it sets TensorFlow's log level)

ROOT = Path(__file__).resolve().parents[1]


def stage_command(name: str) -> list[str]:
    """The stage's command exactly as dvc.yaml gives it, run by this interpreter."""
    args = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]["cmd"])
    assert args[0] == "python"
    return [sys.executable, *args[1:]]


def stage_env(**extra: str) -> dict:
    """A stage process's environment: the project importable, output unbuffered (seen as printed)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


# The order in which `make test` (pytest-xdist: --dist loadfile --no-loadscope-reorder) hands out the test
# files: the slowest first, so that the two workers finish together (each file's seconds: `make test
# PYTEST_ARGS=--durations=0`), and the four that read the shared tiny model (tests/tiny_model.py) one
# after the other, so that the worker which built it reads it next rather than another waiting for it.
# Files not named keep pytest's order after these.
SLOWEST_FIRST = ("test_pipeline_dvc.py", "test_golden.py", "test_quantize_export.py", "test_int4_search.py",
                 "test_layer_error.py", "test_replicas.py", "test_faults.py", "test_error_paths.py", "test_train.py",
                 "test_levers.py", "test_determinism.py", "test_predict.py", "test_profile.py", "test_model.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FIRST)))  # stable: a file stays together


@pytest.fixture(scope="session")
def base_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def params(base_params) -> dict:
    """A private copy of params.yaml, free to edit in a test."""
    return copy.deepcopy(base_params)


@pytest.fixture(autouse=True)
def at_project_root(monkeypatch):
    """Stages resolve conf/ and relative dataset paths from the project root, as DVC runs them."""
    monkeypatch.chdir(ROOT)
