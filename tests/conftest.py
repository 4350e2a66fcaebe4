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
